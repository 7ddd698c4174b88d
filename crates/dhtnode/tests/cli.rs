//! The `dhtnode` binary driven by scripts on stdin, as the README's quick start does: two nodes on
//! loopback exchange a value and a listen notification; bad files and hosts give clear errors.
//! Every wait is bounded; children are killed when dropped.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{LOOPBACK, OURS, Proc, WAIT, free_port};

#[test]
fn two_nodes_exchange_a_value_and_a_listen_hears_a_put() {
    let (mut a, mut b) = common::pair(&[]);
    a.say("p greeting hello from a");
    a.expect("stored on");
    b.say("g greeting");
    let got = b.expect("get done");
    assert!(got.iter().any(|l| l.contains("\"hello from a\"")), "{got:?}");
    b.say("l room");
    b.expect("(listen 1)");
    a.say("p room knock knock");
    a.expect("stored on");
    let heard = b.expect("listen 1: new");
    assert!(heard.last().unwrap().contains("\"knock knock\""), "{heard:?}");
    b.say("cl room 1");
    b.expect("listen 1 cancelled");
    // Signed and encrypted puts: each node has an identity; `ll` prints its public key.
    let public_key = |p: &mut Proc| {
        p.say("ll");
        let info = p.expect("public key");
        let line = info.last().unwrap().clone();
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    let a_key = public_key(&mut a);
    let b_key = public_key(&mut b);
    a.say("s notice signed by a");
    a.expect("(signed)");
    b.say("g notice");
    let got = b.expect("get done");
    assert!(
        got.iter()
            .any(|l| l.contains("\"signed by a\"") && l.contains(&format!("signed by {a_key}"))),
        "{got:?}"
    );
    a.say(&format!("e secret {b_key} for b only"));
    a.expect("(encrypted)");
    b.say("g secret");
    let got = b.expect("get done");
    assert!(got.iter().any(|l| l.contains("\"for b only\"")), "{got:?}");
    // By id: the key `b` announced is looked up.
    b.say("ll");
    let info = b.expect("public key");
    let b_id = info
        .last()
        .unwrap()
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    assert_eq!(b_id.len(), 40, "{info:?}");
    a.say(&format!("e secret2 {b_id} found your key"));
    let put = a.expect("put ");
    assert!(
        put.last().unwrap().contains("(encrypted)") && !put.last().unwrap().contains("stored on 0 nodes"),
        "{put:?}"
    );
    b.say("g secret2");
    let got = b.expect("get done");
    assert!(got.iter().any(|l| l.contains("\"found your key\"")), "{got:?}");
    // `a` cannot read what it sealed to `b`: it gets nothing.
    a.say("g secret");
    let got = a.expect("get done");
    assert!(!got.iter().any(|l| l.starts_with("value")), "{got:?}");
    b.say("ld");
    b.expect("values stored");
    b.say("frobnicate");
    b.expect("unknown command");
    a.exit();
    b.exit();
}

#[test]
fn state_is_kept_across_a_restart_with_persist_and_identity() {
    let dir = std::env::temp_dir().join(format!("dhtnode-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state").display().to_string();
    let id = dir.join("id").display().to_string();
    let mut args = vec!["-p", "0", "--persist", &state, "-i", &id];
    args.extend(LOOPBACK);
    let mut a = Proc::start(&args);
    a.say("ll");
    let first_id = a.expect("node id")[0].clone();
    a.say("p alone kept value");
    a.expect("put");
    a.exit();
    let mut a = Proc::start(&args);
    a.say("ll");
    assert_eq!(a.expect("node id")[0], first_id, "same identity, same id");
    a.say("ld alone");
    let stored = a.expect("values stored");
    assert!(stored.iter().any(|l| l.contains("\"kept value\"")), "{stored:?}");
    a.exit();
    let _ = std::fs::remove_dir_all(&dir);
}

fn fails_with(args: &[&str], words: &str) {
    let out = Command::new(OURS)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(words), "{err}");
}

#[test]
fn bad_identity_host_and_port_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("dhtnode-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad-id");
    std::fs::write(&bad, "xyz").unwrap();
    let bad = bad.display().to_string();
    let mut args = vec!["-p", "0", "-i", &bad];
    args.extend(LOOPBACK);
    fails_with(&args, "expected 64 hex digits");
    let dirname = dir.display().to_string();
    let mut args = vec!["-p", "0", "-i", &dirname];
    args.extend(LOOPBACK);
    fails_with(&args, "identity file");
    let mut args = vec!["-p", "0", "-b", "no-such-host.invalid:4222"];
    args.extend(LOOPBACK);
    fails_with(&args, "cannot resolve no-such-host.invalid");
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut args = vec!["-p", &port];
    args.extend(LOOPBACK);
    fails_with(&args, "cannot bind 127.0.0.1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dhtchat_carries_a_line_from_one_chatter_to_another() {
    const CHAT: &str = env!("CARGO_BIN_EXE_dhtchat");
    let port = free_port().to_string();
    let mut args = vec!["-p", &port];
    args.extend(LOOPBACK);
    let hub = Proc::start(&args);
    let boot = format!("127.0.0.1:{port}");
    let start = |nick: &str| {
        let mut args = vec!["-b", &boot, "--nick", nick, "lobby"];
        args.extend(LOOPBACK);
        Proc::spawn(CHAT, &args)
    };
    let mut alice = start("alice");
    let bob = start("bob");
    alice.expect("joined #lobby as alice");
    bob.expect("joined #lobby as bob");
    // Bob's listen may not be in place yet: say it until bob hears it.
    let end = Instant::now() + WAIT;
    loop {
        alice.say("hello bob");
        if let Ok(l) = bob.lines.recv_timeout(Duration::from_millis(500)) {
            assert_eq!(l, "<alice> hello bob");
            break;
        }
        assert!(Instant::now() < end, "bob never heard alice");
    }
    // Alice does not hear herself.
    assert!(alice.lines.recv_timeout(Duration::from_millis(300)).is_err());
    // A line that is not UTF-8 is reported and not sent; the chat goes on.
    alice.send(b"caf\xe9\n");
    alice.expect_error("not UTF-8");
    alice.say("still here");
    bob.expect("<alice> still here");
    drop(hub);
}
