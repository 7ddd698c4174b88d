//! Two runs side by side: the headline figures of each and their differences
//! (`swarm compare A.json B.json`).

use std::fmt;

use crate::summary::RunSummary;

/// Whether a figure is better larger or smaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Larger is better (success rates, throughput).
    Higher,
    /// Smaller is better (latency, traffic, memory).
    Lower,
}

/// One headline figure of two runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Headline {
    /// What it is, with its unit.
    pub name: String,
    /// Run A's value.
    pub a: f64,
    /// Run B's value.
    pub b: f64,
    /// Which way is better.
    pub better: Better,
}

impl Headline {
    /// `b - a`.
    pub fn diff(&self) -> f64 {
        self.b - self.a
    }

    /// `(b - a) / a`, when `a` is not zero.
    pub fn relative(&self) -> Option<f64> {
        (self.a != 0.0).then(|| (self.b - self.a) / self.a.abs())
    }

    /// Whether B is better (`Some(true)`), worse, or the same (`None`, within 0.1 %).
    pub fn b_better(&self) -> Option<bool> {
        let d = self.diff();
        if d.abs() <= 1e-3 * self.a.abs().max(self.b.abs()).max(1e-12) {
            return None;
        }
        Some((d > 0.0) == (self.better == Better::Higher))
    }
}

/// Why two runs cannot be compared.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompareError {
    /// The runs had different numbers of nodes.
    #[error(
        "the runs are of different sizes ({a} and {b} nodes): their figures do not compare; run both with the same --nodes"
    )]
    DifferentSizes {
        /// Nodes of run A.
        a: usize,
        /// Nodes of run B.
        b: usize,
    },
    /// A run with no operation.
    #[error("run {0} has no operations to compare (an empty or aborted run)")]
    Empty(&'static str),
}

/// The headline figures of one run: `(name, value, which way is better)`, per phase with
/// operations, then the run's cost.
pub fn headlines(s: &RunSummary) -> Vec<(String, f64, Better)> {
    let mut v = Vec::new();
    for p in s.phases_with_ops() {
        let n = &p.name;
        if p.gets.started > 0 {
            v.push((
                format!("{n}: gets found (%)"),
                100.0 * p.gets.rate(),
                Better::Higher,
            ));
            let l = &p.get_first_value;
            v.push((format!("{n}: get first value p50 (ms)"), l.p50_ms, Better::Lower));
            v.push((format!("{n}: get first value p90 (ms)"), l.p90_ms, Better::Lower));
            v.push((format!("{n}: get first value p99 (ms)"), l.p99_ms, Better::Lower));
            v.push((
                format!("{n}: get done p50 (ms)"),
                p.get_done.p50_ms,
                Better::Lower,
            ));
            let hops: u64 = p.get_hops.iter().sum();
            let weighted: u64 = p.get_hops.iter().enumerate().map(|(h, c)| h as u64 * c).sum();
            v.push((
                format!("{n}: get hops, mean"),
                weighted as f64 / hops.max(1) as f64,
                Better::Lower,
            ));
        }
        if p.puts.started > 0 {
            v.push((
                format!("{n}: puts acknowledged (%)"),
                100.0 * p.puts.rate(),
                Better::Higher,
            ));
            v.push((
                format!("{n}: put done p50 (ms)"),
                p.put_done.p50_ms,
                Better::Lower,
            ));
            v.push((
                format!("{n}: put done p99 (ms)"),
                p.put_done.p99_ms,
                Better::Lower,
            ));
        }
        v.push((
            format!("{n}: datagrams per node"),
            p.messages_per_node,
            Better::Lower,
        ));
        v.push((format!("{n}: bytes per node"), p.bytes_per_node, Better::Lower));
    }
    v.push((
        "stored values per node, max".into(),
        s.per_node.stored_values.max,
        Better::Lower,
    ));
    v.push((
        "memory per node (KiB)".into(),
        s.memory.per_node_bytes as f64 / 1024.0,
        Better::Lower,
    ));
    v.push(("events per wall second".into(), s.events_per_sec, Better::Higher));
    v.push(("wall time (s)".into(), s.wall_secs, Better::Lower));
    v
}

/// The headline figures both runs have, A's and B's, in A's order. Refuses runs of different
/// sizes and empty runs.
pub fn compare(a: &RunSummary, b: &RunSummary) -> Result<Vec<Headline>, CompareError> {
    if a.config.nodes != b.config.nodes {
        return Err(CompareError::DifferentSizes {
            a: a.config.nodes,
            b: b.config.nodes,
        });
    }
    if a.is_empty() {
        return Err(CompareError::Empty("A"));
    }
    if b.is_empty() {
        return Err(CompareError::Empty("B"));
    }
    let hb = headlines(b);
    Ok(headlines(a)
        .into_iter()
        .filter_map(|(name, va, better)| {
            let vb = hb.iter().find(|h| h.0 == name)?.1;
            Some(Headline {
                name,
                a: va,
                b: vb,
                better,
            })
        })
        .collect())
}

/// The headlines as a text table.
pub struct Table<'a>(pub &'a [Headline]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.0.iter().map(|h| h.name.len()).max().unwrap_or(0);
        writeln!(
            f,
            "{:w$}  {:>14}  {:>14}  {:>14}  {:>8}",
            "figure", "A", "B", "B - A", "change"
        )?;
        for h in self.0 {
            let rel = h
                .relative()
                .map_or("-".to_string(), |r| format!("{:+.1} %", 100.0 * r));
            let mark = match h.b_better() {
                Some(true) => "  better",
                Some(false) => "  worse",
                None => "",
            };
            writeln!(
                f,
                "{:w$}  {:>14.2}  {:>14.2}  {:>+14.2}  {:>8}{mark}",
                h.name,
                h.a,
                h.b,
                h.diff(),
                rel
            )?;
        }
        Ok(())
    }
}
