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

#[test]
fn scripts_log_information_and_v_adds_debug_never_on_stdout() {
    // Piped, without -v: information ("node running"), no debug lines.
    let mut quiet = node(&[]);
    quiet.expect_error("node running");
    quiet.say("ll");
    quiet.expect("node id");
    let (errors, rest) = quiet.exit_with_output();
    assert!(errors.iter().all(|l| !l.contains("DEBUG")), "{errors:?}");
    assert!(rest.iter().all(|l| !l.contains("INFO")), "{rest:?}");
    // -v: debug too.
    let mut verbose = node(&["-v"]);
    verbose.expect_error("DEBUG");
    verbose.say("ll");
    let out = verbose.expect("node id");
    assert!(
        out.iter().all(|l| !l.contains("DEBUG") && !l.contains("INFO")),
        "{out:?}"
    );
    verbose.exit();
    // -l FILE: the log goes to the file, none to stderr.
    let log = std::env::temp_dir().join(format!("dhtnode-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let path = log.display().to_string();
    let mut to_file = node(&["-l", &path]);
    to_file.say("ll");
    to_file.expect("node id");
    let (errors, _) = to_file.exit_with_output();
    assert!(errors.is_empty(), "{errors:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("node running"), "{text}");
    let _ = std::fs::remove_file(&log);
}
