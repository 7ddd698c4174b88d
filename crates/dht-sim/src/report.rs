//! What a run measured: operation latencies (in virtual time and in round trips), success rates,
//! listen delivery, traffic per operation and memory per node.

use std::fmt;
use std::time::Duration;

use dht_proto::{InfoHash, Instant};

use crate::op::{OpKind, OpRecord};

/// Where a report starts: see [`Sim::mark`](crate::Sim::mark).
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// Virtual time.
    pub at: Instant,
    /// Jobs run before.
    pub processed: u64,
    /// Datagrams and bytes offered before.
    pub traffic: (u64, u64),
    /// Wall clock (the simulator's own cost; the nodes never see it).
    pub wall: std::time::Instant,
}

/// The state of a run at the end of a report, as the simulator gives it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct End {
    /// The master seed.
    pub seed: u64,
    /// Live nodes.
    pub nodes: usize,
    /// Mean round-trip time of the network model.
    pub rtt: Duration,
    /// Estimated heap bytes per live node.
    pub memory_per_node: usize,
    /// The trace hash.
    pub trace: InfoHash,
    /// Jobs run so far.
    pub processed: u64,
    /// Datagrams and bytes offered so far.
    pub traffic: (u64, u64),
}

/// Percentiles of a set of durations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Percentiles {
    /// Of `samples` (any order).
    pub fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| -> Duration {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples.get(i).copied().unwrap_or_default()
        };
        Percentiles {
            count: samples.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// In round trips of `rtt`.
    pub fn in_rtts(&self, rtt: Duration) -> (f64, f64, f64) {
        let r = rtt.as_secs_f64().max(1e-9);
        (
            self.p50.as_secs_f64() / r,
            self.p90.as_secs_f64() / r,
            self.p99.as_secs_f64() / r,
        )
    }
}

/// The report of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The master seed.
    pub seed: u64,
    /// Live nodes at the end.
    pub nodes: usize,
    /// Gets started / that found at least one value.
    pub gets: (usize, usize),
    /// Puts started / acknowledged by at least one node.
    pub puts: (usize, usize),
    /// Time to a get's first value.
    pub get_first_value: Percentiles,
    /// Time to a get's end.
    pub get_done: Percentiles,
    /// Time to a put's end.
    pub put_done: Percentiles,
    /// Mean round-trip time of the network model.
    pub rtt: Duration,
    /// Datagrams and bytes offered to the network per get or put.
    pub messages_per_op: f64,
    /// Bytes per get or put.
    pub bytes_per_op: f64,
    /// Listens, and values they were told of in all.
    pub listens: (usize, usize),
    /// Estimated heap bytes per live node.
    pub memory_per_node: usize,
    /// Jobs (deliveries and timers) run per wall second.
    pub events_per_sec: f64,
    /// Wall time of the measured part.
    pub wall: Duration,
    /// The trace hash at the end.
    pub trace: InfoHash,
}

impl Report {
    /// The report of the operations of `ops` started after `mark`, the run being at `end`.
    pub(crate) fn build<'a>(end: End, ops: impl Iterator<Item = &'a OpRecord>, mark: &Mark) -> Report {
        let since: Instant = mark.at;
        let wall = mark.wall.elapsed();
        let mut r = Report {
            seed: end.seed,
            nodes: end.nodes,
            rtt: end.rtt,
            memory_per_node: end.memory_per_node,
            trace: end.trace,
            wall,
            events_per_sec: (end.processed - mark.processed) as f64 / wall.as_secs_f64().max(1e-9),
            ..Report::default()
        };
        let (mut first, mut gdone, mut pdone) = (Vec::new(), Vec::new(), Vec::new());
        for o in ops.filter(|o| o.start >= since) {
            match o.kind {
                OpKind::Get => {
                    r.gets.0 += 1;
                    if !o.found.is_empty() {
                        r.gets.1 += 1;
                    }
                    if let Some(t) = o.first_value {
                        first.push(t - o.start);
                    }
                    if let Some(t) = o.done {
                        gdone.push(t - o.start);
                    }
                }
                OpKind::Put => {
                    r.puts.0 += 1;
                    if o.outcome.is_some_and(|x| x.total_acked() > 0) {
                        r.puts.1 += 1;
                    }
                    if let Some(t) = o.done {
                        pdone.push(t - o.start);
                    }
                }
                OpKind::Listen => {
                    r.listens.0 += 1;
                    r.listens.1 += o.found.len();
                }
            }
        }
        r.get_first_value = Percentiles::of(first);
        r.get_done = Percentiles::of(gdone);
        r.put_done = Percentiles::of(pdone);
        let ops = (r.gets.0 + r.puts.0).max(1) as f64;
        let (msgs, bytes) = end.traffic;
        r.messages_per_op = (msgs - mark.traffic.0) as f64 / ops;
        r.bytes_per_op = (bytes - mark.traffic.1) as f64 / ops;
        r
    }

    /// Share of gets that found a value.
    pub fn get_success(&self) -> f64 {
        self.gets.1 as f64 / self.gets.0.max(1) as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (f50, f90, f99) = self.get_first_value.in_rtts(self.rtt);
        writeln!(
            f,
            "seed {} (DHT_SIM_SEED={}), {} live nodes, trace {}",
            self.seed, self.seed, self.nodes, self.trace
        )?;
        writeln!(
            f,
            "gets: {}/{} found ({:.3} %); puts: {}/{} acknowledged",
            self.gets.1,
            self.gets.0,
            100.0 * self.get_success(),
            self.puts.1,
            self.puts.0
        )?;
        writeln!(
            f,
            "get first value: p50 {:.1} ms ({f50:.2} RTT), p90 {:.1} ms ({f90:.2} RTT), p99 {:.1} ms ({f99:.2} RTT), max {:.1} ms",
            ms(self.get_first_value.p50),
            ms(self.get_first_value.p90),
            ms(self.get_first_value.p99),
            ms(self.get_first_value.max)
        )?;
        writeln!(
            f,
            "get done: p50 {:.1} ms, p99 {:.1} ms; put done: p50 {:.1} ms, p99 {:.1} ms (RTT {:.0} ms)",
            ms(self.get_done.p50),
            ms(self.get_done.p99),
            ms(self.put_done.p50),
            ms(self.put_done.p99),
            ms(self.rtt)
        )?;
        writeln!(
            f,
            "traffic: {:.1} datagrams and {:.0} bytes per operation (all traffic, maintenance included)",
            self.messages_per_op, self.bytes_per_op
        )?;
        if self.listens.0 > 0 {
            writeln!(
                f,
                "listens: {}, values delivered to them: {}",
                self.listens.0, self.listens.1
            )?;
        }
        write!(
            f,
            "memory: ~{:.1} KiB per node (estimate); {:.0} simulated events per wall second over {:.1} s",
            self.memory_per_node as f64 / 1024.0,
            self.events_per_sec,
            self.wall.as_secs_f64()
        )
    }
}
