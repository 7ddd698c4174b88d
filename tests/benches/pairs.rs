//! The loopback benchmark's throughput workload without sockets: the CPU our protocol code
//! spends per put+get pair, with the kernel's share (about half on loopback) and the
//! scheduling noise of a shared machine left out.
//!
//! 100 dual-stack `dht-proto` nodes in the simulator (`dht-sim`, 1 ms a hop, nothing lost, no
//! request rate limits), bootstrapped over IPv4 as in the loopback benchmark; pairs run one
//! after another: a put on a random node, then a get of its key on another. Only the time spent
//! inside the nodes' calls (`handle_datagram`, `handle_timeout`, commands, `poll_transmit`,
//! `poll_event`) is counted ([`Sim::set_node_timing`]). `cargo bench -p dht-tests --bench pairs`
//! (env: `PAIRS`, default 3000, measured after `WARMUP` pairs, default 3000). Prints µs per
//! pair, datagrams per pair and µs per datagram.

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{Config, InfoHash, MessageKind, PutOptions};
use dht_sim::net::{LinkLatency, NetConfig};
use dht_sim::{Sim, SimConfig, Stack};

const N: usize = 100;
const HOP: Duration = Duration::from_millis(1);
/// The longest a put or a get may take before the next one starts anyway.
const OP_LIMIT: Duration = Duration::from_secs(60);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Datagrams of each message kind all nodes have sent so far, in `MessageKind::ALL` order.
fn kinds(sim: &Sim) -> Vec<u64> {
    MessageKind::ALL
        .into_iter()
        .map(|k| sim.nodes().map(|(_, n)| n.stats().sent[k]).sum())
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pairs = env("PAIRS", 3000);
    // Unmeasured pairs first: a new node's searches explore as OpenDHT's do until its own
    // searches show that this no longer pays (`search::Speculation`); the loopback benchmark's
    // latency phases come before its throughput phase the same way.
    let warmup = env("WARMUP", 3000);

    let mut node = Config::default();
    node.max_req_per_sec = None;
    node.max_peer_req_per_sec = None;
    let mut sim = Sim::new(SimConfig {
        seed: 7,
        nodes: N,
        stack: Stack::Dual,
        net: NetConfig {
            latency: LinkLatency::Fixed(HOP),
            ..NetConfig::default()
        },
        node,
        keep_events: false,
        threads: 1,
    });
    sim.set_node_timing(true);
    for i in 1..N {
        // Over IPv4 only, as the loopback benchmark (both sides) bootstraps.
        sim.with(i, |n, now| n.bootstrap(now, Sim::addr4(0)));
    }
    sim.run_for(Duration::from_secs(10));

    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut pick = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % N as u64) as usize
    };
    let mut k0 = kinds(&sim);
    let (mut busy0, mut delivered0) = (sim.node_time(), sim.delivered());
    for s in 0..warmup + pairs {
        if s == warmup {
            k0 = kinds(&sim);
            (busy0, delivered0) = (sim.node_time(), sim.delivered());
        }
        let key = InfoHash::get(format!("pair {s}"));
        let (a, b) = (pick(), pick());
        let put = sim.put(a, key, Value::new(0, b"p".to_vec()), PutOptions::default());
        sim.run_until_done(&[put], OP_LIMIT);
        let get = sim.get(b, key);
        sim.run_until_done(&[get], OP_LIMIT);
    }
    let busy = sim.node_time() - busy0;
    let k1 = kinds(&sim);
    let names = [
        "ping", "find", "get", "put", "listen", "refresh", "update", "reply", "error", "data",
    ];
    let per: Vec<String> = (0..MessageKind::ALL.len())
        .filter(|&k| k1[k] > k0[k])
        .map(|k| format!("{} {:.1}", names[k], (k1[k] - k0[k]) as f64 / pairs as f64))
        .collect();
    println!("sent per pair: {}", per.join(", "));
    let dgrams = sim.delivered() - delivered0;
    println!(
        "{pairs} pairs: {:.1} µs of node CPU per pair, {:.1} datagrams per pair, {:.2} µs per datagram",
        busy.as_secs_f64() * 1e6 / pairs as f64,
        dgrams as f64 / pairs as f64,
        busy.as_secs_f64() * 1e6 / dgrams.max(1) as f64
    );
}
