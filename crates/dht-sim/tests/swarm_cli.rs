//! The `swarm` binary end to end, with a tiny network: JSON and report written, no progress
//! drawn when standard error is not a terminal, compare, and clear refusals of bad input.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn swarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .env_remove("DHT_SIM_SEED")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A tiny run writing `NAME.json` and `NAME.html` in `dir`.
fn tiny(dir: &Path, name: &str, nodes: &str, seed: &str) -> Output {
    let json = dir.join(format!("{name}.json"));
    let html = dir.join(format!("{name}.html"));
    let svg = dir.join(format!("{name}.svg"));
    swarm(&[
        "--nodes",
        nodes,
        "--puts",
        "15",
        "--gets",
        "15",
        "--settle",
        "5",
        "--rate",
        "5",
        "--seed",
        seed,
        "--json",
        json.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
        "--latency-svg",
        svg.to_str().unwrap(),
    ])
}

#[test]
fn a_run_writes_json_and_a_report_and_draws_no_progress_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny(dir.path(), "a", "30", "3");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("gets: ") && stdout.contains("json: wrote"),
        "{stdout}"
    );
    // Standard error is a pipe here: no progress line, no carriage return, nothing at all.
    assert!(stderr.is_empty(), "progress drawn into a pipe: {stderr:?}");
    let s = dht_sim::summary::RunSummary::read(&dir.path().join("a.json")).unwrap();
    assert!(s.complete && s.seed == 3 && s.config.nodes == 30);
    assert_eq!(s.config.args.get("gets").map(String::as_str), Some("15"));
    let names: Vec<&str> = s.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["run", "bootstrap", "settle", "put", "get"]);
    let page = std::fs::read_to_string(dir.path().join("a.html")).unwrap();
    assert!(
        page.contains("<svg")
            && !page.contains("<script")
            && !page.contains("http://")
            && !page.contains("https://")
    );
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let svg = std::fs::read_to_string(dir.path().join("a.svg")).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.contains("get first value"));
    assert_eq!(files.len(), 3, "no temporary file left");
}

#[test]
fn compare_prints_differences_and_overlays_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    assert!(tiny(dir.path(), "a", "30", "1").status.success());
    assert!(tiny(dir.path(), "b", "30", "2").status.success());
    let (a, b, r) = (
        dir.path().join("a.json"),
        dir.path().join("b.json"),
        dir.path().join("cmp.html"),
    );
    let out = swarm(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--report",
        r.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("B - A") && stdout.contains("get: gets found (%)"),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&r).unwrap();
    assert!(page.contains("A solid, B dashed") && !page.contains("<script"));
}

#[test]
fn bad_input_gets_a_clear_message_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let refuse = |out: Output, what: &str| {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(what), "{what} not in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    refuse(swarm(&["--nodes", "0"]), "at least 2 nodes");
    refuse(
        swarm(&["--nodes", "10", "--puts", "0", "--gets", "0"]),
        "nothing to measure",
    );
    let nowhere = d("no/such/dir/r.html");
    refuse(
        swarm(&["--nodes", "10", "--report", nowhere.to_str().unwrap()]),
        "does not exist",
    );

    assert!(tiny(dir.path(), "a", "30", "1").status.success());
    assert!(tiny(dir.path(), "small", "20", "1").status.success());
    let a = d("a.json");
    let json = std::fs::read_to_string(&a).unwrap();
    std::fs::write(d("cut.json"), &json[..json.len() / 2]).unwrap();
    std::fs::write(
        d("v9.json"),
        json.replacen("\"schema_version\": 1", "\"schema_version\": 9", 1),
    )
    .unwrap();
    let r = d("r.html");
    let cmp = |x: &str, y: &str| {
        swarm(&[
            "compare",
            d(x).to_str().unwrap(),
            d(y).to_str().unwrap(),
            "--report",
            r.to_str().unwrap(),
        ])
    };
    refuse(cmp("a.json", "cut.json"), "cut.json: it is truncated");
    refuse(cmp("v9.json", "a.json"), "schema version 9");
    refuse(cmp("a.json", "small.json"), "different sizes (30 and 20 nodes)");
    refuse(cmp("a.json", "missing.json"), "missing.json: cannot read it");
    assert!(!r.exists(), "no report for refused input");
}

#[test]
fn a_run_starts_itself_again_on_huge_pages_unless_told_not_to() {
    let small = [
        "--nodes", "20", "--puts", "3", "--gets", "3", "--settle", "2", "--rate", "5",
    ];
    let run = |extra: &[&str], tunables: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_swarm"));
        c.args(small).args(extra).env_remove("DHT_SIM_SEED");
        match tunables {
            Some(t) => c.env("GLIBC_TUNABLES", t),
            None => c.env_remove("GLIBC_TUNABLES"),
        };
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let on = run(&[], None);
    assert!(on.contains("huge pages: asked"), "{on}");
    // Other tunables are kept, the setting added after them.
    let kept = run(&[], Some("glibc.malloc.arena_max=2"));
    assert!(kept.contains("huge pages: asked"), "{kept}");
    let off = run(&["--no-huge-pages"], None);
    assert!(off.contains("huge pages: no"), "{off}");
    // A setting of the caller's own is left as it is.
    let theirs = run(&[], Some("glibc.malloc.hugetlb=0"));
    assert!(theirs.contains("huge pages: no"), "{theirs}");
    // The same run either way.
    let trace = |s: &str| s.lines().find(|l| l.contains("trace ")).map(str::to_string);
    assert_eq!(trace(&on), trace(&off));
}
