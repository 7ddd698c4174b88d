//! The run's figures as JSON (round trip, version and truncation refused), the HTML report
//! (self-contained, escaped, the expected sections), the comparison of two runs, and atomic
//! writes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_sim::compare::{CompareError, compare};
use dht_sim::net::{Loss, NetConfig};
use dht_sim::summary::{MAX_BINS, NODE_BINS, ReadError, RunInfo, RunSummary, SCHEMA_VERSION, write_atomic};
use dht_sim::{Sim, SimConfig, html};

/// A small run with puts and gets in their phases, a crash and a lossy spell; `phase` names
/// the get phase.
fn run(seed: u64, nodes: usize, get_phase: &str) -> RunSummary {
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes,
        keep_events: false,
        ..SimConfig::default()
    });
    assert!(sim.bootstrap_all(Duration::from_secs(120)));
    sim.set_phase("put");
    let keys: Vec<InfoHash> = (0..10).map(|i| InfoHash::get(format!("k{i}"))).collect();
    let puts: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let at = sim.random_up();
            sim.put(
                at,
                *k,
                Value::new(0, format!("v{i}").into_bytes()),
                PutOptions::default(),
            )
        })
        .collect();
    assert!(sim.run_until_done(&puts, Duration::from_secs(60)));
    sim.set_phase(get_phase);
    let victim = sim.random_up();
    sim.crash(victim);
    sim.set_net(
        NetConfig {
            loss: Loss::Random(0.05),
            ..NetConfig::default()
        },
        "loss 5 %",
    );
    let mut gets = Vec::new();
    for k in &keys {
        let at = sim.random_up();
        gets.push(sim.get(at, *k));
        sim.run_for(Duration::from_millis(500));
    }
    assert!(sim.run_until_done(&gets, Duration::from_secs(60)));
    RunSummary::build(
        &sim,
        RunInfo {
            complete: true,
            wall: Duration::from_millis(10),
            ..RunInfo::default()
        },
    )
}

#[test]
fn a_summary_names_its_phases_and_stays_small() {
    let s = run(1, 40, "get");
    assert_eq!(s.schema_version, SCHEMA_VERSION);
    let names: Vec<&str> = s.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["run", "bootstrap", "put", "get"]);
    let put = &s.phases[2];
    let get = &s.phases[3];
    assert_eq!((put.puts.started, get.gets.started), (10, 10));
    assert!(get.gets.ok >= 9, "{:?}", get.gets);
    assert_eq!(get.get_first_value.count, get.gets.ok);
    assert_eq!(get.get_first_value.cdf.len(), 103);
    assert!(get.get_first_value.cdf.windows(2).all(|w| w[0][0] <= w[1][0]));
    assert_eq!(get.get_hops.iter().sum::<u64>(), get.gets.ok);
    assert!(
        put.put_hops.iter().sum::<u64>() == 10 && put.put_hops[0] == 0,
        "a put takes hops"
    );
    assert_eq!(
        s.per_node.messages_sent.count, 39,
        "the crashed host is not counted"
    );
    assert_eq!(s.per_node.messages_sent.percentiles.len(), 101);
    assert_eq!(s.per_node.messages_sent.histogram.counts.len(), NODE_BINS);
    assert_eq!(s.per_node.messages_sent.histogram.counts.iter().sum::<u64>(), 39);
    assert_eq!(s.per_node.stored_values.hottest.len(), 5);
    assert!(s.timeline.faults && s.timeline.bins.len() <= MAX_BINS);
    let labels: Vec<&str> = s.timeline.marks.iter().map(|m| m.label.as_str()).collect();
    assert!(
        labels.contains(&"crash") && labels.contains(&"loss 5 %"),
        "{labels:?}"
    );
    assert!(s.to_json().len() < 64 * 1024, "bounded, whatever the run");
}

#[test]
fn json_round_trips() {
    let s = run(2, 30, "get");
    let json = s.to_json();
    let back = RunSummary::from_json(&json).unwrap();
    assert_eq!(back.to_json(), json);
    assert!(back == s, "every field, floats exact");
}

#[test]
fn another_schema_version_is_refused() {
    let s = run(2, 30, "get");
    let mut v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    v["schema_version"] = serde_json::json!(SCHEMA_VERSION + 1);
    let err = RunSummary::from_json(&v.to_string()).unwrap_err();
    assert_eq!(
        err,
        ReadError::Version {
            found: u64::from(SCHEMA_VERSION + 1)
        }
    );
    assert!(err.to_string().contains("schema version 2"), "{err}");
    v.as_object_mut().unwrap().remove("schema_version");
    assert_eq!(
        RunSummary::from_json(&v.to_string()).unwrap_err(),
        ReadError::NoVersion
    );
    v["schema_version"] = serde_json::json!(SCHEMA_VERSION);
    v.as_object_mut().unwrap().remove("phases");
    assert!(matches!(
        RunSummary::from_json(&v.to_string()),
        Err(ReadError::Schema(_))
    ));
}

#[test]
fn a_truncated_or_empty_file_is_refused() {
    let json = run(2, 30, "get").to_json();
    for cut in [json.len() / 2, json.len() - 3, 1] {
        let err = RunSummary::from_json(&json[..cut]).unwrap_err();
        assert!(matches!(err, ReadError::Truncated(_)), "cut at {cut}: {err}");
    }
    assert_eq!(RunSummary::from_json("  \n").unwrap_err(), ReadError::Empty);
    assert!(matches!(
        RunSummary::from_json("<html>"),
        Err(ReadError::NotJson(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.json");
    std::fs::write(&p, &json[..json.len() / 3]).unwrap();
    let err = RunSummary::read(&p).unwrap_err();
    assert!(err.to_string().contains("cut.json: it is truncated"), "{err}");
    let missing = RunSummary::read(&dir.path().join("none.json")).unwrap_err();
    assert!(matches!(missing.error, ReadError::Io(_)));
}

/// What a self-contained page must not have: scripts, remote fetches of any kind.
fn assert_self_contained(page: &str) {
    for bad in [
        "<script", "http://", "https://", "@import", "url(", "<link", "<img", "<iframe",
    ] {
        assert!(!page.contains(bad), "the page has {bad}");
    }
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    assert!(page.contains("Content-Security-Policy"));
}

#[test]
fn the_report_is_self_contained_escaped_and_has_its_sections() {
    let s = run(3, 40, "get <b>&\"bold\"</b>");
    let page = html::report(&s);
    assert_self_contained(&page);
    for section in [
        "id=\"summary\"",
        "id=\"latency\"",
        "id=\"hops\"",
        "id=\"load\"",
        "id=\"routing\"",
        "id=\"timeline\"",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(page.matches("<svg").count() >= 8, "plots inline");
    for what in [
        "get first value",
        "get done",
        "put done",
        "Nodes by datagrams sent",
        "Nodes by stored values",
        "routing table",
        "hottest",
    ] {
        assert!(page.contains(what), "no {what}");
    }
    assert!(!page.contains("<b>&"), "phase names are escaped");
    assert!(
        page.contains("get &lt;b&gt;&amp;"),
        "escaped in HTML text and in the SVG"
    );
    assert!(page.len() < 2 * 1024 * 1024);
}

#[test]
fn a_run_without_faults_has_no_timeline_and_an_empty_run_says_so() {
    let mut sim = Sim::new(SimConfig {
        nodes: 10,
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_secs(1));
    let s = RunSummary::build(&sim, RunInfo::default());
    assert!(s.is_empty() && !s.timeline.faults);
    let page = html::report(&s);
    assert_self_contained(&page);
    assert!(page.contains("No operation was started"));
    assert!(page.contains("stopped short"), "complete: false is shown");
    assert!(!page.contains("id=\"timeline\""));
}

#[test]
fn two_runs_of_one_size_compare_and_others_do_not() {
    let (a, b) = (run(4, 40, "get"), run(5, 40, "get"));
    let rows = compare(&a, &b).unwrap();
    let names: Vec<&str> = rows.iter().map(|h| h.name.as_str()).collect();
    for n in [
        "get: gets found (%)",
        "get: get first value p50 (ms)",
        "put: put done p50 (ms)",
        "memory per node (KiB)",
    ] {
        assert!(names.contains(&n), "no {n} in {names:?}");
    }
    let self_cmp = compare(&a, &a).unwrap();
    assert!(self_cmp.iter().all(|h| h.diff() == 0.0 && h.b_better().is_none()));
    let page = html::compare(&a, &b, &rows, ("a.json", "b <&>.json"));
    assert_self_contained(&page);
    assert!(page.contains("B = b &lt;&amp;&gt;.json"));
    assert!(page.contains("A solid, B dashed") && page.contains("id=\"headlines\""));
    let text = dht_sim::compare::Table(&rows).to_string();
    assert!(text.contains("B - A") && text.lines().count() == rows.len() + 1);

    let c = run(4, 30, "get");
    assert_eq!(
        compare(&a, &c).unwrap_err(),
        CompareError::DifferentSizes { a: 40, b: 30 }
    );
    let mut empty = a.clone();
    empty.phases.clear();
    assert_eq!(compare(&a, &empty).unwrap_err(), CompareError::Empty("B"));
    assert!(
        CompareError::DifferentSizes { a: 40, b: 30 }
            .to_string()
            .contains("different sizes")
    );
}

#[test]
fn writes_are_atomic_and_leave_nothing_when_they_fail() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("run.json");
    write_atomic(&p, b"old").unwrap();
    write_atomic(&p, b"new content").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"new content");
    // A directory where the file should go: the rename fails; nothing is left behind.
    let target = dir.path().join("taken");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), b"x").unwrap();
    assert!(write_atomic(&target, b"data").is_err());
    // No such directory: nothing is written.
    assert!(write_atomic(&dir.path().join("no/such/dir.json"), b"data").is_err());
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["run.json", "taken"], "no temporary file left");
}
