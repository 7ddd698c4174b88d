//! Building blocks of the resilience scenarios, shared by `tests/tests/resilience.rs` (which
//! asserts on them) and `examples/resilience.rs` (which prints them): a settled network at a
//! fixed latency, keys put, batches of gets timed in round trips, many values on one key.
//!
//! ```
//! use std::time::Duration;
//! use dht_sim::scenario::{self, Latency};
//!
//! let mut sim = scenario::settled(3, 60, scenario::fixed_latency(Duration::from_millis(50), None))
//!     .expect("bootstrap");
//! let keys = scenario::put_small_values(&mut sim, 5).expect("puts");
//! let Latency { p50, p99, failed, .. } = scenario::get_latency(&mut sim, &keys, 20);
//! assert_eq!(failed, 0);
//! assert!(p50 <= p99);
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};

use crate::net::{LinkLatency, NetConfig};
use crate::{Op, Sim, SimConfig};

/// Gets run this many at a time by [`get_latency`].
pub const GETS_AT_ONCE: usize = 20;

/// A network with `one_way` latency on every link and, when given, an uplink of that many bytes
/// per second at every node.
pub fn fixed_latency(one_way: Duration, bandwidth: Option<u64>) -> NetConfig {
    NetConfig {
        latency: LinkLatency::Fixed(one_way),
        bandwidth,
        ..NetConfig::default()
    }
}

/// `nodes` nodes of seed `seed` on `net`, bootstrapped (within 600 virtual seconds) and left to
/// settle for 60 more; `None` when they did not all connect.
pub fn settled(seed: u64, nodes: usize, net: NetConfig) -> Option<Sim> {
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes,
        net,
        keep_events: false,
        ..SimConfig::default()
    });
    if !sim.bootstrap_all(Duration::from_secs(600)) {
        return None;
    }
    sim.run_for(Duration::from_secs(60));
    Some(sim)
}

/// Puts a small value on each of `n` keys (`"resilience key {i}"`), each from a random live node;
/// the keys, or `None` when a put did not end within 120 virtual seconds.
pub fn put_small_values(sim: &mut Sim, n: usize) -> Option<Vec<InfoHash>> {
    let mut keys = Vec::with_capacity(n);
    let mut ops = Vec::with_capacity(n);
    for i in 0..n {
        let key = InfoHash::get(format!("resilience key {i}"));
        let from = sim.random_up();
        ops.push(sim.put(
            from,
            key,
            Value::new(0, format!("value {i}").into_bytes()),
            PutOptions::default(),
        ));
        keys.push(key);
    }
    sim.run_until_done(&ops, Duration::from_secs(120)).then_some(keys)
}

/// What [`get_latency`] measured.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Get-done time of every get that ended, in round trips.
    pub rtts: Vec<f64>,
    /// The median of `rtts`.
    pub p50: f64,
    /// The 99th percentile of `rtts`.
    pub p99: f64,
    /// Gets that did not end `ok` with a value (or did not end).
    pub failed: usize,
    /// Gets run.
    pub total: usize,
}

/// `gets` gets of `keys` (in turn), [`GETS_AT_ONCE`] at a time from random live nodes, each
/// batch given 120 virtual seconds.
pub fn get_latency(sim: &mut Sim, keys: &[InfoHash], gets: usize) -> Latency {
    let rtt = sim.config().net.mean_rtt().as_secs_f64();
    let mut out = Latency {
        total: gets,
        ..Latency::default()
    };
    if keys.is_empty() {
        out.failed = gets;
        return out;
    }
    let mut started = 0;
    while started < gets {
        let batch: Vec<Op> = (started..gets.min(started + GETS_AT_ONCE))
            .map(|i| {
                let key = keys.get(i % keys.len()).copied().unwrap_or_default();
                let at = sim.random_up();
                sim.get(at, key)
            })
            .collect();
        started += batch.len();
        sim.run_until_done(&batch, Duration::from_secs(120));
        for o in batch {
            match sim.op(o) {
                Some(r) if r.ok && !r.found.is_empty() => {
                    if let Some(d) = r.done {
                        out.rtts.push((d - r.start).as_secs_f64() / rtt);
                    }
                }
                _ => out.failed += 1,
            }
        }
    }
    out.p50 = quantile(&out.rtts, 0.5);
    out.p99 = quantile(&out.rtts, 0.99);
    out
}

/// Puts `count` values of `size` bytes (at least 8; numbered in their first 8 bytes, ids 1 to
/// `count`) on `key`, from random live nodes, 50 at a time; whether every put ended `ok`.
pub fn put_many_values(sim: &mut Sim, key: InfoHash, count: u64, size: usize) -> bool {
    let mut puts: Vec<Op> = Vec::new();
    for i in 0..count {
        let from = sim.random_up();
        let mut data = vec![0u8; size.max(8)];
        data.splice(..8, i.to_be_bytes());
        puts.push(sim.put(from, key, Value::new(i + 1, data), PutOptions::default()));
        if puts.len().is_multiple_of(50) && !sim.run_until_done(&puts, Duration::from_secs(120)) {
            return false;
        }
    }
    sim.run_until_done(&puts, Duration::from_secs(120))
        && puts.iter().all(|p| sim.op(*p).is_some_and(|r| r.ok))
}

/// `n` distinct live hosts, drawn at random.
pub fn distinct_hosts(sim: &mut Sim, n: usize) -> Vec<usize> {
    let mut seen = BTreeSet::new();
    while seen.len() < n.min(sim.up_count()) {
        seen.insert(sim.random_up());
    }
    seen.into_iter().collect()
}

/// The `p` quantile (0 to 1, nearest rank) of `v`; NaN when `v` is empty.
pub fn quantile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let last = v.len().saturating_sub(1);
    let i = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    v.get(i.min(last)).copied().unwrap_or(f64::NAN)
}
