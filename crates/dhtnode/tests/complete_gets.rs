//! Complete gets in `dhtnode` (issue 20), through the binary's pipes: `g` says how many of the
//! closest nodes answered, and `--uplink-rate` paces a node's replies (`ll` shows the rate).
//! Every wait is bounded; children are killed when dropped.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

mod common;

use common::pair;

/// The figures of "get done: N/M answered in T ms": (N, M, T).
fn get_done(lines: &[String]) -> (usize, usize, f64) {
    let line = lines.last().unwrap();
    let rest = line
        .strip_prefix("get done: ")
        .unwrap_or_else(|| panic!("{line}"));
    let (counts, rest) = rest.split_once(" answered").unwrap_or_else(|| panic!("{line}"));
    let (n, m) = counts.split_once('/').unwrap();
    let ms = rest
        .rsplit_once(" in ")
        .and_then(|(_, t)| t.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("{line}"));
    (n.parse().unwrap(), m.parse().unwrap(), ms.parse().unwrap())
}

#[test]
fn g_says_how_many_of_the_closest_nodes_answered() {
    let (mut a, mut b) = pair(&[]);
    a.say("ll");
    a.expect("uplink not paced");
    a.say("p greeting hello");
    a.expect("stored on");
    b.say("g greeting");
    let got = b.expect("get done");
    assert!(got.iter().any(|l| l.contains("\"hello\"")), "{got:?}");
    let (answered, asked, _) = get_done(&got);
    assert!(answered >= 1 && answered <= asked, "{got:?}");
    assert!(!got.last().unwrap().contains("not every"), "{got:?}");
    a.exit();
    b.exit();
}

#[test]
fn uplink_rate_paces_the_replies_of_the_node() {
    // 20 kB/s: a reply carrying a 40 KB value takes about 2 s.
    let (mut a, mut b) = pair(&["--uplink-rate", "20kB"]);
    a.say("ll");
    a.expect("uplink paced at 20000 bytes/s");
    let text = "x".repeat(40_000);
    a.say(&format!("p large {text}"));
    a.expect("stored on");
    b.say("g large");
    let got = b.expect("get done");
    assert!(got.iter().any(|l| l.contains("size 40000")), "{got:?}");
    let (answered, asked, ms) = get_done(&got);
    assert!(answered >= 1 && answered <= asked, "{got:?}");
    // Half the transfer's time as the bound (unpaced, loopback takes milliseconds).
    assert!(ms >= 1000.0, "not paced: {got:?}");
    a.exit();
    b.exit();
}
