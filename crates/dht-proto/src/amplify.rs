//! Anti-amplification: a node must not be a reflector. To an address that has not proven a
//! round trip, it sends at most `factor` times the bytes it received from it; what does not
//! fit waits (bounded, for [`HOLD_TIME`]) until the address proves itself, or is dropped. (The
//! node keeps value data of get replies in its paced-reply queue instead, and asks the guard
//! for the probe with [`Guard::want_probe`].)
//!
//! An address proves itself by answering a request of ours (its reply carries our transaction
//! id, which a forger of its address never sees), by sending a write token we issued to it, or
//! by being a node of our routing table with a reply to us. The node asks for the proof with a
//! ping (a probe) when it has something held.
//!
//! Pure and bounded: `now` comes with every call. The datagram being handled gives its credit
//! without being stored; an address is tracked only when its answer does not fit, at most
//! `max_unproven` at once (the longest idle forgotten first, which never lets more through:
//! the forgotten address starts again from zero credit and zero sent). At most `max_held`
//! bytes are held in all and `max_held_per_address` for one address, and `max_proven` proven
//! addresses are remembered. [`pad`] lets our own requests buy the credit their answers need.

use crate::prelude::*;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use core::net::SocketAddr;
use core::time::Duration;

use crate::Instant;

/// How long held datagrams wait for their address's proof.
pub(crate) const HOLD_TIME: Duration = Duration::from_secs(3);
/// An unproven address with nothing held is forgotten after this idle time.
const IDLE_SECS: u32 = 60;
/// A proof lasts this long (as long as a node's last reply keeps it good).
pub(crate) const PROOF_TIME: Duration = Duration::from_secs(120 * 60);
/// Room left for the probe when a reply's header goes out and its value data wait: a ping
/// is 52 bytes, 60 with a network id.
pub(crate) const PROBE_RESERVE: usize = 64;

/// The key that pads a request (see [`pad`]): neither OpenDHT nor we read it.
const PAD_KEY: &[u8] = b"\xa3pad";

/// Pads an encoded message to at least `to` bytes, with one more entry (`"pad"`, a binary of
/// zeros) in its top-level map, which OpenDHT and our decoder skip as an unknown key. Leaves
/// it alone when it is long enough or not a small map (a fixmap of at most 14 entries, as all
/// our messages are).
pub(crate) fn pad(data: &mut Vec<u8>, to: usize) {
    if data.len() >= to {
        return;
    }
    let Some(head) = data.first_mut() else { return };
    if *head & 0xf0 != 0x80 || *head == 0x8f {
        return;
    }
    *head += 1;
    let n = to.saturating_sub(data.len() + PAD_KEY.len() + 2).min(255);
    data.extend_from_slice(PAD_KEY);
    data.extend_from_slice(&[0xc4, n as u8]);
    data.resize(data.len() + n, 0);
}

/// Whether a probe was asked for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    None,
    Wanted,
    Sent,
}

/// An address that has sent us something and not proven a round trip: 12 bytes (a node
/// tracks dozens), and a box while it has something held or a probe on the way.
#[derive(Debug)]
struct Unproven {
    received: u32,
    sent: u32,
    /// When it last sent or was held something, in whole seconds.
    last: u32,
    hold: Option<Box<Hold>>,
}

/// What an [`Unproven`] address is owed, and its probe.
#[derive(Debug)]
struct Hold {
    held: VecDeque<Vec<u8>>,
    held_bytes: usize,
    /// When this episode began (the first datagram held, or value data waiting elsewhere).
    since: Option<Instant>,
    probe: Probe,
    /// Credit kept for the probe: other datagrams may not use it.
    reserved: usize,
    /// The next datagram is the probe: it goes, ahead of what is held.
    probe_next: bool,
}

impl Hold {
    fn new() -> Box<Hold> {
        Box::new(Hold {
            held: VecDeque::new(),
            held_bytes: 0,
            since: None,
            probe: Probe::None,
            reserved: 0,
            probe_next: false,
        })
    }
}

impl Unproven {
    /// Bytes that may still go to it.
    fn room(&self, factor: u32) -> u64 {
        (u64::from(self.received) * u64::from(factor)).saturating_sub(u64::from(self.sent))
    }

    fn hold(&mut self) -> &mut Hold {
        self.hold.get_or_insert_with(Hold::new)
    }
}

/// What became of a datagram offered to [`Guard::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Send it.
    Send,
    /// Held until the address proves itself.
    Held,
    /// Over the holding bounds: dropped.
    Dropped,
}

/// The bounds of a [`Guard`] (from `Config`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub factor: Option<u32>,
    pub max_unproven: usize,
    pub max_held: usize,
    pub max_held_per_address: usize,
    pub max_proven: usize,
}

/// [`PROOF_TIME`] in whole seconds.
const PROOF_SECS: u32 = PROOF_TIME.as_secs() as u32;

/// An address as a map key: the IPv6 (or IPv4-mapped) address, then the port, big-endian;
/// 18 bytes instead of a `SocketAddr`'s 32. Ordered as its bytes are, but compared as two
/// words and the port (a byte array's order is a call to `memcmp`, on every step of every
/// lookup, several per datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AddrKey([u8; 18]);

impl AddrKey {
    fn words(&self) -> (u64, u64, u16) {
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
            p0,
            p1,
        ] = self.0;
        (
            u64::from_be_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
            u16::from_be_bytes([p0, p1]),
        )
    }
}

impl Ord for AddrKey {
    fn cmp(&self, other: &AddrKey) -> core::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl PartialOrd for AddrKey {
    fn partial_cmp(&self, other: &AddrKey) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn addr_key(a: &SocketAddr) -> AddrKey {
    let ip = match a.ip() {
        core::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        core::net::IpAddr::V6(v6) => v6,
    };
    let mut k = [0; 18];
    let (head, tail) = k.split_at_mut(16);
    head.copy_from_slice(&ip.octets());
    tail.copy_from_slice(&a.port().to_be_bytes());
    AddrKey(k)
}

/// The address an [`AddrKey`] was made from (IPv4-mapped addresses back to IPv4).
fn addr_of(k: &AddrKey) -> SocketAddr {
    let (hi, lo, port) = k.words();
    let v6 = core::net::Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo));
    match v6.to_ipv4_mapped() {
        Some(v4) => SocketAddr::new(v4.into(), port),
        None => SocketAddr::new(v6.into(), port),
    }
}

/// `now` in whole seconds (a node's clock starts near zero; saturates after 136 years).
fn secs(now: Instant) -> u32 {
    u32::try_from(now.as_micros() / 1_000_000).unwrap_or(u32::MAX)
}

/// The anti-amplification state: unproven addresses with their credit, proven ones.
#[derive(Debug)]
pub(crate) struct Guard {
    limits: Limits,
    unproven: BTreeMap<AddrKey, Unproven>,
    /// Proven addresses (compact keys: a node remembers dozens) and when, in whole seconds.
    proven: BTreeMap<AddrKey, u32>,
    held_bytes: usize,
    /// The datagram being handled, from an address not tracked: its credit, and what was sent
    /// against it. Most requests are answered within twice their size (pings, and finds and
    /// gets padded by their sender), so an address is tracked (in `unproven`) only when its
    /// answer does not fit: then it has something held, a probe, or credit left over.
    current: Option<(AddrKey, Unproven)>,
}

impl Guard {
    pub(crate) fn new(limits: Limits) -> Guard {
        Guard {
            limits,
            unproven: BTreeMap::new(),
            proven: BTreeMap::new(),
            held_bytes: 0,
            current: None,
        }
    }

    /// Frees what emptied tables hold (see [`crate::compact`]).
    pub(crate) fn compact(&mut self) {
        use crate::compact::Compact;
        self.unproven.compact();
        self.proven.compact();
    }

    /// Whether the guard is on.
    pub(crate) fn is_on(&self) -> bool {
        self.limits.factor.is_some()
    }

    /// Whether `addr` has proven a round trip (and the proof has not lapsed).
    pub(crate) fn is_proven(&self, now: Instant, addr: &SocketAddr) -> bool {
        self.proven
            .get(&addr_key(addr))
            .is_some_and(|t| secs(now).saturating_sub(*t) < PROOF_SECS)
    }

    /// `len` bytes came from `from`: its credit grows.
    pub(crate) fn on_received(&mut self, now: Instant, from: SocketAddr, len: usize) {
        self.current = None;
        if !self.is_on() || self.is_proven(now, &from) {
            return;
        }
        let key = addr_key(&from);
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        if let Some(e) = self.unproven.get_mut(&key) {
            e.received = e.received.saturating_add(len);
            e.last = secs(now);
            return;
        }
        self.current = Some((
            key,
            Unproven {
                received: len,
                sent: 0,
                last: secs(now),
                hold: None,
            },
        ));
    }

    /// The datagram being handled is done with: credit it left unused is forgotten (never
    /// more than the bound lets through).
    pub(crate) fn end_datagram(&mut self) {
        self.current = None;
    }

    /// The state of `to`, if tracked or the sender of the datagram being handled.
    fn state(&mut self, to: &SocketAddr) -> Option<&mut Unproven> {
        let key = addr_key(to);
        if self.unproven.contains_key(&key) {
            return self.unproven.get_mut(&key);
        }
        match &mut self.current {
            Some((k, u)) if *k == key => Some(u),
            _ => None,
        }
    }

    /// `to`'s state, tracked from now on (the sender of the datagram being handled starts
    /// being tracked).
    fn track(&mut self, to: &SocketAddr) -> Option<&mut Unproven> {
        let key = addr_key(to);
        if !self.unproven.contains_key(&key) {
            let (k, u) = self.current.take_if(|(k, _)| *k == key)?;
            if self.unproven.len() >= self.limits.max_unproven {
                self.evict_unproven();
            }
            self.unproven.insert(k, u);
        }
        self.unproven.get_mut(&key)
    }

    /// Forgets the eighth of the tracked addresses idle longest (their held data dropped).
    fn evict_unproven(&mut self) {
        let mut lasts: Vec<u32> = self.unproven.values().map(|u| u.last).collect();
        let k = lasts.len() / 8;
        if lasts.is_empty() {
            return;
        }
        lasts.select_nth_unstable(k);
        let Some(cut) = lasts.get(k).copied() else { return };
        let mut freed = 0;
        let mut budget = k + 1;
        self.unproven.retain(|_, u| {
            if budget > 0 && u.last <= cut {
                budget -= 1;
                freed += u.hold.as_ref().map_or(0, |h| h.held_bytes);
                false
            } else {
                true
            }
        });
        self.held_bytes -= freed;
    }

    /// `addr` proved a round trip: returns what was held for it, to send now. `remember`:
    /// keep the proof here (not needed when the routing table vouches for the address).
    pub(crate) fn prove(&mut self, now: Instant, addr: SocketAddr, remember: bool) -> VecDeque<Vec<u8>> {
        if !self.is_on() {
            return VecDeque::new();
        }
        let (key, at) = (addr_key(&addr), secs(now));
        if remember && !self.proven.contains_key(&key) && self.proven.len() >= self.limits.max_proven {
            self.proven.retain(|_, t| at.saturating_sub(*t) < PROOF_SECS);
            if self.proven.len() >= self.limits.max_proven {
                let mut times: Vec<u32> = self.proven.values().copied().collect();
                let k = times.len() / 8;
                times.select_nth_unstable(k);
                if let Some(cut) = times.get(k).copied() {
                    self.proven.retain(|_, t| *t > cut);
                }
            }
        }
        if remember && self.limits.max_proven > 0 {
            self.proven.insert(key, at);
        }
        if self.current.as_ref().is_some_and(|(k, _)| *k == key) {
            self.current = None;
        }
        match self.unproven.remove(&key).and_then(|u| u.hold) {
            Some(h) => {
                self.held_bytes -= h.held_bytes;
                h.held
            }
            None => VecDeque::new(),
        }
    }

    /// Bytes that may still go to `to` at once; `None`: no limit (guard off, proven, or an
    /// address that never sent us anything: our requests to it are our own doing).
    pub(crate) fn budget(&self, to: &SocketAddr) -> Option<usize> {
        let factor = self.limits.factor?;
        let key = addr_key(to);
        let u = match (self.unproven.get(&key), &self.current) {
            (Some(u), _) => u,
            (None, Some((k, u))) if *k == key => u,
            _ => return None,
        };
        Some(usize::try_from(u.room(factor)).unwrap_or(usize::MAX))
    }

    /// A request of ours to `to` (or its retransmission or value data): always sent, never
    /// held, since a peer cannot make us send requests at will; its bytes are charged to the
    /// credit of a tracked address, so the replies that follow stay within the bound. Not to
    /// the datagram being handled: the ping that confirms a new node (52 bytes, 1x) must not
    /// hold back the answer to its request.
    pub(crate) fn charge_request(&mut self, to: &SocketAddr, len: usize) {
        if self.limits.factor.is_none() {
            return;
        }
        if let Some(u) = self.unproven.get_mut(&addr_key(to)) {
            u.sent = u.sent.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
            if let Some(h) = &mut u.hold {
                h.probe_next = false;
            }
        }
    }

    /// A datagram for `to`: sent if the credit allows, else held (a probe is then wanted) or,
    /// past the holding bounds, dropped.
    pub(crate) fn admit(&mut self, now: Instant, to: SocketAddr, data: &[u8]) -> Admit {
        let Some(factor) = self.limits.factor else {
            return Admit::Send;
        };
        let Some(u) = self.state(&to) else {
            return Admit::Send;
        };
        let budget = u.room(factor);
        let len = data.len() as u64;
        let charge =
            |u: &mut Unproven| u.sent = u.sent.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
        match &mut u.hold {
            None if len <= budget => {
                charge(u);
                return Admit::Send;
            }
            Some(h) if h.probe_next && len <= budget => {
                h.probe_next = false;
                charge(u);
                return Admit::Send;
            }
            Some(h) if h.held.is_empty() && len + h.reserved as u64 <= budget => {
                charge(u);
                return Admit::Send;
            }
            _ => {}
        }
        let (max_held, max_per) = (self.limits.max_held, self.limits.max_held_per_address);
        let held_all = self.held_bytes;
        let Some(u) = self.track(&to) else {
            return Admit::Dropped;
        };
        let h = u.hold();
        if h.held.iter().any(|d| d.as_slice() == data) {
            // A retransmission's answer, identical to one already waiting.
            return Admit::Dropped;
        }
        if h.held_bytes + data.len() > max_per || held_all + data.len() > max_held {
            return Admit::Dropped;
        }
        h.held_bytes += data.len();
        h.held.push_back(data.to_vec());
        h.since.get_or_insert(now);
        if h.probe == Probe::None {
            h.probe = Probe::Wanted;
        }
        u.last = secs(now);
        self.held_bytes += data.len();
        Admit::Held
    }

    /// Value data for `to` wait (outside the guard) for its proof: a probe is wanted, and the
    /// wait starts an episode that lapses like held datagrams.
    pub(crate) fn want_probe(&mut self, now: Instant, to: &SocketAddr) {
        if let Some(u) = self.track(to) {
            u.last = secs(now);
            let h = u.hold();
            h.since.get_or_insert(now);
            if h.probe == Probe::None {
                h.probe = Probe::Wanted;
            }
        }
    }

    /// Keeps room for a probe to `to` (what follows will likely be held): other datagrams may
    /// not use it until the probe goes.
    pub(crate) fn reserve_probe(&mut self, to: &SocketAddr) {
        if let Some(u) = self.track(to) {
            let h = u.hold();
            if h.probe == Probe::None {
                h.reserved = PROBE_RESERVE;
            }
        }
    }

    /// Addresses with something held and no probe yet, whose credit has room for one: the node
    /// pings each at once (charged like any datagram, the next datagram to it goes ahead of
    /// what is held). Marks them probed.
    pub(crate) fn take_probes(&mut self) -> Vec<SocketAddr> {
        let Some(factor) = self.limits.factor else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, u) in self.unproven.iter_mut() {
            let room = u.room(factor);
            if let Some(h) = &mut u.hold
                && h.probe == Probe::Wanted
                && room >= PROBE_RESERVE as u64
            {
                h.probe = Probe::Sent;
                h.reserved = 0;
                h.probe_next = true;
                out.push(addr_of(k));
            }
        }
        out
    }

    /// When held data next lapse.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.unproven
            .values()
            .filter_map(|u| u.hold.as_ref()?.since)
            .min()
            .map(|t| t + HOLD_TIME)
    }

    /// Drops held data past [`HOLD_TIME`] and forgets idle addresses. Returns the datagrams
    /// dropped.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        let mut freed = 0;
        let at = secs(now);
        self.unproven.retain(|_, u| {
            if let Some(h) = &u.hold
                && h.since.is_some_and(|t| now - t >= HOLD_TIME)
            {
                dropped += h.held.len();
                freed += h.held_bytes;
                // One probe per episode: a later hold may probe again.
                u.hold = None;
            }
            u.hold.as_ref().is_some_and(|h| h.since.is_some()) || at.saturating_sub(u.last) < IDLE_SECS
        });
        self.held_bytes -= freed;
        dropped
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.unproven.len()
    }

    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InfoHash;
    use proptest::prelude::*;

    proptest! {
        /// The word-wise order of address keys is their bytes' order (the maps iterate, and
        /// evict, in the order they always did), and a key gives back its address.
        #[test]
        fn address_keys_order_as_their_bytes(a in any::<[u8; 18]>(), b in any::<[u8; 18]>(), v4 in any::<[u8; 4]>(), port in any::<u16>()) {
            prop_assert_eq!(AddrKey(a).cmp(&AddrKey(b)), a.cmp(&b));
            prop_assert_eq!(AddrKey(a).cmp(&AddrKey(a)), core::cmp::Ordering::Equal);
            let addr = SocketAddr::from((v4, port));
            prop_assert_eq!(addr_of(&addr_key(&addr)), addr);
        }
    }

    fn limits() -> Limits {
        Limits {
            factor: Some(2),
            max_unproven: 64,
            max_held: 10_000,
            max_held_per_address: 4_000,
            max_proven: 16,
        }
    }

    fn a(i: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], i))
    }

    #[test]
    fn an_unproven_address_gets_twice_what_it_sent_and_the_rest_waits_for_its_proof() {
        let mut g = Guard::new(limits());
        let t = Instant::ZERO;
        assert_eq!(
            g.admit(t, a(1), &[0; 500]),
            Admit::Send,
            "never heard from: our own request"
        );
        g.on_received(t, a(1), 100);
        assert_eq!(g.budget(&a(1)), Some(200));
        assert_eq!(g.admit(t, a(1), &[1; 150]), Admit::Send);
        assert_eq!(g.admit(t, a(1), &[2; 1000]), Admit::Held);
        assert_eq!(
            g.admit(t, a(1), &[3; 10]),
            Admit::Held,
            "nothing overtakes what waits"
        );
        assert_eq!(
            g.admit(t, a(1), &[2; 1000]),
            Admit::Dropped,
            "the same datagram twice"
        );
        assert!(g.take_probes().is_empty(), "50 bytes left: no room for a probe");
        g.on_received(t, a(1), 100);
        assert_eq!(g.take_probes(), [a(1)]);
        assert!(g.take_probes().is_empty(), "one probe");
        let held = g.prove(t, a(1), true);
        assert_eq!(held.len(), 2);
        assert_eq!(g.held_bytes(), 0);
        assert!(g.is_proven(t, &a(1)));
        assert_eq!(g.budget(&a(1)), None);
        g.on_received(t, a(1), 100);
        assert_eq!(g.admit(t, a(1), &[0; 5000]), Admit::Send);
    }

    #[test]
    fn held_data_lapse_and_holding_is_bounded() {
        let mut g = Guard::new(limits());
        let t = Instant::ZERO;
        g.on_received(t, a(1), 10);
        for i in 0..10u8 {
            let _ = g.admit(t, a(1), &[i; 1000]);
        }
        assert_eq!(g.held_bytes(), 4000, "per address");
        for p in 2..6 {
            g.on_received(t, a(p), 10);
            for i in 0..4u8 {
                let _ = g.admit(t, a(p), &[i; 1000]);
            }
        }
        assert_eq!(g.held_bytes(), 10_000, "in all");
        assert_eq!(g.next_deadline(), Some(t + HOLD_TIME));
        assert_eq!(g.expire(t + HOLD_TIME), 10);
        assert_eq!(g.held_bytes(), 0);
        assert_eq!(g.tracked(), 5, "still tracked, still unproven");
        assert_eq!(g.budget(&a(1)), Some(20));
        g.expire(t + HOLD_TIME + Duration::from_secs(IDLE_SECS.into()));
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn tables_are_bounded() {
        let mut g = Guard::new(limits());
        for i in 0..1000u16 {
            let t = Instant::from_millis(u64::from(i));
            g.on_received(t, a(i), 10);
            let _ = g.admit(t, a(i), &[0; 100]);
            assert!(g.tracked() <= 64);
        }
        assert!(g.held_bytes() <= 10_000);
        for i in 0..1000u16 {
            let _ = g.prove(Instant::from_millis(u64::from(i)), a(i), true);
            assert!(g.proven.len() <= 16);
        }
        assert!(g.is_proven(Instant::from_millis(999), &a(999)));
    }

    #[test]
    fn padding_adds_an_entry_the_decoder_skips() {
        use crate::wire::{self, Message, RequestKind};
        let msg = Message::request(
            7,
            InfoHash([1; 20]),
            RequestKind::Find {
                target: InfoHash([2; 20]),
                want: None,
            },
        );
        let mut data = msg.encode_to_vec();
        let plain = data.len();
        pad(&mut data, 200);
        assert_eq!(data.len(), 200);
        assert_eq!(wire::decode(&data).unwrap(), msg);
        pad(&mut data, 100);
        assert_eq!(data.len(), 200, "long enough already");
        let mut short = msg.encode_to_vec();
        pad(&mut short, plain + 3);
        assert!(short.len() >= plain + 3);
        assert_eq!(wire::decode(&short).unwrap(), msg);
        let mut not_a_map = vec![0x90];
        pad(&mut not_a_map, 50);
        assert_eq!(not_a_map, [0x90]);
    }

    #[test]
    fn off_means_no_limit() {
        let mut g = Guard::new(Limits {
            factor: None,
            ..limits()
        });
        g.on_received(Instant::ZERO, a(1), 10);
        assert_eq!(g.admit(Instant::ZERO, a(1), &[0; 5000]), Admit::Send);
        assert_eq!(g.tracked(), 0);
    }
}
