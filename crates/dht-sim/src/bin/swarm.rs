//! `swarm`: builds a large simulated network, puts and gets, and prints the report; writes the
//! run's figures as JSON (`--json`) and as an HTML report with plots (`--report`); compares two
//! runs (`swarm compare A.json B.json --report FILE.html`).
//!
//! ```text
//! cargo run --release -p dht-sim --bin swarm -- --nodes 10000 --puts 10000 --gets 10000 \
//!     --json run.json --report run.html
//! ```
//!
//! Progress is drawn on standard error while it is a terminal, never in logs or pipes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant as WallInstant};

use clap::{Parser, Subcommand};
use dht_proto::value::Value;
use dht_proto::{InfoHash, Instant, PutOptions};
use dht_sim::net::{LinkLatency, Loss, NetConfig};
use dht_sim::progress::Bar;
use dht_sim::summary::{RunInfo, RunSummary, write_atomic};
use dht_sim::{Op, Sim, SimConfig, compare, html};

/// Simulate a DHT swarm and report lookup latency, success, traffic and cost.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Compare two runs' JSON results: print the differences of the headline figures and, with
    /// --report, write their curves overlaid.
    Compare {
        /// Run A (the baseline), as written by `swarm --json`.
        a: PathBuf,
        /// Run B.
        b: PathBuf,
        /// Write an HTML page with both runs' curves overlaid.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
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
    /// Hosts that join every 200 virtual ms during bootstrap; 0: 64, or more in networks of
    /// over 10,240 nodes, so that every network joins in about 32 virtual seconds.
    #[arg(long, default_value_t = 0)]
    join_batch: usize,
    /// Virtual seconds to let the network settle after bootstrap.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Operations started per virtual second.
    #[arg(long, default_value_t = 1000)]
    rate: usize,
    /// Hosts replaced by new ones per virtual minute during the puts and gets (churn).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Share of the nodes (0 to 1) that crash when the gets start.
    #[arg(long, default_value_t = 0.0)]
    crash: f64,
    /// Virtual seconds for which the network is cut in two halves when the gets start.
    #[arg(long, default_value_t = 0)]
    partition_secs: u64,
    /// Threads that run the nodes' work (the results are the same for every count).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also print a plain progress line on standard error every this many wall seconds, even
    /// when it is not a terminal (for logs of long runs); 0: never.
    #[arg(long, default_value_t = 0)]
    progress_log: u64,
    /// Write the run's figures as JSON to this file (schema: docs/simulation.md).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report with plots to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the get phase's latency CDFs alone as an SVG file.
    #[arg(long)]
    latency_svg: Option<PathBuf>,
    /// Do not back the heap with transparent huge pages. By default `swarm` starts itself again
    /// with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc 2.35 or later; other C libraries
    /// ignore it): the nodes' state, read at random, then costs far fewer TLB misses.
    #[arg(long)]
    no_huge_pages: bool,
}

/// The C library allocator's setting that asks for transparent huge pages (glibc 2.35+).
const HUGE_PAGES: &str = "glibc.malloc.hugetlb=1";

/// Starts this program again (same arguments) with [`HUGE_PAGES`] added to `GLIBC_TUNABLES`,
/// which the allocator reads only at start-up; returns (to go on as is) when it is already
/// there, or when the program cannot be started again.
#[cfg(target_os = "linux")]
fn restart_with_huge_pages() {
    use std::os::unix::process::CommandExt;
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.hugetlb") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let tunables = if current.is_empty() {
        HUGE_PAGES.to_string()
    } else {
        format!("{current}:{HUGE_PAGES}")
    };
    // `exec` returns only when it failed.
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    eprintln!("swarm: could not start again with huge pages ({err}); going on without them");
}

/// A bad command line or input file: the message, and the exit code.
struct Fail(String, u8);

fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(msg.into(), 2))
}

/// Peak resident memory of this process, from `/proc/self/status` (Linux), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of this process now, in KiB.
fn current_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(target_os = "linux")]
    if cli.cmd.is_none() && !cli.run.no_huge_pages {
        restart_with_huge_pages();
    }
    let result = match cli.cmd {
        Some(Cmd::Compare { a, b, report }) => compare_runs(&a, &b, report.as_deref()),
        None => run(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(Fail(msg, code)) => {
            eprintln!("swarm: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Refuses an output path whose directory does not exist before a long run, not after.
fn check_output(what: &str, p: &Option<PathBuf>) -> Result<(), Fail> {
    if let Some(p) = p {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return fail(format!(
                "{what} {}: directory {} does not exist",
                p.display(),
                dir.display()
            ));
        }
        if p.is_dir() {
            return fail(format!("{what} {}: is a directory", p.display()));
        }
    }
    Ok(())
}

fn validate(a: &RunArgs) -> Result<(), Fail> {
    if a.nodes < 2 {
        return fail(format!(
            "--nodes {}: a swarm needs at least 2 nodes; there is nothing to simulate",
            a.nodes
        ));
    }
    if a.puts == 0 && a.gets == 0 {
        return fail("--puts 0 --gets 0: nothing to measure (an empty run); give at least one put");
    }
    if a.puts == 0 {
        return fail("--gets needs --puts above 0: the gets look up the keys of the puts");
    }
    if !(0.0..=1.0).contains(&a.loss) || !(0.0..=1.0).contains(&a.crash) {
        return fail("--loss and --crash are shares, from 0 to 1");
    }
    if a.rate == 0 || !a.churn.is_finite() || a.churn < 0.0 {
        return fail("--rate must be above 0 and --churn 0 or more");
    }
    check_output("--json", &a.json)?;
    check_output("--report", &a.report)?;
    check_output("--latency-svg", &a.latency_svg)
}

/// Faults applied while operations run, one virtual second at a time.
struct Faults {
    churn_per_sec: f64,
    owed: f64,
    heal_at: Option<Instant>,
}

impl Faults {
    /// Runs one virtual second, replacing hosts at the churn rate and healing a partition when
    /// its time is up.
    fn second(&mut self, sim: &mut Sim, ops: &[Op]) -> bool {
        self.owed += self.churn_per_sec;
        let n = self.owed.floor();
        if n >= 1.0 {
            self.owed -= n;
            sim.churn(n as usize, &BTreeSet::new());
        }
        // An operation whose host went down (churn, crash) will never end: not waited for.
        let live: Vec<Op> = ops.iter().copied().filter(|o| sim.is_up(o.0)).collect();
        let done = if live.is_empty() {
            sim.run_for(Duration::from_secs(1));
            true
        } else {
            sim.run_until_done(&live, Duration::from_secs(1))
        };
        if self.heal_at.is_some_and(|t| sim.now >= t) {
            self.heal_at = None;
            sim.heal();
        }
        done
    }

    /// Starts `count` operations with `start`, `rate` per virtual second, then waits up to ten
    /// virtual minutes for them. Returns them and whether all finished.
    fn drive(
        &mut self,
        sim: &mut Sim,
        count: usize,
        rate: usize,
        mut start: impl FnMut(&mut Sim, usize) -> Option<Op>,
    ) -> (Vec<Op>, bool) {
        let mut ops = Vec::with_capacity(count);
        for i in 0..count {
            match start(sim, i) {
                Some(op) => ops.push(op),
                None => break,
            }
            // Started over time, as independent users would.
            if i % rate == rate - 1 {
                self.second(sim, &[]);
            }
        }
        for _ in 0..600 {
            if self.second(sim, &ops) {
                return (ops, true);
            }
        }
        (ops, false)
    }
}

/// Hosts joining per 200 virtual ms (`--join-batch`; 0: 64, or `nodes / 160` when larger).
fn join_batch(a: &RunArgs) -> usize {
    if a.join_batch > 0 {
        a.join_batch
    } else {
        (a.nodes / 160).max(64)
    }
}

fn args_map(a: &RunArgs, seed: u64) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("nodes", a.nodes.to_string());
    put("puts", a.puts.to_string());
    put("gets", a.gets.to_string());
    put("seed", seed.to_string());
    put("latency-ms", a.latency_ms.to_string());
    put("loss", a.loss.to_string());
    put("join-batch", join_batch(a).to_string());
    put("settle", a.settle.to_string());
    put("rate", a.rate.to_string());
    put("churn", a.churn.to_string());
    put("crash", a.crash.to_string());
    put("partition-secs", a.partition_secs.to_string());
    m
}

fn run(args: &RunArgs) -> Result<ExitCode, Fail> {
    validate(args)?;
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
        threads: args.threads.max(1),
        ..SimConfig::default()
    });
    let bar = Bar::stderr("swarm");
    let term = bar.handle();
    let say = |line: String| term.suspend(|| println!("{line}"));
    let mut show = bar.into_observer();
    let every = Duration::from_secs(args.progress_log);
    let mut logged = (WallInstant::now(), 0u64);
    sim.set_observer(Some(Box::new(move |p: &dht_sim::Progress<'_>| {
        show(p);
        let dt = logged.0.elapsed();
        if !every.is_zero() && dt >= every {
            let rate = p.processed.saturating_sub(logged.1) as f64 / dt.as_secs_f64();
            let rss = current_rss_kib().map_or(String::new(), |k| format!(", RSS {} MiB", k / 1024));
            eprintln!("{}{rss}", dht_sim::progress::line(p, wall.elapsed(), rate));
            logged = (WallInstant::now(), p.processed);
        }
    })));
    let mut notes = Vec::new();

    sim.set_phase("bootstrap");
    let connected = sim.bootstrap_all_batched(Duration::from_secs(600), join_batch(args));
    let boot_wall = wall.elapsed();
    say(format!(
        "bootstrap of {} nodes: all connected {} at virtual {:.1} s, wall {:.1} s",
        args.nodes,
        connected,
        sim.now.as_micros() as f64 / 1e6,
        boot_wall.as_secs_f64()
    ));
    if !connected {
        notes.push("bootstrap: not every node connected within 600 virtual seconds".to_string());
    }
    sim.set_phase("settle");
    sim.run_for(Duration::from_secs(args.settle));
    let mark = sim.mark();
    let mut faults = Faults {
        churn_per_sec: args.churn / 60.0,
        owed: 0.0,
        heal_at: None,
    };

    sim.set_phase("put");
    let mut keys = Vec::with_capacity(args.puts);
    let (put_ops, puts_done) = faults.drive(&mut sim, args.puts, args.rate, |sim, i| {
        let from = sim.random_up();
        let key = InfoHash::get(format!("swarm key {i}"));
        keys.push((key, from));
        Some(sim.put(
            from,
            key,
            Value::new(0, format!("value {i}").into_bytes()),
            PutOptions::default(),
        ))
    });
    if !puts_done {
        notes.push("put: some puts were still running after 600 virtual seconds".to_string());
    }

    sim.set_phase("get");
    if args.crash > 0.0 {
        let n = (args.crash * sim.up_count() as f64).round() as usize;
        for _ in 0..n.min(sim.up_count().saturating_sub(2)) {
            let i = sim.random_up();
            sim.crash(i);
        }
    }
    if args.partition_secs > 0 {
        let hosts: Vec<usize> = (0..sim.hosts.len()).collect();
        let (left, right) = hosts.split_at(hosts.len() / 2);
        sim.partition(&[("left", left), ("right", right)]);
        faults.heal_at = Some(sim.now + Duration::from_secs(args.partition_secs));
    }
    let (get_ops, gets_done) = faults.drive(&mut sim, args.gets, args.rate, |sim, i| {
        let (key, putter) = *keys.get(i % keys.len().max(1))?;
        let mut at = sim.random_up();
        for _ in 0..16 {
            if at != putter {
                break;
            }
            at = sim.random_up();
        }
        Some(sim.get(at, key))
    });
    if faults.heal_at.is_some() {
        sim.heal();
    }
    if !gets_done {
        notes.push("get: some gets were still running after 600 virtual seconds".to_string());
    }
    let lost = put_ops
        .iter()
        .chain(&get_ops)
        .filter(|o| !sim.is_up(o.0) && sim.op(**o).is_some_and(|r| r.done.is_none()))
        .count();
    if lost > 0 {
        notes.push(format!(
            "{lost} operations never ended: their host went down (churn or crash); they count as failed"
        ));
    }
    let report = sim.report(&mark);
    say(format!(
        "puts all done: {puts_done}; gets all done: {gets_done} ({} puts, {} gets)",
        put_ops.len(),
        get_ops.len()
    ));
    say(format!("{report}"));
    let total = wall.elapsed();
    say(format!(
        "wall: {:.1} s in all ({:.1} s bootstrap); {:.0} simulated events per second overall; {} events",
        total.as_secs_f64(),
        boot_wall.as_secs_f64(),
        sim.processed() as f64 / total.as_secs_f64(),
        sim.processed()
    ));
    let rss = peak_rss_kib();
    if let Some(kib) = rss {
        say(format!(
            "peak RSS: {:.1} MiB ({:.1} KiB per node, simulator included)",
            kib as f64 / 1024.0,
            kib as f64 / args.nodes as f64
        ));
    }
    let huge = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(HUGE_PAGES));
    say(format!(
        "heap on transparent huge pages: {}",
        if huge {
            "asked (glibc.malloc.hugetlb=1)"
        } else {
            "no"
        }
    ));
    let complete = connected && puts_done && gets_done;
    let t_summary = WallInstant::now();
    let summary = RunSummary::build(
        &sim,
        RunInfo {
            args: args_map(args, seed),
            wall: total,
            peak_rss_kib: rss,
            complete,
            notes,
        },
    );
    if args.json.is_some() || args.report.is_some() {
        say(format!(
            "figures gathered for the outputs in {:.2} s",
            t_summary.elapsed().as_secs_f64()
        ));
    }
    drop(sim);
    write_outputs(args, &summary)?;
    if !complete {
        eprintln!("swarm: the run stopped short: {}", summary.notes.join("; "));
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(what: &str, path: &Path, text: &str) -> Result<(), Fail> {
    write_atomic(path, text.as_bytes())
        .map_err(|e| Fail(format!("{what} {}: cannot write it: {e}", path.display()), 1))?;
    println!(
        "{what}: wrote {} ({} KiB)",
        path.display(),
        text.len().div_ceil(1024)
    );
    Ok(())
}

fn write_outputs(args: &RunArgs, summary: &RunSummary) -> Result<(), Fail> {
    if let Some(p) = &args.json {
        let t = WallInstant::now();
        write_file("json", p, &summary.to_json())?;
        println!("json made in {:.2} s", t.elapsed().as_secs_f64());
    }
    if let Some(p) = &args.report {
        let t = WallInstant::now();
        let page = html::report(summary);
        write_file("report", p, &page)?;
        println!("report made in {:.2} s", t.elapsed().as_secs_f64());
    }
    if let Some(p) = &args.latency_svg {
        let svg = html::latency_svg(summary, "get").map_err(|e| Fail(format!("--latency-svg: {e}"), 1))?;
        write_file("latency svg", p, &svg)?;
    }
    Ok(())
}

fn compare_runs(a: &Path, b: &Path, report: Option<&Path>) -> Result<ExitCode, Fail> {
    check_output("--report", &report.map(Path::to_path_buf))?;
    let read = |p: &Path| RunSummary::read(p).map_err(|e| Fail(e.to_string(), 2));
    let (ra, rb) = (read(a)?, read(b)?);
    let headlines = compare::compare(&ra, &rb).map_err(|e| Fail(e.to_string(), 2))?;
    for (tag, r, p) in [("A", &ra, a), ("B", &rb, b)] {
        if !r.complete {
            eprintln!(
                "swarm compare: warning: run {tag} ({}) stopped short; its figures are partial",
                p.display()
            );
        }
    }
    println!("A: {}\nB: {}", a.display(), b.display());
    print!("{}", compare::Table(&headlines));
    if let Some(p) = report {
        let page = html::compare(
            &ra,
            &rb,
            &headlines,
            (&a.display().to_string(), &b.display().to_string()),
        );
        write_file("report", p, &page)?;
    }
    Ok(ExitCode::SUCCESS)
}
