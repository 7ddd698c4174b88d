//! Test helpers: a raw HTTP/1.1 client that shows the bytes (status, headers, chunks), a fake
//! DHT that records what the server asks of it, a small real network, and deadlines.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_proxy::{BoxFuture, BoxStream, Dht, FamilyInfo, ListenEvent, NodeInfo, PutResult};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::stream::StreamExt;

/// Runs `f` and panics if it takes longer than `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    smol::future::or(async { Some(f.await) }, async {
        smol::Timer::after(Duration::from_secs(secs)).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("timed out after {secs} s: {what}"))
}

/// Polls `cond` every 10 ms until it holds, at most `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    within(secs, what, async {
        while !cond() {
            smol::Timer::after(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, chunks joined.
    pub body: String,
    /// The chunks, when the body was chunked.
    pub chunks: Option<Vec<String>>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l:?}")))
            .collect()
    }

    /// The headers every handler's answer carries (spec §1.1).
    pub fn assert_common_headers(&self) {
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        assert_eq!(self.header("access-control-allow-origin"), Some("*"), "{self:?}");
        assert!(self.header("connection").is_some(), "{self:?}");
    }
}

pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Conn {
        let s = within(10, "connect", TcpStream::connect(addr)).await.unwrap();
        Conn { s, buf: Vec::new() }
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.s.write_all(raw).await.unwrap();
    }

    /// Reads more bytes; false at EOF (or a reset).
    async fn fill(&mut self) -> bool {
        let mut b = [0u8; 8192];
        match self.s.read(&mut b).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    async fn read_until(&mut self, pat: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(pat.len()).position(|w| w == pat) {
                let out: Vec<u8> = self.buf.drain(..i + pat.len()).collect();
                return Some(out);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// The status line and headers; `None` if the connection closed first.
    pub async fn head(&mut self) -> Option<Reply> {
        let head = self.read_until(b"\r\n\r\n").await?;
        let text = String::from_utf8(head).unwrap();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap();
        assert!(version == "HTTP/1.1" || version == "HTTP/1.0", "{status_line}");
        let status = parts.next().unwrap().parse().unwrap();
        let reason = parts.next().unwrap_or("").to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        Some(Reply {
            status,
            reason,
            headers,
            body: String::new(),
            chunks: None,
        })
    }

    /// The next chunk of a chunked body; `None` at the last (zero) chunk or EOF.
    pub async fn chunk(&mut self) -> Option<String> {
        let size = self.read_until(b"\r\n").await?;
        let size = std::str::from_utf8(&size).unwrap().trim_end();
        assert_eq!(size, size.to_ascii_uppercase(), "chunk sizes are upper-case hex");
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            self.read_until(b"\r\n").await?;
            return None;
        }
        let data = self.read_exact(n + 2).await?;
        assert_eq!(&data[n..], b"\r\n");
        Some(String::from_utf8(data[..n].to_vec()).unwrap())
    }

    /// A whole response.
    pub async fn reply(&mut self) -> Option<Reply> {
        let mut r = self.head().await?;
        if r.header("transfer-encoding") == Some("chunked") {
            let mut chunks = Vec::new();
            while let Some(c) = self.chunk().await {
                chunks.push(c);
            }
            r.body = chunks.concat();
            r.chunks = Some(chunks);
        } else if let Some(n) = r.header("content-length") {
            let n: usize = n.parse().unwrap();
            r.body = String::from_utf8(self.read_exact(n).await?).unwrap();
        } else if r.status != 204 && r.status != 304 {
            while self.fill().await {}
            r.body = String::from_utf8(std::mem::take(&mut self.buf)).unwrap();
        }
        Some(r)
    }

    /// True once the server has closed the connection (nothing more to read).
    pub async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

/// Sends `raw` on a new connection and reads one response.
pub async fn exchange(addr: SocketAddr, raw: &str) -> Reply {
    within(20, raw.lines().next().unwrap_or(""), async {
        let mut c = Conn::connect(addr).await;
        c.send(raw.as_bytes()).await;
        c.reply().await.expect("connection closed without a reply")
    })
    .await
}

/// A request with `Connection: close` and a body.
pub fn request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

// ----- a fake DHT

#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Get(InfoHash),
    Put(InfoHash, u64, bool),
    CancelPut(InfoHash, u64, Instant),
    Listen(InfoHash),
}

#[derive(Default)]
pub struct FakeState {
    pub values: BTreeMap<InfoHash, Vec<Value>>,
    pub listeners: Vec<(InfoHash, smol::channel::Sender<ListenEvent>)>,
    pub calls: Vec<Call>,
    pub next_id: u64,
    pub put_fails: bool,
    pub info: NodeInfo,
    /// A get answers its first value at once and the others after this (a slow DHT get).
    pub get_delay: Duration,
}

/// A DHT in memory: puts store at once, gets answer what is stored, listens hear puts and
/// [`Fake::expire`].
#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<FakeState>>);

impl Fake {
    pub fn new() -> Fake {
        let f = Fake::default();
        {
            let mut s = f.0.lock().unwrap();
            s.next_id = 1000;
            s.info = NodeInfo {
                node_id: InfoHash::get("fake"),
                ipv4: FamilyInfo {
                    good: 1,
                    dubious: 0,
                    incoming: 1,
                },
                ops: 1,
                ..NodeInfo::default()
            };
        }
        f
    }

    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }

    pub fn open_listens(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .listeners
            .iter()
            .filter(|(_, tx)| !tx.is_closed())
            .count()
    }

    pub fn expire(&self, key: InfoHash, ids: &[u64]) {
        let mut s = self.0.lock().unwrap();
        let mut gone = Vec::new();
        if let Some(vs) = s.values.get_mut(&key) {
            vs.retain(|v| {
                let keep = !ids.contains(&v.id);
                if !keep {
                    gone.push(v.clone());
                }
                keep
            });
        }
        for (k, tx) in &s.listeners {
            if *k == key {
                let _ = tx.try_send(ListenEvent::Expired(gone.clone()));
            }
        }
    }

    pub fn store(&self, key: InfoHash, v: Value) {
        let mut s = self.0.lock().unwrap();
        let vs = s.values.entry(key).or_default();
        vs.retain(|x| x.id != v.id);
        vs.push(v.clone());
        for (k, tx) in &s.listeners {
            if *k == key {
                let _ = tx.try_send(ListenEvent::Added(vec![v.clone()]));
            }
        }
    }
}

impl Dht for Fake {
    fn get(&self, key: InfoHash) -> BoxStream<Value> {
        let mut s = self.0.lock().unwrap();
        s.calls.push(Call::Get(key));
        let mut vs = s.values.get(&key).cloned().unwrap_or_default();
        let delay = s.get_delay;
        if delay.is_zero() || vs.is_empty() {
            return Box::pin(smol::stream::iter(vs));
        }
        let rest = vs.split_off(1);
        Box::pin(
            smol::stream::iter(vs).chain(
                smol::stream::once_future(async move {
                    smol::Timer::after(delay).await;
                    smol::stream::iter(rest)
                })
                .flatten(),
            ),
        )
    }

    fn put(&self, key: InfoHash, mut value: Value, permanent: bool) -> BoxFuture<Result<PutResult, String>> {
        let fails = {
            let mut s = self.0.lock().unwrap();
            if value.id == 0 {
                s.next_id += 1;
                value.id = s.next_id;
            }
            s.calls.push(Call::Put(key, value.id, permanent));
            s.put_fails
        };
        let id = value.id;
        self.store(key, value);
        Box::pin(async move { Ok(PutResult { id, ok: !fails }) })
    }

    fn cancel_put(&self, key: InfoHash, id: u64) {
        self.0
            .lock()
            .unwrap()
            .calls
            .push(Call::CancelPut(key, id, Instant::now()));
    }

    fn listen(&self, key: InfoHash) -> BoxStream<ListenEvent> {
        let (tx, rx) = smol::channel::unbounded();
        let mut s = self.0.lock().unwrap();
        s.calls.push(Call::Listen(key));
        let known = s.values.get(&key).cloned().unwrap_or_default();
        if !known.is_empty() {
            let _ = tx.try_send(ListenEvent::Added(known));
        }
        s.listeners.push((key, tx));
        Box::pin(rx)
    }

    fn info(&self) -> BoxFuture<Option<NodeInfo>> {
        let info = self.0.lock().unwrap().info.clone();
        Box::pin(async move { Some(info) })
    }
}

// ----- a real network

/// Two nodes of ours on loopback, connected: `(a, b)`; serve `b` and talk to `a` directly.
pub async fn real_pair() -> (dht_smol::Handle, dht_smol::Handle) {
    let a = dht_smol::Handle::start(dht_smol::Config::loopback())
        .await
        .unwrap();
    let b = dht_smol::Handle::start(dht_smol::Config::loopback())
        .await
        .unwrap();
    b.bootstrap_addr(a.local_addrs()[0]).unwrap();
    b.wait_connected(Duration::from_secs(20)).await.unwrap();
    a.wait_connected(Duration::from_secs(20)).await.unwrap();
    (a, b)
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ----- a push gateway

#[derive(Clone, Debug)]
pub struct Received {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A push gateway: records every request, answers each with the next status of `script`
/// (then 200).
#[derive(Clone)]
pub struct FakeGateway {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl FakeGateway {
    pub async fn start(script: Vec<u16>) -> FakeGateway {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(script));
        let g = got.clone();
        smol::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let g = g.clone();
                let script = script.clone();
                smol::spawn(async move {
                    let mut buf = Vec::new();
                    let mut b = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    };
                    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
                    let mut lines = head.split("\r\n");
                    let request_line = lines.next().unwrap().to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let (n, v) = l.split_once(':').unwrap();
                            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
                        })
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .map(|(_, v)| v.parse().unwrap())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                    let body = String::from_utf8(buf[head_end..head_end + len].to_vec()).unwrap();
                    g.lock().unwrap().push(Received {
                        request_line,
                        headers,
                        body,
                    });
                    let status = {
                        let mut sc = script.lock().unwrap();
                        if sc.is_empty() { 200 } else { sc.remove(0) }
                    };
                    let reply =
                        format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = s.write_all(reply.as_bytes()).await;
                })
                .detach();
            }
        })
        .detach();
        FakeGateway { addr, got }
    }

    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}
