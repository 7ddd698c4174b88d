//! `swarm`: builds a large simulated network, puts and gets, and prints the report.
//!
//! ```text
//! cargo run --release -p dht-sim --bin swarm -- --nodes 10000 --puts 10000 --gets 10000
//! ```

use std::time::{Duration, Instant as WallInstant};

use clap::Parser;
use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_sim::net::{LinkLatency, Loss, NetConfig};
use dht_sim::{Op, Sim, SimConfig};

/// Simulate a DHT swarm and report lookup latency, success, traffic and cost.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Nodes.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Puts (distinct keys, from random nodes).
    #[arg(long, default_value_t = 10_000)]
    puts: usize,
    /// Gets (of the put keys, from random other nodes).
    #[arg(long, default_value_t = 10_000)]
    gets: usize,
    /// Master seed (`DHT_SIM_SEED` overrides it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One-way latency in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Random loss rate, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Virtual seconds to let the network settle after bootstrap.
    #[arg(long, default_value_t = 60)]
    settle: u64,
}

/// Peak resident memory of this process, from `/proc/self/status` (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args = Args::parse();
    let seed = dht_sim::seeds(&[args.seed]).first().copied().unwrap_or(args.seed);
    let net = NetConfig {
        latency: LinkLatency::Fixed(Duration::from_millis(args.latency_ms)),
        loss: if args.loss > 0.0 {
            Loss::Random(args.loss)
        } else {
            Loss::None
        },
        ..NetConfig::default()
    };
    let wall = WallInstant::now();
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes: args.nodes,
        net,
        keep_events: false,
        ..SimConfig::default()
    });
    let connected = sim.bootstrap_all(Duration::from_secs(600));
    let boot_wall = wall.elapsed();
    println!(
        "bootstrap of {} nodes: all connected {} at virtual {:.1} s, wall {:.1} s",
        args.nodes,
        connected,
        sim.now.as_micros() as f64 / 1e6,
        boot_wall.as_secs_f64()
    );
    sim.run_for(Duration::from_secs(args.settle));
    let mark = sim.mark();
    let mut puts: Vec<(InfoHash, Op)> = Vec::with_capacity(args.puts);
    for i in 0..args.puts {
        let from = sim.random_up();
        let key = InfoHash::get(format!("swarm key {i}"));
        puts.push((
            key,
            sim.put(
                from,
                key,
                Value::new(0, format!("value {i}").into_bytes()),
                PutOptions::default(),
            ),
        ));
        // Start them over a virtual second per thousand, as independent users would.
        if i % 1000 == 999 {
            sim.run_for(Duration::from_secs(1));
        }
    }
    let put_ops: Vec<Op> = puts.iter().map(|p| p.1).collect();
    let puts_done = sim.run_until_done(&put_ops, Duration::from_secs(600));
    let mut gets = Vec::with_capacity(args.gets);
    for i in 0..args.gets {
        let Some((key, put)) = puts.get(i % puts.len().max(1)) else {
            break;
        };
        let mut at = sim.random_up();
        while at == put.0 && args.nodes > 1 {
            at = sim.random_up();
        }
        gets.push(sim.get(at, *key));
        if i % 1000 == 999 {
            sim.run_for(Duration::from_secs(1));
        }
    }
    let gets_done = sim.run_until_done(&gets, Duration::from_secs(600));
    let report = sim.report(&mark);
    println!("puts all done: {puts_done}; gets all done: {gets_done}");
    println!("{report}");
    let total = wall.elapsed();
    println!(
        "wall: {:.1} s in all ({:.1} s bootstrap); {:.0} simulated events per second overall; {} events",
        total.as_secs_f64(),
        boot_wall.as_secs_f64(),
        sim.processed() as f64 / total.as_secs_f64(),
        sim.processed()
    );
    if let Some(kib) = peak_rss_kib() {
        println!(
            "peak RSS: {:.1} MiB ({:.1} KiB per node, simulator included)",
            kib as f64 / 1024.0,
            kib as f64 / args.nodes as f64
        );
    }
}
