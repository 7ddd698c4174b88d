//! The status page at `/ui/`: its files and JSON over plain HTTP, and the page itself in a real
//! browser (Debian's `chromium`, headless) against a proxy over a node with a peer on loopback.
//!
//! The browser tests are skipped with a printed reason when `/usr/bin/chromium` (or
//! `$CHROMIUM`) is missing, unless `DHT_REQUIRE_CHROMIUM=1`; then they fail.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_proxy::{Config, ProxyServer};

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

fn assert_csp(r: &Reply) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("no CSP: {r:?}"));
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn the_page_files_are_served_with_a_strict_policy() {
    smol::block_on(async {
        let fake = Fake::new();
        let server = ProxyServer::bind(loopback(), Arc::new(fake.clone()), Config::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        for (path, ty, has) in [
            ("/ui/", "text/html; charset=utf-8", "<script src=\"app.js\""),
            ("/ui/index.html", "text/html; charset=utf-8", "id=\"bucket-rows\""),
            ("/ui/app.js", "text/javascript; charset=utf-8", "textContent"),
            ("/ui/style.css", "text/css; charset=utf-8", ".bucket"),
        ] {
            let r = exchange(addr, &get(path)).await;
            assert_eq!(r.status, 200, "{path}: {r:?}");
            assert_eq!(r.header("content-type"), Some(ty), "{path}");
            assert_csp(&r);
            assert!(r.body.contains(has) || path.ends_with(".css"), "{path}");
        }
        // The page fetches nothing from elsewhere.
        for path in ["/ui/", "/ui/app.js", "/ui/style.css"] {
            let body = exchange(addr, &get(path)).await.body;
            assert!(!body.contains("http://") && !body.contains("https://"), "{path}");
        }
        for path in ["/ui/nope", "/ui/../node/info", "/ui/api/", "/ui/app.js/x"] {
            let r = exchange(addr, &get(path)).await;
            assert_eq!(r.status, 404, "{path}: {r:?}");
            assert_csp(&r);
        }
        // Without details from the node, the status is its node info.
        let r = exchange(addr, &get("/ui/api/status")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_csp(&r);
        let j = r.json();
        assert_eq!(j["node"]["node_id"], InfoHash::get("fake").to_string());
        assert_eq!(j["node"]["detailed"], false);
        assert_eq!(j["node"]["status"]["ipv4"], "connected");
        assert_eq!(j["node"]["status"]["ipv6"], "disconnected");
        assert!(j["proxy"]["requests"].as_u64().unwrap() >= 1, "{j}");
        // Nor a routing table: the page then shows the node info's totals.
        let r = exchange(addr, &get("/ui/api/routing")).await;
        assert_eq!(r.status, 503, "{r:?}");
        assert_csp(&r);
        assert!(r.json()["err"].is_string());
        // Names are keys as dhtnode computes them.
        let r = exchange(addr, &get("/ui/api/hash?s=hello%20world")).await;
        assert_eq!(r.json()["key"], InfoHash::get("hello world").to_string());
        let hex = InfoHash::get("x").to_string();
        let r = exchange(addr, &get(&format!("/ui/api/hash?s={hex}"))).await;
        assert_eq!(r.json()["key"], hex);
        assert_eq!(exchange(addr, &get("/ui/api/hash?s=%FF")).await.status, 400);
        // OpenDHT's routes are unchanged: `GET /ui` is a get of "ui", JSON without a CSP.
        let r = exchange(addr, &get("/ui")).await;
        assert_eq!(r.status, 200);
        r.assert_common_headers();
        assert!(r.header("content-security-policy").is_none());
        assert!(fake.calls().contains(&Call::Get(InfoHash::get("ui"))));
        let r = exchange(addr, &get("/node/info")).await;
        r.assert_common_headers();
        assert!(r.header("content-security-policy").is_none());
        server.shutdown().await;
    });
}

#[test]
fn the_status_of_a_real_node_has_its_buckets_and_traffic() {
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let server = ProxyServer::bind(loopback(), Arc::new(a.clone()), Config::default())
            .await
            .unwrap();
        let j = exchange(server.local_addr(), &get("/ui/api/status")).await.json();
        let n = &j["node"];
        assert_eq!(n["detailed"], true, "{j}");
        assert_eq!(n["node_id"], a.node_id().to_string());
        assert_eq!(n["network"], 0);
        assert_eq!(n["status"]["ipv4"], "connected", "{j}");
        assert!(n.get("buckets").is_none(), "{j}");
        // The buckets are the node's typed summary, on their own route.
        let r = exchange(server.local_addr(), &get("/ui/api/routing")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_csp(&r);
        let t = r.json();
        let want = a.inspect(|n| n.routing_summary()).await.unwrap();
        let buckets = t["ipv4"].as_array().unwrap();
        assert_eq!(buckets.len(), want.v4.len(), "{t}");
        assert_eq!(t["ipv6"].as_array().unwrap().len(), want.v6.len(), "{t}");
        for (j, b) in buckets.iter().zip(&want.v4) {
            assert_eq!(j["first"], b.first.to_string(), "{t}");
            assert_eq!(j["depth"], b.depth, "{t}");
            assert_eq!(j["prefix"].as_str().unwrap().len(), b.depth as usize, "{t}");
            assert_eq!(j["own"], b.own, "{t}");
            assert_eq!(j["cached"], b.cached, "{t}");
            assert_eq!(j["bad"], b.bad, "{t}");
            // Good and dubious may move between the two reads; their sum may not.
            let n = j["good"].as_u64().unwrap() + j["dubious"].as_u64().unwrap();
            assert_eq!(n as usize, b.good + b.dubious, "{t}");
        }
        let nodes: u64 = buckets
            .iter()
            .map(|b| b["good"].as_u64().unwrap() + b["dubious"].as_u64().unwrap())
            .sum();
        assert!(nodes >= 1, "{t}");
        assert_eq!(buckets[0]["first"], InfoHash::ZERO.to_string(), "{t}");
        assert_eq!(buckets.iter().filter(|b| b["own"] == true).count(), 1, "{t}");
        assert_eq!(n["traffic"]["messages"][0]["kind"], "Ping", "{j}");
        assert!(n["traffic"]["messages"][0]["received"].as_u64().is_some(), "{j}");
        assert!(n["traffic"]["rate_limited"].as_u64().is_some(), "{j}");
        assert!(n["storage"]["listeners"].as_u64().is_some(), "{j}");
        assert_eq!(n["local_addrs"][0], a.local_addrs()[0].to_string(), "{j}");
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn the_status_of_a_dht_mio_node_as_dhtnode_serves_it() {
    let a = dht_mio::Runner::run(dht_mio::Config::loopback()).unwrap();
    let b = dht_mio::Runner::run(dht_mio::Config::loopback()).unwrap();
    let (ha, hb) = (a.handle(), b.handle());
    hb.bootstrap_addr(ha.local_addrs()[0]).unwrap();
    assert!(hb.wait_connected(Duration::from_secs(20)));
    assert!(ha.wait_connected(Duration::from_secs(20)));
    smol::block_on(async {
        let server = ProxyServer::bind(loopback(), Arc::new(ha.clone()), Config::default())
            .await
            .unwrap();
        let j = exchange(server.local_addr(), &get("/ui/api/status")).await.json();
        let n = &j["node"];
        assert_eq!(n["detailed"], true, "{j}");
        assert_eq!(n["node_id"], ha.node_id().to_string());
        // The buckets through the driver's `routing_summary`.
        let t = exchange(server.local_addr(), &get("/ui/api/routing"))
            .await
            .json();
        let buckets = t["ipv4"].as_array().unwrap();
        assert!(!buckets.is_empty(), "{t}");
        let nodes: u64 = buckets
            .iter()
            .map(|b| b["good"].as_u64().unwrap() + b["dubious"].as_u64().unwrap())
            .sum();
        assert!(nodes >= 1, "{t}");
        server.shutdown().await;
    });
    a.shutdown(Duration::from_secs(5)).unwrap();
    b.shutdown(Duration::from_secs(5)).unwrap();
}

// ----- in a real browser

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    let required = std::env::var("DHT_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{} is missing and DHT_REQUIRE_CHROMIUM=1 (apt-get install chromium)",
        path.display()
    );
    eprintln!(
        "skipping: {} is not installed (apt-get install chromium)",
        path.display()
    );
    None
}

/// Runs headless chromium with `args` and `url`, killed after `deadline`; its standard output.
fn run_chromium(bin: &Path, args: &[String], url: &str, deadline: Duration) -> String {
    let profile = std::env::temp_dir().join(format!(
        "rdht-ui-chromium-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&profile).unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.is_some(),
        "chromium did not finish within {deadline:?}; output so far: {dom}"
    );
    dom
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

#[test]
fn the_page_in_headless_chromium_shows_the_node_and_a_value_found() {
    let Some(bin) = chromium() else { return };
    smol::block_on(async {
        let (a, b) = real_pair().await;
        // The values are put by the peer: the proxy's node finds them over the network.
        b.put(
            InfoHash::get("ui test"),
            Value::new(11, b"hello from the peer".to_vec()),
        )
        .await
        .unwrap();
        b.put(
            InfoHash::get("ui test"),
            Value::new(12, b"<img src=x id=injected>".to_vec()),
        )
        .await
        .unwrap();
        b.put(
            InfoHash::get("ui test"),
            Value::new(13, vec![0xff, 0x00, b'<', b'b', b'>', 0x80]),
        )
        .await
        .unwrap();
        // Markup that would run or load something if the page took it as HTML (the policy
        // would also block it: this checks the page itself).
        b.put(
            InfoHash::get("ui test"),
            Value::new(14, b"<script>document.title='pwned'</script>".to_vec()),
        )
        .await
        .unwrap();
        let mut typed = Value::new(15, b"<img src=x onerror=\"document.title='pwned'\">".to_vec());
        typed.user_type = "<b>bold</b>".to_owned();
        b.put(InfoHash::get("ui test"), typed).await.unwrap();
        let server = ProxyServer::bind(loopback(), Arc::new(a.clone()), Config::default())
            .await
            .unwrap();
        let url = format!("http://{}/ui/?key=ui%20test", server.local_addr());
        let dom = {
            let (bin, url) = (bin.clone(), url.clone());
            smol::unblock(move || {
                run_chromium(
                    &bin,
                    &["--virtual-time-budget=5000".to_owned(), "--dump-dom".to_owned()],
                    &url,
                    Duration::from_secs(60),
                )
            })
            .await
        };
        // The node id, filled in by the script.
        assert!(
            dom.contains(&format!(
                "<span id=\"node-id\" class=\"mono\">{}</span>",
                a.node_id()
            )),
            "{dom}"
        );
        assert!(dom.contains("class=\"status connected\""), "{dom}");
        // Bucket rows from `/ui/api/routing`, our own bucket marked, with a good node.
        assert!(
            dom.contains("<tr class=\"bucket\" data-family=\"ipv4\" data-own=\"true\"><td>IPv4 (ours)</td>"),
            "{dom}"
        );
        assert!(dom.contains("<td class=\"n good\">1</td>"), "{dom}");
        // The values found through the key box: text, text that looks like HTML (escaped),
        // and bytes that are not text (hex with size).
        assert!(dom.contains("data-id=\"11\""), "{dom}");
        assert!(dom.contains("hello from the peer"), "{dom}");
        assert!(dom.contains("&lt;img src=x id=injected&gt;"), "{dom}");
        assert!(!dom.contains("id=\"injected\""), "{dom}");
        assert!(dom.contains("ff 00 3c 62 3e 80"), "{dom}");
        assert!(dom.contains("<td class=\"n\">6 B</td>"), "{dom}");
        assert!(
            dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
            "{dom}"
        );
        assert!(
            dom.contains("&lt;img src=x onerror=\"document.title='pwned'\"&gt;"),
            "{dom}"
        );
        assert!(dom.contains("user type &lt;b&gt;bold&lt;/b&gt;"), "{dom}");
        assert!(!dom.contains("<img") && !dom.contains("<b>"), "{dom}");
        assert!(!dom.contains("<script>document"), "{dom}");
        assert!(dom.contains("<title>rdht node</title>"), "{dom}");
        assert!(dom.contains("5 values found"), "{dom}");

        // Listening through the key box: the stream's values, the stream left open.
        let dom = {
            let (bin, url) = (bin.clone(), format!("{url}&listen=1"));
            smol::unblock(move || {
                run_chromium(
                    &bin,
                    &["--virtual-time-budget=5000".to_owned(), "--dump-dom".to_owned()],
                    &url,
                    Duration::from_secs(60),
                )
            })
            .await
        };
        assert!(dom.contains("Listening to "), "{dom}");
        assert!(
            dom.contains("<button id=\"listen\" type=\"button\">Stop</button>"),
            "{dom}"
        );
        assert!(dom.contains("hello from the peer"), "{dom}");
        assert!(dom.contains("ff 00 3c 62 3e 80"), "{dom}");

        // A screenshot, for people (and docs/img/node-page.png).
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("ui-screenshot.png");
        let _ = std::fs::remove_file(&shot);
        let args = [
            "--virtual-time-budget=5000".to_owned(),
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,900".to_owned(),
        ];
        smol::unblock(move || run_chromium(&bin, &args, &url, Duration::from_secs(60))).await;
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        eprintln!("screenshot: {}", shot.display());

        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn the_page_in_headless_chromium_says_when_the_node_is_alone_or_gone() {
    let Some(bin) = chromium() else { return };
    smol::block_on(async {
        let node = dht_smol::Handle::start(dht_smol::Config::loopback())
            .await
            .unwrap();
        let server = ProxyServer::bind(loopback(), Arc::new(node.clone()), Config::default())
            .await
            .unwrap();
        let url = format!("http://{}/ui/", server.local_addr());
        let load = |url: String| {
            let bin = bin.clone();
            smol::unblock(move || {
                run_chromium(
                    &bin,
                    &["--virtual-time-budget=3000".to_owned(), "--dump-dom".to_owned()],
                    &url,
                    Duration::from_secs(60),
                )
            })
        };
        // Alone: no good node, the page says the node is disconnected.
        let dom = load(url.clone()).await;
        assert!(dom.contains(&node.node_id().to_string()), "{dom}");
        assert!(
            dom.contains("The node is disconnected: no good node in either routing table."),
            "{dom}"
        );
        // Its one empty bucket per family.
        assert!(dom.contains("<td class=\"n good\">0</td>"), "{dom}");
        // The node shut down under the proxy: the page says it does not answer.
        node.shutdown().await;
        let dom = load(url).await;
        assert!(dom.contains("The node does not answer"), "{dom}");
        server.shutdown().await;
    });
}

/// A node whose `details` (asked by each of the page's status polls) waits for the test's word:
/// each poll hands the test a sender, and goes on when the test sends on it (or fails when the
/// test drops it). While a poll waits, the page's fetch is pending, and headless chromium's
/// virtual time stands still: the test decides when the page's clock may move on.
#[derive(Clone)]
struct Gated {
    inner: dht_smol::Handle,
    arrived: smol::channel::Sender<smol::channel::Sender<()>>,
}

impl dht_proxy::Dht for Gated {
    fn get(&self, key: InfoHash) -> dht_proxy::BoxStream<Value> {
        dht_proxy::Dht::get(&self.inner, key)
    }
    fn put(
        &self,
        key: InfoHash,
        value: Value,
        permanent: bool,
    ) -> dht_proxy::BoxFuture<Result<dht_proxy::PutResult, String>> {
        dht_proxy::Dht::put(&self.inner, key, value, permanent)
    }
    fn cancel_put(&self, key: InfoHash, id: u64) {
        dht_proxy::Dht::cancel_put(&self.inner, key, id)
    }
    fn listen(&self, key: InfoHash) -> dht_proxy::BoxStream<dht_proxy::ListenEvent> {
        dht_proxy::Dht::listen(&self.inner, key)
    }
    fn info(&self) -> dht_proxy::BoxFuture<Option<dht_proxy::NodeInfo>> {
        dht_proxy::Dht::info(&self.inner)
    }
    fn details(&self) -> dht_proxy::BoxFuture<Option<dht_proxy::NodeDetails>> {
        let (arrived, inner) = (self.arrived.clone(), self.inner.clone());
        Box::pin(async move {
            let (go, wait) = smol::channel::bounded(1);
            arrived.send(go).await.ok()?;
            wait.recv().await.ok()?;
            dht_proxy::Dht::details(&inner).await
        })
    }
    fn routing(&self) -> dht_proxy::BoxFuture<Option<dht_proto::PerFamily<Vec<dht_proto::BucketSummary>>>> {
        dht_proxy::Dht::routing(&self.inner)
    }
}

/// Waits for `f` at most 30 s.
async fn within30<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    smol::future::or(async { Some(f.await) }, async {
        smol::Timer::after(Duration::from_secs(30)).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("timed out: {what}"))
}

/// Accepts the next connection on `l` that carries a request (the page's next poll), and returns
/// it unanswered.
async fn next_request(l: &smol::net::TcpListener) -> smol::net::TcpStream {
    use smol::io::AsyncReadExt;
    loop {
        let (mut c, _) = within30("the page's next poll", l.accept()).await.unwrap();
        let mut buf = [0u8; 1024];
        // A connection opened ahead of need and closed unused carries nothing: skip it.
        let n = within30("a request line", c.read(&mut buf)).await.unwrap_or(0);
        if buf[..n].starts_with(b"GET /ui/api/status") {
            return c;
        }
    }
}

#[test]
fn the_page_in_headless_chromium_says_when_the_proxy_restarts_and_recovers() {
    let Some(bin) = chromium() else { return };
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let (arrived_tx, arrived) = smol::channel::unbounded();
        let node = Arc::new(Gated {
            inner: a.clone(),
            arrived: arrived_tx,
        });
        let first = ProxyServer::bind(loopback(), node.clone(), Config::default())
            .await
            .unwrap();
        let addr = first.local_addr();
        let url = format!("http://{addr}/ui/");
        let browser = smol::unblock(move || {
            run_chromium(
                &bin,
                &["--virtual-time-budget=60000".to_owned(), "--dump-dom".to_owned()],
                &url,
                Duration::from_secs(120),
            )
        });
        // The page's first poll goes through: it shows the node.
        let poll = within30("the first poll", arrived.recv()).await.unwrap();
        poll.send(()).await.unwrap();
        // Its second poll (after it rendered the first) is held, and the server stopped under it.
        let held_in_first = within30("the second poll", arrived.recv()).await.unwrap();
        first.shutdown().await;
        drop(held_in_first);
        // While it is down, the port answers nothing: each poll's connection is closed
        // unanswered (a stand-in bound to the port, so that the test sees the polls). The first
        // poll fails; the page's next poll, which it sends only after that failure, is held
        // while the server starts again on the same port, and then fails too.
        let stand_in = smol::net::TcpListener::bind(addr).await.unwrap();
        drop(next_request(&stand_in).await);
        let held = next_request(&stand_in).await;
        drop(stand_in);
        let second = ProxyServer::bind(addr, node.clone(), Config::default())
            .await
            .unwrap();
        assert_eq!(second.local_addr(), addr);
        drop(held);
        // The page polls the new server: from then on every poll goes through.
        let release = smol::spawn(async move {
            while let Ok(poll) = arrived.recv().await {
                let _ = poll.send(()).await;
            }
        });
        let dom = browser.await;
        drop(release);

        let id = a.node_id().to_string();
        assert!(
            dom.contains(&format!("<span id=\"node-id\" class=\"mono\">{id}</span>")),
            "{dom}"
        );
        // The history says connected, unreachable, reconnected, in that order.
        let at = |s: &str| dom.find(s).unwrap_or_else(|| panic!("{s:?} not in {dom}"));
        let connected = at(&format!("Connected: node {id}."));
        let lost = at("The proxy is unreachable (");
        let back = at("Reconnected");
        assert!(connected < lost && lost < back, "{dom}");
        assert!(dom[back..].contains(&format!("node {id}.")), "{dom}");
        assert!(dom.contains("; the page reconnected."), "{dom}");
        assert!(dom.contains("data-connection=\"ok\""), "{dom}");
        // And the node again: its status and buckets.
        assert!(dom.contains("class=\"status connected\""), "{dom}");
        assert!(dom.contains("<tr class=\"bucket\" data-family=\"ipv4\""), "{dom}");

        second.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}
