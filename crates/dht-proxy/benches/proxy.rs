//! Our proxy server beside OpenDHT's (`/usr/bin/dhtnode --proxyserver`) on loopback. Prints
//! figures; asserts nothing (`cargo bench -p dht-proxy --bench proxy`).
//!
//! Each server runs in a process of its own (ours: this binary again, with `BENCH_ROLE=server`),
//! next to a plain node of ours, so RSS and CPU are the server's alone. Phases:
//! 1. GET of a stored key, 32 connections (`wrk`, else skipped);
//! 2. GET `/`, 32 connections;
//! 3. put on the plain node → the value's line on a proxy listen stream: p50/p99;
//! 4. many listen streams open at once: the server's RSS and its CPU while idle.
//!
//! Environment: `BENCH_SECS` (seconds per wrk phase, 10), `BENCH_LISTENS` (10000),
//! `BENCH_NOTIFY` (puts timed in phase 3, 100), `BENCH_CONNS` (32), `BENCH_SKIP_OPENDHT=1`,
//! `BENCH_GET_CACHE_MS` (our `Timers::get_cache`; 0 turns it off).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a bench: a failed set-up is a panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dht_proto::InfoHash;
use dht_proto::value::Value;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `BENCH_ROLE=server`: a plain node and our proxy over a second node; prints the UDP address of
/// the plain node and the proxy's port, then serves until stdin closes.
fn serve() {
    smol::block_on(async {
        let a = dht_smol::Handle::start(dht_smol::Config::loopback())
            .await
            .unwrap();
        let b = dht_smol::Handle::start(dht_smol::Config::loopback())
            .await
            .unwrap();
        b.bootstrap_addr(a.local_addrs()[0]).unwrap();
        b.wait_connected(Duration::from_secs(20)).await.unwrap();
        let mut config = dht_proxy::Config::default();
        if let Ok(ms) = std::env::var("BENCH_GET_CACHE_MS") {
            config.timers.get_cache = Duration::from_millis(ms.parse().unwrap());
        }
        let server =
            dht_proxy::ProxyServer::bind("127.0.0.1:0".parse().unwrap(), Arc::new(b.clone()), config)
                .await
                .unwrap();
        println!("node {} proxy {}", b.local_addrs()[0], server.local_addr().port());
        let _ = smol::unblock(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        // What the nodes saw: requests the rate limiters dropped, timeouts, queue overflows.
        let st = server.stats();
        eprintln!(
            "  proxy: {} requests, {} DHT gets, {} gets answered by a just-finished one",
            st.requests, st.dht_gets, st.cached_gets
        );
        eprintln!("  {}", node_stats("proxy's node", &b).await);
        eprintln!("  {}", node_stats("its bootstrap node", &a).await);
        server.shutdown().await;
    });
}

async fn node_stats(name: &str, node: &dht_smol::Handle) -> String {
    let Ok(s) = node.stats().await else {
        return format!("{name}: no stats");
    };
    format!(
        "{name}: dropped {:?} (rate-limited peer {}, global {}), timeouts {}, retransmits {}, \
         transmit/event/pending overflow {}/{}/{}",
        s.dropped,
        s.dropped[dht_proto::DropReason::RateLimitedPeer],
        s.dropped[dht_proto::DropReason::RateLimitedGlobal],
        s.timeouts,
        s.retransmits,
        s.transmit_overflow,
        s.event_overflow,
        s.pending_overflow
    )
}

struct Server {
    name: &'static str,
    child: Child,
    /// The proxy's HTTP port.
    port: u16,
    /// A UDP address of the proxy's DHT node (for the plain node to join).
    node: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Ours prints its nodes' stats when stdin closes; give it a moment.
        if self.child.stdin.take().is_some() {
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ours() -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_ROLE", "server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let w: Vec<&str> = line.split_whitespace().collect();
    Server {
        name: "rdht",
        port: w[3].parse().unwrap(),
        node: w[1].parse().unwrap(),
        child,
    }
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn opendht() -> Option<Server> {
    if std::env::var_os("BENCH_SKIP_OPENDHT").is_some() || !std::path::Path::new("/usr/bin/dhtnode").exists()
    {
        println!("OpenDHT: skipped (BENCH_SKIP_OPENDHT, or /usr/bin/dhtnode missing)");
        return None;
    }
    let (udp, port) = (free_udp(), free_tcp());
    let child = Command::new("/usr/bin/dhtnode")
        .args(["-s", "-p", &udp.to_string(), "--proxyserver", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "OpenDHT's proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Server {
        name: "OpenDHT 2.4.12",
        child,
        port,
        node: SocketAddr::from(([127, 0, 0, 1], udp)),
    })
}

/// One request on a new connection; the whole answer.
fn exchange(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn wrk(port: u16, path: &str, secs: u64, conns: u64) -> String {
    if !std::path::Path::new("/usr/bin/wrk").exists() {
        return "skipped: /usr/bin/wrk missing (apt-get install wrk)".into();
    }
    let out = Command::new("/usr/bin/wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "--timeout",
            "2s",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pick = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    format!(
        "{} | mean/stdev/max: {} | p50 {} | p99 {} | {}{}",
        pick("Requests/sec:"),
        pick("Latency").trim_start_matches("Latency "),
        pick("50%").trim_start_matches("50% "),
        pick("99%").trim_start_matches("99% "),
        pick("requests in"),
        {
            let errors = pick("Socket errors:");
            if errors.is_empty() {
                String::new()
            } else {
                format!(" | {errors}")
            }
        }
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Reads `s` until `needle` has come; false on timeout.
fn wait_for(s: &mut TcpStream, seen: &mut Vec<u8>, needle: &[u8], limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 8192];
    loop {
        if let Some(i) = seen.windows(needle.len()).position(|w| w == needle) {
            seen.drain(..i + needle.len());
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
}

/// Put on the plain node, then time until the proxy's listen stream shows the value.
fn notify(server: &Server, plain: &dht_smol::Handle, n: u64) -> String {
    let key = InfoHash::get(format!("bench-notify-{}", server.port));
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    s.write_all(format!("GET /key/{key}/listen HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut seen = Vec::new();
    assert!(wait_for(&mut s, &mut seen, b"\r\n\r\n", Duration::from_secs(10)));
    // Let the proxy's DHT listen settle before timing.
    std::thread::sleep(Duration::from_millis(500));
    let mut times = Vec::new();
    let mut lost = 0;
    for i in 0..n {
        let data = format!("notify-{i:06}");
        let b64 = base64_of(data.as_bytes());
        let t = Instant::now();
        let value = Value::new(0, data.into_bytes());
        let p = plain.clone();
        smol::spawn(async move {
            let _ = p.put(key, value).await;
        })
        .detach();
        if wait_for(&mut s, &mut seen, b64.as_bytes(), Duration::from_secs(5)) {
            times.push(t.elapsed());
        } else {
            lost += 1;
        }
    }
    times.sort();
    format!(
        "p50 {:.2} ms, p99 {:.2} ms over {} puts ({lost} not seen in 5 s)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.len()
    )
}

fn base64_of(b: &[u8]) -> String {
    // The value line of the stream carries the data in padded standard base64.
    let line = dht_proxy::value_line(&Value::new(1, b.to_vec()), false);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    v["data"].as_str().unwrap().to_owned()
}

/// Resident memory (KiB) and CPU ticks (user + system) of `pid`.
fn proc_stats(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (rss, ticks)
}

fn listens(server: &Server, n: u64) -> String {
    let pid = server.child.id();
    let (rss0, _) = proc_stats(pid);
    let t = Instant::now();
    let mut conns = Vec::new();
    for i in 0..n {
        let key = InfoHash::get(format!("bench-listen-{}", i % 100));
        match TcpStream::connect(("127.0.0.1", server.port)) {
            Ok(mut s) => {
                if s.write_all(format!("GET /key/{key}/listen HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .is_err()
                {
                    break;
                }
                conns.push(s);
            }
            Err(e) => {
                println!("  connection {i}: {e}");
                break;
            }
        }
    }
    let mut answered = 0;
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut seen = Vec::new();
        if wait_for(s, &mut seen, b"\r\n\r\n", Duration::from_secs(10)) {
            answered += 1;
        }
    }
    let opened = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, ticks0) = proc_stats(pid);
    let idle = Duration::from_secs(5);
    std::thread::sleep(idle);
    let (rss2, ticks1) = proc_stats(pid);
    let cpu = (ticks1 - ticks0) as f64 / 100.0 / idle.as_secs_f64() * 100.0;
    drop(conns);
    format!(
        "{answered}/{n} streams answered in {:.1} s; RSS {:.1} MiB before, {:.1} MiB with them ({:.1} MiB after 5 s idle); idle CPU {cpu:.1} %",
        opened.as_secs_f64(),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0,
    )
}

fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("server") {
        return serve();
    }
    // `cargo bench` passes --bench; `cargo test --benches` must not run the phases.
    if !std::env::args().any(|a| a == "--bench") {
        println!("proxy bench: run with cargo bench");
        return;
    }
    let secs = env("BENCH_SECS", 10);
    let conns = env("BENCH_CONNS", 32);
    let n_listens = env("BENCH_LISTENS", 10_000);
    let n_notify = env("BENCH_NOTIFY", 100);
    let servers: Vec<Server> = std::iter::once(ours()).chain(opendht()).collect();
    // A plain node of ours that both proxies' nodes know.
    let plain = smol::block_on(dht_smol::Handle::start(dht_smol::Config::loopback())).unwrap();
    for s in &servers {
        plain.bootstrap_addr(s.node).unwrap();
    }
    smol::block_on(plain.wait_connected(Duration::from_secs(20))).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    for s in &servers {
        println!("== {} (proxy port {}, pid {})", s.name, s.port, s.child.id());
        let body = r#"{"data":"YmVuY2g=","type":0}"#;
        let put = exchange(
            s.port,
            &format!(
                "POST /key/bench HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        println!("  stored: {}", put.lines().next().unwrap_or("no answer"));
        println!(
            "  GET /key/bench, {conns} connections, {secs} s: {}",
            wrk(s.port, "/key/bench", secs, conns)
        );
        println!(
            "  GET /, {conns} connections, {secs} s: {}",
            wrk(s.port, "/", secs, conns)
        );
        println!("  put → listen notification: {}", notify(s, &plain, n_notify));
        println!("  {n_listens} listen streams: {}", listens(s, n_listens));
    }
    drop(servers);
    println!("  {}", smol::block_on(node_stats("bench's plain node", &plain)));
}
