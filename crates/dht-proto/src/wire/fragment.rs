//! Value fragmentation: how values too large to go inline travel, and how they are put back.
//!
//! A message whose values, serialized, total 600 bytes or more (or that has 50 values or more)
//! carries only their sizes in `values`; each value then follows in slices of at most 1280 bytes,
//! one slice per value-data datagram (`y: p`), matched to its header by (source address, tid).
//!
//! [`Reassembler`] is the receiving side, pure and bounded: it takes `now` with every input,
//! enforces OpenDHT's 10 s total and 3 s gap windows, buffers at most 98 parts / 122912 bytes that
//! arrive before their header, refuses overlapping, duplicate, empty and out-of-bounds slices, and
//! caps sessions and buffered bytes.
//!
//! ```
//! use dht_proto::Instant;
//! use dht_proto::value::Value;
//! use dht_proto::wire::fragment::{self, Progress, Reassembler};
//! use dht_proto::wire::{Message, Reply};
//!
//! let big = Value::new(1, vec![7; 4000]);
//! let out = fragment::prepare(std::slice::from_ref(&big));
//! let header = Message::reply(9, Reply { values: Some(out.values.clone()), ..Reply::default() });
//! let from = "192.0.2.1:4222".parse().unwrap();
//! let mut r = Reassembler::default();
//! assert!(matches!(r.on_header(Instant::ZERO, from, header), Ok(Progress::Pending { .. })));
//! let mut done = None;
//! for parts in fragment::slices(&out.data) {
//!     if let Ok(Progress::Complete(msg)) = r.on_parts(Instant::ZERO, from, 9, parts) {
//!         done = Some(msg);
//!     }
//! }
//! assert!(done.is_some());
//! ```

use crate::prelude::*;
use alloc::collections::BTreeMap;
use core::net::SocketAddr;
use core::time::Duration;

use super::message::MAX_FRAGMENTED_VALUE;
use super::{
    Body, DecodeError, Message, PutRequest, RequestKind, Tid, UpdatePayload, UpdateRequest, ValueList,
    ValuePart, Values,
};
use crate::Instant;
use crate::value::Value;

/// Largest slice of a serialized value in one value-data datagram (OpenDHT's `MTU`).
pub const FRAGMENT_SIZE: usize = 1280;
/// Values go inline when their serialized sizes add up to less than this…
pub const MAX_INLINE_BYTES: usize = 600;
/// …and there are fewer than this many.
pub const MAX_INLINE_VALUES: usize = 50;

/// Values ready to send: the `values` field for the header, and the serialized bytes of each
/// value to send as value data (empty when the values go inline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The header's `values` field.
    pub values: Values,
    /// Serialized values, by index, to send with [`slices`] after the header.
    pub data: Vec<Vec<u8>>,
}

/// Decides, as OpenDHT's `packValueHeader` does, whether `values` go inline or as value data.
pub fn prepare(values: &[Value]) -> Outgoing {
    if fits_inline(values) {
        Outgoing {
            values: Values::Inline(values.iter().cloned().collect()),
            data: Vec::new(),
        }
    } else {
        as_value_data(values)
    }
}

/// [`prepare`] for values the caller owns and gives up: inline ones are moved, not copied.
pub fn prepare_owned(values: ValueList) -> Outgoing {
    if fits_inline(&values) {
        Outgoing {
            values: Values::Inline(values),
            data: Vec::new(),
        }
    } else {
        as_value_data(&values)
    }
}

/// Whether `values` go inline: fewer than [`MAX_INLINE_VALUES`] whose encodings total less
/// than [`MAX_INLINE_BYTES`]. Measured in one scratch buffer, and only as far as the limit.
fn fits_inline(values: &[Value]) -> bool {
    if values.len() >= MAX_INLINE_VALUES {
        return false;
    }
    let mut buf = crate::bufpool::take();
    let mut total = 0;
    for v in values {
        buf.clear();
        v.encode(&mut buf);
        total += buf.len();
        if total >= MAX_INLINE_BYTES {
            break;
        }
    }
    crate::bufpool::give(buf);
    total < MAX_INLINE_BYTES
}

fn as_value_data(values: &[Value]) -> Outgoing {
    let data: Vec<Vec<u8>> = values.iter().map(Value::encode_to_vec).collect();
    Outgoing {
        values: Values::Sizes(data.iter().map(|d| d.len() as u64).collect()),
        data,
    }
}

/// The value-data payloads for `data`: one `Vec<ValuePart>` (a single slice) per datagram, in
/// order. Wrap each in a [`Message`] with the header's tid and [`Body::ValueData`].
pub fn slices(data: &[Vec<u8>]) -> impl Iterator<Item = Vec<ValuePart>> + '_ {
    data.iter().enumerate().flat_map(|(index, bytes)| {
        bytes.chunks(FRAGMENT_SIZE).enumerate().map(move |(i, chunk)| {
            vec![ValuePart {
                index: index as u32,
                offset: (i * FRAGMENT_SIZE) as u32,
                data: chunk.to_vec(),
            }]
        })
    })
}

/// Limits of a [`Reassembler`]. The defaults are OpenDHT's windows and early-part limits, plus
/// caps OpenDHT lacks on sessions and buffered bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// A message must be complete within this time of its first packet (`RX_MAX_PACKET_TIME`).
    pub max_duration: Duration,
    /// Longest allowed gap between two packets of a message (`RX_TIMEOUT`).
    pub max_gap: Duration,
    /// Parts buffered before their header, per session (`RX_MAX_EARLY_PARTS`).
    pub max_early_parts: usize,
    /// Bytes buffered before their header, per session (`RX_MAX_EARLY_BYTES`).
    pub max_early_bytes: usize,
    /// Concurrent sessions.
    pub max_sessions: usize,
    /// Bytes a single message may announce across its values.
    pub max_session_bytes: usize,
    /// Bytes buffered across all sessions.
    pub max_total_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_duration: Duration::from_secs(10),
            max_gap: Duration::from_secs(3),
            max_early_parts: 122_912 / FRAGMENT_SIZE + 2,
            max_early_bytes: 56 * 1024 + 64 * 1024 + 32,
            max_sessions: 1024,
            max_session_bytes: 8 * 1024 * 1024,
            max_total_bytes: 32 * 1024 * 1024,
        }
    }
}

/// What a packet did to its session.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Progress {
    /// Not complete yet; `accepted` slices of this packet were kept.
    Pending {
        /// Slices kept.
        accepted: usize,
    },
    /// Every value arrived: the header message with its values inline.
    Complete(Message),
}

/// Why a packet or session was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    /// A value-data packet with no slices, or with an empty slice.
    #[error("empty value data")]
    Empty,
    /// A second header for a session that already has one.
    #[error("duplicate header")]
    DuplicateHeader,
    /// The message carries no `values` sizes to reassemble.
    #[error("message announces no value data")]
    NotFragmented,
    /// Too many parts or bytes before the header: the session was dropped.
    #[error("too much value data before its header")]
    EarlyLimit,
    /// Too many sessions at once.
    #[error("too many reassembly sessions")]
    TooManySessions,
    /// The header announces more bytes than a message may carry, or buffers are full.
    #[error("reassembly memory limit")]
    MemoryLimit,
    /// A reassembled value failed to decode: the whole message was dropped.
    #[error("reassembled value is invalid: {0}")]
    BadValue(DecodeError),
}

#[derive(Debug)]
struct Slot {
    index: u32,
    total: usize,
    received: usize,
    /// Fragments by offset; never overlapping.
    frags: BTreeMap<usize, Vec<u8>>,
}

impl Slot {
    /// A declared total of 0 never completes, as in OpenDHT.
    fn is_complete(&self) -> bool {
        self.total > 0 && self.received == self.total
    }

    /// Adds a slice if it fits inside the value and overlaps nothing already held.
    fn add(&mut self, offset: usize, data: Vec<u8>) -> bool {
        let end = offset.saturating_add(data.len());
        if data.is_empty() || self.is_complete() || offset > self.total || end > self.total {
            return false;
        }
        if let Some((o, d)) = self.frags.range(..=offset).next_back()
            && o + d.len() > offset
        {
            return false;
        }
        if let Some((o, _)) = self.frags.range(offset..).next()
            && *o < end
        {
            return false;
        }
        self.received += data.len();
        self.frags.insert(offset, data);
        true
    }

    fn assemble(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total);
        for d in core::mem::take(&mut self.frags).into_values() {
            out.extend_from_slice(&d);
        }
        out
    }
}

#[derive(Debug)]
struct Session {
    start: Instant,
    last: Instant,
    header: Option<Message>,
    slots: Vec<Slot>,
    early: Vec<ValuePart>,
    early_bytes: usize,
    /// Bytes held by this session (early parts plus fragments).
    held: usize,
    /// A reply to a request of ours ([`Reassembler::await_reply`]).
    awaited: bool,
}

impl Session {
    fn new(now: Instant) -> Session {
        Session {
            start: now,
            last: now,
            header: None,
            slots: Vec::new(),
            early: Vec::new(),
            early_bytes: 0,
            held: 0,
            awaited: false,
        }
    }

    fn is_complete(&self) -> bool {
        self.header.is_some() && self.slots.iter().all(Slot::is_complete)
    }

    fn deadline(&self, limits: &ReassemblyLimits) -> Instant {
        let longest = if self.awaited {
            limits.max_duration * AWAITED_DURATION_FACTOR
        } else {
            limits.max_duration
        };
        (self.start + longest).min(self.last + limits.max_gap)
    }
}

/// A reply to a request of ours may take this many times `max_duration` to arrive, as long as
/// its datagrams keep coming (`max_gap`): a storer with a slow uplink paces a large answer.
const AWAITED_DURATION_FACTOR: u32 = 12;

/// Reassembles fragmented messages. Keyed by (source address, tid).
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    sessions: BTreeMap<(SocketAddr, Tid), Session>,
    total_bytes: usize,
}

impl Reassembler {
    /// Frees what the emptied table holds (see the node's compaction).
    pub(crate) fn compact(&mut self) {
        if self.sessions.is_empty() {
            self.sessions = BTreeMap::new();
        }
    }
}

/// The `values` sizes a header announces, if it announces any.
fn announced_sizes(msg: &Message) -> Option<&[u64]> {
    let values = match &msg.body {
        Body::Reply(r) => r.values.as_ref(),
        Body::Request(req) => match &req.kind {
            RequestKind::Put(PutRequest { values, .. }) => Some(values),
            RequestKind::Update(UpdateRequest {
                payload: UpdatePayload::Values { values, .. },
                ..
            }) => Some(values),
            _ => None,
        },
        Body::LegacyUpdate(u) => match &u.payload {
            UpdatePayload::Values { values, .. } => Some(values),
            _ => None,
        },
        _ => None,
    };
    match values {
        Some(Values::Sizes(s)) => Some(s),
        _ => None,
    }
}

/// Replaces the sizes of a header with the reassembled values.
fn fill_values(msg: &mut Message, values: Vec<Value>) {
    let slot = match &mut msg.body {
        Body::Reply(r) => r.values.as_mut(),
        Body::Request(req) => match &mut req.kind {
            RequestKind::Put(PutRequest { values, .. }) => Some(values),
            RequestKind::Update(UpdateRequest {
                payload: UpdatePayload::Values { values, .. },
                ..
            }) => Some(values),
            _ => None,
        },
        Body::LegacyUpdate(u) => match &mut u.payload {
            UpdatePayload::Values { values, .. } => Some(values),
            _ => None,
        },
        _ => None,
    };
    if let Some(v) = slot {
        *v = Values::Inline(values.into());
    }
}

/// True when a header announces value data that has to be reassembled.
pub fn is_fragmented(msg: &Message) -> bool {
    announced_sizes(msg).is_some()
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            limits,
            sessions: BTreeMap::new(),
            total_bytes: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ReassemblyLimits {
        &self.limits
    }

    /// Sessions open.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Bytes buffered across all sessions.
    pub fn buffered_bytes(&self) -> usize {
        self.total_bytes
    }

    /// True when a session for (from, tid) exists: its first packet has been seen.
    pub fn has_session(&self, from: SocketAddr, tid: Tid) -> bool {
        self.sessions.contains_key(&(from, tid))
    }

    fn drop_session(&mut self, key: &(SocketAddr, Tid)) {
        if let Some(s) = self.sessions.remove(key) {
            self.total_bytes -= s.held;
        }
    }

    fn session_entry(&mut self, now: Instant, key: (SocketAddr, Tid)) -> Result<(), ReassemblyError> {
        if !self.sessions.contains_key(&key) {
            if self.sessions.len() >= self.limits.max_sessions {
                return Err(ReassemblyError::TooManySessions);
            }
            self.sessions.insert(key, Session::new(now));
        }
        Ok(())
    }

    /// Takes a header whose `values` are sizes. Values larger than 64 KiB + 32 get no slot and
    /// are skipped, as in OpenDHT.
    pub fn on_header(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Message,
    ) -> Result<Progress, ReassemblyError> {
        let sizes = announced_sizes(&msg).ok_or(ReassemblyError::NotFragmented)?;
        let slots: Vec<Slot> = sizes
            .iter()
            .enumerate()
            .filter(|(_, s)| **s <= MAX_FRAGMENTED_VALUE)
            .map(|(i, s)| Slot {
                index: i as u32,
                total: *s as usize,
                received: 0,
                frags: BTreeMap::new(),
            })
            .collect();
        let announced: usize = slots.iter().map(|s| s.total).sum();
        if announced > self.limits.max_session_bytes {
            return Err(ReassemblyError::MemoryLimit);
        }
        let key = (from, msg.tid);
        if self.sessions.get(&key).is_some_and(|s| s.header.is_some()) {
            return Err(ReassemblyError::DuplicateHeader);
        }
        self.session_entry(now, key)?;
        let session = self
            .sessions
            .get_mut(&key)
            .ok_or(ReassemblyError::TooManySessions)?;
        session.last = now;
        session.header = Some(msg);
        session.slots = slots;
        // The early parts are now matched against their slots; their bytes move with them.
        let early = core::mem::take(&mut session.early);
        self.total_bytes -= session.held;
        session.held = 0;
        session.early_bytes = 0;
        let accepted = self.add_parts(key, early);
        self.finish(key, accepted)
    }

    /// Takes the slices of one value-data datagram.
    pub fn on_parts(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        parts: Vec<ValuePart>,
    ) -> Result<Progress, ReassemblyError> {
        if parts.is_empty() || parts.iter().any(|p| p.data.is_empty()) {
            return Err(ReassemblyError::Empty);
        }
        let key = (from, tid);
        self.session_entry(now, key)?;
        let limits = self.limits.clone();
        let session = self
            .sessions
            .get_mut(&key)
            .ok_or(ReassemblyError::TooManySessions)?;
        session.last = now;
        if session.header.is_none() {
            let bytes: usize = parts.iter().map(|p| p.data.len()).sum();
            if session.early.len() + parts.len() > limits.max_early_parts
                || session.early_bytes + bytes > limits.max_early_bytes
            {
                self.drop_session(&key);
                return Err(ReassemblyError::EarlyLimit);
            }
            if self.total_bytes + bytes > limits.max_total_bytes {
                return Err(ReassemblyError::MemoryLimit);
            }
            session.early_bytes += bytes;
            session.held += bytes;
            self.total_bytes += bytes;
            let n = parts.len();
            session.early.extend(parts);
            return Ok(Progress::Pending { accepted: n });
        }
        let accepted = self.add_parts(key, parts);
        self.finish(key, accepted)
    }

    fn add_parts(&mut self, key: (SocketAddr, Tid), parts: Vec<ValuePart>) -> usize {
        let max_total = self.limits.max_total_bytes;
        let Some(session) = self.sessions.get_mut(&key) else {
            return 0;
        };
        let mut accepted = 0;
        for p in parts {
            let len = p.data.len();
            if self.total_bytes + len > max_total {
                break;
            }
            let Some(slot) = session.slots.iter_mut().find(|s| s.index == p.index) else {
                continue;
            };
            if slot.add(p.offset as usize, p.data) {
                accepted += 1;
                session.held += len;
                self.total_bytes += len;
            }
        }
        accepted
    }

    fn finish(&mut self, key: (SocketAddr, Tid), accepted: usize) -> Result<Progress, ReassemblyError> {
        if !self.sessions.get(&key).is_some_and(Session::is_complete) {
            return Ok(Progress::Pending { accepted });
        }
        let Some(mut session) = self.sessions.remove(&key) else {
            return Ok(Progress::Pending { accepted });
        };
        self.total_bytes -= session.held;
        let mut values = Vec::with_capacity(session.slots.len());
        for slot in &mut session.slots {
            let bytes = slot.assemble();
            values.push(Value::decode(&bytes).map_err(ReassemblyError::BadValue)?);
        }
        let Some(mut msg) = session.header else {
            return Ok(Progress::Pending { accepted });
        };
        fill_values(&mut msg, values);
        Ok(Progress::Complete(msg))
    }

    /// Drops sessions older than 10 s or idle for 3 s; returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let limits = &self.limits;
        let expired: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.deadline(limits) <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in &expired {
            self.drop_session(k);
        }
        expired.len()
    }

    /// The session (`from`, `tid`) is a reply to a request of ours: it may last
    /// `AWAITED_DURATION_FACTOR` times longer while its datagrams keep coming.
    pub fn await_reply(&mut self, from: SocketAddr, tid: Tid) {
        if let Some(s) = self.sessions.get_mut(&(from, tid)) {
            s.awaited = true;
        }
    }

    /// When the next session will expire, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions.values().map(|s| s.deadline(&self.limits)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InfoHash;
    use crate::wire::Reply;
    use proptest::prelude::*;

    fn from() -> SocketAddr {
        "192.0.2.1:4222".parse().unwrap()
    }

    fn header(tid: Tid, values: &Values) -> Message {
        Message::reply(
            tid,
            Reply {
                id: InfoHash::get("x"),
                values: Some(values.clone()),
                ..Reply::default()
            },
        )
    }

    fn big(id: u64, len: usize) -> Value {
        Value::new(id, (0..len).map(|i| (i * 7 + id as usize) as u8).collect())
    }

    fn complete_values(p: Progress) -> Vec<Value> {
        match p {
            Progress::Complete(Message {
                body: Body::Reply(r), ..
            }) => match r.values {
                Some(Values::Inline(v)) => v.into_vec(),
                other => panic!("not inline: {other:?}"),
            },
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn inline_threshold() {
        assert!(matches!(
            prepare(&[Value::new(1, vec![0; 100])]).values,
            Values::Inline(_)
        ));
        assert!(matches!(
            prepare(&[Value::new(1, vec![0; 600])]).values,
            Values::Sizes(_)
        ));
        let many: Vec<_> = (0..50).map(|i| Value::new(i, vec![])).collect();
        assert!(matches!(prepare(&many).values, Values::Sizes(_)));
        let out = prepare(&[big(1, 32 * 1024)]);
        let parts: Vec<_> = slices(&out.data).collect();
        assert_eq!(parts.len(), out.data[0].len().div_ceil(FRAGMENT_SIZE));
        assert!(
            parts
                .iter()
                .all(|p| p.len() == 1 && p[0].data.len() <= FRAGMENT_SIZE)
        );
    }

    #[test]
    fn in_order_reverse_and_early() {
        let vals = vec![big(1, 5000), big(2, 3000)];
        let out = prepare(&vals);
        let parts: Vec<_> = slices(&out.data).collect();
        // In order.
        let mut r = Reassembler::default();
        r.on_header(Instant::ZERO, from(), header(1, &out.values))
            .unwrap();
        let mut last = None;
        for p in parts.iter().cloned() {
            last = Some(r.on_parts(Instant::ZERO, from(), 1, p).unwrap());
        }
        assert_eq!(complete_values(last.unwrap()), vals);
        assert_eq!(r.sessions(), 0);
        assert_eq!(r.buffered_bytes(), 0);
        // Reversed, all before the header.
        let mut r = Reassembler::default();
        for p in parts.iter().rev().cloned() {
            assert_eq!(
                r.on_parts(Instant::ZERO, from(), 2, p).unwrap(),
                Progress::Pending { accepted: 1 }
            );
        }
        let done = r
            .on_header(Instant::ZERO, from(), header(2, &out.values))
            .unwrap();
        assert_eq!(complete_values(done), vals);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn rejections() {
        let out = prepare(&[big(1, 3000)]);
        let mut r = Reassembler::default();
        r.on_header(Instant::ZERO, from(), header(1, &out.values))
            .unwrap();
        let part = |o: u32, len: usize| {
            vec![ValuePart {
                index: 0,
                offset: o,
                data: vec![1; len],
            }]
        };
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, part(0, 100)),
            Ok(Progress::Pending { accepted: 1 })
        );
        // Duplicate and overlap.
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, part(0, 100)),
            Ok(Progress::Pending { accepted: 0 })
        );
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, part(50, 100)),
            Ok(Progress::Pending { accepted: 0 })
        );
        // Beyond the total, overflowing offset.
        let total = out.data[0].len() as u32;
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, part(total - 10, 20)),
            Ok(Progress::Pending { accepted: 0 })
        );
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, part(total + 1, 1)),
            Ok(Progress::Pending { accepted: 0 })
        );
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, part(u32::MAX, 1)),
            Ok(Progress::Pending { accepted: 0 })
        );
        // Unknown index; empty data.
        let unknown = vec![ValuePart {
            index: 5,
            offset: 0,
            data: vec![1],
        }];
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, unknown),
            Ok(Progress::Pending { accepted: 0 })
        );
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, part(200, 0)),
            Err(ReassemblyError::Empty)
        );
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, vec![]),
            Err(ReassemblyError::Empty)
        );
        // Second header.
        assert_eq!(
            r.on_header(Instant::ZERO, from(), header(1, &out.values)),
            Err(ReassemblyError::DuplicateHeader)
        );
        // A whole message of garbage bytes is dropped as a bad value.
        let rest = total as usize - 100;
        assert!(matches!(
            r.on_parts(Instant::ZERO, from(), 1, part(100, rest)),
            Err(ReassemblyError::BadValue(_))
        ));
        assert_eq!(r.sessions(), 0);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn zero_total_never_completes_and_oversize_is_skipped() {
        let mut r = Reassembler::default();
        let p = r
            .on_header(Instant::ZERO, from(), header(1, &Values::Sizes(vec![0])))
            .unwrap();
        assert_eq!(p, Progress::Pending { accepted: 0 });
        // An oversize value gets no slot; the message completes without it.
        let p = r.on_header(
            Instant::ZERO,
            from(),
            header(2, &Values::Sizes(vec![MAX_FRAGMENTED_VALUE + 1])),
        );
        assert_eq!(complete_values(p.unwrap()), vec![]);
    }

    #[test]
    fn sessions_are_separated_by_source() {
        let out = prepare(&[big(1, 2000)]);
        let other: SocketAddr = "192.0.2.2:4222".parse().unwrap();
        let mut r = Reassembler::default();
        r.on_header(Instant::ZERO, from(), header(1, &out.values))
            .unwrap();
        for p in slices(&out.data) {
            assert_eq!(
                r.on_parts(Instant::ZERO, other, 1, p),
                Ok(Progress::Pending { accepted: 1 })
            );
        }
        assert_eq!(r.sessions(), 2);
    }

    #[test]
    fn windows_expire_sessions() {
        let out = prepare(&[big(1, 5000)]);
        let parts: Vec<_> = slices(&out.data).collect();
        let mut r = Reassembler::default();
        let t0 = Instant::from_secs(100);
        r.on_header(t0, from(), header(1, &out.values)).unwrap();
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(3)));
        // Fed every 2.5 s: the gap rule holds, but the 10 s total ends it.
        let mut t = t0;
        for p in parts.iter().take(3).cloned() {
            t += Duration::from_millis(2500);
            assert_eq!(r.expire(t), 0);
            r.on_parts(t, from(), 1, p).unwrap();
        }
        assert_eq!(r.expire(t0 + Duration::from_secs(10)), 1);
        assert_eq!(r.buffered_bytes(), 0);
        // Gap.
        r.on_header(t0, from(), header(2, &out.values)).unwrap();
        assert_eq!(r.expire(t0 + Duration::from_millis(2999)), 0);
        assert_eq!(r.expire(t0 + Duration::from_secs(3)), 1);
    }

    #[test]
    fn an_awaited_reply_lives_past_the_total_limit_while_it_progresses() {
        let out = prepare(&[big(1, 20_000)]);
        let parts: Vec<_> = slices(&out.data).collect();
        assert!(parts.len() > 8);
        let mut r = Reassembler::default();
        let t0 = Instant::from_secs(100);
        r.on_header(t0, from(), header(1, &out.values)).unwrap();
        r.await_reply(from(), 1);
        // One fragment every 2.5 s: 20 s and more, past the 10 s of an unawaited session.
        let mut t = t0;
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            t += Duration::from_millis(2500);
            assert_eq!(r.expire(t), 0);
            let done = matches!(r.on_parts(t, from(), 1, p).unwrap(), Progress::Complete(_));
            assert_eq!(done, i + 1 == n);
        }
        assert!(t - t0 > Duration::from_secs(20));
        // The gap rule still holds.
        r.on_header(t0, from(), header(2, &out.values)).unwrap();
        r.await_reply(from(), 2);
        assert_eq!(r.expire(t0 + Duration::from_secs(3)), 1);
    }

    #[test]
    fn early_limits_drop_the_session() {
        let mut r = Reassembler::default();
        let limit = r.limits().max_early_parts;
        for i in 0..limit {
            let p = vec![ValuePart {
                index: 0,
                offset: i as u32,
                data: vec![1],
            }];
            assert!(r.on_parts(Instant::ZERO, from(), 1, p).is_ok());
        }
        let p = vec![ValuePart {
            index: 0,
            offset: 0,
            data: vec![1],
        }];
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 1, p),
            Err(ReassemblyError::EarlyLimit)
        );
        assert_eq!(r.sessions(), 0);
        assert_eq!(r.buffered_bytes(), 0);
        // Bytes limit.
        let mut r = Reassembler::default();
        let mut sent = 0;
        let err = loop {
            let p = vec![ValuePart {
                index: 0,
                offset: sent,
                data: vec![1; FRAGMENT_SIZE],
            }];
            sent += FRAGMENT_SIZE as u32;
            if let Err(e) = r.on_parts(Instant::ZERO, from(), 1, p) {
                break e;
            }
        };
        assert_eq!(err, ReassemblyError::EarlyLimit);
        assert!(sent as usize <= r.limits().max_early_bytes + FRAGMENT_SIZE);
    }

    #[test]
    fn session_and_memory_caps_hold() {
        let limits = ReassemblyLimits {
            max_sessions: 4,
            max_total_bytes: 10_000,
            ..ReassemblyLimits::default()
        };
        let mut r = Reassembler::new(limits);
        for tid in 0..4 {
            let p = vec![ValuePart {
                index: 0,
                offset: 0,
                data: vec![1; 2000],
            }];
            r.on_parts(Instant::ZERO, from(), tid, p).unwrap();
        }
        let p = vec![ValuePart {
            index: 0,
            offset: 0,
            data: vec![1],
        }];
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 99, p),
            Err(ReassemblyError::TooManySessions)
        );
        let p = vec![ValuePart {
            index: 0,
            offset: 2000,
            data: vec![1; 3000],
        }];
        assert_eq!(
            r.on_parts(Instant::ZERO, from(), 0, p),
            Err(ReassemblyError::MemoryLimit)
        );
        assert!(r.buffered_bytes() <= 10_000);
        // A header announcing more than a message may carry is refused outright.
        let mut r = Reassembler::default();
        let sizes = Values::Sizes(vec![60_000; 1000]);
        assert_eq!(
            r.on_header(Instant::ZERO, from(), header(1, &sizes)),
            Err(ReassemblyError::MemoryLimit)
        );
    }

    proptest! {
        /// Any order of fragments, with duplicates and overlapping junk mixed in, before or after
        /// the header, yields exactly the values.
        #[test]
        fn any_order_reassembles(
            sizes in proptest::collection::vec(600usize..6000, 1..4),
            seed in any::<u64>(),
            header_at in any::<prop::sample::Index>(),
            dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            junk in proptest::collection::vec((any::<prop::sample::Index>(), 1usize..300, any::<u8>()), 0..6),
        ) {
            use rand_chacha::ChaCha20Rng;
            use rand_core::{RngCore, SeedableRng};
            let vals: Vec<_> = sizes.iter().enumerate().map(|(i, s)| big(i as u64, *s)).collect();
            let out = prepare(&vals);
            let mut parts: Vec<Vec<ValuePart>> = slices(&out.data).collect();
            for d in &dups {
                let p = d.get(&parts).clone();
                parts.push(p);
            }
            // Overlapping junk: a slice that starts inside a real one. It may be taken first, in
            // which case the message fails cleanly as a bad value or stays incomplete.
            let mut junk_parts = Vec::new();
            for (at, len, byte) in &junk {
                let p = &at.get(&parts)[0];
                junk_parts.push(vec![ValuePart { index: p.index, offset: p.offset + 1, data: vec![*byte; *len] }]);
            }
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mut order: Vec<usize> = (0..parts.len()).collect();
            for i in (1..order.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            let h = header_at.index(order.len() + 1);
            let mut r = Reassembler::default();
            let mut result = None;
            let with_junk = !junk_parts.is_empty();
            let mut feed: Vec<Option<Vec<ValuePart>>> = order.iter().map(|i| Some(parts[*i].clone())).collect();
            feed.insert(h, None);
            if with_junk {
                for (k, j) in junk_parts.into_iter().enumerate() {
                    let at = (k * 7 + 3) % (feed.len() + 1);
                    feed.insert(at, Some(j));
                }
            }
            for item in feed {
                let res = match item {
                    None => r.on_header(Instant::ZERO, from(), header(1, &out.values)),
                    Some(p) => r.on_parts(Instant::ZERO, from(), 1, p),
                };
                match res {
                    Ok(Progress::Complete(m)) => { result = Some(Ok(m)); }
                    Ok(Progress::Pending { .. }) => {}
                    Err(e) => { result = Some(Err(e)); }
                }
                if matches!(result, Some(Ok(_))) { break; }
            }
            match result {
                Some(Ok(m)) => prop_assert_eq!(complete_values(Progress::Complete(m)), vals),
                Some(Err(ReassemblyError::BadValue(_))) | Some(Err(ReassemblyError::EarlyLimit)) | None => {
                    prop_assert!(with_junk, "clean input must reassemble");
                }
                Some(Err(e)) => prop_assert!(with_junk && e == ReassemblyError::DuplicateHeader, "unexpected {:?}", e),
            }
            prop_assert!(r.buffered_bytes() <= r.limits().max_total_bytes);
        }
    }
}
