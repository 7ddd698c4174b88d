//! The points of issue 16 about `dhtnode` as a new user meets it, each through the binary's
//! pipes: bad input lines, logging levels, plain lines (no line editor) from a pipe, bad ports,
//! cancelling puts that do not exist. Every wait is bounded; children are killed when dropped.

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
    // Piped, commands are plain lines: no prompt, no line editor's escapes.
    assert!(
        rest.iter().all(|l| !l.starts_with('>') && !l.contains('\x1b')),
        "{rest:?}"
    );
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

#[test]
fn bootstrapping_from_port_0_is_refused_at_the_prompt_and_on_the_command_line() {
    let mut a = node(&[]);
    a.say("b 127.0.0.1:0");
    let said = a.expect("error");
    assert!(said.last().unwrap().contains("port 0"), "{said:?}");
    a.say("b [::1]:0");
    assert!(a.expect("error").last().unwrap().contains("port 0"));
    a.exit();
    let mut args = vec!["-p", "0", "-b", "127.0.0.1:0"];
    args.extend(LOOPBACK);
    let out = std::process::Command::new(common::OURS)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:0: port 0 is no node's port"), "{err}");
}

#[test]
fn cancelling_a_put_that_does_not_exist_says_so() {
    let mut a = node(&[]);
    a.say("cpp k 1234");
    a.expect("no permanent put 0000000000001234 on ");
    // A plain put is not permanent: nothing to cancel.
    a.say("p k once");
    let vid = put_id(&a.expect("stored on"));
    a.say(&format!("cpp k {vid}"));
    a.expect(&format!("no permanent put {vid}"));
    // A permanent one is cancelled once.
    a.say("pp k always");
    let vid = put_id(&a.expect("(permanent)"));
    a.say(&format!("cpp k {vid}"));
    a.expect(&format!("put {vid} on "));
    a.say(&format!("cpp k {vid}"));
    a.expect(&format!("no permanent put {vid}"));
    // The key matters too.
    a.say("pp k again");
    let vid = put_id(&a.expect("(permanent)"));
    a.say(&format!("cpp other {vid}"));
    a.expect(&format!("no permanent put {vid}"));
    a.exit();
}

/// The value id in "put KEY id VID: stored on ...".
fn put_id(lines: &[String]) -> String {
    let line = lines.last().unwrap();
    let id = line.split_whitespace().nth(3).unwrap().trim_end_matches(':');
    assert_eq!(id.len(), 16, "{line}");
    id.to_string()
}
