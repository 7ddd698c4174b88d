//! The C side: C programs (`tests/c/*.c`) and the example (`examples/dhtcnode.c`) built with the
//! system `cc -Wall -Wextra -Werror -pedantic` against `include/opendht_c.h` and the library
//! this crate builds, through `opendht-c.pc` as a C project would use it; each run also under
//! AddressSanitizer and UndefinedBehaviorSanitizer (leaks included). Then the same example built
//! against Debian's OpenDHT 2.4.12 C binding exchanges values with ours on loopback, both ways.
//!
//! The interop tests print why they skip when `libopendht-c-dev` is absent, and fail instead
//! when `DHT_REQUIRE_OPENDHT=1`.
//!
//! The staging, compiling and process driving live in `common/mod.rs`, which
//! `benches/c_latency.rs` shares.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Lib, Node, built, compile, example, manifest, network, run_program, scratch, theirs_available};

fn c_test(name: &str, lib: Lib, sanitize: bool) -> String {
    let bin = compile(
        name,
        &[manifest().join(format!("tests/c/{name}.c"))],
        lib,
        sanitize,
    );
    let out = run_program(&bin);
    assert!(out.contains(&format!("{name} ok")), "{name}: {out}");
    out
}

#[test]
fn api_program() {
    c_test("api", Lib::Ours, false);
}

#[test]
fn api_program_under_sanitizers() {
    c_test("api", Lib::Ours, true);
}

#[test]
fn api_program_with_the_shared_library() {
    c_test("api", Lib::OursShared, false);
}

#[test]
fn runner_program() {
    c_test("runner", Lib::Ours, false);
}

#[test]
fn runner_program_under_sanitizers() {
    c_test("runner", Lib::Ours, true);
}

/// `first` runs alone; `second` bootstraps from it. Each listens, the other puts, the listener
/// hears and gets; then a listen is cancelled and both quit.
fn exchange(first: (&str, &Path), second: (&str, &Path)) {
    let net = network();
    let mut a = Node::start(first.0, first.1, &["-n".into(), net.clone()]);
    let boot = format!("127.0.0.1:{}", a.port);
    let mut b = Node::start(second.0, second.1, &["-n".into(), net, "-b".into(), boot]);
    // Each knows the other once a ping is answered (the bootstrap alone may still be in flight).
    a.ping_ok(b.port);
    b.ping_ok(a.port);
    let tag = std::process::id();
    let (k1, k2) = (format!("c-test-one-{tag}"), format!("c-test-two-{tag}"));

    // first puts, second listens and gets.
    b.send(&format!("l {k1}"));
    b.expect(|l| l == "listen 0 started", "listen started");
    a.put_ok(&k1, "from-first");
    b.expect(|l| l == "listen 0 new: from-first", "the listened value");
    b.get_has(&k1, "from-first");

    // second puts, first listens and gets.
    a.send(&format!("l {k2}"));
    a.expect(|l| l == "listen 0 started", "listen started");
    b.put_ok(&k2, "from-second");
    a.expect(|l| l == "listen 0 new: from-second", "the listened value");
    a.get_has(&k2, "from-second");

    // A cancelled listen ends (its end callback frees its context and token).
    b.send("c 0");
    b.expect(|l| l == "listen 0 ended", "the listen's end");
    b.send("la");
    b.send("ll");
    b.expect(|l| l.starts_with("node "), "ll");
    // The other listen ends when its runner is deleted.
    a.send("q");
    a.expect(|l| l == "listen 0 ended", "the listen's end at delete");
    a.send_nothing_more_and_quit();
    b.quit();
}

#[test]
fn example_two_of_ours() {
    let ours = example(Lib::Ours, false);
    exchange(("ours-1", &ours), ("ours-2", &ours));
}

#[test]
fn example_two_of_ours_under_sanitizers() {
    let ours = example(Lib::Ours, true);
    exchange(("ours-1", &ours), ("ours-2", &ours));
}

#[test]
fn example_runs_alone_and_quits_on_eof() {
    let ours = example(Lib::OursShared, false);
    let mut n = Node::start("alone", &ours, &[]);
    n.send("ll");
    n.expect(|l| l.starts_with("node "), "ll");
    n.send("bogus");
    n.expect(|l| l == "Unknown command: bogus", "unknown command");
    drop(n.stdin.take());
    n.expect(|l| l == "deleted", "deleted at EOF");
}

#[test]
fn interop_opendht_puts_ours_gets() {
    if !theirs_available("interop_opendht_puts_ours_gets") {
        return;
    }
    let (theirs, ours) = (example(Lib::Theirs, false), example(Lib::Ours, true));
    exchange(("opendht", &theirs), ("ours", &ours));
}

#[test]
fn interop_ours_puts_opendht_gets() {
    if !theirs_available("interop_ours_puts_opendht_gets") {
        return;
    }
    let (theirs, ours) = (example(Lib::Theirs, false), example(Lib::Ours, true));
    exchange(("ours", &ours), ("opendht", &theirs));
}

/// The functions a header declares (`OPENDHT_C_PUBLIC ... name(`).
fn declared(header: &str) -> Vec<String> {
    header
        .lines()
        .filter(|l| l.contains("OPENDHT_C_PUBLIC") && l.contains('(') && !l.contains("#"))
        .filter_map(|l| {
            let head = l.split('(').next()?;
            let name = head
                .split(|c: char| c.is_whitespace() || c == '*')
                .rfind(|s| !s.is_empty())?;
            Some(name.to_string())
        })
        .collect()
}

#[test]
fn every_declared_function_is_exported_and_exercised_by_a_c_test() {
    let header = std::fs::read_to_string(manifest().join("include/opendht_c.h")).unwrap();
    let names = declared(&header);
    assert!(names.len() >= 64, "{names:?}");
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(built("libopendht_c.so"))
        .output()
        .expect("nm runs");
    let symbols: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    let tests: String = ["api.c", "runner.c"]
        .iter()
        .map(|f| std::fs::read_to_string(manifest().join("tests/c").join(f)).unwrap())
        .collect();
    for n in &names {
        assert!(symbols.contains(n), "{n} is declared but not exported");
        assert!(tests.contains(&format!("{n}(")), "{n} is not called by tests/c");
    }
    // Exported C functions are the header's: nothing else of the C API leaks out.
    for s in symbols.iter().filter(|s| s.starts_with("dht_")) {
        assert!(names.contains(s), "{s} is exported but not declared");
    }
    assert!(!symbols.iter().any(|s| s == "dht_runner_put_permanent"));
}

#[test]
fn every_function_of_opendht_2_4_12_is_declared() {
    if !theirs_available("every_function_of_opendht_2_4_12_is_declared") {
        return;
    }
    let theirs = declared(&std::fs::read_to_string("/usr/include/opendht/opendht_c.h").unwrap());
    let ours = declared(&std::fs::read_to_string(manifest().join("include/opendht_c.h")).unwrap());
    assert!(theirs.len() >= 63);
    for n in &theirs {
        assert!(ours.contains(n), "{n} of OpenDHT 2.4.12 is missing");
    }
}

/// The header also serves C++ (`extern "C"`), as OpenDHT's does.
#[test]
fn header_compiles_as_cpp() {
    if Command::new("c++").arg("--version").output().is_err() {
        println!("header_compiles_as_cpp: skipped: no c++ compiler");
        return;
    }
    let src = scratch().join("header.cpp");
    std::fs::write(
        &src,
        "#include <opendht_c.h>\nint main() { dht_infohash h; dht_infohash_zero(&h); return !dht_infohash_is_zero(&h); }\n",
    )
    .unwrap();
    let out = Command::new("c++")
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(manifest().join("include"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
