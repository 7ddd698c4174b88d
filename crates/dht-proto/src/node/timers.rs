//! The node's own periodic timers, each named for the job it starts, and the reasons
//! [`Node::next_timer`](super::Node::next_timer) gives for the next wake-up (these timers and the
//! deadlines the sub-machines keep: retransmissions, reassembly, value expiry, token rotation,
//! search wake-ups).

use crate::Instant;

/// Why the node next wants [`Node::handle_timeout`](crate::Node::handle_timeout) called, as
/// [`Node::next_timer`](crate::Node::next_timer) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerReason {
    /// A request is due for retransmission, or has gone unanswered too long.
    Request,
    /// The uplink is free for the next paced datagram of value data.
    Pacing,
    /// A message being reassembled from fragments gives up.
    Reassembly,
    /// A stored value expires.
    ValueExpiry,
    /// The write-token secret rotates.
    TokenRotation,
    /// The next bootstrap ping, while no family is connected.
    Bootstrap,
    /// Routing-table maintenance (OpenDHT's `confirmNodes`).
    Maintenance,
    /// The periodic expiry pass: expired nodes, stale remote listeners, unused listen sockets.
    ExpirePass,
    /// Re-replication of stored values (see `docs/architecture.md`).
    Replication,
    /// A search wakes up (a request to send, a refresh, a listen to renew, a give-up).
    Search,
    /// Searches touched by the last input have not stepped yet: at once.
    SearchStep,
    /// Datagrams held for an address that has not proven a round trip are given up
    /// (anti-amplification, `Config::amplification_factor`).
    HeldDatagrams,
}

/// The timers the node itself owns (the sub-machines keep their own deadlines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    Bootstrap,
    Maintenance,
    ExpirePass,
    Replication,
}

impl Timer {
    const ALL: [Timer; 4] = [
        Timer::Bootstrap,
        Timer::Maintenance,
        Timer::ExpirePass,
        Timer::Replication,
    ];

    pub(super) fn reason(self) -> TimerReason {
        match self {
            Timer::Bootstrap => TimerReason::Bootstrap,
            Timer::Maintenance => TimerReason::Maintenance,
            Timer::ExpirePass => TimerReason::ExpirePass,
            Timer::Replication => TimerReason::Replication,
        }
    }
}

/// When each of the node's own timers fires next; `None`: stopped.
#[derive(Clone, Debug, Default)]
pub(super) struct TimerTable {
    bootstrap: Option<Instant>,
    maintenance: Option<Instant>,
    expire_pass: Option<Instant>,
    replication: Option<Instant>,
}

impl TimerTable {
    fn slot(&mut self, t: Timer) -> &mut Option<Instant> {
        match t {
            Timer::Bootstrap => &mut self.bootstrap,
            Timer::Maintenance => &mut self.maintenance,
            Timer::ExpirePass => &mut self.expire_pass,
            Timer::Replication => &mut self.replication,
        }
    }

    pub(super) fn get(&self, t: Timer) -> Option<Instant> {
        match t {
            Timer::Bootstrap => self.bootstrap,
            Timer::Maintenance => self.maintenance,
            Timer::ExpirePass => self.expire_pass,
            Timer::Replication => self.replication,
        }
    }

    pub(super) fn set(&mut self, t: Timer, at: Instant) {
        *self.slot(t) = Some(at);
    }

    pub(super) fn stop(&mut self, t: Timer) {
        *self.slot(t) = None;
    }

    pub(super) fn is_set(&self, t: Timer) -> bool {
        self.get(t).is_some()
    }

    pub(super) fn is_due(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|at| at <= now)
    }

    /// The earliest running timer (the first named, on a tie).
    pub(super) fn next(&self) -> Option<(Instant, Timer)> {
        let mut next: Option<(Instant, Timer)> = None;
        for t in Timer::ALL {
            if let Some(at) = self.get(t)
                && next.is_none_or(|(n, _)| at < n)
            {
                next = Some((at, t));
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_timer_names_its_reason() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Maintenance, Instant::from_millis(30));
        t.set(Timer::Replication, Instant::from_millis(20));
        assert_eq!(t.next(), Some((Instant::from_millis(20), Timer::Replication)));
        assert!(t.is_due(Timer::Replication, Instant::from_millis(20)));
        assert!(!t.is_due(Timer::Maintenance, Instant::from_millis(20)));
        t.stop(Timer::Replication);
        assert_eq!(t.next().map(|n| n.1.reason()), Some(TimerReason::Maintenance));
    }
}
