//! Requests in flight and the gate in front of the node: transaction ids, retransmission and
//! timeouts (`opendht-wire.md` §2.4), write tokens (§2.9), rate limits (§8.1), the blacklist
//! (§4.5) and martian addresses (§8.3).
//!
//! Nothing here decides what a request means: the caller attaches a [`Purpose`] and gets it back
//! with the reply or the timeout.

mod limiter;
mod token;

use crate::prelude::*;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use rand_core::RngCore;

use crate::family::Family;
use crate::value::{Query, ValueId};
use crate::wire::{RequestKind, Tid, Want};
use crate::{InfoHash, Instant};

pub(crate) use limiter::{RateLimiter, Refusal};
pub(crate) use token::{ParkedRng, Tokens};

/// Sends per request (`MAX_ATTEMPT_COUNT`).
pub(crate) const MAX_ATTEMPTS: u8 = 3;
/// The first wait (`MAX_RESPONSE_TIME / 2`).
const FIRST_WAIT: Duration = Duration::from_millis(500);
/// Upper bound of the random part added to each wait.
const WAIT_JITTER_MICROS: u64 = 250_000;
/// Lowest retransmission timeout of a measured peer.
pub(crate) const MIN_RTO: Duration = Duration::from_millis(100);
/// Highest retransmission timeout of a measured peer: OpenDHT's first wait, 2 × 500 ms.
pub(crate) const MAX_RTO: Duration = Duration::from_millis(1000);
/// A reply whose value data is arriving is given up after this long without a datagram of it
/// (the reassembler's idle limit): fragments arriving are signs of life.
pub(crate) const ANSWER_IDLE: Duration = Duration::from_secs(3);
/// Peers whose round-trip estimate is kept at most (the least recently measured goes first).
const MAX_RTT_PEERS: usize = 32;
/// Boxes of finished requests kept for the next ones (see [`Rpc::spare`]).
const MAX_SPARE: usize = 16;
/// How often the spare boxes are trimmed to the requests in flight.
const SPARE_TRIM_PERIOD: Duration = Duration::from_secs(1);

/// A round-trip estimate: smoothed RTT and its mean deviation (RFC 6298 §2, as QUIC's), in
/// microseconds (8 bytes: a node keeps one per recent peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RttEstimate {
    srtt: u32,
    rttvar: u32,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl RttEstimate {
    fn new(sample: Duration) -> RttEstimate {
        let r = micros(sample);
        RttEstimate {
            srtt: r,
            rttvar: r / 2,
        }
    }

    /// Smoothed round-trip time.
    pub(crate) fn srtt(&self) -> Duration {
        Duration::from_micros(u64::from(self.srtt))
    }

    /// Mean deviation of the samples.
    pub(crate) fn rttvar(&self) -> Duration {
        Duration::from_micros(u64::from(self.rttvar))
    }

    /// RFC 6298 §2.3: `RTTVAR ← ¾ RTTVAR + ¼ |SRTT − R|`, then `SRTT ← ⅞ SRTT + ⅛ R`.
    fn update(&mut self, sample: Duration) {
        let r = u64::from(micros(sample));
        let (srtt, var) = (u64::from(self.srtt), u64::from(self.rttvar));
        let diff = srtt.abs_diff(r);
        self.rttvar = u32::try_from((var * 3 + diff) / 4).unwrap_or(u32::MAX);
        self.srtt = u32::try_from((srtt * 7 + r) / 8).unwrap_or(u32::MAX);
    }

    /// `SRTT + max(4 RTTVAR, SRTT / 2)`, within [`MIN_RTO`, `MAX_RTO`]. The SRTT/2 floor stands
    /// in for TCP's clock granularity and QUIC's ack delay: a peer answers after its own
    /// processing, which a run of equal samples hides.
    pub(crate) fn rto(&self) -> Duration {
        (self.srtt() + (4 * self.rttvar()).max(self.srtt() / 2)).clamp(MIN_RTO, MAX_RTO)
    }
}

/// The key a peer's estimate is kept under: its address folded to 64 bits (two peers that
/// collide share an estimate, which costs only a less exact timeout).
fn peer_key(a: &SocketAddr) -> u64 {
    let ip = match a.ip() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(17) ^ 1 << 63
        }
    };
    ip.rotate_left(16) ^ u64::from(a.port())
}

/// Why a request was sent: handed back with its reply, error or timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A ping to check a node of the routing table.
    Ping,
    /// A ping to a bootstrap address.
    Bootstrap,
    /// Bucket or neighbourhood maintenance.
    Maintenance,
    /// A search's find or get.
    SearchGet { key: InfoHash, family: Family },
    /// A search's put of one value.
    Put {
        key: InfoHash,
        family: Family,
        vid: ValueId,
    },
    /// A search's refresh of one value.
    Refresh {
        key: InfoHash,
        family: Family,
        vid: ValueId,
    },
    /// A search's listen.
    Listen { key: InfoHash, family: Family },
    /// A push to a remote listener.
    Update,
}

/// A request awaiting its reply.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Node id of the peer; zero when unknown (bootstrap pings).
    pub node: InfoHash,
    pub purpose: Purpose,
    attempts: u8,
    wait: Duration,
    next: Instant,
    /// When it was first sent (the round-trip sample of a reply to a single send).
    sent: Instant,
    /// Part of the reply has arrived (a fragmented reply's header or value data): no more
    /// retransmissions, and the request lives while datagrams of its reply keep arriving.
    answering: bool,
    /// How the request is sent again.
    packet: Resend,
    /// Value-data datagrams that follow the request, re-sent with it.
    parts: Vec<Vec<u8>>,
}

impl Pending {
    /// What a spare box holds: nothing allocated.
    const EMPTY: Pending = Pending {
        node: InfoHash::ZERO,
        purpose: Purpose::Ping,
        attempts: 0,
        wait: Duration::ZERO,
        next: Instant::ZERO,
        sent: Instant::ZERO,
        answering: false,
        packet: Resend::Find {
            target: InfoHash::ZERO,
            want: None,
        },
        parts: Vec::new(),
    };
}

/// How a request waiting for its reply is sent again.
///
/// Most requests are finds and plain gets: those keep only their target and the families they
/// want and are encoded again (to the same bytes, the transaction id and sender being the same)
/// when the timer asks for it, so a request in flight holds no buffer of its own. Any other
/// request keeps its encoded bytes.
#[derive(Debug)]
pub(crate) enum Resend {
    /// The encoded request, re-sent as it is.
    Bytes(Vec<u8>),
    /// A `find` of `target`.
    Find { target: InfoHash, want: Option<Want> },
    /// A `get` at `key` without a query.
    Get { key: InfoHash, want: Option<Want> },
}

impl Resend {
    /// The compact form of `kind` when it has one (a find, a get without a query).
    pub(crate) fn of(kind: &RequestKind) -> Option<Resend> {
        match kind {
            RequestKind::Find { target, want } => Some(Resend::Find {
                target: *target,
                want: *want,
            }),
            RequestKind::Get { key, query, want } if query.is_empty() && !query.none => Some(Resend::Get {
                key: *key,
                want: *want,
            }),
            _ => None,
        }
    }

    /// The datagram to send again, from `encode` (the node's encoder: transaction id, request)
    /// when only the request's fields were kept.
    fn datagram(&self, tid: Tid, encode: &dyn Fn(Tid, RequestKind) -> Vec<u8>) -> Vec<u8> {
        match self {
            Resend::Bytes(b) => b.clone(),
            Resend::Find { target, want } => encode(
                tid,
                RequestKind::Find {
                    target: *target,
                    want: *want,
                },
            ),
            Resend::Get { key, want } => encode(
                tid,
                RequestKind::Get {
                    key: *key,
                    query: Query::default(),
                    want: *want,
                },
            ),
        }
    }
}

impl From<Vec<u8>> for Resend {
    fn from(bytes: Vec<u8>) -> Resend {
        Resend::Bytes(bytes)
    }
}

/// What happened to a request on a timer.
#[derive(Debug)]
pub(crate) enum Timeout {
    /// Sent again; on the second send the request is "expired, not over" (the search makes the
    /// node a candidate).
    Retransmit {
        tid: Tid,
        node: InfoHash,
        purpose: Purpose,
        second: bool,
    },
    /// Given up: the node is expired.
    Expired { to: SocketAddr, pending: Pending },
}

/// The table of requests in flight.
#[derive(Debug)]
pub(crate) struct Rpc {
    /// Each request is boxed: a B-tree leaf holds 11 entries whether 1 or 11 are in flight,
    /// and a leaf of 144-byte requests (2 KiB) was the largest thing a joining node held.
    pending: BTreeMap<(SocketAddr, Tid), Box<Pending>>,
    /// Boxes of answered requests, reused by the next requests so a busy node allocates none;
    /// trimmed to the requests in flight when the node compacts, at most once a second.
    #[allow(clippy::vec_box)] // the boxes themselves are what is kept
    spare: Vec<Box<Pending>>,
    /// When the spare boxes were last trimmed.
    spare_trimmed: Instant,
    timers: BTreeSet<(Instant, SocketAddr, Tid)>,
    /// Per-peer transaction counters, each starting at a random value (OpenDHT keeps one per
    /// node object). A peer learns nothing from its own tids about those we use with others.
    /// A counter lives while requests to its peer are pending, so the table is bounded by the
    /// pending table and costs nothing when idle.
    counters: BTreeMap<SocketAddr, Tid>,
    max_pending: usize,
    /// Bootstrap pings in flight (a family shows "connecting" while there are any).
    bootstrapping: usize,
    /// Round-trip estimates of the peers measured last ([`MAX_RTT_PEERS`] at most), by
    /// [`peer_key`], the least recently measured first: 16 bytes a peer, 512 at most.
    rtt: Vec<(u64, RttEstimate)>,
    /// The estimate over every peer's samples: what a peer never measured is first given.
    all: Option<RttEstimate>,
}

/// A request the node sends now, as [`Rpc::start`] records it.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Its destination.
    pub to: SocketAddr,
    /// Its transaction id, from [`Rpc::next_tid`].
    pub tid: Tid,
    /// The node we expect to answer (zero when unknown, as for a bootstrap ping).
    pub node: InfoHash,
    /// What its reply is for.
    pub purpose: Purpose,
    /// How the request is sent again (its first sending is the caller's).
    pub packet: Resend,
    /// Value-data datagrams that follow it.
    pub parts: Vec<Vec<u8>>,
}

impl Rpc {
    /// Frees what emptied tables hold (see [`crate::compact`]).
    pub(crate) fn compact(&mut self, now: Instant) {
        use crate::compact::Compact;
        self.pending.compact();
        // No more spare boxes than requests in flight, checked at most once a second: a busy
        // node compacts after nearly every datagram (and whenever its requests have all been
        // answered), and trimming each time would free boxes its next requests allocate again.
        if now >= self.spare_trimmed + SPARE_TRIM_PERIOD {
            self.spare.truncate(self.pending.len());
            self.spare.compact();
            self.spare_trimmed = now;
        }
        self.timers.compact();
        self.counters.compact();
    }

    pub(crate) fn new(max_pending: usize) -> Rpc {
        Rpc {
            pending: BTreeMap::new(),
            spare: Vec::new(),
            spare_trimmed: Instant::ZERO,
            timers: BTreeSet::new(),
            counters: BTreeMap::new(),
            max_pending,
            bootstrapping: 0,
            rtt: Vec::new(),
            all: None,
        }
    }

    /// The round-trip estimate of `peer`, if it was ever measured (and is still kept).
    #[cfg(test)]
    pub(crate) fn rtt(&self, peer: &SocketAddr) -> Option<&RttEstimate> {
        self.estimate(peer)
    }

    fn estimate(&self, peer: &SocketAddr) -> Option<&RttEstimate> {
        let k = peer_key(peer);
        self.rtt.iter().find(|(p, _)| *p == k).map(|(_, e)| e)
    }

    /// The first wait of a request to `to`: the peer's retransmission timeout when it was
    /// measured; for a peer never measured, 1.5 times the node-wide estimate's (its variance spans
    /// every peer's paths); OpenDHT's fixed 2 × 500 ms + U(0, 250 ms) while the node has measured
    /// nothing at all.
    fn first_wait(&self, to: &SocketAddr, rng: &mut impl RngCore) -> Duration {
        if let Some(e) = self.estimate(to) {
            return e.rto();
        }
        match &self.all {
            Some(all) => (all.rto() * 3 / 2).clamp(MIN_RTO, MAX_RTO),
            None => next_wait(FIRST_WAIT, rng),
        }
    }

    /// A round-trip sample of `peer` (Karn: only of requests sent once).
    fn sample(&mut self, peer: SocketAddr, r: Duration) {
        match self.all.as_mut() {
            Some(e) => e.update(r),
            None => self.all = Some(RttEstimate::new(r)),
        }
        let k = peer_key(&peer);
        // Kept in the order of their last samples: a peer measured again moves to the back, and
        // the front is the least recently measured, which a newcomer replaces.
        if let Some(i) = self.rtt.iter().position(|(p, _)| *p == k) {
            let (_, mut e) = self.rtt.remove(i);
            e.update(r);
            self.rtt.push((k, e));
            return;
        }
        if self.rtt.len() >= MAX_RTT_PEERS {
            self.rtt.remove(0);
        }
        if self.rtt.capacity() == 0 {
            self.rtt.reserve_exact(MAX_RTT_PEERS);
        }
        self.rtt.push((k, RttEstimate::new(r)));
    }

    /// Part of the reply to (`from`, `tid`) arrived: the request stops being retransmitted and
    /// is given up only after [`ANSWER_IDLE`] without another datagram of its reply. The first
    /// such datagram of a request sent once is a round-trip sample. Returns the request.
    pub(crate) fn progress(&mut self, now: Instant, from: SocketAddr, tid: Tid) -> Option<&Pending> {
        let (first, sent, attempts, old) = {
            let p = self.pending.get(&(from, tid))?;
            (!p.answering, p.sent, p.attempts, p.next)
        };
        if first && attempts == 1 {
            self.sample(from, now - sent);
        }
        let next = now + ANSWER_IDLE;
        self.timers.remove(&(old, from, tid));
        self.timers.insert((next, from, tid));
        let p = self.pending.get_mut(&(from, tid))?;
        p.answering = true;
        p.next = next;
        Some(p)
    }

    /// A fresh id for `to`: the next value of that peer's counter, never 0 and never one still
    /// pending. Transaction ids and listen socket ids share the counter, as in OpenDHT. A peer
    /// with nothing pending starts again from a new random value.
    pub(crate) fn next_tid(&mut self, to: SocketAddr, rng: &mut impl RngCore) -> Tid {
        let counter = self.counters.entry(to).or_insert_with(|| rng.next_u32());
        loop {
            *counter = counter.wrapping_add(1);
            if *counter != 0 && !self.pending.contains_key(&(to, *counter)) {
                return *counter;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn counters(&self) -> usize {
        self.counters.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= self.max_pending
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Records a request that the caller sends now (`packet` then `parts`).
    pub(crate) fn start(&mut self, now: Instant, rng: &mut impl RngCore, req: Outgoing) {
        let Outgoing {
            to,
            tid,
            node,
            purpose,
            packet,
            parts,
        } = req;
        if purpose == Purpose::Bootstrap {
            self.bootstrapping += 1;
        }
        let wait = self.first_wait(&to, rng);
        let next = now + wait;
        self.timers.insert((next, to, tid));
        let p = Pending {
            node,
            purpose,
            attempts: 1,
            wait,
            next,
            sent: now,
            answering: false,
            packet,
            parts,
        };
        let b = match self.spare.pop() {
            Some(mut b) => {
                *b = p;
                b
            }
            None => Box::new(p),
        };
        self.pending.insert((to, tid), b);
    }

    /// The request in `b`, its box kept for the next request.
    fn unbox(&mut self, mut b: Box<Pending>) -> Pending {
        let p = core::mem::replace(&mut *b, Pending::EMPTY);
        if self.spare.capacity() == 0 {
            self.spare.reserve_exact(MAX_SPARE);
        }
        if self.spare.len() < MAX_SPARE {
            self.spare.push(b);
        }
        p
    }

    pub(crate) fn get(&self, from: SocketAddr, tid: Tid) -> Option<&Pending> {
        self.pending.get(&(from, tid)).map(|b| &**b)
    }

    /// Takes the request a reply or error from `from` answers (at `now`: the answer to a
    /// request sent once, not already sampled, is a round-trip sample).
    pub(crate) fn complete(&mut self, now: Instant, from: SocketAddr, tid: Tid) -> Option<Pending> {
        let p = self.take(from, tid)?;
        if p.attempts == 1 && !p.answering {
            self.sample(from, now - p.sent);
        }
        Some(p)
    }

    /// Takes a request out, unanswered.
    fn take(&mut self, from: SocketAddr, tid: Tid) -> Option<Pending> {
        let b = self.pending.remove(&(from, tid))?;
        let p = self.unbox(b);
        self.timers.remove(&(p.next, from, tid));
        self.forget(from, &p);
        Some(p)
    }

    /// Every pending request to `to`, taken out (the node is expired).
    pub(crate) fn take_all_to(&mut self, to: SocketAddr) -> Vec<(Tid, Pending)> {
        let tids: Vec<Tid> = self
            .pending
            .range((to, 0)..=(to, Tid::MAX))
            .map(|((_, t), _)| *t)
            .collect();
        tids.into_iter()
            .filter_map(|t| self.take(to, t).map(|p| (t, p)))
            .collect()
    }

    fn forget(&mut self, to: SocketAddr, p: &Pending) {
        if p.purpose == Purpose::Bootstrap {
            self.bootstrapping -= 1;
        }
        if !self.has_pending_to(to) {
            self.counters.remove(&to);
        }
    }

    /// True while a bootstrap ping awaits its reply.
    pub(crate) fn is_bootstrapping(&self) -> bool {
        self.bootstrapping > 0
    }

    pub(crate) fn has_pending_to(&self, to: SocketAddr) -> bool {
        self.pending.range((to, 0)..=(to, Tid::MAX)).next().is_some()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|t| t.0)
    }

    /// The next request whose timer has passed: retransmitted (its datagrams are pushed to
    /// `out`, a compact request encoded by `encode`) or expired.
    #[must_use]
    pub(crate) fn poll_timeout(
        &mut self,
        now: Instant,
        rng: &mut impl RngCore,
        encode: &dyn Fn(Tid, RequestKind) -> Vec<u8>,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> Option<Timeout> {
        let &(at, to, tid) = self.timers.first()?;
        if at > now {
            return None;
        }
        self.timers.remove(&(at, to, tid));
        let p = self.pending.get_mut(&(to, tid))?;
        if p.attempts >= MAX_ATTEMPTS || p.answering {
            let b = self.pending.remove(&(to, tid))?;
            let pending = self.unbox(b);
            self.forget(to, &pending);
            return Some(Timeout::Expired { to, pending });
        }
        p.attempts += 1;
        p.wait = if self.all.is_some() {
            // Measured: the timeout doubles (RFC 6298 §5.5), within bounds.
            (2 * p.wait).clamp(MIN_RTO, 4 * MAX_RTO)
        } else {
            next_wait(p.wait, rng)
        };
        p.next = now + p.wait;
        self.timers.insert((p.next, to, tid));
        out.push((to, p.packet.datagram(tid, encode)));
        out.extend(p.parts.iter().map(|d| (to, d.clone())));
        Some(Timeout::Retransmit {
            tid,
            node: p.node,
            purpose: p.purpose.clone(),
            second: p.attempts == 2,
        })
    }
}

/// `2·d + U(0, 250 ms)`, as OpenDHT's request step.
fn next_wait(d: Duration, rng: &mut impl RngCore) -> Duration {
    2 * d + Duration::from_micros(rng.next_u64() % WAIT_JITTER_MICROS)
}

/// A source OpenDHT never accepts (§8.3): port 0, IPv4 0/8 and ≥ 224/4, IPv6 multicast,
/// unspecified or IPv4-mapped.
pub(crate) fn is_martian(addr: &SocketAddr) -> bool {
    if addr.port() == 0 {
        return true;
    }
    match addr.ip() {
        IpAddr::V4(ip) => {
            let first = ip.octets()[0];
            first == 0 || first >= 224
        }
        IpAddr::V6(ip) => ip.is_multicast() || ip.is_unspecified() || ip.to_ipv4_mapped().is_some(),
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`, as OpenDHT does before anything else.
pub(crate) fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The quota key of an address: the IPv4 address, or the first 64 bits of an IPv6 one.
pub(crate) fn ip_key(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => (u128::from(*v6) >> 64) | (1 << 127),
    }
}

/// Blacklisted socket addresses: bounded, oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Blacklist {
    set: BTreeSet<SocketAddr>,
    order: VecDeque<SocketAddr>,
    max: usize,
}

impl Blacklist {
    /// Frees what the emptied tables hold (see [`crate::compact`]).
    pub(crate) fn compact(&mut self) {
        use crate::compact::Compact;
        self.set.compact();
        self.order.compact();
    }

    pub(crate) fn new(max: usize) -> Blacklist {
        Blacklist {
            max,
            ..Blacklist::default()
        }
    }

    pub(crate) fn insert(&mut self, addr: SocketAddr) {
        if self.max == 0 || !self.set.insert(addr) {
            return;
        }
        self.order.push_back(addr);
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub(crate) fn contains(&self, addr: &SocketAddr) -> bool {
        self.set.contains(addr)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// For requests that keep their bytes: nothing is encoded again.
    fn no_encoder(_: Tid, kind: RequestKind) -> Vec<u8> {
        panic!("nothing to encode: {kind:?}")
    }

    #[test]
    fn finds_and_plain_gets_are_encoded_again_other_requests_resent_as_kept() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let mut rpc = Rpc::new(16);
        let to = addr("10.0.0.1:4222");
        let target = InfoHash([7; 20]);
        let want = Some(Want {
            ipv4: true,
            ipv6: false,
        });
        let mut query = Query::default();
        let kinds = [
            RequestKind::Find { target, want },
            RequestKind::Get {
                key: target,
                query: Query::default(),
                want: None,
            },
            RequestKind::Ping,
        ];
        let mut tids = Vec::new();
        for kind in &kinds {
            let packet = Resend::of(kind).unwrap_or(Resend::Bytes(vec![0xaa]));
            tids.push(start(&mut rpc, &mut rng, Instant::ZERO, to, packet));
        }
        query.where_ = "WHERE id=1".parse::<Query>().expect("query").where_;
        assert!(
            Resend::of(&RequestKind::Get {
                key: target,
                query,
                want
            })
            .is_none(),
            "a get with a query keeps its bytes"
        );
        // The encoder writes the transaction id and the request it is given.
        let encode = |tid: Tid, kind: RequestKind| {
            let i = tids.iter().position(|t| *t == tid).expect("a pending tid");
            assert_eq!(kind, kinds[i], "the request rebuilt as it was");
            vec![i as u8]
        };
        let mut out = Vec::new();
        while out.len() < 3 {
            let t = rpc.next_deadline().expect("requests pending");
            let _ = rpc.poll_timeout(t, &mut rng, &encode, &mut out);
        }
        let mut sent: Vec<u8> = out.iter().map(|(_, d)| d[0]).collect();
        sent.sort();
        assert_eq!(sent[..3], [0, 1, 0xaa]);
    }

    #[test]
    fn retransmits_twice_then_expires_on_opendht_schedule() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut rpc = Rpc::new(16);
        let to = addr("10.0.0.1:4222");
        let tid = rpc.next_tid(to, &mut rng);
        rpc.start(
            Instant::ZERO,
            &mut rng,
            Outgoing {
                to,
                tid,
                node: InfoHash::ZERO,
                purpose: Purpose::Ping,
                packet: vec![1].into(),
                parts: vec![vec![2]],
            },
        );
        let mut out = Vec::new();
        let mut sends = vec![Instant::ZERO];
        let mut expired_at = None;
        let mut now = Instant::ZERO;
        while let Some(t) = rpc.next_deadline() {
            now = t;
            match rpc.poll_timeout(now, &mut rng, &no_encoder, &mut out) {
                Some(Timeout::Retransmit { second, .. }) => {
                    assert_eq!(second, sends.len() == 1);
                    sends.push(now);
                }
                Some(Timeout::Expired { .. }) => expired_at = Some(now),
                None => panic!("timer fired without an action"),
            }
        }
        assert_eq!(sends.len(), 3);
        // Each retransmission carries the request and its parts again.
        assert_eq!(out.len(), 4);
        let d1 = sends[1] - sends[0];
        let d2 = sends[2] - sends[1];
        let d3 = expired_at.unwrap() - sends[2];
        assert!(
            d1 >= Duration::from_millis(1000) && d1 < Duration::from_millis(1250),
            "{d1:?}"
        );
        assert!(
            d2 >= Duration::from_millis(2000) && d2 < Duration::from_millis(2750),
            "{d2:?}"
        );
        assert!(
            d3 >= Duration::from_millis(4000) && d3 < Duration::from_millis(5750),
            "{d3:?}"
        );
        assert_eq!(rpc.len(), 0);
        let _ = now;
    }

    #[test]
    fn answered_requests_boxes_are_reused_and_trimmed_to_the_requests_in_flight() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let mut rpc = Rpc::new(64);
        let to = |port: u16| SocketAddr::from(([10, 0, 0, 1], port));
        // A spare holds `Pending::EMPTY` (0 attempts, nothing kept to re-send).
        let is_request = |p: &Pending| p.attempts == 1 && matches!(&p.packet, Resend::Bytes(b) if b == &[1]);
        let sent: Vec<_> = (1..=5)
            .map(|p| (to(p), ping(&mut rpc, &mut rng, Instant::ZERO, to(p))))
            .collect();
        for &(a, tid) in &sent {
            let p = rpc.complete(Instant::ZERO, a, tid).unwrap();
            assert!(is_request(&p), "the request itself, not the spare's: {p:?}");
        }
        assert_eq!(rpc.spare.len(), 5);
        let (a, tid) = (to(9), ping(&mut rpc, &mut rng, Instant::ZERO, to(9)));
        assert_eq!(rpc.spare.len(), 4, "a new request takes a spare box");
        assert!(is_request(rpc.get(a, tid).unwrap()));
        let t = Instant::ZERO + SPARE_TRIM_PERIOD;
        rpc.compact(Instant::ZERO + (SPARE_TRIM_PERIOD - Duration::from_millis(1)));
        assert_eq!(rpc.spare.len(), 4, "a busy node keeps its spares between trims");
        rpc.compact(t);
        assert_eq!(rpc.spare.len(), 1, "no more spares than requests in flight");
        rpc.complete(t, a, tid).unwrap();
        rpc.compact(t);
        assert_eq!(rpc.spare.len(), 2, "trimmed at most once a period");
        rpc.compact(t + SPARE_TRIM_PERIOD);
        assert_eq!(
            (rpc.spare.len(), rpc.spare.capacity()),
            (0, 0),
            "nothing in flight: every spare is freed"
        );
    }

    #[test]
    fn replies_match_by_address_and_tid() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut rpc = Rpc::new(16);
        let a = addr("10.0.0.1:1");
        let tid = rpc.next_tid(a, &mut rng);
        rpc.start(
            Instant::ZERO,
            &mut rng,
            Outgoing {
                to: a,
                tid,
                node: InfoHash::ZERO,
                purpose: Purpose::Ping,
                packet: vec![].into(),
                parts: vec![],
            },
        );
        assert!(rpc.complete(Instant::ZERO, addr("10.0.0.2:1"), tid).is_none());
        assert!(rpc.complete(Instant::ZERO, a, tid.wrapping_add(1)).is_none());
        assert!(rpc.complete(Instant::ZERO, a, tid).is_some());
        assert!(
            rpc.complete(Instant::ZERO, a, tid).is_none(),
            "a second reply is ignored"
        );
        assert!(rpc.next_deadline().is_none());
    }

    #[test]
    fn tids_count_per_peer_from_random_starts_while_requests_are_pending() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut rpc = Rpc::new(16);
        let a = addr("10.0.0.1:1");
        let b = addr("10.0.0.2:1");
        let start = |rpc: &mut Rpc, to, rng: &mut ChaCha20Rng| {
            let tid = rpc.next_tid(to, rng);
            rpc.start(
                Instant::ZERO,
                rng,
                Outgoing {
                    to,
                    tid,
                    node: InfoHash::ZERO,
                    purpose: Purpose::Ping,
                    packet: vec![].into(),
                    parts: vec![],
                },
            );
            tid
        };
        let a1 = start(&mut rpc, a, &mut rng);
        let b1 = start(&mut rpc, b, &mut rng);
        assert_eq!(start(&mut rpc, a, &mut rng), a1.wrapping_add(1));
        assert_eq!(start(&mut rpc, b, &mut rng), b1.wrapping_add(1));
        assert_ne!(a1, b1, "independent starts");
        assert_eq!(rpc.counters(), 2);
        for t in [a1, a1.wrapping_add(1)] {
            rpc.complete(Instant::ZERO, a, t);
        }
        assert_eq!(rpc.counters(), 1, "an idle peer's counter is dropped");
    }

    fn ping(rpc: &mut Rpc, rng: &mut ChaCha20Rng, now: Instant, to: SocketAddr) -> Tid {
        start(rpc, rng, now, to, vec![1].into())
    }

    /// A request to `to` started at `now`, re-sent as `packet` says.
    fn start(rpc: &mut Rpc, rng: &mut ChaCha20Rng, now: Instant, to: SocketAddr, packet: Resend) -> Tid {
        let tid = rpc.next_tid(to, rng);
        rpc.start(
            now,
            rng,
            Outgoing {
                to,
                tid,
                node: InfoHash::ZERO,
                purpose: Purpose::Ping,
                packet,
                parts: vec![],
            },
        );
        tid
    }

    /// The sends and the expiry of one unanswered request started at `t0`.
    fn schedule(rpc: &mut Rpc, rng: &mut ChaCha20Rng, t0: Instant, to: SocketAddr) -> Vec<Duration> {
        ping(rpc, rng, t0, to);
        let mut out = Vec::new();
        let mut at = vec![];
        while let Some(t) = rpc.next_deadline() {
            if rpc.poll_timeout(t, rng, &no_encoder, &mut out).is_some() {
                at.push(t - t0);
            }
        }
        at
    }

    #[test]
    fn measured_peers_get_timeouts_from_their_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut rpc = Rpc::new(16);
        let a = addr("10.0.0.1:1");
        let ms = Duration::from_millis;
        // Ten replies after 100 ms each: SRTT 100 ms, RTTVAR decaying towards 0.
        let mut now = Instant::ZERO;
        for _ in 0..10 {
            let tid = ping(&mut rpc, &mut rng, now, a);
            now += ms(100);
            assert!(rpc.complete(now, a, tid).is_some());
        }
        let e = *rpc.rtt(&a).unwrap();
        assert_eq!(e.srtt(), ms(100));
        assert!(e.rttvar() < ms(5), "{e:?}");
        assert_eq!(e.rto(), ms(150), "SRTT + max(4 RTTVAR, SRTT/2)");
        // A silent peer is re-sent at RTO, 2 RTO, and given up 4 RTO later (7 RTO, 1.05 s,
        // where OpenDHT's fixed schedule takes 7 to 9.75 s).
        let at = schedule(&mut rpc, &mut rng, now, a);
        assert_eq!(at, vec![ms(150), ms(450), ms(1050)]);
        // A peer never measured gets 1.5 times the node-wide timeout.
        let b = addr("10.0.0.2:1");
        assert!(rpc.rtt(&b).is_none());
        let at = schedule(&mut rpc, &mut rng, now, b);
        assert_eq!(at, vec![ms(225), ms(675), ms(1575)]);
        // Karn: a reply to a retransmitted request is no sample.
        let tid = ping(&mut rpc, &mut rng, now, a);
        let mut out = Vec::new();
        let t = rpc.next_deadline().unwrap();
        assert!(rpc.poll_timeout(t, &mut rng, &no_encoder, &mut out).is_some());
        assert!(rpc.complete(t + ms(900), a, tid).is_some());
        assert_eq!(*rpc.rtt(&a).unwrap(), e);
        // The bounds: a very slow peer waits at most OpenDHT's first wait, a fast one 100 ms.
        let slow = RttEstimate::new(ms(5000));
        assert_eq!(slow.rto(), MAX_RTO);
        let fast = RttEstimate::new(ms(1));
        assert_eq!(fast.rto(), MIN_RTO);
    }

    #[test]
    fn the_least_recently_measured_peer_makes_room() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut rpc = Rpc::new(64);
        let peer = |i: usize| addr(&format!("10.0.1.{i}:1"));
        let mut now = Instant::ZERO;
        for i in 0..MAX_RTT_PEERS {
            let tid = ping(&mut rpc, &mut rng, now, peer(i));
            now += Duration::from_millis(10);
            assert!(rpc.complete(now, peer(i), tid).is_some());
        }
        // Peer 0, measured again, is now the most recent; peer 1 the least.
        let tid = ping(&mut rpc, &mut rng, now, peer(0));
        now += Duration::from_millis(10);
        assert!(rpc.complete(now, peer(0), tid).is_some());
        let newcomer = addr("10.0.2.1:1");
        let tid = ping(&mut rpc, &mut rng, now, newcomer);
        now += Duration::from_millis(10);
        assert!(rpc.complete(now, newcomer, tid).is_some());
        assert!(rpc.rtt(&newcomer).is_some());
        assert!(rpc.rtt(&peer(0)).is_some());
        assert!(rpc.rtt(&peer(1)).is_none(), "the least recently measured went");
        assert!((2..MAX_RTT_PEERS).all(|i| rpc.rtt(&peer(i)).is_some()));
        assert_eq!(rpc.rtt.capacity(), MAX_RTT_PEERS);
        assert_eq!(core::mem::size_of::<(u64, RttEstimate)>(), 16);
    }

    #[test]
    fn a_reply_arriving_in_fragments_is_not_retransmitted_while_it_progresses() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut rpc = Rpc::new(16);
        let a = addr("10.0.0.1:1");
        let ms = Duration::from_millis;
        let tid = ping(&mut rpc, &mut rng, Instant::ZERO, a);
        // The header after 100 ms, then a fragment every 2 s for 20 s: no retransmission.
        let mut now = Instant::ZERO + ms(100);
        assert!(rpc.progress(now, a, tid).is_some());
        for _ in 0..10 {
            now += ms(2000);
            let mut out = Vec::new();
            assert!(rpc.poll_timeout(now, &mut rng, &no_encoder, &mut out).is_none());
            assert!(out.is_empty());
            assert!(rpc.progress(now, a, tid).is_some());
        }
        assert_eq!(rpc.rtt(&a).unwrap().srtt(), ms(100), "the header was the sample");
        assert!(rpc.complete(now, a, tid).is_some());
        assert_eq!(rpc.rtt(&a).unwrap().srtt(), ms(100), "the whole reply is not");
        // A reply that stops arriving is given up after ANSWER_IDLE.
        let tid = ping(&mut rpc, &mut rng, now, a);
        assert!(rpc.progress(now, a, tid).is_some());
        let mut out = Vec::new();
        assert!(
            rpc.poll_timeout(now + (ANSWER_IDLE - ms(1)), &mut rng, &no_encoder, &mut out)
                .is_none()
        );
        assert!(matches!(
            rpc.poll_timeout(now + ANSWER_IDLE, &mut rng, &no_encoder, &mut out),
            Some(Timeout::Expired { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn martians() {
        for m in [
            "0.1.2.3:1",
            "224.0.0.1:1",
            "255.255.255.255:1",
            "1.2.3.4:0",
            "[ff02::1]:1",
            "[::]:1",
            "[::ffff:1.2.3.4]:1",
        ] {
            assert!(is_martian(&addr(m)), "{m}");
        }
        for ok in ["127.0.0.1:1", "10.0.0.1:4222", "[::1]:1", "[2001:db8::1]:9"] {
            assert!(!is_martian(&addr(ok)), "{ok}");
        }
        assert_eq!(unmap(addr("[::ffff:1.2.3.4]:7")), addr("1.2.3.4:7"));
    }

    #[test]
    fn blacklist_is_bounded() {
        let mut b = Blacklist::new(4);
        for i in 0..10u16 {
            b.insert(SocketAddr::from(([10, 0, 0, 1], 1000 + i)));
        }
        assert_eq!(b.len(), 4);
        assert!(!b.contains(&addr("10.0.0.1:1000")));
        assert!(b.contains(&addr("10.0.0.1:1009")));
    }
}
