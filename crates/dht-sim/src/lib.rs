//! # dht-sim
//!
//! A deterministic simulator for networks of [`dht_proto::Node`]s: a discrete-event loop on a
//! virtual clock, a seeded network model (latency and jitter, random and bursty loss,
//! duplication, reordering, partitions, bandwidth), crashes, restarts and churn, and a report of
//! what the run measured. Every run is a function of its master seed: each node's seed and the
//! network's randomness are separate streams derived from it, and a rolling hash of every
//! delivery ([`Sim::trace`]) shows that two runs were the same.
//!
//! ```
//! use std::time::Duration;
//! use dht_proto::{InfoHash, PutOptions, value::Value};
//! use dht_sim::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig { nodes: 50, seed: 7, ..SimConfig::default() });
//! assert!(sim.bootstrap_all(Duration::from_secs(60)));
//! let key = InfoHash::get("hello");
//! let put = sim.put(3, key, Value::new(0, b"world".to_vec()), PutOptions::default());
//! assert!(sim.run_until_done(&[put], Duration::from_secs(30)));
//! let vid = sim.op(put).unwrap().vid.unwrap();
//! let get = sim.get(41, key);
//! assert!(sim.run_until_done(&[get], Duration::from_secs(30)));
//! assert!(sim.found(get, vid));
//! ```
//!
//! Scenarios that fail print `DHT_SIM_SEED=<n>`; [`seeds`] reads that variable, so running the
//! test again with it set replays exactly the failing run. See `docs/simulation.md`.

pub mod compare;
pub mod html;
pub mod net;
mod op;
pub mod progress;
mod report;
pub mod scenario;
mod sim;
pub mod summary;

pub use op::{Op, OpKind, OpRecord};
pub use report::{Mark, Percentiles, Report};
pub use sim::{
    Annotation, Host, HostTraffic, Misbehaviour, Observer, ObserverFactory, Phase, Progress, Sim, SimConfig,
    Stack, observe_new_sims, trace_step,
};

/// The seeds a scenario runs: `DHT_SIM_SEED` when set (to replay one run), else `fixed`.
pub fn seeds(fixed: &[u64]) -> Vec<u64> {
    match std::env::var("DHT_SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(s) => vec![s],
        None => fixed.to_vec(),
    }
}

/// Runs `scenario` once per seed of [`seeds`]; when one fails, prints the line that replays it
/// (`DHT_SIM_SEED=<n>`) and fails with its panic. On a terminal, a scenario that takes more
/// than two seconds shows its progress ([`progress`]).
pub fn run_seeds(name: &str, fixed: &[u64], scenario: impl Fn(u64)) {
    for seed in seeds(fixed) {
        let name_owned = name.to_string();
        observe_new_sims(Some(std::rc::Rc::new(move |_: &SimConfig| {
            progress::scenario_observer(&name_owned, seed)
        })));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed)));
        observe_new_sims(None);
        if let Err(e) = result {
            eprintln!("scenario {name} failed; replay it with DHT_SIM_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}
