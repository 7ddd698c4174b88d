//! Runs a test inside a private network namespace, so that its multicast never reaches the host's
//! network (`docs/discovery.md`, "Testing"). Included by path from the tests that need it.
//!
//! The test calls [`inside`] first: in the parent process it re-runs this one test of the same
//! binary under `unshare -n` and checks that it passed, then returns false; in the child it sets
//! up `lo` and the multicast routes, refuses to go on unless `lo` is the only interface, and
//! returns true. Where namespaces are not available the test is skipped with a printed reason,
//! unless `DHT_REQUIRE_NETNS=1`, which makes that a failure (as in CI).

#![allow(dead_code)]

use std::process::Command;

const CHILD: &str = "DHT_NETNS_CHILD";

/// Whether the caller runs inside the namespace (so runs the test's body).
pub(crate) fn inside(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        setup();
        return true;
    }
    let required = std::env::var("DHT_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    let probe = Command::new("unshare").args(["-n", "true"]).output();
    let usable = matches!(&probe, Ok(o) if o.status.success());
    if !usable {
        let why = match probe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("unshare: {e}"),
        };
        assert!(!required, "DHT_REQUIRE_NETNS=1 but no network namespace: {why}");
        println!("SKIPPED {test}: no network namespace here (unshare -n needs root): {why}");
        return false;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("timeout")
        .arg("240")
        .arg("unshare")
        .arg("-n")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test under unshare -n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{test} failed inside its network namespace ({})",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run inside its namespace"
    );
    false
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Only `lo`, up, with the multicast routes of both families on it.
fn setup() {
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        ifaces,
        ["lo"],
        "refusing to multicast: not in a namespace with only lo"
    );
    ip(&["link", "set", "lo", "up"]);
    ip(&["route", "replace", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1"]);
    ip(&[
        "-6", "route", "replace", "local", "ff00::/8", "dev", "lo", "table", "local",
    ]);
}
