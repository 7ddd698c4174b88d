//! A run's figures in a form to keep, compare and plot: [`RunSummary`], written as JSON by
//! `swarm --json` (schema in `docs/simulation.md`, versioned by [`SCHEMA_VERSION`]).
//!
//! Everything here is a summary of bounded size, whatever the run's: latency quantiles on a
//! fixed grid, per-node distributions as percentiles and a histogram of a fixed number of bins,
//! the few hottest nodes, a timeline of at most [`MAX_BINS`] bins. A million-node run makes a
//! file of the same size as a hundred-node one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dht_proto::{Family, Instant};
use serde::{Deserialize, Serialize};

use crate::net::{LinkLatency, Loss};
use crate::op::{OpKind, OpRecord};
use crate::sim::{Sim, Stack};

/// The version of the JSON schema this crate writes and reads. A change that renames, removes
/// or changes the meaning of a field increments it; files of another version are refused.
pub const SCHEMA_VERSION: u32 = 1;

/// Bins of the timeline at most.
pub const MAX_BINS: usize = 120;

/// Hop counts above this are counted in the last bin.
pub const MAX_HOPS: usize = 32;

/// Bins of a per-node histogram.
pub const NODE_BINS: usize = 40;

/// The hottest nodes named per distribution.
pub const HOTTEST: usize = 5;

/// The quantiles at which latency CDFs are kept: every 1 % then the tail.
fn cdf_grid() -> Vec<f64> {
    let mut g: Vec<f64> = (1..=99).map(|i| f64::from(i) / 100.0).collect();
    g.extend([0.995, 0.999, 0.9999, 1.0]);
    g
}

/// What one run measured, as `swarm --json` writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The program that wrote it and its version.
    pub generator: String,
    /// How the run was set up.
    pub config: RunConfig,
    /// The master seed (`DHT_SIM_SEED` replays the run).
    pub seed: u64,
    /// The trace hash at the end (equal runs, equal hashes).
    pub trace: String,
    /// False when the run stopped short (bootstrap incomplete, operations still running at the
    /// limit); `notes` says why.
    pub complete: bool,
    /// What went wrong or is worth knowing, in words.
    pub notes: Vec<String>,
    /// Hosts up at the end.
    pub nodes_up: usize,
    /// Virtual seconds the run lasted.
    pub virtual_secs: f64,
    /// Wall seconds the run took.
    pub wall_secs: f64,
    /// Jobs (deliveries and timers) run.
    pub events: u64,
    /// Jobs per wall second.
    pub events_per_sec: f64,
    /// Mean round-trip time of the network model, in milliseconds.
    pub rtt_ms: f64,
    /// Memory.
    pub memory: Memory,
    /// The run's phases, in order, with their operations' figures.
    pub phases: Vec<PhaseSummary>,
    /// Load per node at the end.
    pub per_node: PerNode,
    /// Success and latency over virtual time, with the marks of faults.
    pub timeline: Timeline,
}

/// How a run was set up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Hosts at the start.
    pub nodes: usize,
    /// Address families: `v4`, `v6` or `dual`.
    pub stack: String,
    /// Mean one-way link latency at the start, in milliseconds.
    pub latency_ms: f64,
    /// Jitter at the start, in milliseconds.
    pub jitter_ms: f64,
    /// Mean loss rate at the start (0 to 1).
    pub loss: f64,
    /// The program's options as given (for `swarm`, every command-line option).
    pub args: BTreeMap<String, String>,
}

/// Memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Estimated heap bytes per live node (routing tables, stored values, searches).
    pub per_node_bytes: u64,
    /// The process's peak resident set, in KiB, simulator included (Linux; else null).
    pub peak_rss_kib: Option<u64>,
}

/// Started and successful operations of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Started.
    pub started: u64,
    /// Gets that found a value; puts acknowledged by at least one node.
    pub ok: u64,
}

impl Count {
    /// `ok / started`, 0 when none started.
    pub fn rate(&self) -> f64 {
        if self.started == 0 {
            0.0
        } else {
            self.ok as f64 / self.started as f64
        }
    }
}

/// A latency distribution.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Median in round trips of the mean RTT.
    pub p50_rtt: f64,
    /// 90th percentile in RTTs.
    pub p90_rtt: f64,
    /// 99th percentile in RTTs.
    pub p99_rtt: f64,
    /// The CDF: `[ms, q]` pairs, the latency at quantile `q`, for `q` every 1 % then 99.5 %,
    /// 99.9 %, 99.99 % and 100 %.
    pub cdf: Vec<[f64; 2]>,
}

impl Latency {
    /// Of `samples` (any order), with round trips of `rtt`.
    pub fn of(mut samples: Vec<Duration>, rtt: Duration) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| -> f64 {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples.get(i).copied().map_or(0.0, ms)
        };
        let r = (rtt.as_secs_f64() * 1000.0).max(1e-9);
        let sum: f64 = samples.iter().copied().map(ms).sum();
        Latency {
            count: samples.len() as u64,
            mean_ms: sum / samples.len() as f64,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: samples.last().copied().map_or(0.0, ms),
            p50_rtt: at(0.5) / r,
            p90_rtt: at(0.9) / r,
            p99_rtt: at(0.99) / r,
            cdf: cdf_grid().into_iter().map(|q| [at(q), q]).collect(),
        }
    }
}

/// One phase of a run ([`Sim::set_phase`]) and the operations started in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// Its name.
    pub name: String,
    /// Virtual second it started.
    pub start_secs: f64,
    /// Virtual second it ended (the next one's start, or the run's end).
    pub end_secs: f64,
    /// Gets.
    pub gets: Count,
    /// Puts.
    pub puts: Count,
    /// Listens started.
    pub listens: u64,
    /// Time from a get's start to its first value.
    pub get_first_value: Latency,
    /// Time from a get's start to its end.
    pub get_done: Latency,
    /// Time from a put's start to its end.
    pub put_done: Latency,
    /// Gets by hops to the first value (index: hops; the last bin holds [`MAX_HOPS`] and more).
    pub get_hops: Vec<u64>,
    /// Puts by hops to their end.
    pub put_hops: Vec<u64>,
    /// Datagrams offered to the network in this phase, per host up at the end (maintenance
    /// included).
    pub messages_per_node: f64,
    /// Bytes likewise.
    pub bytes_per_node: f64,
    /// Jobs run in this phase.
    pub events: u64,
}

impl PhaseSummary {
    /// Whether any get, put or listen started in this phase.
    pub fn has_ops(&self) -> bool {
        self.gets.started + self.puts.started + self.listens > 0
    }
}

/// A histogram of equal bins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Lower bound of the first bin.
    pub lo: f64,
    /// Width of a bin.
    pub width: f64,
    /// Count per bin.
    pub counts: Vec<u64>,
}

/// A node named as one of the hottest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HotNode {
    /// Host index in the simulation.
    pub host: usize,
    /// Its node id, hex.
    pub node_id: String,
    /// Its value.
    pub value: f64,
}

/// How one figure is spread over the live nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Nodes.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: f64,
    /// The 0th to 100th percentiles (101 values; empty when there are no nodes).
    pub percentiles: Vec<f64>,
    /// [`NODE_BINS`] equal bins from `min` to `max`.
    pub histogram: Histogram,
    /// The [`HOTTEST`] nodes with the largest values, largest first.
    pub hottest: Vec<HotNode>,
}

impl Distribution {
    /// Of `(host, node id, value)` for every node.
    pub fn of(values: Vec<(usize, String, f64)>) -> Distribution {
        let ids: std::collections::BTreeMap<usize, String> =
            values.iter().map(|(h, id, _)| (*h, id.clone())).collect();
        Distribution::of_values(values.into_iter().map(|(h, _, v)| (h, v)).collect(), |h| {
            ids.get(&h).cloned().unwrap_or_default()
        })
    }

    /// Of `(host, value)` for every node; `name` gives the node id of a host, asked only for
    /// the [`HOTTEST`] (a million nodes need no million id strings).
    pub fn of_values(mut values: Vec<(usize, f64)>, name: impl Fn(usize) -> String) -> Distribution {
        if values.is_empty() {
            return Distribution::default();
        }
        values.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let n = values.len();
        let hottest = values
            .iter()
            .take(HOTTEST)
            .map(|(host, v)| HotNode {
                host: *host,
                node_id: name(*host),
                value: *v,
            })
            .collect();
        let mut xs: Vec<f64> = values.into_iter().map(|v| v.1).collect();
        xs.reverse();
        let min = xs.first().copied().unwrap_or(0.0);
        let max = xs.last().copied().unwrap_or(0.0);
        let percentiles = (0..=100)
            .map(|p| {
                let i = ((n - 1) as f64 * f64::from(p) / 100.0).round() as usize;
                xs.get(i).copied().unwrap_or(0.0)
            })
            .collect();
        let width = ((max - min) / NODE_BINS as f64).max(f64::MIN_POSITIVE);
        let mut counts = vec![0u64; NODE_BINS];
        for x in &xs {
            let b = (((x - min) / width) as usize).min(NODE_BINS - 1);
            if let Some(c) = counts.get_mut(b) {
                *c += 1;
            }
        }
        Distribution {
            count: n as u64,
            min,
            mean: xs.iter().sum::<f64>() / n as f64,
            max,
            percentiles,
            histogram: Histogram {
                lo: min,
                width: if max > min { width } else { 1.0 },
                counts,
            },
            hottest,
        }
    }
}

/// Load per live node at the end of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerNode {
    /// Datagrams each host sent over the whole run.
    pub messages_sent: Distribution,
    /// Bytes each host sent.
    pub bytes_sent: Distribution,
    /// Datagrams each host received.
    pub messages_received: Distribution,
    /// Bytes each host received.
    pub bytes_received: Distribution,
    /// Values each node stores.
    pub stored_values: Distribution,
    /// Nodes in each node's routing table (the main family).
    pub table_nodes: Distribution,
    /// Good nodes in each node's routing table.
    pub good_nodes: Distribution,
}

/// One bin of the timeline: the operations started in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeBin {
    /// Virtual second the bin starts.
    pub start_secs: f64,
    /// Gets.
    pub gets: Count,
    /// Puts.
    pub puts: Count,
    /// Median time to the first value of its gets, ms (null without one).
    pub first_value_p50_ms: Option<f64>,
    /// 90th percentile likewise.
    pub first_value_p90_ms: Option<f64>,
    /// Median put time, ms.
    pub put_done_p50_ms: Option<f64>,
}

/// A mark on the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeMark {
    /// Virtual second.
    pub at_secs: f64,
    /// What happened (`crash`, `restart`, `churn`, `partition`, `heal`, a network change, or a
    /// phase's start as `phase NAME`).
    pub label: String,
    /// Times in a row within that second.
    pub count: u32,
}

/// Operations over virtual time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Width of a bin, seconds.
    pub bin_secs: f64,
    /// Bins from the first operation's start.
    pub bins: Vec<TimeBin>,
    /// Marks of faults and phases.
    pub marks: Vec<TimeMark>,
    /// Marks not kept.
    pub marks_dropped: u64,
    /// Whether the run had faults (loss, churn, crashes, partitions, network changes): the
    /// report then plots the timeline.
    pub faults: bool,
}

/// What the caller knows of a run that the simulator does not.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    /// The program's options.
    pub args: BTreeMap<String, String>,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Peak RSS, KiB.
    pub peak_rss_kib: Option<u64>,
    /// False when the run stopped short.
    pub complete: bool,
    /// Notes.
    pub notes: Vec<String>,
}

fn secs(t: Instant) -> f64 {
    t.as_micros() as f64 / 1e6
}

fn loss_rate(l: &Loss) -> f64 {
    match *l {
        Loss::None => 0.0,
        Loss::Random(p) => p,
        Loss::GilbertElliott {
            to_bad,
            to_good,
            loss_good,
            loss_bad,
        } => {
            let bad = to_bad / (to_bad + to_good).max(1e-12);
            bad * loss_bad + (1.0 - bad) * loss_good
        }
    }
}

fn hops_hist(it: impl Iterator<Item = u16>) -> Vec<u64> {
    let mut h = Vec::new();
    for x in it {
        let i = usize::from(x).min(MAX_HOPS);
        if h.len() <= i {
            h.resize(i + 1, 0);
        }
        if let Some(c) = h.get_mut(i) {
            *c += 1;
        }
    }
    h
}

impl RunSummary {
    /// The summary of `sim` as it is now, with what the caller adds in `info`.
    pub fn build(sim: &Sim, info: RunInfo) -> RunSummary {
        let config = sim.config();
        let rtt = config.net.mean_rtt();
        let end = sim.now;
        let ops: Vec<&OpRecord> = sim.ops().map(|(_, r)| r).collect();
        let up = sim.up_count().max(1) as f64;
        let traffic = sim.traffic();
        let phases_in = sim.phases();
        let mut phases = Vec::with_capacity(phases_in.len());
        for (i, p) in phases_in.iter().enumerate() {
            let next = phases_in.get(i + 1);
            let until = next.map_or(end, |n| n.start);
            let last = next.is_none();
            let mine: Vec<&&OpRecord> = ops
                .iter()
                .filter(|o| o.start >= p.start && (o.start < until || (last && o.start <= until)))
                .collect();
            let (t_next, e_next) = next.map_or((traffic, sim.processed()), |n| (n.traffic, n.processed));
            phases.push(phase_summary(p.name.clone(), p.start, until, &mine, rtt, |s| {
                s.messages_per_node = (t_next.0 - p.traffic.0) as f64 / up;
                s.bytes_per_node = (t_next.1 - p.traffic.1) as f64 / up;
                s.events = e_next - p.processed;
            }));
        }
        let fam = if config.stack == Stack::V6 {
            Family::V6
        } else {
            Family::V4
        };
        let mut cols: [Vec<(usize, f64)>; 7] = Default::default();
        for (i, node) in sim.nodes() {
            let st = node.stats();
            let t = sim.hosts.get(i).map(|h| h.traffic).unwrap_or_default();
            let vals = [
                t.sent as f64,
                t.sent_bytes as f64,
                t.received as f64,
                t.received_bytes as f64,
                st.stored_values as f64,
                st.nodes[fam] as f64,
                st.good_nodes[fam] as f64,
            ];
            for (c, v) in cols.iter_mut().zip(vals) {
                c.push((i, v));
            }
        }
        let name = |i: usize| sim.node(i).map(|n| n.node_id().to_string()).unwrap_or_default();
        let [ms, bs, mr, br, sv, tn, gn] = cols;
        let per_node = PerNode {
            messages_sent: Distribution::of_values(ms, name),
            bytes_sent: Distribution::of_values(bs, name),
            messages_received: Distribution::of_values(mr, name),
            bytes_received: Distribution::of_values(br, name),
            stored_values: Distribution::of_values(sv, name),
            table_nodes: Distribution::of_values(tn, name),
            good_nodes: Distribution::of_values(gn, name),
        };
        let loss = loss_rate(&config.net.loss);
        let (annotations, dropped) = sim.annotations();
        let mut marks: Vec<TimeMark> = annotations
            .iter()
            .map(|a| TimeMark {
                at_secs: secs(a.at),
                label: a.label.clone(),
                count: a.count,
            })
            .collect();
        let faults = loss > 0.0 || !marks.is_empty();
        marks.extend(phases_in.iter().skip(1).map(|p| TimeMark {
            at_secs: secs(p.start),
            label: format!("phase {}", p.name),
            count: 1,
        }));
        marks.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
        let timeline = Timeline {
            marks,
            marks_dropped: dropped,
            faults,
            ..timeline(&ops)
        };
        let wall = info.wall.as_secs_f64();
        let latency_ms = match config.net.latency {
            LinkLatency::Fixed(d) => d.as_secs_f64() * 1000.0,
            LinkLatency::Uniform(a, b) => (a + b).as_secs_f64() * 500.0,
        };
        RunSummary {
            schema_version: SCHEMA_VERSION,
            generator: format!("dht-sim {}", env!("CARGO_PKG_VERSION")),
            config: RunConfig {
                nodes: config.nodes,
                stack: match config.stack {
                    Stack::V4 => "v4",
                    Stack::V6 => "v6",
                    Stack::Dual => "dual",
                }
                .into(),
                latency_ms,
                jitter_ms: config.net.jitter.as_secs_f64() * 1000.0,
                loss,
                args: info.args,
            },
            seed: config.seed,
            trace: sim.trace().to_string(),
            complete: info.complete,
            notes: info.notes,
            nodes_up: sim.up_count(),
            virtual_secs: secs(end),
            wall_secs: wall,
            events: sim.processed(),
            events_per_sec: sim.processed() as f64 / wall.max(1e-9),
            rtt_ms: rtt.as_secs_f64() * 1000.0,
            memory: Memory {
                per_node_bytes: sim.memory_per_node() as u64,
                peak_rss_kib: info.peak_rss_kib,
            },
            phases,
            per_node,
            timeline,
        }
    }

    /// Whether no operation was started at all: nothing to report.
    pub fn is_empty(&self) -> bool {
        !self.phases.iter().any(PhaseSummary::has_ops)
    }

    /// The phases with operations.
    pub fn phases_with_ops(&self) -> impl Iterator<Item = &PhaseSummary> {
        self.phases.iter().filter(|p| p.has_ops())
    }

    /// The JSON text (pretty, newline at the end).
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses the JSON text of a run, refusing another schema version and truncated text.
    pub fn from_json(text: &str) -> Result<RunSummary, ReadError> {
        if text.trim().is_empty() {
            return Err(ReadError::Empty);
        }
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            if e.is_eof() {
                ReadError::Truncated(e.to_string())
            } else {
                ReadError::NotJson(e.to_string())
            }
        })?;
        match v.get("schema_version").and_then(serde_json::Value::as_u64) {
            None => return Err(ReadError::NoVersion),
            Some(found) if found != u64::from(SCHEMA_VERSION) => {
                return Err(ReadError::Version { found });
            }
            Some(_) => {}
        }
        serde_json::from_value(v).map_err(|e| ReadError::Schema(e.to_string()))
    }

    /// Reads a run's JSON file.
    pub fn read(path: &Path) -> Result<RunSummary, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.display().to_string(),
            error: ReadError::Io(e.to_string()),
        })?;
        RunSummary::from_json(&text).map_err(|error| FileError {
            path: path.display().to_string(),
            error,
        })
    }
}

fn phase_summary(
    name: String,
    start: Instant,
    until: Instant,
    ops: &[&&OpRecord],
    rtt: Duration,
    traffic: impl FnOnce(&mut PhaseSummary),
) -> PhaseSummary {
    let (mut first, mut gdone, mut pdone) = (Vec::new(), Vec::new(), Vec::new());
    let (mut gets, mut puts, mut listens) = (Count::default(), Count::default(), 0);
    let (mut ghops, mut phops) = (Vec::new(), Vec::new());
    for o in ops {
        match o.kind {
            OpKind::Get => {
                gets.started += 1;
                if !o.found.is_empty() {
                    gets.ok += 1;
                }
                if let Some(t) = o.first_value {
                    first.push(t - o.start);
                }
                if let Some(t) = o.done {
                    gdone.push(t - o.start);
                }
                ghops.extend(o.hops_first);
            }
            OpKind::Put => {
                puts.started += 1;
                if o.outcome.is_some_and(|x| x.total_acked() > 0) {
                    puts.ok += 1;
                }
                if let Some(t) = o.done {
                    pdone.push(t - o.start);
                }
                phops.extend(o.hops_done);
            }
            OpKind::Listen => listens += 1,
        }
    }
    let mut s = PhaseSummary {
        name,
        start_secs: secs(start),
        end_secs: secs(until),
        gets,
        puts,
        listens,
        get_first_value: Latency::of(first, rtt),
        get_done: Latency::of(gdone, rtt),
        put_done: Latency::of(pdone, rtt),
        get_hops: hops_hist(ghops.into_iter()),
        put_hops: hops_hist(phops.into_iter()),
        messages_per_node: 0.0,
        bytes_per_node: 0.0,
        events: 0,
    };
    traffic(&mut s);
    s
}

fn timeline(ops: &[&OpRecord]) -> Timeline {
    let starts = ops.iter().filter(|o| o.kind != OpKind::Listen).map(|o| o.start);
    let (Some(lo), Some(hi)) = (starts.clone().min(), starts.max()) else {
        return Timeline::default();
    };
    let span = (hi - lo).as_secs_f64();
    let bin_secs = (span / MAX_BINS as f64).ceil().max(1.0);
    let n = ((span / bin_secs) as usize + 1).min(MAX_BINS);
    let mut bins: Vec<(TimeBin, Vec<Duration>, Vec<Duration>)> = (0..n)
        .map(|b| {
            (
                TimeBin {
                    start_secs: secs(lo) + b as f64 * bin_secs,
                    ..TimeBin::default()
                },
                Vec::new(),
                Vec::new(),
            )
        })
        .collect();
    for o in ops {
        let b = (((o.start - lo).as_secs_f64() / bin_secs) as usize).min(n - 1);
        let Some((bin, first, put)) = bins.get_mut(b) else {
            continue;
        };
        match o.kind {
            OpKind::Get => {
                bin.gets.started += 1;
                if !o.found.is_empty() {
                    bin.gets.ok += 1;
                }
                if let Some(t) = o.first_value {
                    first.push(t - o.start);
                }
            }
            OpKind::Put => {
                bin.puts.started += 1;
                if o.outcome.is_some_and(|x| x.total_acked() > 0) {
                    bin.puts.ok += 1;
                }
                if let Some(t) = o.done {
                    put.push(t - o.start);
                }
            }
            OpKind::Listen => {}
        }
    }
    let q = |v: &mut Vec<Duration>, q: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v.get(i).map(|d| d.as_secs_f64() * 1000.0)
    };
    Timeline {
        bin_secs,
        bins: bins
            .into_iter()
            .map(|(mut bin, mut first, mut put)| {
                bin.first_value_p50_ms = q(&mut first, 0.5);
                bin.first_value_p90_ms = q(&mut first, 0.9);
                bin.put_done_p50_ms = q(&mut put, 0.5);
                bin
            })
            .collect(),
        ..Timeline::default()
    }
}

/// Why a run's JSON was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Io(String),
    /// Nothing in it.
    #[error("it is empty (an aborted write?)")]
    Empty,
    /// It ends before the JSON does.
    #[error("it is truncated, not a whole result ({0})")]
    Truncated(String),
    /// Not JSON.
    #[error("it is not JSON ({0})")]
    NotJson(String),
    /// JSON without a `schema_version`.
    #[error("it has no schema_version: not a swarm result")]
    NoVersion,
    /// Another schema version.
    #[error(
        "it has schema version {found}; this swarm reads version {} only (rerun the run with this swarm)",
        SCHEMA_VERSION
    )]
    Version {
        /// The file's version.
        found: u64,
    },
    /// The right version but not the schema's shape.
    #[error("it does not follow schema version {v}: {0}", v = SCHEMA_VERSION)]
    Schema(String),
}

/// A [`ReadError`] and the file it is about.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {error}")]
pub struct FileError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub error: ReadError,
}

/// Writes `bytes` to `path` so that `path` is either its old self or the whole new content,
/// never a part: into a temporary file in the same directory, flushed, then renamed over it.
/// The temporary file is removed when anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
