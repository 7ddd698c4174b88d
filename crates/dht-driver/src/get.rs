//! How a get ended: [`GetSummary`], what every driver hands its caller at the end of a get.

use dht_proto::Event;

/// How a get ended, from the core's [`Event::GetDone`]: whether it is complete, and how many of
/// the closest nodes it settled on answered it in full.
///
/// `ok` is true when, in at least one family, every live node among the closest answered in
/// full (the values delivered are then all those nodes hold). `answered` and `asked` count the
/// closest nodes of both families: `asked` those the get asked (answered, still answering, or
/// silent through their retransmissions; nodes found to have expired are not counted),
/// `answered` those that answered in full. A get that found no node at all ends with
/// `ok == false` and `0/0`.
///
/// ```
/// use dht_driver::GetSummary;
/// use dht_proto::{Event, InfoHash, OpId};
///
/// let done = Event::GetDone { op: OpId(1), key: InfoHash::get("k"), ok: true, answered: 7, asked: 8 };
/// let s = GetSummary::from_event(&done).unwrap();
/// assert_eq!(s, GetSummary { ok: true, answered: 7, asked: 8 });
/// assert!(!s.all_answered());
/// assert_eq!(s.to_string(), "7/8 answered");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GetSummary {
    /// Complete: in at least one family, every live node among the closest answered in full.
    pub ok: bool,
    /// How many of the closest nodes (both families) answered in full.
    pub answered: usize,
    /// How many of the closest nodes (both families) the get asked.
    pub asked: usize,
}

impl GetSummary {
    /// The summary of `event` if it is a [`Event::GetDone`].
    pub fn from_event(event: &Event) -> Option<GetSummary> {
        match *event {
            Event::GetDone {
                ok, answered, asked, ..
            } => Some(GetSummary { ok, answered, asked }),
            _ => None,
        }
    }

    /// Whether every node the get asked answered in full (and it asked at least one).
    pub fn all_answered(&self) -> bool {
        self.asked > 0 && self.answered >= self.asked
    }
}

impl std::fmt::Display for GetSummary {
    /// `answered/asked answered`, e.g. `8/8 answered`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} answered", self.answered, self.asked)
    }
}
