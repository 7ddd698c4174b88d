//! The points of issue 16 about `dhtnode` as a new user meets it, each through the binary's
//! pipes: bad input lines, logging levels, bad ports, cancelling puts that do not exist. Every
//! wait is bounded; children are killed when dropped.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

mod common;

use common::{LOOPBACK, Proc};

fn node(extra: &[&str]) -> Proc {
    let mut args = vec!["-p", "0"];
    args.extend(LOOPBACK);
    args.extend(extra);
    Proc::start(&args)
}

#[test]
fn a_line_that_is_not_utf8_is_reported_and_the_node_reads_on() {
    let mut a = node(&[]);
    a.say("ll");
    a.expect("node id");
    a.send(b"p k \xff\xfe\n");
    a.expect_error("line 2 is not UTF-8, ignored");
    a.say("p k still here");
    let put = a.expect("stored on");
    assert!(put.iter().all(|l| !l.contains("error")), "{put:?}");
    a.exit();
}
