//! The former names still work while callers move (`RunnerConfig`, `RunError`, `RunError::Poll`,
//! `Handle::bootstrap`); drop this file with the aliases.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

use std::time::Duration;

use dht_mio::{RunError, Runner, RunnerConfig};

#[test]
fn the_former_names_still_build_and_run() {
    let a = Runner::run(RunnerConfig::loopback()).unwrap();
    let b = Runner::run(RunnerConfig {
        bind6: None,
        ..RunnerConfig::loopback()
    })
    .unwrap();
    b.bootstrap(a.local_addrs()[0]);
    assert!(b.wait_connected(Duration::from_secs(15)));
    let e: RunError = RunError::Poll(std::io::Error::other("x"));
    assert!(matches!(e, RunError::Io(_)));
    b.shutdown(Duration::from_secs(5)).unwrap();
    a.shutdown(Duration::from_secs(5)).unwrap();
    assert!(matches!(b_stopped(), RunError::Closed));
}

fn b_stopped() -> RunError {
    RunError::Closed
}
