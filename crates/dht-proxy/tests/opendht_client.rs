//! OpenDHT's own proxy client against our server: Debian's `dhtnode --proxyclient` (2.4.12)
//! puts, gets and listens through the proxy, gets a value put by a plain OpenDHT node, and
//! recovers (re-POSTs its permanent put, re-sends its listen) after our server restarts; with a
//! device key (`--devicekey`) its listen becomes a push subscription, and our server pushes to
//! a gateway played by the test when a plain OpenDHT node puts a value.
//! Skipped when `/usr/bin/dhtnode` is missing, unless `DHT_REQUIRE_OPENDHT` is set. Debian's
//! plain node binds every address; it is given loopback peers only.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{FakeGateway, real_pair, within};
use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_proxy::{Config, Gateway, GatewayConfig, ProxyServer};

const DHTNODE: &str = "/usr/bin/dhtnode";

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, args: &[&str]) -> Proc {
        let mut child = Command::new(DHTNODE)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
            name,
        }
    }

    fn say(&mut self, line: &str) {
        eprintln!("[{}] < {line}", self.name);
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Lines up to and including the first that contains `what`, within `secs` seconds.
    fn expect_within(&self, secs: u64, what: &str) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    eprintln!("[{}] > {l}", self.name);
                    let hit = l.contains(what);
                    seen.push(l);
                    if hit {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "[{}] no line with {what:?} within {secs} s; saw {seen:?}",
            self.name
        );
    }

    fn expect(&self, what: &str) -> Vec<String> {
        self.expect_within(30, what)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn opendht_present() -> bool {
    if std::path::Path::new(DHTNODE).exists() {
        return true;
    }
    assert!(
        std::env::var_os("DHT_REQUIRE_OPENDHT").is_none(),
        "{DHTNODE} is missing and DHT_REQUIRE_OPENDHT is set"
    );
    eprintln!("skipping: {DHTNODE} is not installed (apt-get install dhtnode)");
    false
}

fn bind(addr: SocketAddr, node: &dht_smol::Handle, gateway: &Gateway) -> ProxyServer {
    let config = Config {
        push: Some(Arc::new(gateway.clone())),
        bundle_id: "com.example.app".into(),
        ..Config::default()
    };
    smol::block_on(ProxyServer::bind(addr, Arc::new(node.clone()), config)).unwrap()
}

#[test]
fn opendht_proxy_client_uses_our_server() {
    if !opendht_present() {
        return;
    }
    // Our two nodes; the proxy serves `b`; `a` puts and gets directly.
    let (a, b) = smol::block_on(real_pair());
    let gw = smol::block_on(FakeGateway::start(vec![]));
    let gateway = Gateway::start(GatewayConfig {
        gateway: Some(gw.addr.to_string()),
        ..GatewayConfig::default()
    });
    let server = bind("127.0.0.1:0".parse().unwrap(), &b, &gateway);
    let addr = server.local_addr();
    let url = addr.to_string();
    let mut client = Proc::spawn("proxyclient", &["--proxyclient", &url]);

    // Put through the proxy; the value is in the DHT.
    client.say("p rdht-proxy-k1 hello");
    let put = client.expect("Put: ");
    assert!(put.last().unwrap().contains("success"), "{put:?}");
    let got = smol::block_on(within(
        20,
        "direct get",
        a.get_all(InfoHash::get("rdht-proxy-k1")),
    ))
    .unwrap();
    assert!(got.iter().any(|v| v.data == b"hello"), "{got:?}");

    // Get through the proxy a value put directly.
    smol::block_on(a.put(
        InfoHash::get("rdht-proxy-k2"),
        Value::new(0, b"from-rust".to_vec()),
    ))
    .unwrap();
    client.say("g rdht-proxy-k2");
    let get = client.expect("Get: completed");
    // Without a user type dhtnode prints the data in hex.
    let hex: String = b"from-rust".iter().map(|b| format!("{b:02x}")).collect();
    assert!(get.iter().any(|l| l.contains(&hex)), "{get:?}");

    // A value put by a plain OpenDHT node, which joined through our node `a`.
    let theirs_port = free_udp_port().to_string();
    let boot = a.local_addrs()[0].to_string();
    let mut theirs = Proc::spawn("opendht", &["-p", &theirs_port, "-b", &boot]);
    theirs.say("p rdht-proxy-k3 from-opendht");
    let put = theirs.expect("Put: ");
    assert!(put.last().unwrap().contains("success"), "{put:?}");
    client.say("g rdht-proxy-k3");
    let get = client.expect("Get: completed");
    assert!(get.iter().any(|l| l.contains("from-opendht")), "{get:?}");

    // Listen: a value put later by the plain OpenDHT node arrives.
    client.say("l rdht-proxy-k4");
    client.expect("Listening");
    theirs.say("p rdht-proxy-k4 heard-1");
    theirs.expect("Put: ");
    client.expect("Listen: found");
    client.expect("\"heard-1\"");

    // A permanent put, then our server restarts on the same port: the client re-POSTs the put
    // and re-sends its listen, which hears the next value.
    client.say("pp rdht-proxy-k5 perm");
    let put = client.expect("Put: ");
    assert!(put.last().unwrap().contains("success"), "{put:?}");
    assert_eq!(server.stats().permanent_puts, 1);
    smol::block_on(server.shutdown());
    let server = bind(addr, &b, &gateway);
    let end = Instant::now() + Duration::from_secs(90);
    while server.stats().permanent_puts < 1 || server.stats().listens < 1 {
        assert!(
            Instant::now() < end,
            "client did not come back: {:?}",
            server.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    theirs.say("p rdht-proxy-k4 heard-2");
    theirs.expect("Put: ");
    client.expect("\"heard-2\"");
    let got = smol::block_on(within(
        20,
        "direct get",
        a.get_all(InfoHash::get("rdht-proxy-k5")),
    ))
    .unwrap();
    assert!(got.iter().any(|v| v.data == b"perm"), "{got:?}");

    // A client with a device key subscribes instead of listening; a value put by the plain
    // OpenDHT node becomes a push to the gateway (dhtnode has no platform: the iOS form).
    let mut push_client = Proc::spawn("pushclient", &["--proxyclient", &url, "--devicekey", "devtok123"]);
    push_client.say("l rdht-proxy-k6");
    push_client.expect("Listening");
    let end = Instant::now() + Duration::from_secs(30);
    while server.stats().subscriptions < 1 {
        assert!(Instant::now() < end, "no SUBSCRIBE: {:?}", server.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    theirs.say("p rdht-proxy-k6 pushed");
    theirs.expect("Put: ");
    let key6 = InfoHash::get("rdht-proxy-k6").to_string();
    let end = Instant::now() + Duration::from_secs(30);
    let push = loop {
        if let Some(p) = gw
            .got()
            .into_iter()
            .find(|p| p.json()["notifications"][0]["data"]["key"] == key6)
        {
            break p;
        }
        assert!(Instant::now() < end, "no push; got {:?}", gw.got());
        std::thread::sleep(Duration::from_millis(20));
    };
    let n = &push.json()["notifications"][0];
    assert_eq!(n["tokens"][0], "devtok123");
    assert_eq!(n["data"]["to"], "dhtnode");
    assert_eq!(n["platform"], 1);
    assert_eq!(n["topic"], "com.example.app");
    assert_eq!(n["priority"], "high");

    push_client.say("x");
    client.say("x");
    theirs.say("x");
    smol::block_on(async {
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}
