//! Our `dhtnode` binary and Debian's (OpenDHT 2.4.12) side by side, each called by its full
//! path: ours joins through theirs, and each gets the value the other put, through their own
//! command lines. Skipped when Debian's binary is missing, unless `DHT_REQUIRE_OPENDHT` is set.
//! Debian's node binds every address; it is given loopback peers only.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

mod common;

use common::{LOOPBACK, Proc, free_port};

const DEBIAN: &str = "/usr/bin/dhtnode";

#[test]
fn our_dhtnode_and_debians_exchange_values_through_their_command_lines() {
    if !std::path::Path::new(DEBIAN).exists() {
        assert!(
            std::env::var_os("DHT_REQUIRE_OPENDHT").is_none(),
            "{DEBIAN} is missing and DHT_REQUIRE_OPENDHT is set"
        );
        eprintln!("skipping: {DEBIAN} is not installed");
        return;
    }
    let port = free_port().to_string();
    let mut theirs = Proc::spawn(DEBIAN, &["-p", &port]);
    theirs.expect("running on port");
    let boot = format!("127.0.0.1:{port}");
    let mut args = vec!["-p", "0", "-b", &boot];
    args.extend(LOOPBACK);
    let mut ours = Proc::start(&args);
    let t = std::time::Instant::now();
    ours.say("p from-ours rust");
    let put = ours.expect("put ");
    assert!(put.last().unwrap().contains("stored on 1 nodes"), "{put:?}");
    theirs.say("g from-ours");
    let got = theirs.expect("Get: ");
    let got = [got, theirs.expect("Get: ")].concat();
    assert!(got.iter().any(|l| l.contains("\"rust\"")), "{got:?}");
    theirs.say("p from-theirs cpp");
    theirs.expect("Put: ");
    ours.say("g from-theirs");
    let got = ours.expect("get done");
    assert!(got.iter().any(|l| l.contains("\"cpp\"")), "{got:?}");
    ours.exit();
    eprintln!("exchange took {:?}", t.elapsed());
    theirs.say("x");
}
