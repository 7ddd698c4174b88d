//! LAN peer discovery, compatible with OpenDHT's `PeerDiscovery`: the announcement codec and a
//! pure state machine that decides when to announce and what to do with what is heard.
//!
//! Nodes on one network multicast a small msgpack datagram, `{"dht": [bin(20) id, port, net]}`,
//! to `239.192.0.1:8888` and `[ff08::101]:8888`; a newcomer first sends the query `"q"`
//! (`a1 71`), which every node that listens and publishes answers by unicast with its
//! announcement. The hearer adds (source IP, announced port) to the routing table of that family.
//! `docs/discovery.md` describes the protocol with captured bytes.
//!
//! [`Discovery`] is sans-IO like [`crate::Node`]: the driver owns the sockets (bound to port
//! [`PORT`] with `SO_REUSEADDR`, joined to [`GROUP_V4`] and [`GROUP_V6`]) and the clock, feeds
//! every datagram to [`Discovery::handle_datagram`] and performs every [`Output`].
//!
//! ```
//! use core::net::SocketAddr;
//! use dht_proto::discovery::{self, Discovery, DiscoveryConfig, Output, Target};
//! use dht_proto::{Family, InfoHash, Instant, PerFamily};
//!
//! let mut d = Discovery::new(DiscoveryConfig::default(), InfoHash::get("me"), 0);
//! d.start(Instant::ZERO, PerFamily::new(Some(4222), None));
//! // At start: a query, then the announcement, to the IPv4 group.
//! let Some(Output::Send { to: Target::Group, data, .. }) = d.poll_output() else { panic!() };
//! assert_eq!(data, discovery::QUERY);
//! let Some(Output::Send { to: Target::Group, .. }) = d.poll_output() else { panic!() };
//!
//! // An announcement captured from OpenDHT 4.4.2: node d20abb74…, port 4222, network 0.
//! let heard = [
//!     0x81, 0xa3, 0x64, 0x68, 0x74, 0x93, 0xc4, 0x14, 0xd2, 0x0a, 0xbb, 0x74, 0x8e, 0x8e, 0x86,
//!     0x14, 0x1a, 0x52, 0xc8, 0x7c, 0xd4, 0xef, 0x63, 0xc5, 0x45, 0xf1, 0xb3, 0xfa, 0xcd, 0x10,
//!     0x7e, 0x00,
//! ];
//! let from: SocketAddr = "192.168.1.7:8888".parse().unwrap();
//! d.handle_datagram(Instant::ZERO, from, &heard);
//! let Some(Output::Bootstrap { addr, .. }) = d.poll_output() else { panic!() };
//! assert_eq!(addr, "192.168.1.7:4222".parse().unwrap());
//! ```

use alloc::collections::VecDeque;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;

use crate::msgpack::{DecodeError, Reader, write};
use crate::prelude::*;
use crate::wire::NetworkId;
use crate::{Family, InfoHash, Instant, PerFamily, Status};

/// The UDP port of discovery, for both families, as source and destination.
pub const PORT: u16 = 8888;
/// The IPv4 group (organisation-local scope).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
/// The IPv6 group (organisation-local scope).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff08, 0, 0, 0, 0, 0, 0, 0x101);
/// The query: the msgpack string `"q"`.
pub const QUERY: [u8; 2] = [0xa1, 0x71];
/// The service key of the DHT in an announcement map.
pub const SERVICE: &str = "dht";
/// The largest datagram considered. An OpenDHT announcement is 32 to 36 bytes; Jami adds a
/// service with a display name. Anything larger is dropped unread.
pub const MAX_DATAGRAM: usize = 2048;
/// At most this many map entries are looked at; a map with more is dropped.
pub const MAX_ENTRIES: usize = 16;

/// The DHT's entry of an announcement: who announces, on which DHT port, in which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The sender's node id.
    pub id: InfoHash,
    /// The sender's DHT UDP port for the family the announcement travels on.
    pub port: u16,
    /// The sender's network id (0 by default).
    pub network: NetworkId,
}

/// A decoded discovery datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `"q"`: asks the nodes that publish to answer by unicast.
    Query,
    /// An announcement map; `None` when it carries no `"dht"` entry (another service only).
    Announce(Option<Announce>),
}

/// Why a datagram is not a discovery message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Larger than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    Oversize(usize),
    /// A top-level string other than `"q"`.
    #[error("unknown top-level string")]
    UnknownString,
    /// A map with more than [`MAX_ENTRIES`] entries.
    #[error("map of {0} entries exceeds {MAX_ENTRIES}")]
    TooManyEntries(usize),
    /// The `"dht"` payload has fewer than 3 items.
    #[error("dht payload of {0} items, expected 3")]
    ShortPayload(usize),
    /// Not valid msgpack of the expected shape.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The query's bytes.
pub fn encode_query() -> [u8; 2] {
    QUERY
}

/// An announcement as OpenDHT sends it: a 1-entry map, the id as `bin`, integers in their
/// smallest form.
pub fn encode_announce(a: &Announce) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    write::map(&mut out, 1);
    write::str(&mut out, SERVICE);
    write::array(&mut out, 3);
    write::bin(&mut out, a.id.as_bytes());
    write::uint(&mut out, u64::from(a.port));
    write::uint(&mut out, u64::from(a.network));
    out
}

/// Decodes the first msgpack object of a datagram (trailing bytes are ignored, as OpenDHT does).
/// Unknown map keys and extra payload items are skipped; the first `"dht"` entry counts.
pub fn decode(data: &[u8]) -> Result<Message, DiscoveryError> {
    if data.len() > MAX_DATAGRAM {
        return Err(DiscoveryError::Oversize(data.len()));
    }
    let mut r = Reader::new(data);
    if let Ok(s) = r.clone().str_bytes("query") {
        return if s == b"q" {
            Ok(Message::Query)
        } else {
            Err(DiscoveryError::UnknownString)
        };
    }
    let n = r.map_len("announcement")?;
    if n > MAX_ENTRIES {
        return Err(DiscoveryError::TooManyEntries(n));
    }
    for _ in 0..n {
        match r.key()? {
            Some(k) if k == SERVICE.as_bytes() => return Ok(Message::Announce(Some(payload(&mut r)?))),
            _ => r.skip()?,
        }
    }
    Ok(Message::Announce(None))
}

fn payload(r: &mut Reader<'_>) -> Result<Announce, DiscoveryError> {
    let n = r.array_len("dht")?;
    if n < 3 {
        return Err(DiscoveryError::ShortPayload(n));
    }
    let id = r.bin("node id")?;
    let id = InfoHash::from_slice(id).ok_or(DecodeError::BadIdLength {
        field: "node id",
        len: id.len(),
    })?;
    let port = r.uint_as::<u16>("port")?;
    let network = r.uint_as::<NetworkId>("network")?;
    Ok(Announce { id, port, network })
}

/// Limits and switches of [`Discovery`]. The defaults listen and publish.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// Hear announcements and bootstrap from them (OpenDHT's `peer_discovery`).
    pub listen: bool,
    /// Announce ourselves (OpenDHT's `peer_publish`).
    pub publish: bool,
    /// How many recently bootstrapped (id, address) pairs are remembered.
    pub seen_capacity: usize,
    /// How long a remembered pair makes a repeat of it cost nothing.
    pub seen_ttl: Duration,
    /// Bootstraps taken from announcements: this many at once…
    pub bootstrap_burst: u32,
    /// …then one per this period.
    pub bootstrap_period: Duration,
    /// Unicast replies to queries: this many at once…
    pub reply_burst: u32,
    /// …then one per this period.
    pub reply_period: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            listen: true,
            publish: true,
            seen_capacity: 64,
            seen_ttl: Duration::from_secs(60),
            bootstrap_burst: 8,
            bootstrap_period: Duration::from_millis(500),
            reply_burst: 8,
            reply_period: Duration::from_millis(500),
        }
    }
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The family's group, port [`PORT`].
    Group,
    /// One address (a reply to a query).
    Unicast(SocketAddr),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `data` from the family's discovery socket.
    Send {
        /// Which socket.
        family: Family,
        /// To whom.
        to: Target,
        /// The datagram.
        data: Vec<u8>,
    },
    /// Add this node to the DHT (OpenDHT's `bootstrap(id, addr)`: an unconfirmed routing-table
    /// entry that the node then confirms).
    Bootstrap {
        /// The announced id.
        id: InfoHash,
        /// Source IP of the announcement (with its scope id) and the announced port.
        addr: SocketAddr,
    },
    /// Join the family's group again (before a re-announcement after connectivity loss).
    Rejoin(Family),
}

/// What [`Discovery`] has heard and done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Datagrams handed in.
    pub received: u64,
    /// Queries heard.
    pub queries: u64,
    /// Queries answered by unicast.
    pub replies: u64,
    /// Queries not answered: the reply rate limit, or no port to announce.
    pub replies_dropped: u64,
    /// Valid announcements with a `"dht"` entry.
    pub announcements: u64,
    /// Bootstraps output.
    pub bootstraps: u64,
    /// Our own announcements, ignored.
    pub own: u64,
    /// Announcements for another network id, ignored.
    pub other_network: u64,
    /// Announcements of a pair bootstrapped less than `seen_ttl` ago, ignored.
    pub duplicate: u64,
    /// Announcements dropped by the bootstrap rate limit.
    pub rate_limited: u64,
    /// Announcements with port 0, or from an unspecified, multicast or broadcast source.
    pub bad_address: u64,
    /// Maps without a `"dht"` entry (other services), or heard while not listening.
    pub ignored: u64,
    /// Undecodable datagrams (malformed, truncated, unknown strings, wrong payloads).
    pub malformed: u64,
    /// Datagrams larger than [`MAX_DATAGRAM`].
    pub oversize: u64,
    /// Announcements sent to a group (start-up and re-announcement bursts).
    pub announced: u64,
}

impl DiscoveryStats {
    /// Every datagram dropped or ignored, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.own
            + self.other_network
            + self.duplicate
            + self.rate_limited
            + self.bad_address
            + self.ignored
            + self.malformed
            + self.oversize
    }
}

/// A token bucket over [`Instant`]s: `burst` at once, then one per `period`.
#[derive(Clone, Debug)]
struct Bucket {
    tokens: u32,
    burst: u32,
    period: Duration,
    last: Instant,
}

impl Bucket {
    fn new(burst: u32, period: Duration, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            burst,
            period,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let period = self.period.as_micros().max(1);
        let elapsed = now.saturating_duration_since(self.last).as_micros();
        let add = elapsed / period;
        if add > 0 {
            let add = u32::try_from(add).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(add).min(self.burst);
            let used = u64::try_from(period.saturating_mul(u128::from(add))).unwrap_or(u64::MAX);
            self.last = self.last.saturating_add(Duration::from_micros(used));
            if self.tokens == self.burst {
                self.last = now;
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// The re-announcement chain after connectivity loss: bursts at +0, +10, +30 and +70 s.
const REANNOUNCE_FIRST: Duration = Duration::from_secs(10);
const REANNOUNCE_CAP: Duration = Duration::from_secs(60);

/// The discovery state machine of one node (both families).
#[derive(Clone, Debug)]
pub struct Discovery {
    config: DiscoveryConfig,
    id: InfoHash,
    network: NetworkId,
    /// The DHT port announced per family; `None`: that family does not publish.
    ports: PerFamily<Option<u16>>,
    started: bool,
    seen: VecDeque<(InfoHash, SocketAddr, Instant)>,
    bootstraps: Bucket,
    replies: Bucket,
    out: VecDeque<Output>,
    stats: DiscoveryStats,
    /// Whether both families were Disconnected at the last status seen.
    both_down: bool,
    /// The next re-announcement burst.
    reannounce: Option<Instant>,
    /// The wait after that burst.
    period: Duration,
}

impl Discovery {
    /// A discovery for the node `id` in `network`; nothing happens before [`Discovery::start`].
    pub fn new(config: DiscoveryConfig, id: InfoHash, network: NetworkId) -> Discovery {
        let bootstraps = Bucket::new(config.bootstrap_burst, config.bootstrap_period, Instant::ZERO);
        let replies = Bucket::new(config.reply_burst, config.reply_period, Instant::ZERO);
        Discovery {
            config,
            id,
            network,
            ports: PerFamily::new(None, None),
            started: false,
            seen: VecDeque::new(),
            bootstraps,
            replies,
            out: VecDeque::new(),
            stats: DiscoveryStats::default(),
            both_down: true,
            reannounce: None,
            period: REANNOUNCE_FIRST,
        }
    }

    /// Starts: per family with a DHT port, a query (when listening) then the announcement (when
    /// publishing) to the group. `ports`: the DHT ports actually bound.
    pub fn start(&mut self, now: Instant, ports: PerFamily<Option<u16>>) {
        self.ports = ports;
        self.started = true;
        self.bootstraps = Bucket::new(self.config.bootstrap_burst, self.config.bootstrap_period, now);
        self.replies = Bucket::new(self.config.reply_burst, self.config.reply_period, now);
        self.burst(false);
    }

    /// A query and an announcement to each family's group (after a re-join if `rejoin`).
    fn burst(&mut self, rejoin: bool) {
        for f in Family::ALL {
            let Some(port) = self.ports[f] else { continue };
            if rejoin {
                self.out.push_back(Output::Rejoin(f));
            }
            if self.config.listen {
                self.out.push_back(Output::Send {
                    family: f,
                    to: Target::Group,
                    data: QUERY.to_vec(),
                });
            }
            if self.config.publish {
                self.stats.announced += 1;
                self.out.push_back(Output::Send {
                    family: f,
                    to: Target::Group,
                    data: self.announcement(port),
                });
            }
        }
    }

    fn announcement(&self, port: u16) -> Vec<u8> {
        encode_announce(&Announce {
            id: self.id,
            port,
            network: self.network,
        })
    }

    /// One datagram received on a discovery socket from `from` (with its IPv6 scope id).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.received += 1;
        let from = unmap(from);
        let msg = match decode(data) {
            Ok(m) => m,
            Err(DiscoveryError::Oversize(_)) => {
                self.stats.oversize += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let family = Family::of(&from);
        match msg {
            Message::Query => {
                self.stats.queries += 1;
                if !(self.started && self.config.listen && self.config.publish) {
                    self.stats.ignored += 1;
                    return;
                }
                let Some(port) = self.ports[family] else {
                    self.stats.replies_dropped += 1;
                    return;
                };
                if bad_source(&from.ip()) || from.port() == 0 {
                    self.stats.bad_address += 1;
                    return;
                }
                if !self.replies.take(now) {
                    self.stats.replies_dropped += 1;
                    return;
                }
                self.stats.replies += 1;
                let data = self.announcement(port);
                self.out.push_back(Output::Send {
                    family,
                    to: Target::Unicast(from),
                    data,
                });
            }
            Message::Announce(None) => self.stats.ignored += 1,
            Message::Announce(Some(a)) => {
                self.stats.announcements += 1;
                self.announced(now, from, a);
            }
        }
    }

    fn announced(&mut self, now: Instant, from: SocketAddr, a: Announce) {
        if !(self.started && self.config.listen) {
            self.stats.ignored += 1;
            return;
        }
        if a.id == self.id {
            self.stats.own += 1;
            return;
        }
        if a.network != self.network {
            self.stats.other_network += 1;
            return;
        }
        if a.port == 0 || bad_source(&from.ip()) {
            self.stats.bad_address += 1;
            return;
        }
        let mut addr = from;
        addr.set_port(a.port);
        let ttl = self.config.seen_ttl;
        while self
            .seen
            .front()
            .is_some_and(|&(_, _, t)| now.saturating_duration_since(t) >= ttl)
        {
            self.seen.pop_front();
        }
        if self.seen.iter().any(|&(id, ad, _)| id == a.id && ad == addr) {
            self.stats.duplicate += 1;
            return;
        }
        if !self.bootstraps.take(now) {
            self.stats.rate_limited += 1;
            return;
        }
        if self.config.seen_capacity > 0 {
            while self.seen.len() >= self.config.seen_capacity {
                self.seen.pop_front();
            }
            self.seen.push_back((a.id, addr, now));
        }
        self.stats.bootstraps += 1;
        self.out.push_back(Output::Bootstrap { id: a.id, addr });
    }

    /// The node's status per family. When both families become Disconnected, a chain of
    /// re-announcements starts (bursts at +0, +10, +30 and +70 s, as OpenDHT 4.x); any other
    /// change except both Connected cancels it.
    pub fn handle_status(&mut self, now: Instant, v4: Status, v6: Status) {
        let down = v4 == Status::Disconnected && v6 == Status::Disconnected;
        if down && !self.both_down {
            self.connectivity_changed(now);
        } else if !down && (v4 != Status::Connected || v6 != Status::Connected) {
            self.reannounce = None;
            self.period = REANNOUNCE_FIRST;
        }
        self.both_down = down;
    }

    /// The network changed: re-join, query and announce now, then again after 10, 20 and 40 s.
    pub fn connectivity_changed(&mut self, now: Instant) {
        if !self.started {
            return;
        }
        self.burst(true);
        self.period = REANNOUNCE_FIRST;
        self.schedule(now);
    }

    /// When [`Discovery::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reannounce
    }

    /// A due timer: the next re-announcement burst.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.reannounce.is_none_or(|t| t > now) {
            return;
        }
        self.burst(true);
        self.schedule(now);
    }

    /// After a burst: the next one after the current period, which then doubles toward the cap;
    /// the burst that finds the period at the cap ends the chain (as OpenDHT 4.x does).
    fn schedule(&mut self, now: Instant) {
        if self.period >= REANNOUNCE_CAP {
            self.period = REANNOUNCE_FIRST;
            self.reannounce = None;
        } else {
            self.reannounce = Some(now.saturating_add(self.period));
            self.period = (self.period * 2).min(REANNOUNCE_CAP);
        }
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// What was heard and done so far.
    pub fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    /// How many (id, address) pairs are remembered (at most `seen_capacity`).
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }
}

/// An IPv4-mapped IPv6 source as the IPv4 address it is.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// A source no announcement can truly come from.
fn bad_source(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2).unwrap_or("zz"), 16).unwrap_or(0))
            .collect()
    }

    /// Captured live from OpenDHT 4.4.2 (and the last from Debian's dhtnode 2.4.12).
    const CAPTURED: [(&str, &str, u16, u32); 5] = [
        (
            "81a364687493c414d20abb748e8e86141a52c87cd4ef63c545f1b3facd107e00",
            "d20abb748e8e86141a52c87cd4ef63c545f1b3fa",
            4222,
            0,
        ),
        (
            "81a364687493c414260b317d70dfc41cc4ba854d0762f70350eabb2dcd107f00",
            "260b317d70dfc41cc4ba854d0762f70350eabb2d",
            4223,
            0,
        ),
        (
            "81a364687493c414dc18985ae6d7555fea88748e1f92feef95c03600cd9cfbce12345678",
            "dc18985ae6d7555fea88748e1f92feef95c03600",
            40187,
            0x12345678,
        ),
        (
            "81a364687493c41443dbfbeffb98e70f38c8976d0726914695a0f7accd108007",
            "43dbfbeffb98e70f38c8976d0726914695a0f7ac",
            4224,
            7,
        ),
        (
            "81a364687493c414ee3b8564fababd8306a9559f5adeb7777fdc837bcd108000",
            "ee3b8564fababd8306a9559f5adeb7777fdc837b",
            4224,
            0,
        ),
    ];

    fn id(n: u8) -> InfoHash {
        InfoHash::get([n])
    }

    fn ann(id: InfoHash, port: u16, network: u32) -> Vec<u8> {
        encode_announce(&Announce { id, port, network })
    }

    fn outputs(d: &mut Discovery) -> Vec<Output> {
        core::iter::from_fn(|| d.poll_output()).collect()
    }

    fn started(network: u32) -> Discovery {
        let mut d = Discovery::new(DiscoveryConfig::default(), id(0), network);
        d.start(Instant::ZERO, PerFamily::new(Some(4222), Some(4223)));
        let _ = outputs(&mut d);
        d
    }

    fn from4() -> SocketAddr {
        "127.0.0.1:8888"
            .parse()
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8888))
    }

    #[test]
    fn captured_announcements_decode_and_encode_to_the_same_bytes() {
        for (bytes, hash, port, network) in CAPTURED {
            let bytes = hex(bytes);
            let want = Announce {
                id: InfoHash::from_hex(hash).expect("hex id"),
                port,
                network,
            };
            assert_eq!(decode(&bytes), Ok(Message::Announce(Some(want))));
            assert_eq!(encode_announce(&want), bytes);
        }
        assert_eq!(decode(&hex("a171")), Ok(Message::Query));
        assert_eq!(encode_query(), [0xa1, 0x71]);
    }

    #[test]
    fn what_opendht_accepts_and_rejects() {
        let id20 = hex("d20abb748e8e86141a52c87cd4ef63c545f1b3fa");
        let map = |payload: &[u8]| {
            let mut v = hex("81a3646874");
            v.extend_from_slice(payload);
            v
        };
        let bin20 = |v: &mut Vec<u8>| {
            v.extend_from_slice(&[0xc4, 0x14]);
            v.extend_from_slice(&id20);
        };
        // Extra key before, extra array item: accepted.
        let mut v = hex("82a46a616d6901a364687494");
        bin20(&mut v);
        v.extend_from_slice(&hex("cd139c00a56578747261"));
        let Ok(Message::Announce(Some(a))) = decode(&v) else {
            panic!("{:?}", decode(&v))
        };
        assert_eq!(a.port, 5020);
        // Id as str, 19-byte id, a 2-item payload, port -1 and 70000: rejected.
        let mut s = vec![0x93, 0xb4];
        s.extend_from_slice(&id20);
        s.extend_from_slice(&[0x10, 0x00]);
        assert!(decode(&map(&s)).is_err());
        let mut s = vec![0x93, 0xc4, 0x13];
        s.extend_from_slice(id20.get(..19).unwrap_or_default());
        s.extend_from_slice(&[0x10, 0x00]);
        assert!(decode(&map(&s)).is_err());
        let mut s = vec![0x92];
        bin20(&mut s);
        s.push(0x10);
        assert_eq!(decode(&map(&s)), Err(DiscoveryError::ShortPayload(2)));
        for port in [&[0xffu8][..], &[0xce, 0x00, 0x01, 0x11, 0x70]] {
            let mut s = vec![0x93];
            bin20(&mut s);
            s.extend_from_slice(port);
            s.push(0x00);
            assert!(decode(&map(&s)).is_err(), "{port:?}");
        }
        // Port as fixint, port 0: decoded (the machine drops port 0).
        let mut s = vec![0x93];
        bin20(&mut s);
        s.extend_from_slice(&[0x50, 0x00]);
        assert!(matches!(
            decode(&map(&s)),
            Ok(Message::Announce(Some(Announce { port: 80, .. })))
        ));
        // A bare array: not a map.
        let mut s = vec![0x93];
        bin20(&mut s);
        s.extend_from_slice(&[0x50, 0x00]);
        assert!(decode(&s).is_err());
        // "q" then a map: a query. A map then junk: the map.
        let mut q = hex("a171");
        q.extend_from_slice(&hex(CAPTURED[0].0));
        assert_eq!(decode(&q), Ok(Message::Query));
        let mut j = hex(CAPTURED[0].0);
        j.extend_from_slice(&[0xde, 0xad]);
        assert!(matches!(decode(&j), Ok(Message::Announce(Some(_)))));
        // Another string, another service only.
        assert_eq!(decode(&hex("a172")), Err(DiscoveryError::UnknownString));
        assert_eq!(decode(&hex("81a46a616d6901")), Ok(Message::Announce(None)));
    }

    #[test]
    fn truncated_oversize_and_deep_input_is_an_error_not_a_panic() {
        let full = hex(CAPTURED[2].0);
        for n in 0..full.len() {
            assert!(decode(full.get(..n).unwrap_or_default()).is_err(), "prefix {n}");
        }
        let mut big = full.clone();
        big.resize(MAX_DATAGRAM + 1, 0);
        assert_eq!(decode(&big), Err(DiscoveryError::Oversize(MAX_DATAGRAM + 1)));
        // A map declaring 2^32-1 entries; one of 17; 1000 nested arrays under an unknown key.
        assert!(decode(&hex("dfffffffff")).is_err());
        let mut m = vec![0xde, 0x00, 0x11];
        for i in 0..17u8 {
            m.extend_from_slice(&[0xa1, b'a' + i, 0x00]);
        }
        assert_eq!(decode(&m), Err(DiscoveryError::TooManyEntries(17)));
        let mut deep = hex("81a178");
        deep.extend(core::iter::repeat_n(0x91, 1000));
        deep.push(0x00);
        assert!(decode(&deep).is_err());
    }

    #[test]
    fn start_queries_then_announces_on_each_family() {
        let mut d = Discovery::new(DiscoveryConfig::default(), id(0), 5);
        d.start(Instant::ZERO, PerFamily::new(Some(4222), Some(4300)));
        let out = outputs(&mut d);
        let want = |family, data: Vec<u8>| Output::Send {
            family,
            to: Target::Group,
            data,
        };
        assert_eq!(
            out,
            [
                want(Family::V4, QUERY.to_vec()),
                want(Family::V4, ann(id(0), 4222, 5)),
                want(Family::V6, QUERY.to_vec()),
                want(Family::V6, ann(id(0), 4300, 5)),
            ]
        );
        assert_eq!(d.poll_timeout(), None, "no periodic announcement");
        // Listen only: the query alone; publish only: the announcement alone.
        let mut l = Discovery::new(
            DiscoveryConfig {
                publish: false,
                ..DiscoveryConfig::default()
            },
            id(0),
            0,
        );
        l.start(Instant::ZERO, PerFamily::new(Some(1), None));
        assert_eq!(outputs(&mut l), [want(Family::V4, QUERY.to_vec())]);
    }

    #[test]
    fn an_announcement_bootstraps_once_to_source_ip_and_announced_port() {
        let mut d = started(0);
        let from: SocketAddr = "[fe80::1%3]:8888".parse().expect("addr");
        d.handle_datagram(Instant::ZERO, from, &ann(id(1), 4500, 0));
        let want: SocketAddr = "[fe80::1%3]:4500".parse().expect("addr");
        assert_eq!(
            outputs(&mut d),
            [Output::Bootstrap {
                id: id(1),
                addr: want
            }]
        );
        // The same again: a duplicate, nothing to do, until the TTL has passed.
        d.handle_datagram(Instant::from_secs(1), from, &ann(id(1), 4500, 0));
        assert_eq!(outputs(&mut d), []);
        assert_eq!(d.stats().duplicate, 1);
        d.handle_datagram(Instant::from_secs(61), from, &ann(id(1), 4500, 0));
        assert_eq!(outputs(&mut d).len(), 1);
        assert_eq!(d.stats().bootstraps, 2);
    }

    #[test]
    fn own_other_network_bad_sources_and_port_zero_are_ignored_and_counted() {
        let mut d = started(7);
        let t = Instant::ZERO;
        d.handle_datagram(t, from4(), &ann(id(0), 4222, 7));
        d.handle_datagram(t, from4(), &ann(id(1), 4222, 0));
        d.handle_datagram(t, from4(), &ann(id(1), 4222, 8));
        d.handle_datagram(t, from4(), &ann(id(1), 0, 7));
        d.handle_datagram(t, "0.0.0.0:8888".parse().expect("addr"), &ann(id(1), 1, 7));
        d.handle_datagram(t, "239.192.0.1:8888".parse().expect("addr"), &ann(id(1), 1, 7));
        d.handle_datagram(t, "[ff02::1]:8888".parse().expect("addr"), &ann(id(1), 1, 7));
        d.handle_datagram(t, from4(), &[0xc1]);
        d.handle_datagram(t, from4(), &vec![0x80; MAX_DATAGRAM + 1]);
        assert_eq!(outputs(&mut d), []);
        let s = d.stats();
        assert_eq!((s.own, s.other_network, s.bad_address), (1, 2, 4));
        assert_eq!((s.malformed, s.oversize, s.bootstraps), (1, 1, 0));
        assert_eq!(s.dropped(), 9);
        assert_eq!(s.received, 9);
        // Not started, or not listening: nothing either.
        let mut n = Discovery::new(DiscoveryConfig::default(), id(0), 0);
        n.handle_datagram(t, from4(), &ann(id(1), 4222, 0));
        assert_eq!(outputs(&mut n), []);
    }

    #[test]
    fn a_flood_of_forged_announcements_is_bounded_and_counted() {
        let mut d = started(0);
        let cfg = DiscoveryConfig::default();
        // 100 000 forged ids over 10 s: 10 000 per second.
        let mut bootstraps = 0u64;
        for i in 0..100_000u32 {
            let now = Instant::from_micros(u64::from(i) * 100);
            let forged = InfoHash::get(i.to_be_bytes());
            d.handle_datagram(now, from4(), &ann(forged, 4222, 0));
            bootstraps += outputs(&mut d).len() as u64;
        }
        let allowed = u64::from(cfg.bootstrap_burst) + 10_000_000 / cfg.bootstrap_period.as_micros() as u64;
        assert!(bootstraps <= allowed, "{bootstraps} > {allowed}");
        assert!(
            bootstraps >= allowed - 1,
            "the limit lets the allowed rate through: {bootstraps}"
        );
        let s = d.stats();
        assert_eq!(s.bootstraps, bootstraps);
        assert_eq!(s.rate_limited, 100_000 - bootstraps);
        assert!(d.seen_len() <= cfg.seen_capacity);
    }

    #[test]
    fn queries_are_answered_by_unicast_within_a_rate_limit() {
        let mut d = started(0);
        let from: SocketAddr = "127.0.0.1:8888".parse().expect("addr");
        d.handle_datagram(Instant::ZERO, from, &QUERY);
        assert_eq!(
            outputs(&mut d),
            [Output::Send {
                family: Family::V4,
                to: Target::Unicast(from),
                data: ann(id(0), 4222, 0),
            }]
        );
        let from6: SocketAddr = "[::1]:8888".parse().expect("addr");
        d.handle_datagram(Instant::ZERO, from6, &QUERY);
        assert!(matches!(
            outputs(&mut d).as_slice(),
            [Output::Send {
                family: Family::V6,
                ..
            }]
        ));
        for _ in 0..1000 {
            d.handle_datagram(Instant::ZERO, from, &QUERY);
        }
        let s = d.stats();
        assert_eq!(s.replies, u64::from(DiscoveryConfig::default().reply_burst));
        assert_eq!(s.replies_dropped, 1002 - s.replies);
    }

    #[test]
    fn reannounces_after_connectivity_loss_at_0_10_30_70_s() {
        use Status::*;
        let mut d = started(0);
        d.handle_status(Instant::ZERO, Connecting, Disconnected);
        d.handle_status(Instant::from_secs(1), Connected, Connected);
        assert_eq!(outputs(&mut d), []);
        let mut bursts = Vec::new();
        d.handle_status(Instant::from_secs(5), Disconnected, Disconnected);
        let mut now = Instant::from_secs(5);
        for _ in 0..1000 {
            let out = outputs(&mut d);
            if out.contains(&Output::Rejoin(Family::V4)) {
                bursts.push(now.as_micros() / 1_000_000 - 5);
            }
            match d.poll_timeout() {
                Some(t) => {
                    now = t;
                    d.handle_timeout(now);
                }
                None => break,
            }
        }
        assert_eq!(bursts, [0, 10, 30, 70]);
        // Connecting cancels a chain.
        d.handle_status(Instant::from_secs(200), Connecting, Connecting);
        d.handle_status(Instant::from_secs(201), Disconnected, Disconnected);
        assert!(d.poll_timeout().is_some());
        d.handle_status(Instant::from_secs(202), Connecting, Disconnected);
        assert_eq!(d.poll_timeout(), None);
    }
}
