//! `dhtnode`'s proxy options through the binary's pipes: our node serving the REST proxy
//! (`--proxyserver`) to plain HTTP requests; our `dhtnode --proxyclient` (no UDP socket)
//! putting, getting and listening through our proxy, over HTTP and HTTPS
//! (`--proxyserverssl`); and through Debian's `dhtnode --proxyserver` when it is installed
//! (skipped with a reason otherwise, a failure when `DHT_REQUIRE_OPENDHT` is set). Loopback,
//! ephemeral ports, every wait bounded.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{LOOPBACK, Proc, WAIT, free_port};

const DEBIAN: &str = "/usr/bin/dhtnode";

/// A plain node of ours on a known UDP port: `(node, "127.0.0.1:port")`.
fn plain_node() -> (Proc, String) {
    let port = free_port().to_string();
    let mut args = vec!["-p", &port];
    args.extend(LOOPBACK);
    let node = Proc::start(&args);
    node.expect_error("node running");
    (node, format!("127.0.0.1:{port}"))
}

/// A node of ours that joins `boot` and serves the proxy with `extra` options; `(node, port)`
/// of the server whose line contains `which`.
fn proxy_node(boot: &str, extra: &[&str], which: &str) -> (Proc, u16) {
    let mut args = vec!["-p", "0", "-b", boot, "--proxy-addr", "127.0.0.1"];
    args.extend(LOOPBACK);
    args.extend(extra);
    let node = Proc::start(&args);
    let lines = node.expect(which);
    let line = lines.last().unwrap();
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    (node, port)
}

/// Sends `raw` on a new connection and reads until the answer holds every one of `wanted`
/// (then returns it), or WAIT passes (then panics).
fn http_until(port: u16, raw: &str, wanted: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    read_until(&mut s, wanted)
}

fn read_until(s: &mut TcpStream, wanted: &[&str]) -> String {
    let end = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        let text = String::from_utf8_lossy(&got).into_owned();
        if wanted.iter().all(|w| text.contains(w)) {
            return text;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no {wanted:?} in {:?}", String::from_utf8_lossy(&got));
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn our_dhtnode_serves_the_proxy_to_plain_http() {
    let (mut a, boot) = plain_node();
    let (b, port) = proxy_node(&boot, &["--proxyserver", "0"], "proxy server listening on");
    // Node info: the proxy's node, with a good node once it has joined.
    let info = http_until(
        port,
        "GET /node/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        &["\r\n\r\n{", "}\n"],
    );
    assert!(info.starts_with("HTTP/1.1 200 OK"), "{info}");
    assert!(info.contains("\"node_id\":\""), "{info}");
    assert!(info.contains("Access-Control-Allow-Origin: *"), "{info}");
    // A listen stream first, so the put below shows up on it.
    let mut listen = TcpStream::connect(("127.0.0.1", port)).unwrap();
    listen.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    listen
        .write_all(b"GET /key/foo/listen HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut listen, &["Transfer-Encoding: chunked\r\n\r\n"]);
    // Put through the proxy: 200 with the id filled in, once the node's put is done.
    let put = http_until(
        port,
        &post("/key/foo", "{\"data\":\"aGVsbG8=\",\"type\":0}"),
        &["\"id\":\""],
    );
    assert!(put.starts_with("HTTP/1.1 200 OK"), "{put}");
    // Get through the proxy: a chunked stream of JSON lines, ended.
    let got = http_until(
        port,
        "GET /key/foo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        &["aGVsbG8=", "0\r\n\r\n"],
    );
    assert!(got.contains("Transfer-Encoding: chunked"), "{got}");
    // The plain node sees the value, and its own put reaches the listen stream.
    a.say("g foo");
    let lines = a.expect("get done");
    assert!(lines.iter().any(|l| l.contains("\"hello\"")), "{lines:?}");
    a.say("p foo fromA");
    a.expect("put ");
    read_until(&mut listen, &["aGVsbG8=", "ZnJvbUE="]);
    // A browser's preflight.
    let pre = http_until(
        port,
        "OPTIONS /key/foo HTTP/1.1\r\nHost: x\r\nOrigin: http://example.org\r\nConnection: close\r\n\r\n",
        &["\r\n\r\n"],
    );
    assert!(
        pre.contains("Access-Control-Allow-Methods: OPTIONS, GET, POST, LISTEN"),
        "{pre}"
    );
    drop(listen);
    b.exit();
    a.exit();
}

/// `--proxyclient` against a proxy: put, listen and get, with a plain node on the other side.
fn client_round_trip(a: &mut Proc, client: &mut Proc, tag: &str) {
    client.say(&format!("l {tag}"));
    client.expect("listening on");
    client.say(&format!("p {tag} via-proxy"));
    let put = client.expect("put ");
    assert!(
        put.last().unwrap().contains("stored through the proxy"),
        "{put:?}"
    );
    // The listen may report the value before the put's answer is printed.
    if !put
        .iter()
        .any(|l| l.starts_with("listen 1: new") && l.contains("\"via-proxy\""))
    {
        let heard = client.expect("\"via-proxy\"");
        assert!(heard.last().unwrap().starts_with("listen 1: new"), "{heard:?}");
    }
    // The plain node gets what the client put, and the client hears the plain node's put.
    a.say(&format!("g {tag}"));
    let got = a.expect("get done");
    assert!(got.iter().any(|l| l.contains("\"via-proxy\"")), "{got:?}");
    a.say(&format!("p {tag} from-node"));
    a.expect("put ");
    let heard = client.expect("\"from-node\"");
    assert!(heard.last().unwrap().starts_with("listen 1: new"), "{heard:?}");
    client.say(&format!("g {tag}"));
    let got = client.expect("get done");
    assert!(got.iter().any(|l| l.contains("\"via-proxy\"")), "{got:?}");
    assert!(got.iter().any(|l| l.contains("\"from-node\"")), "{got:?}");
}

#[test]
fn our_proxyclient_puts_gets_and_listens_through_our_proxy() {
    let (mut a, boot) = plain_node();
    let (b, port) = proxy_node(&boot, &["--proxyserver", "0"], "proxy server listening on");
    let server = format!("127.0.0.1:{port}");
    let mut c = Proc::start(&["--proxyclient", &server]);
    c.say("ll");
    c.expect("proxy client of");
    client_round_trip(&mut a, &mut c, "through-ours");
    // A value signed by the client's identity, checked by the plain node.
    c.say("s signed-key by-client");
    c.expect("put ");
    a.say("g signed-key");
    let got = a.expect("get done");
    assert!(
        got.iter()
            .any(|l| l.contains("\"by-client\"") && l.contains("signed by")),
        "{got:?}"
    );
    // What a proxy client cannot do, it says.
    c.say("lr");
    c.expect("not available through a proxy");
    c.exit();
    b.exit();
    a.exit();
}

#[test]
fn our_proxyclient_over_https_with_our_tls_proxy() {
    let dir = std::env::temp_dir().join(format!("dhtnode-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let (cert_path, key_path) = (cert_file.display().to_string(), key_file.display().to_string());

    let (mut a, boot) = plain_node();
    let (b, port) = proxy_node(
        &boot,
        &[
            "--proxyserverssl",
            "0",
            "--proxy-certificate",
            &cert_path,
            "--proxy-privkey",
            &key_path,
        ],
        "proxy server (TLS) listening on",
    );
    let server = format!("https://127.0.0.1:{port}");
    let mut c = Proc::start(&["--proxyclient", &server, "--proxy-ca", &cert_path]);
    client_round_trip(&mut a, &mut c, "through-tls");
    c.exit();
    b.exit();
    a.exit();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_certificate_stops_dhtnode_with_a_reason() {
    let out = std::process::Command::new(common::OURS)
        .args([
            "-p",
            "0",
            "--proxyserverssl",
            "0",
            "--proxy-certificate",
            "/nonexistent/cert.pem",
            "--proxy-privkey",
            "/nonexistent/key.pem",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn our_proxyclient_through_debians_proxy_server() {
    if !std::path::Path::new(DEBIAN).exists() {
        assert!(
            std::env::var_os("DHT_REQUIRE_OPENDHT").is_none(),
            "{DEBIAN} is missing and DHT_REQUIRE_OPENDHT is set"
        );
        eprintln!("skipping: {DEBIAN} (Debian's opendht-tools) is not installed");
        return;
    }
    let udp = free_port().to_string();
    let http = free_tcp_port();
    let mut theirs = Proc::spawn(DEBIAN, &["-p", &udp, "--proxyserver", &http.to_string()]);
    theirs.expect("running on port");
    // Their proxy serves once its port accepts.
    let end = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(Instant::now() < end, "Debian's proxy never listened on {http}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
    // A plain node of ours next to theirs, so their proxy's puts have a peer.
    let boot = format!("127.0.0.1:{udp}");
    let mut args = vec!["-p", "0", "-b", &boot];
    args.extend(LOOPBACK);
    let mut a = Proc::start(&args);
    a.expect_error("node running");
    let server = format!("127.0.0.1:{http}");
    let mut c = Proc::start(&["--proxyclient", &server]);
    client_round_trip(&mut a, &mut c, "through-debian");
    c.exit();
    a.exit();
    theirs.say("x");
}

/// One HTTP request as a push gateway receives it: request line and JSON body.
struct Pushed {
    request_line: String,
    body: serde_json::Value,
}

/// A push gateway played by the test: answers every request `200 {}` and hands it over.
fn fake_gateway() -> (String, std::sync::mpsc::Receiver<Pushed>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then Content-Length bytes of body.
            let parsed = loop {
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..end]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break Some((head, got[end + 4..end + 4 + len].to_vec()));
                    }
                }
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            };
            let Some((head, body)) = parsed else { continue };
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}\n",
            );
            let pushed = Pushed {
                request_line: head.lines().next().unwrap_or_default().to_owned(),
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            };
            if tx.send(pushed).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// `--pushserver` and `--bundleid` end to end: a device subscribes to a key through our
/// dhtnode's proxy; a plain node puts on the key; the gateway receives the gorush payload of
/// OpenDHT 2.4.12 for it (Android form), and an iOS subscriber without a topic gets the bundle id.
#[test]
fn our_dhtnode_pushes_through_its_pushserver_when_a_listened_key_changes() {
    let (gateway, pushes) = fake_gateway();
    let (mut a, boot) = plain_node();
    let (b, port) = proxy_node(
        &boot,
        &[
            "--proxyserver",
            "0",
            "--pushserver",
            &gateway,
            "--bundleid",
            "net.example.rdht",
        ],
        "proxy server listening on",
    );
    let subscribe = |token: &str, platform: &str| {
        let body = format!(
            "{{\"key\":\"{token}\",\"platform\":\"{platform}\",\"client_id\":\"cli-{token}\",\"session_id\":\"sess-{token}\"}}"
        );
        let raw = format!(
            "SUBSCRIBE /key/pushed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let r = http_until(port, &raw, &["\r\n\r\n"]);
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    };
    subscribe("tokA", "android");
    subscribe("tokI", "ios");
    a.say("p pushed hello");
    a.expect("put ");
    let key = dht_proto::InfoHash::get("pushed").to_string();
    let mut by_token = std::collections::BTreeMap::new();
    let end = Instant::now() + WAIT;
    while by_token.len() < 2 {
        let left = end.saturating_duration_since(Instant::now());
        let p = pushes
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("pushes seen: {:?}", by_token.keys().collect::<Vec<_>>()));
        assert_eq!(p.request_line, "POST /api/push HTTP/1.1");
        let n = p.body["notifications"][0].clone();
        // Only value pushes of this key (not reminders).
        if n["data"]["key"] == key.as_str() && n["data"]["ids"].is_string() {
            by_token.insert(n["tokens"][0].as_str().unwrap().to_owned(), n);
        }
    }
    let android = &by_token["tokA"];
    let ids = android["data"]["ids"].as_str().unwrap();
    assert!(
        !ids.is_empty() && ids.bytes().all(|c| c.is_ascii_digit() || c == b','),
        "{android}"
    );
    assert_eq!(android["platform"], 2, "{android}");
    assert_eq!(android["priority"], "high", "{android}");
    assert_eq!(android["time_to_live"], 86400, "{android}");
    assert_eq!(android["data"]["to"], "cli-tokA", "{android}");
    assert_eq!(android["data"]["s"], "sess-tokA", "{android}");
    assert!(android["data"]["t"].is_u64(), "{android}");
    let ios = &by_token["tokI"];
    assert_eq!(ios["platform"], 1, "{ios}");
    assert_eq!(ios["topic"], "net.example.rdht", "{ios}");
    assert_eq!(ios["data"]["ids"], android["data"]["ids"], "{ios}");
    assert_eq!(ios["data"]["to"], "cli-tokI", "{ios}");
    b.exit();
    a.exit();
}
