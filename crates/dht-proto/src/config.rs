//! Node configuration. Every table the node keeps has its bound here; defaults are OpenDHT's
//! constants (`opendht-wire.md` §15) where OpenDHT has one, and a stated choice of ours where it
//! has none.

use alloc::borrow::Cow;
use core::time::Duration;

use crate::InfoHash;
use crate::value::ValueType;
use crate::wire::NetworkId;
use crate::wire::fragment::ReassemblyLimits;

/// How a [`Node`](crate::Node) behaves and how much it may hold.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Our node id; `None` draws one from the seed.
    pub node_id: Option<InfoHash>,
    /// Network id (`n`); nodes ignore every message of another network. 0 is the public network.
    pub network: NetworkId,
    /// Client mode (`s`): peers do not put us in their routing tables.
    pub is_client: bool,
    /// Bootstrap mode: split buckets far from our id down to depth 6, as OpenDHT's bootstrap nodes do.
    pub bootstrap_mode: bool,
    /// The driver has a socket of each family. Maintenance then asks peers for nodes of both
    /// families (OpenDHT's `want` when it has both sockets), so a node reached over one family
    /// learns its peers' addresses in the other. Drivers set it from the sockets they bound;
    /// default: true.
    pub dual_stack: bool,
    /// Listens are re-sent every 4 min 50 s instead of every 20 s (OpenDHT's `public_stable`), and an
    /// expired search does not reset the family's connectivity.
    pub public_stable: bool,
    /// Value types the node knows (others are stored with type 0's rules). The defaults are
    /// borrowed, not copied into every node; `types.to_mut()` gives a list to change.
    pub types: Cow<'static, [ValueType]>,

    /// Incoming requests per second from all peers (`max_req_per_sec`); `None`: no limit.
    pub max_req_per_sec: Option<u32>,
    /// Incoming requests per second from one IPv4 address or IPv6 /64; `None`: no limit.
    pub max_peer_req_per_sec: Option<u32>,
    /// Addresses the per-IP rate limiter tracks at once; past this, unknown addresses share the
    /// global limit only.
    pub max_rate_limited_ips: usize,
    /// Blacklisted socket addresses kept (oldest forgotten first).
    pub max_blacklist: usize,

    /// Requests awaiting a reply at once; further requests wait for room.
    pub max_pending_requests: usize,
    /// Datagrams queued for the driver; past this, new datagrams are dropped and counted.
    pub max_transmit_queue: usize,
    /// Events queued for the driver; past this, new events are dropped and counted.
    pub max_event_queue: usize,
    /// Fragment reassembly bounds.
    pub reassembly: ReassemblyLimits,

    /// Searches at once (`MAX_SEARCHES`).
    pub max_searches: usize,
    /// Values a single get delivers at most.
    pub max_values_per_get: usize,
    /// Values one listened node's cache holds (OpenDHT's `ValueCache` bound).
    pub max_listen_cache: usize,

    /// Keys stored (`max_store_keys`).
    pub max_store_keys: usize,
    /// Values per key (`Storage::MAX_VALUES`).
    pub max_values_per_key: usize,
    /// Bytes of other nodes' values stored in all (`max_store_size`).
    pub max_store_size: usize,
    /// Bytes of other nodes' values stored from one IPv4 address or IPv6 /64. OpenDHT has only the
    /// total; this cap keeps one address from taking all of it.
    pub max_store_size_per_ip: usize,
    /// Bytes of our own values stored locally; `None`: no limit (OpenDHT's default).
    pub max_local_store_size: Option<usize>,
    /// Remote listeners per key.
    pub max_listeners_per_key: usize,
    /// Remote listeners in all.
    pub max_listeners: usize,
    /// Bytes of values in one get reply; further values are left out.
    pub max_reply_values_bytes: usize,
    /// The uplink's rate in bytes per second, when known. With it, the value data of get
    /// replies is paced to this rate, round robin between replies, behind every other
    /// datagram: a large answer on a slow uplink then arrives slowly instead of queueing
    /// unseen, the header and first fragments of every reply go out at once (so askers see the
    /// node alive), and a retransmitted get whose reply is still queued is not answered twice.
    /// `None` (the default): value data is queued at once, as OpenDHT does.
    pub uplink_bytes_per_sec: Option<u64>,
    /// Our identity, for signed and encrypted puts. With one, values encrypted to us are opened
    /// before they are delivered, and encrypted values we cannot open are dropped (counted in
    /// `Stats::unreadable`); without one, encrypted values are delivered as they are.
    pub identity: Option<crate::crypto::Identity>,

    /// Re-announce stored values when the set of closest nodes changes (our departure from
    /// OpenDHT's default, so values survive churn). See `docs/architecture.md`.
    pub replicate: bool,
    /// How often stored keys are checked for re-replication.
    pub replicate_period: Duration,
    /// Bootstrap addresses remembered.
    pub max_bootstrap: usize,

    /// Sybil limit: nodes of one IPv4 /24 or IPv6 /64 in one routing-table bucket; `None`: no
    /// limit. Loopback addresses are never limited (a test network on one machine); a network
    /// of many nodes on one private LAN should turn it off.
    pub max_bucket_nodes_per_subnet: Option<usize>,
    /// Sybil limit: nodes of one subnet among a search's nodes, so among the storers of a put
    /// and the nodes a get asks; also among the closest nodes a storer counts before it takes
    /// a put or re-replicates. `None`: no limit.
    pub max_search_nodes_per_subnet: Option<usize>,

    /// Anti-amplification (on by default, `Some(2)`): to an address that has not proven a
    /// round trip (answered a request of ours, sent a token of ours, or is in our routing table
    /// with a reply to us), the node sends at most this many times the bytes it received from
    /// it. Node lists that do not fit are trimmed, farthest first; value data wait (up to 3 s)
    /// for the address to answer a ping, then go out (paced, with
    /// [`Config::uplink_bytes_per_sec`]), or are given up. With it on, the node also pads its
    /// own find and get requests (an extra key OpenDHT ignores) so that a node applying a 2x
    /// bound can answer them with a whole list of 8 nodes. `None`: no limit and no padding
    /// (OpenDHT's behaviour: a 71-byte get can make it send 65 KB to a forged address).
    pub amplification_factor: Option<u32>,
    /// Unproven addresses tracked at once (their byte credit and held datagrams); the longest
    /// idle is forgotten first.
    pub max_unproven_addresses: usize,
    /// Bytes held for unproven addresses in all.
    pub max_held_bytes: usize,
    /// Bytes held for one unproven address.
    pub max_held_bytes_per_address: usize,
    /// Proven addresses remembered (beyond the routing table's good nodes).
    pub max_proven_addresses: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: None,
            network: 0,
            is_client: false,
            bootstrap_mode: false,
            dual_stack: true,
            public_stable: false,
            types: Cow::Borrowed(ValueType::defaults()),
            max_req_per_sec: Some(8192),
            max_peer_req_per_sec: Some(1024),
            max_rate_limited_ips: 65_536,
            max_blacklist: 1024,
            max_pending_requests: 65_536,
            max_transmit_queue: 65_536,
            max_event_queue: 65_536,
            reassembly: ReassemblyLimits::default(),
            max_searches: 1 << 20,
            max_values_per_get: 65_536,
            max_listen_cache: 4096,
            max_store_keys: 1 << 30,
            max_values_per_key: 65_536,
            max_store_size: 64 << 20,
            max_store_size_per_ip: 16 << 20,
            max_local_store_size: None,
            max_listeners_per_key: 1024,
            max_listeners: 65_536,
            max_reply_values_bytes: 4 << 20,
            uplink_bytes_per_sec: None,
            identity: None,
            replicate: true,
            replicate_period: Duration::from_secs(60),
            max_bootstrap: 64,
            max_bucket_nodes_per_subnet: Some(2),
            max_search_nodes_per_subnet: Some(3),
            amplification_factor: Some(2),
            max_unproven_addresses: 4096,
            max_held_bytes: 8 << 20,
            max_held_bytes_per_address: 512 << 10,
            max_proven_addresses: 16_384,
        }
    }
}

impl Config {
    /// The type with id `id`, or type 0's rules for an unknown id.
    pub fn value_type(&self, id: u16) -> &ValueType {
        self.types
            .iter()
            .find(|t| t.id == id)
            .unwrap_or(ValueType::default_for(id))
    }
}
