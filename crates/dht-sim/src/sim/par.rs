//! Parallel windows ([`SimConfig::threads`] above 1).
//!
//! A window is a stretch of virtual time `[t, t + w)` from the earliest job, with `w` the
//! shortest link latency (and ending after the run's `until`). Whatever a node sends at `t` or
//! later arrives at `t + w` or later, so within a window the jobs of two nodes cannot affect
//! each other: each node's jobs (and the timers they set inside the window) can run on any
//! thread, in their own (time, sequence) order. The threads only call the nodes and keep what
//! they sent and reported, and how they moved their timers. Then one thread merges those
//! outputs in the (time, sequence) order of the jobs, doing there everything that depends on
//! the order of all jobs exactly as [`Sim::step`] does it: the clock, the job and delivery
//! counts, the observer, the trace hash, traffic counters, the network model and its RNG, the
//! sequence numbers of new jobs and the op records. So the run is the same whatever the number
//! of threads.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// No job / no index.
const NONE: u32 = u32::MAX;

/// Windows with fewer jobs run on the calling thread alone (same outputs, no thread started).
const MIN_PARALLEL_JOBS: usize = 256;

/// Units of work (runs of hosts) per thread in a window, for balance: small, so that the
/// window does not wait long for a thread that was descheduled in its last unit.
const UNITS_PER_THREAD: usize = 32;

/// What a window did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Window {
    /// Its jobs ran.
    Ran,
    /// No job before `until`: the clock moved to `until`.
    Idle,
    /// No window (one thread, or a network without latency): run [`Sim::step`].
    Off,
    /// The window could end the wait for the operations: its jobs were put back, to run one
    /// at a time up to this time (microseconds, exclusive).
    Stepwise(u64),
}

/// One job's result as a worker left it for the merge.
#[derive(Debug, Clone, Copy)]
struct JobOut {
    at: u64,
    host: u32,
    /// Its delivery slot, or [`NONE`] for a timer.
    delivery: u32,
    /// The job reached the node: a live timer, or a datagram handed to a live host.
    ran: bool,
    /// The host colludes: its datagrams are rewritten in the merge.
    collude: bool,
    /// A delivery's sender (host index, family).
    from: u32,
    v6: bool,
    depth: u16,
    /// Its transmits and events: ranges in the unit's lists.
    tx: (u32, u32),
    ev: (u32, u32),
    /// The time of the timer job it queued, if any.
    timer: Option<u64>,
    /// The index (in the unit's jobs) of that timer job when it fell inside the window and ran
    /// there; else [`NONE`].
    next: u32,
}

impl JobOut {
    fn new(at: u64, host: u32, delivery: u32) -> JobOut {
        JobOut {
            at,
            host,
            delivery,
            ran: false,
            collude: false,
            from: 0,
            v6: false,
            depth: 0,
            tx: (0, 0),
            ev: (0, 0),
            timer: None,
            next: NONE,
        }
    }
}

/// What a unit of work (a run of hosts) produced in a window; kept between windows.
#[derive(Debug, Default)]
pub(super) struct UnitOut {
    jobs: Vec<JobOut>,
    /// (window ordinal of a job taken from the queue, its index in `jobs`).
    placed: Vec<(u32, u32)>,
    /// Destination and bytes (a buffer that the merge moves into a delivery slot).
    tx: Vec<(SocketAddr, Vec<u8>)>,
    /// The collusion targets (index in `tx`).
    targets: Vec<(u32, InfoHash)>,
    events: Vec<Option<Event>>,
    /// Empty buffers to drain transmits into: the former buffers of the slots the merge
    /// filled with this unit's datagrams.
    spare: Vec<Vec<u8>>,
    node_time: Duration,
}

impl UnitOut {
    fn clear(&mut self) {
        self.jobs.clear();
        self.placed.clear();
        self.targets.clear();
        for (_, b) in self.tx.drain(..) {
            recycle(&mut self.spare, b);
        }
        self.events.clear();
        self.node_time = Duration::ZERO;
    }
}

/// The buffers of the windows, kept between them.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    initial: Vec<Slot>,
    order: Vec<(u32, u32)>,
    outs: Vec<UnitOut>,
    loc: Vec<(u32, u32)>,
}

/// What the last window still owes, kept outside [`Buffers`] (taken out during a window).
#[derive(Debug, Default)]
pub(super) struct Owed {
    /// The deliveries handed to nodes in the last window, in order, whose links of the trace
    /// hash are still to be made (by a worker during the next window, or by
    /// [`Sim::settle_trace`]): time, receiver and delivery slot.
    trace: Vec<(u64, u32, u32)>,
    /// Delivery slots of the last window, freed once their trace links are made.
    free: Vec<u32>,
}

/// What every worker reads.
struct Ctx<'a> {
    initial: &'a [Slot],
    deliveries: &'a Deliveries,
    placed_at: &'a BTreeMap<usize, (Ipv4Addr, Ipv6Addr)>,
    now0: Instant,
    end: u64,
    timing: bool,
}

/// A run of hosts and their jobs in the window.
struct Unit<'a> {
    base: usize,
    hosts: &'a mut [Host],
    /// (host, window ordinal), sorted.
    jobs: &'a [(u32, u32)],
    out: UnitOut,
}

impl Ctx<'_> {
    fn addr(&self, from: usize, v6: bool) -> SocketAddr {
        match Sim::placed_at(self.placed_at, from) {
            Some((a4, a6)) => {
                if v6 {
                    SocketAddr::new(IpAddr::V6(a6), 4222)
                } else {
                    SocketAddr::new(IpAddr::V4(a4), 4222)
                }
            }
            None => {
                if v6 {
                    Sim::addr6(from)
                } else {
                    Sim::addr4(from)
                }
            }
        }
    }

    /// Runs a unit: each host's jobs in order, the timers they set inside the window included.
    fn run_unit(&self, unit: &mut Unit<'_>) {
        let Unit {
            base,
            hosts,
            jobs,
            out,
        } = unit;
        out.clear();
        // Timer jobs set inside the window: (time, order set, index of their output).
        let mut timers: BinaryHeap<Reverse<(u64, u32, u32)>> = BinaryHeap::new();
        let mut k = 0;
        while let Some(&(host, _)) = jobs.get(k) {
            let run = jobs
                .get(k..)
                .map_or(0, |r| r.iter().take_while(|j| j.0 == host).count());
            let Some(h) = hosts.get_mut(host as usize - *base) else {
                k += run.max(1);
                continue;
            };
            timers.clear();
            let mut set = 0u32;
            for &(_, ord) in jobs.get(k..k + run).unwrap_or_default() {
                let Some(slot) = self.initial.get(ord as usize) else {
                    continue;
                };
                // Timers set earlier run first (at the same time, a job queued before the
                // window comes first: its sequence number is lower).
                while let Some(&Reverse((at, _, oi))) = timers.peek()
                    && at < slot.at
                {
                    timers.pop();
                    self.run_job(h, host, at, NONE, oi, out, &mut timers, &mut set);
                }
                let oi = out.jobs.len() as u32;
                out.jobs.push(JobOut::new(slot.at, host, NONE));
                out.placed.push((ord, oi));
                let delivery = if slot.job & TIMER != 0 { NONE } else { slot.job };
                self.run_job(h, host, slot.at, delivery, oi, out, &mut timers, &mut set);
            }
            while let Some(Reverse((at, _, oi))) = timers.pop() {
                self.run_job(h, host, at, NONE, oi, out, &mut timers, &mut set);
            }
            k += run.max(1);
        }
    }

    /// One job of host `host` at `at` (a timer, or the delivery in slot `delivery`); its
    /// output goes to `out.jobs[oi]`. The node side of [`Sim::step`] and [`Sim::flush`].
    #[allow(clippy::too_many_arguments)]
    fn run_job(
        &self,
        h: &mut Host,
        host: u32,
        at: u64,
        delivery: u32,
        oi: u32,
        out: &mut UnitOut,
        timers: &mut BinaryHeap<Reverse<(u64, u32, u32)>>,
        set: &mut u32,
    ) {
        let now = self.now0.max(Instant::from_micros(at));
        let mut jo = JobOut::new(at, host, delivery);
        let mut clock = NodeClock {
            on: self.timing,
            spent: Duration::ZERO,
        };
        if delivery == NONE {
            if h.timer != Some(Instant::from_micros(at)) {
                // A stale timer.
                if let Some(slot) = out.jobs.get_mut(oi as usize) {
                    *slot = jo;
                }
                return;
            }
            h.timer = None;
            jo.depth = h.depth;
            if let Some(node) = h.node.as_mut() {
                clock.time(|| node.handle_timeout(now));
            }
        } else {
            let Some(d) = self.deliveries.slots.get(delivery as usize) else {
                return;
            };
            let from = self.addr(d.from as usize, d.v6);
            if !(h.node.is_some()
                && (h.misbehaviour == Misbehaviour::default() || Sim::misbehave_on_receive(h, from, &d.data)))
            {
                if let Some(slot) = out.jobs.get_mut(oi as usize) {
                    *slot = jo;
                }
                return;
            }
            h.depth = d.depth;
            h.traffic.received += 1;
            h.traffic.received_bytes += d.data.len() as u64;
            jo.depth = d.depth;
            jo.from = d.from;
            jo.v6 = d.v6;
            if let Some(node) = h.node.as_mut() {
                clock.time(|| node.handle_datagram(now, from, &d.data));
            }
        }
        jo.ran = true;
        jo.collude = h.misbehaviour.collude;
        let (tx0, ev0) = (out.tx.len() as u32, out.events.len() as u32);
        if let Some(node) = h.node.as_mut() {
            let UnitOut {
                tx, events, spare, ..
            } = out;
            clock.time(|| drain_node(node, now, tx, spare, |e| events.push(Some(e))));
        }
        if jo.collude {
            for n in tx0..out.tx.len() as u32 {
                if let Some((to, data)) = out.tx.get(n as usize)
                    && let Some(t) = Sim::collude_target(h, *to, data)
                {
                    out.targets.push((n, t));
                }
            }
        }
        jo.tx = (tx0, out.tx.len() as u32);
        if !jo.collude {
            // A colluder's are counted in the merge, rewritten.
            let sent = out.tx.get(tx0 as usize..).unwrap_or_default();
            h.traffic.sent += sent.len() as u64;
            h.traffic.sent_bytes += sent.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
        }
        jo.ev = (ev0, out.events.len() as u32);
        // The timer, as `Sim::reschedule` moves it.
        let next = h.node.as_ref().and_then(Node::poll_timeout).map(|t| t.max(now));
        if next != h.timer {
            h.timer = next;
            if let Some(t) = next {
                jo.timer = Some(t.as_micros());
                if t.as_micros() < self.end {
                    let g = out.jobs.len() as u32;
                    out.jobs.push(JobOut::new(t.as_micros(), host, NONE));
                    jo.next = g;
                    *set += 1;
                    timers.push(Reverse((t.as_micros(), *set, g)));
                }
            }
        }
        out.node_time += clock.spent;
        if let Some(slot) = out.jobs.get_mut(oi as usize) {
            *slot = jo;
        }
    }
}

impl Sim {
    /// Runs the next window of jobs before `until` (see the module's documentation). With
    /// `ops`, a window in which every op's host has a job (so that the last of them could end
    /// within it) is not run but handed back to run one job at a time.
    pub(super) fn window(&mut self, until: Instant, ops: Option<&[Op]>) -> Window {
        let w = self.window_inner(until, ops);
        if w != Window::Ran {
            self.settle_trace();
        }
        w
    }

    fn window_inner(&mut self, until: Instant, ops: Option<&[Op]>) -> Window {
        let Some(t) = self.queue.peek_at() else {
            self.now = self.now.max(until);
            return Window::Idle;
        };
        if t > until.as_micros() {
            self.now = self.now.max(until);
            return Window::Idle;
        }
        let w = self.net.min_latency().as_micros() as u64;
        if self.config.threads <= 1 || w == 0 {
            return Window::Off;
        }
        let end = t.saturating_add(w).min(until.as_micros().saturating_add(1));
        let mut bufs = std::mem::take(&mut self.par);
        bufs.initial.clear();
        while self.queue.peek_at().is_some_and(|a| a < end) {
            match self.queue.pop() {
                Some(s) => bufs.initial.push(s),
                None => break,
            }
        }
        bufs.order.clear();
        bufs.order
            .extend(bufs.initial.iter().enumerate().map(|(o, s)| (s.host, o as u32)));
        bufs.order.sort_unstable();
        if let Some(ops) = ops {
            // Safe when some op not done belongs to a host without a job in the window.
            let order = &bufs.order;
            let has_job = |host: usize| {
                let p = order.partition_point(|j| (j.0 as usize) < host);
                order.get(p).is_some_and(|j| j.0 as usize == host)
            };
            let safe = ops
                .iter()
                .filter(|o| self.ops.get(o).is_none_or(|r| r.done.is_none()))
                .take(64)
                .any(|o| !has_job(o.0));
            if !safe {
                self.queue.restore(&bufs.initial);
                self.par = bufs;
                return Window::Stepwise(end);
            }
        }
        self.run_window(&mut bufs, end);
        self.par = bufs;
        Window::Ran
    }

    /// Runs the jobs in `bufs.initial` (all before `end`), then merges their outputs.
    fn run_window(&mut self, bufs: &mut Buffers, end: u64) {
        let n = bufs.initial.len();
        let threads = self.config.threads.max(1);
        let n_hosts = self.hosts.len();
        // Jobs of hosts that do not exist (never made) are dropped as `step` drops them.
        let valid = bufs.order.partition_point(|j| (j.0 as usize) < n_hosts);
        let units_wanted = if n >= MIN_PARALLEL_JOBS {
            threads * UNITS_PER_THREAD
        } else {
            1
        };
        let per_unit = valid.div_ceil(units_wanted).max(1);
        // Cut the sorted jobs into runs of whole hosts.
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        let mut a = 0;
        while a < valid {
            let mut b = (a + per_unit).min(valid);
            while b < valid && bufs.order.get(b).map(|j| j.0) == bufs.order.get(b - 1).map(|j| j.0) {
                b += 1;
            }
            cuts.push((a, b));
            a = b;
        }
        while bufs.outs.len() < cuts.len() + 1 {
            bufs.outs.push(UnitOut::default());
        }
        let ctx = Ctx {
            initial: &bufs.initial,
            deliveries: &self.deliveries,
            placed_at: &self.placed_at,
            now0: self.now,
            end,
            timing: self.node_clock.on,
        };
        let mut units: Vec<Mutex<Option<Unit<'_>>>> = Vec::with_capacity(cuts.len());
        {
            let mut rest: &mut [Host] = &mut self.hosts;
            let mut base = 0usize;
            for (k, &(a, b)) in cuts.iter().enumerate() {
                let lo = bufs.order.get(a).map_or(base, |j| j.0 as usize);
                let hi = bufs.order.get(b - 1).map_or(lo, |j| j.0 as usize + 1);
                let (_, r) = std::mem::take(&mut rest).split_at_mut(lo - base);
                let (mine, r) = r.split_at_mut(hi - lo);
                rest = r;
                base = hi;
                units.push(Mutex::new(Some(Unit {
                    base: lo,
                    hosts: mine,
                    jobs: bufs.order.get(a..b).unwrap_or_default(),
                    out: std::mem::take(bufs.outs.get_mut(k).expect("an output per unit")),
                })));
            }
        }
        // The last window's trace links: made by whichever thread comes first.
        let pending = std::mem::take(&mut self.owed.trace);
        let trace_job = Mutex::new(Some((self.trace, std::mem::take(&mut self.scratch.trace))));
        let traced: Mutex<Option<(InfoHash, Vec<u8>)>> = Mutex::new(None);
        let next = AtomicUsize::new(0);
        let work = || {
            let job = trace_job.lock().map(|mut j| j.take()).unwrap_or(None);
            if let Some((prev, mut scratch)) = job {
                let h = chain(&mut scratch, prev, &pending, ctx.deliveries, ctx.placed_at);
                if let Ok(mut t) = traced.lock() {
                    *t = Some((h, scratch));
                }
            }
            let mut done = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(cell) = units.get(k) else { break };
                let taken = cell.lock().map(|mut c| c.take()).unwrap_or(None);
                if let Some(mut unit) = taken {
                    ctx.run_unit(&mut unit);
                    done.push((k, unit.out));
                }
            }
            done
        };
        let mut finished = Vec::with_capacity(cuts.len());
        if units.len() > 1 && threads > 1 {
            std::thread::scope(|s| {
                let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
                finished.extend(work());
                for h in helpers {
                    match h.join() {
                        Ok(d) => finished.extend(d),
                        Err(e) => std::panic::resume_unwind(e),
                    }
                }
            });
        } else {
            finished.extend(work());
        }
        drop(units);
        if let Some((h, scratch)) = traced.into_inner().unwrap_or(None) {
            self.trace = h;
            self.scratch.trace = scratch;
        }
        self.owed.trace = pending;
        self.owed.trace.clear();
        for i in self.owed.free.drain(..) {
            self.deliveries.free(i);
        }
        for (k, out) in finished {
            if let Some(slot) = bufs.outs.get_mut(k) {
                *slot = out;
            }
        }
        // Jobs of hosts that do not exist: counted, nothing run.
        let orphans = cuts.len();
        if let Some(o) = bufs.outs.get_mut(orphans) {
            o.clear();
            for &(host, ord) in bufs.order.get(valid..).unwrap_or_default() {
                let Some(s) = bufs.initial.get(ord as usize) else {
                    continue;
                };
                let delivery = if s.job & TIMER != 0 { NONE } else { s.job };
                o.placed.push((ord, o.jobs.len() as u32));
                o.jobs.push(JobOut::new(s.at, host, delivery));
            }
        }
        // Where each job's output is.
        bufs.loc.clear();
        bufs.loc.resize(n, (NONE, NONE));
        for (k, out) in bufs.outs.iter().enumerate().take(cuts.len() + 1) {
            self.node_clock.spent += out.node_time;
            for &(ord, oi) in &out.placed {
                if let Some(l) = bufs.loc.get_mut(ord as usize) {
                    *l = (k as u32, oi);
                }
            }
        }
        // The merge, in (time, sequence) order: the jobs taken from the queue are in order;
        // timer jobs set inside the window come after them at the same time (their sequence
        // numbers, given here, are higher).
        let mut timers: BinaryHeap<Reverse<(u64, u64, u32, u32)>> = BinaryHeap::new();
        for ord in 0..n {
            let at = bufs.initial.get(ord).map_or(0, |s| s.at);
            while let Some(&Reverse((t, _, k, oi))) = timers.peek()
                && t < at
            {
                timers.pop();
                self.merge_job(&mut bufs.outs, k, oi, &mut timers);
            }
            let (k, oi) = bufs.loc.get(ord).copied().unwrap_or((NONE, NONE));
            self.merge_job(&mut bufs.outs, k, oi, &mut timers);
        }
        while let Some(Reverse((_, _, k, oi))) = timers.pop() {
            self.merge_job(&mut bufs.outs, k, oi, &mut timers);
        }
    }

    /// The order-dependent side of one job ([`Sim::step`] and [`Sim::flush`] without the node).
    fn merge_job(
        &mut self,
        outs: &mut [UnitOut],
        k: u32,
        oi: u32,
        timers: &mut BinaryHeap<Reverse<(u64, u64, u32, u32)>>,
    ) {
        let Some(out) = outs.get_mut(k as usize) else {
            return;
        };
        let Some(jo) = out.jobs.get(oi as usize).copied() else {
            return;
        };
        let at = Instant::from_micros(jo.at);
        self.now = self.now.max(at);
        self.processed += 1;
        if self.processed.is_multiple_of(OBSERVE_EVERY) {
            self.observe();
        }
        let now = self.now;
        let i = jo.host as usize;
        if jo.ran {
            if jo.delivery != NONE {
                self.owed.trace.push((now.as_micros(), jo.host, jo.delivery));
                self.delivered += 1;
            }
            let (t0, t1) = (jo.tx.0 as usize, jo.tx.1 as usize);
            let UnitOut {
                tx,
                targets,
                events,
                spare,
                ..
            } = out;
            if jo.collude {
                // Rewritten as `flush` does.
                for n in t0..t1 {
                    if let Some((_, data)) = tx.get_mut(n)
                        && let Some(&(_, target)) = targets.iter().find(|t| t.0 as usize == n)
                    {
                        self.collude(i, target, data);
                    }
                }
            }
            let events = events
                .get_mut(jo.ev.0 as usize..jo.ev.1 as usize)
                .unwrap_or_default()
                .iter_mut()
                .filter_map(Option::take);
            self.emit(
                i,
                jo.depth,
                now,
                tx.get_mut(t0..t1).unwrap_or_default(),
                spare,
                events,
                jo.collude,
            );
            if let Some(t) = jo.timer {
                self.seq += 1;
                if jo.next == NONE {
                    self.queue.push(Slot {
                        at: t,
                        seq: self.seq,
                        job: TIMER | jo.host,
                        host: jo.host,
                    });
                } else {
                    timers.push(Reverse((t, self.seq, k, jo.next)));
                }
            }
        }
        if jo.delivery != NONE {
            self.owed.free.push(jo.delivery);
        }
    }

    /// Makes the trace links still owed (see [`Owed::trace`]) and frees their slots.
    pub(super) fn settle_trace(&mut self) {
        if self.owed.trace.is_empty() && self.owed.free.is_empty() {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch.trace);
        self.trace = chain(
            &mut scratch,
            self.trace,
            &self.owed.trace,
            &self.deliveries,
            &self.placed_at,
        );
        self.scratch.trace = scratch;
        self.owed.trace.clear();
        for i in self.owed.free.drain(..) {
            self.deliveries.free(i);
        }
    }
}

/// The trace hash after `prev` and the deliveries `list` (time, receiver, slot).
fn chain(
    scratch: &mut Vec<u8>,
    prev: InfoHash,
    list: &[(u64, u32, u32)],
    deliveries: &Deliveries,
    placed_at: &BTreeMap<usize, (Ipv4Addr, Ipv6Addr)>,
) -> InfoHash {
    let mut h = prev;
    for &(at, to, slot) in list {
        let Some(d) = deliveries.slots.get(slot as usize) else {
            continue;
        };
        let from = match (Sim::placed_at(placed_at, d.from as usize), d.v6) {
            (Some((_, a6)), true) => SocketAddr::new(IpAddr::V6(a6), 4222),
            (Some((a4, _)), false) => SocketAddr::new(IpAddr::V4(a4), 4222),
            (None, true) => Sim::addr6(d.from as usize),
            (None, false) => Sim::addr4(d.from as usize),
        };
        h = trace_step_in(scratch, &h, Instant::from_micros(at), &from, to as usize, &d.data);
    }
    h
}
