//! A progress display for long runs on a terminal: an `indicatif` spinner fed by the simulator's
//! observer hook ([`Sim::set_observer`](crate::Sim::set_observer)). The simulator itself draws
//! nothing; this is the one place that knows about terminals.
//!
//! Nothing is drawn when standard error is not a terminal (logs, CI, pipes) or when
//! `DHT_SIM_PROGRESS=0`.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant as WallInstant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sim::{Observer, Progress};

/// Whether progress is shown: standard error is a terminal and `DHT_SIM_PROGRESS` is not `0`.
pub fn enabled() -> bool {
    enabled_for(
        std::io::stderr().is_terminal(),
        std::env::var("DHT_SIM_PROGRESS").ok().as_deref(),
    )
}

/// [`enabled`]'s rule: `is_terminal`, unless `setting` is `0`.
pub fn enabled_for(is_terminal: bool, setting: Option<&str>) -> bool {
    is_terminal && setting.map(str::trim) != Some("0")
}

/// A spinner line that shows a run's [`Progress`]: phase, nodes up and joined, operations
/// done, virtual and wall time, events per second. Cleared when dropped.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    start: WallInstant,
    last: Option<(WallInstant, u64)>,
    rate: f64,
    /// Shown only once the run has taken this long (a short run stays silent).
    delay: Duration,
    multi: Option<&'static MultiProgress>,
    attached: bool,
}

impl Bar {
    /// A bar titled `title`, drawn on standard error when `visible`, else hidden (it then
    /// draws nothing, ever).
    pub fn new(title: &str, visible: bool) -> Bar {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bar::with_target(title, target, Duration::ZERO, None)
    }

    /// A bar on standard error if [`enabled`].
    pub fn stderr(title: &str) -> Bar {
        Bar::new(title, enabled())
    }

    fn with_target(
        title: &str,
        target: ProgressDrawTarget,
        delay: Duration,
        multi: Option<&'static MultiProgress>,
    ) -> Bar {
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}") {
            bar.set_style(style);
        }
        bar.set_prefix(title.to_string());
        Bar {
            bar,
            start: WallInstant::now(),
            last: None,
            rate: 0.0,
            delay,
            multi,
            attached: false,
        }
    }

    /// Whether this bar draws nothing.
    pub fn is_hidden(&self) -> bool {
        self.multi.is_none() && self.bar.is_hidden()
    }

    /// The indicatif handle, to print lines above the bar (`suspend`) while it runs.
    pub fn handle(&self) -> ProgressBar {
        self.bar.clone()
    }

    /// Shows `p`.
    pub fn update(&mut self, p: &Progress<'_>) {
        let wall = WallInstant::now();
        if let Some((t, n)) = self.last {
            let dt = wall.duration_since(t).as_secs_f64();
            if dt >= 0.5 {
                self.rate = p.processed.saturating_sub(n) as f64 / dt;
                self.last = Some((wall, p.processed));
            }
        } else {
            self.last = Some((wall, p.processed));
        }
        if !self.attached && wall.duration_since(self.start) >= self.delay {
            self.attached = true;
            if let Some(m) = self.multi {
                self.bar = m.add(self.bar.clone());
            }
        }
        self.bar
            .set_message(line(p, wall.duration_since(self.start), self.rate));
        self.bar.tick();
    }

    /// This bar as the simulator's observer.
    pub fn into_observer(mut self) -> Observer {
        Box::new(move |p: &Progress<'_>| self.update(p))
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if let Some(m) = self.multi
            && self.attached
        {
            m.remove(&self.bar);
        }
    }
}

/// The text of one progress line.
pub fn line(p: &Progress<'_>, wall: Duration, events_per_sec: f64) -> String {
    let mut s = format!("{} · {} up", p.phase, p.up);
    if let Some((j, of)) = p.joined {
        s.push_str(&format!(" · {j}/{of} joined"));
    }
    if p.ops_started > 0 {
        s.push_str(&format!(" · ops {}/{}", p.ops_done, p.ops_started));
    }
    s.push_str(&format!(
        " · virt {:.1} s · wall {:.1} s · {:.0}k ev/s",
        p.now.as_micros() as f64 / 1e6,
        wall.as_secs_f64(),
        events_per_sec / 1000.0
    ));
    s
}

/// Bars of scenarios running at once in one test process share one block of lines.
fn multi() -> &'static MultiProgress {
    static M: OnceLock<MultiProgress> = OnceLock::new();
    M.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// The observer [`run_seeds`](crate::run_seeds) gives every simulation of a scenario: a bar
/// named after the scenario and seed, shown after two wall seconds (short scenarios stay
/// silent), only when [`enabled`].
pub(crate) fn scenario_observer(name: &str, seed: u64) -> Option<Observer> {
    if !enabled() {
        return None;
    }
    let bar = Bar::with_target(
        &format!("{name} (seed {seed})"),
        ProgressDrawTarget::hidden(),
        Duration::from_secs(2),
        Some(multi()),
    );
    Some(bar.into_observer())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dht_proto::Instant;

    fn progress() -> Progress<'static> {
        Progress {
            phase: "get",
            now: Instant::from_micros(12_500_000),
            processed: 1000,
            delivered: 900,
            hosts: 10,
            up: 9,
            joined: Some((8, 9)),
            ops_started: 20,
            ops_done: 5,
        }
    }

    #[test]
    fn progress_is_off_without_a_terminal_or_when_asked() {
        assert!(!enabled_for(false, None));
        assert!(!enabled_for(false, Some("1")));
        assert!(!enabled_for(true, Some("0")));
        assert!(enabled_for(true, None));
        assert!(enabled_for(true, Some("1")));
    }

    #[test]
    fn a_hidden_bar_draws_nothing_and_still_follows() {
        let mut bar = Bar::new("swarm", false);
        assert!(bar.is_hidden());
        bar.update(&progress());
        assert!(bar.handle().message().contains("ops 5/20"));
    }

    #[test]
    fn the_line_names_phase_nodes_ops_and_times() {
        let l = line(&progress(), Duration::from_secs(3), 250_000.0);
        for part in [
            "get",
            "9 up",
            "8/9 joined",
            "ops 5/20",
            "virt 12.5 s",
            "wall 3.0 s",
            "250k ev/s",
        ] {
            assert!(l.contains(part), "{part} in {l}");
        }
    }
}
