//! The server: accept loop, connections (hyper on smol), the handlers, and the state with timers
//! (permanent puts and push subscriptions).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dht_proto::InfoHash;
use dht_proto::value::Value;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use rand_core::{OsRng, RngCore};
use serde_json::Value as Json;
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use smol::stream::StreamExt;
use smol::{Async, Task, Timer};

use crate::body::Body;
use crate::dht::{BoxStream, Dht, FamilyInfo, ListenEvent, NodeInfo};
use crate::json::{Object, error_body, to_ascii_json, value_from_json, value_line};
use crate::push::{Platform, PushNotification};
use crate::route::{Route, route};
use crate::share::Shares;
use crate::tls::ServerTls;
use crate::{Config, ServerStats};

#[path = "ui.rs"]
mod ui;

/// Connections refused over the limit are answered by at most this many tasks at once; past
/// that they are closed without an answer.
const MAX_REFUSING: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Who a push goes to: a subscription's or a permanent put's push data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PushTarget {
    token: String,
    client_id: String,
    platform: String,
    topic: String,
    session_id: String,
}

impl PushTarget {
    fn from_object(o: &serde_json::Map<String, Json>) -> PushTarget {
        let s = |k: &str| o.get(k).and_then(Json::as_str).unwrap_or_default().to_owned();
        PushTarget {
            token: s("key"),
            client_id: s("client_id"),
            platform: s("platform"),
            topic: s("topic"),
            session_id: s("session_id"),
        }
    }
}

struct PermanentPut {
    value: Value,
    expires: Instant,
    /// Push data of the POST that created it (`"permanent": {...}`); `None` for `true`.
    push: Option<PushTarget>,
    reminded: bool,
    timer: Option<Task<()>>,
}

type SubKey = (String, InfoHash, String);

struct Subscription {
    /// Platform and topic of the first SUBSCRIBE (value pushes keep them, as OpenDHT does).
    first: PushTarget,
    /// The latest SUBSCRIBE's data (reminders use it; value pushes take its session id).
    last: PushTarget,
    expires: Instant,
    reminded: bool,
    timer: Option<Task<()>>,
    _listen: Option<Task<()>>,
}

#[derive(Default)]
struct State {
    puts: BTreeMap<InfoHash, BTreeMap<u64, PermanentPut>>,
    n_puts: usize,
    subs: BTreeMap<SubKey, Subscription>,
}

impl State {
    fn remove_put(&mut self, key: &InfoHash, id: u64) -> Option<PermanentPut> {
        let m = self.puts.get_mut(key)?;
        let p = m.remove(&id)?;
        if m.is_empty() {
            self.puts.remove(key);
        }
        self.n_puts = self.n_puts.saturating_sub(1);
        Some(p)
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    refusing: AtomicUsize,
    listens: AtomicUsize,
    direct_listens: AtomicU64,
    bodies: AtomicUsize,
    requests: AtomicU64,
    refused_connections: AtomicU64,
    refused_requests: AtomicU64,
    pushes: AtomicU64,
}

pub(crate) struct Shared {
    dht: Arc<dyn Dht>,
    /// Gets and listens shared between requests on one key.
    shares: Arc<Shares>,
    config: Config,
    state: Mutex<State>,
    counters: Counters,
    info: Mutex<Option<(Instant, NodeInfo)>>,
    rate: Mutex<(Instant, u64)>,
    start_unix: u64,
}

pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<Task<()>>,
    /// Closed (dropped) to end every connection task.
    stop: Option<smol::channel::Sender<()>>,
}

impl Server {
    pub(crate) fn bind(
        addr: SocketAddr,
        dht: Arc<dyn Dht>,
        config: Config,
        tls: Option<ServerTls>,
    ) -> io::Result<Server> {
        let listener = Async::new(listen_socket(addr)?)?;
        let addr = listener.get_ref().local_addr()?;
        let shared = Arc::new(Shared {
            shares: Shares::new(dht.clone(), config.timers.get_cache),
            dht,
            config,
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            info: Mutex::new(None),
            rate: Mutex::new((Instant::now(), 0)),
            start_unix: unix_ms() / 1000,
        });
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let tls = tls.map(|t| futures_rustls::TlsAcceptor::from(t.config));
        let https = tls.is_some();
        let accept = smol::spawn(accept_loop(listener, shared.clone(), stop_rx, tls));
        tracing::debug!(%addr, https, "proxy server listening");
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
            stop: Some(stop_tx),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        let st = lock(&self.shared.state);
        ServerStats {
            connections: c.connections.load(Ordering::Relaxed),
            listens: c.listens.load(Ordering::Relaxed),
            bodies_in_flight: c.bodies.load(Ordering::Relaxed),
            permanent_puts: st.n_puts,
            permanent_put_keys: st.puts.len(),
            subscriptions: st.subs.len(),
            requests: c.requests.load(Ordering::Relaxed),
            refused_connections: c.refused_connections.load(Ordering::Relaxed),
            refused_requests: c.refused_requests.load(Ordering::Relaxed),
            pushes: c.pushes.load(Ordering::Relaxed),
            dht_gets: self.shared.shares.dht_gets.load(Ordering::Relaxed),
            cached_gets: self.shared.shares.cached_gets.load(Ordering::Relaxed),
            direct_listens: c.direct_listens.load(Ordering::Relaxed),
            dht_listens: self.shared.shares.dht_listens.load(Ordering::Relaxed),
            dht_listens_open: self.shared.shares.running().1,
        }
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(t) = self.accept.take() {
            t.cancel().await;
        }
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.accept = None;
        self.stop = None;
        let (puts, subs) = {
            let mut st = lock(&self.shared.state);
            st.n_puts = 0;
            (std::mem::take(&mut st.puts), std::mem::take(&mut st.subs))
        };
        drop(subs);
        for (key, m) in puts {
            for id in m.keys() {
                self.shared.dht.cancel_put(key, *id);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Connections the kernel holds for us before we accept them. std's `TcpListener::bind` asks
/// for 128: when many clients connect at once (10,000 listen streams opening) the queue
/// overflows, the kernel drops SYNs, and each dropped one costs its client a 1 s (then 3 s)
/// retransmission. The kernel caps this at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

fn listen_socket(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    #[cfg(unix)]
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(s.into())
}

async fn accept_loop(
    listener: Async<TcpListener>,
    shared: Arc<Shared>,
    stop: smol::channel::Receiver<()>,
    tls: Option<futures_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: back off a little.
                tracing::debug!(error = %e, "accept failed");
                Timer::after(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.get_ref().set_nodelay(true);
        let c = &shared.counters;
        if c.connections.fetch_add(1, Ordering::AcqRel) >= shared.config.limits.max_connections {
            c.connections.fetch_sub(1, Ordering::AcqRel);
            c.refused_connections.fetch_add(1, Ordering::Relaxed);
            if c.refusing.fetch_add(1, Ordering::AcqRel) < MAX_REFUSING {
                let s = shared.clone();
                smol::spawn(async move {
                    refuse(stream, StatusCode::SERVICE_UNAVAILABLE, "Too many connections").await;
                    s.counters.refusing.fetch_sub(1, Ordering::AcqRel);
                })
                .detach();
            } else {
                c.refusing.fetch_sub(1, Ordering::AcqRel);
            }
            continue;
        }
        let shared = shared.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        smol::spawn(async move {
            async {
                let Some(stream) = secure(&shared, stream, tls).await else {
                    return;
                };
                serve_connection(&shared, stream, peer).await;
            }
            .or(async {
                let _ = stop.recv().await;
            })
            .await;
            shared.counters.connections.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
}

/// Writes a whole error response outside hyper (refused connections, header timeouts) and
/// closes, giving the client at most a second to take it.
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, status: StatusCode, msg: &str) {
    let body = error_body(msg);
    let head = format!(
        "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\
         Access-Control-Allow-Origin: *\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = async {
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.close().await;
    }
    .or(async {
        Timer::after(Duration::from_secs(1)).await;
    })
    .await;
}

/// A connection's byte stream: plain TCP (shared, so a 408 can still be written after hyper
/// gave up on it) or TLS.
enum Stream {
    Plain(Arc<Async<TcpStream>>),
    Tls(Box<futures_rustls::server::TlsStream<Async<TcpStream>>>),
}

/// The TLS handshake, if the port has TLS, bounded by the header timeout; `None` when it failed.
async fn secure(
    shared: &Shared,
    stream: Async<TcpStream>,
    tls: Option<futures_rustls::TlsAcceptor>,
) -> Option<Stream> {
    let Some(acceptor) = tls else {
        return Some(Stream::Plain(Arc::new(stream)));
    };
    let limit = shared.config.limits.header_read_timeout;
    let r = async { acceptor.accept(stream).await.map(Some) }
        .or(async {
            Timer::after(limit).await;
            Ok(None)
        })
        .await;
    match r {
        Ok(Some(s)) => Some(Stream::Tls(Box::new(s))),
        Ok(None) => {
            shared.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
            tracing::trace!("TLS handshake timed out");
            None
        }
        Err(e) => {
            tracing::trace!(error = %e, "TLS handshake failed");
            None
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(&mut &**s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(&mut &**s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(&mut &**s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(&mut &**s).poll_close(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}

/// The socket as hyper sees it: a write that stays blocked past the write timeout fails, and
/// reads note that a request has begun (so a header timeout can be answered with 408).
struct Io {
    inner: Stream,
    write_timeout: Duration,
    blocked: Option<Timer>,
    partial: Arc<AtomicBool>,
}

impl Io {
    fn check_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let timeout = self.write_timeout;
        let t = self.blocked.get_or_insert_with(|| Timer::after(timeout));
        match Pin::new(t).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.partial.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => match this.check_blocked(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
            r => {
                this.blocked = None;
                r
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => match this.check_blocked(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
            r => {
                this.blocked = None;
                r
            }
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// Bytes a connection's first read takes (the request head of a listen fits many times over);
/// freed once the request is routed.
const FIRST_READ: usize = 4096;

async fn serve_connection(shared: &Arc<Shared>, stream: Stream, peer: SocketAddr) {
    let limits = &shared.config.limits;
    let plain = match &stream {
        Stream::Plain(s) => Some(s.clone()),
        Stream::Tls(_) => None,
    };
    let partial = Arc::new(AtomicBool::new(false));
    let mut io = Io {
        inner: stream,
        write_timeout: limits.write_timeout,
        blocked: None,
        partial: partial.clone(),
    };
    // Listen streams are served here, without hyper: an idle stream then holds a few hundred
    // bytes instead of hyper's 8 KiB read buffer and 8 KiB header buffer (10,000 streams: ~200
    // MiB). Every other request, and a listen this cannot take whole (HTTP/1.0, a body, a head
    // split over reads), goes to hyper with the bytes read so far.
    let prefix = loop {
        match first_request(&mut io, limits.header_read_timeout).await {
            None => return,
            Some(First::Listen { key, close }) => {
                shared.counters.requests.fetch_add(1, Ordering::Relaxed);
                shared.counters.direct_listens.fetch_add(1, Ordering::Relaxed);
                partial.store(false, Ordering::Relaxed);
                tracing::trace!(%peer, %key, "listen request (served without hyper)");
                let r = listen(shared, key, close);
                match write_response(&mut io, r).await {
                    Ok(()) if !close => continue,
                    _ => {
                        let _ = io.close().await;
                        return;
                    }
                }
            }
            Some(First::Other(bytes)) => break bytes,
        }
    };
    let svc_shared = shared.clone();
    let svc_partial = partial.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        svc_partial.store(false, Ordering::Relaxed);
        let shared = svc_shared.clone();
        // Boxed: hyper keeps its request future's room for the connection's lifetime, and
        // `handle`'s (every route's state) is large.
        Box::pin(async move { Ok::<_, Infallible>(handle(&shared, req, peer).await) })
            as Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>>
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(smol_hyper::rt::SmolTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .title_case_headers(true)
        .auto_date_header(false)
        .max_buf_size(16 * 1024);
    let io = Rewind {
        prefix,
        pos: 0,
        inner: io,
    };
    let conn = builder.serve_connection(smol_hyper::rt::FuturesIo::new(io), service);
    if let Err(e) = conn.await {
        tracing::trace!(%peer, error = %e, "connection ended");
        if e.is_timeout() && partial.load(Ordering::Relaxed) {
            shared.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
            // Over TLS the stream went down with hyper: the connection just closes.
            if let Some(stream) = plain {
                refuse(&*stream, StatusCode::REQUEST_TIMEOUT, "Request header timeout").await;
            }
        }
    }
}

/// A connection's next request as its first read shows it.
enum First {
    /// A whole `GET /key/{h}/listen` head in HTTP/1.1 without a body, nothing after it.
    Listen { key: InfoHash, close: bool },
    /// Anything else: the bytes read, for hyper.
    Other(Vec<u8>),
}

/// Reads once (bounded by the header timeout); `None` when the client closed or sent nothing
/// in time (hyper, too, closes such a connection without an answer).
async fn first_request(io: &mut Io, timeout: Duration) -> Option<First> {
    use smol::io::AsyncReadExt;
    let mut buf = vec![0u8; FIRST_READ];
    let n = async { io.read(&mut buf).await.ok() }
        .or(async {
            Timer::after(timeout).await;
            None
        })
        .await?;
    if n == 0 {
        return None;
    }
    buf.truncate(n);
    Some(match listen_head(&buf) {
        Some((key, close)) => First::Listen { key, close },
        None => {
            buf.shrink_to_fit();
            First::Other(buf)
        }
    })
}

/// The key of a listen request that is exactly `buf`, and whether it asks to close.
fn listen_head(buf: &[u8]) -> Option<(InfoHash, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(buf) else {
        return None;
    };
    if len != buf.len() || req.version != Some(1) {
        return None;
    }
    let path = req.path?.split('?').next()?;
    let Route::Listen(key) = route(req.method?, path) else {
        return None;
    };
    let mut close = false;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).ok()?;
        if h.name.eq_ignore_ascii_case("content-length") {
            if value.trim() != "0" {
                return None;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    Some((key, close))
}

/// Writes `r` as hyper would (status line, headers title-cased, then `Content-Length` or
/// `Transfer-Encoding: chunked`), then its body; an error when the client went away (a read
/// ends) or a write failed.
async fn write_response(io: &mut Io, r: Response<Body>) -> io::Result<()> {
    use hyper::body::Body as _;
    use smol::io::AsyncReadExt;
    let (parts, mut body) = r.into_parts();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_str(),
            parts.status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        let mut up = true;
        for &c in name.as_str().as_bytes() {
            head.push(if up { c.to_ascii_uppercase() } else { c });
            up = c == b'-';
        }
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let length = body.size_hint().exact();
    match length {
        Some(n) => head.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes()),
        None => head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
    }
    io.write_all(&head).await?;
    drop(head);
    let mut scratch = [0u8; 64];
    loop {
        let frame = async { Some(std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await) }
            .or(async {
                // Bytes a client sends during a stream are dropped; its end ends the stream.
                loop {
                    match io.read(&mut scratch).await {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        let Some(frame) = frame else {
            return Err(io::ErrorKind::ConnectionAborted.into());
        };
        let Some(Ok(frame)) = frame else {
            if length.is_none() {
                io.write_all(b"0\r\n\r\n").await?;
            }
            return io.flush().await;
        };
        let Ok(data) = frame.into_data() else { continue };
        if length.is_some() {
            io.write_all(&data).await?;
        } else if !data.is_empty() {
            let mut chunk = Vec::with_capacity(data.len() + 12);
            chunk.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            io.write_all(&chunk).await?;
        }
        io.flush().await?;
    }
}

/// hyper's view of a connection whose first bytes were already read.
struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: Io,
}

impl AsyncRead for Rewind {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(rest) = this.prefix.get(this.pos..)
            && !rest.is_empty()
        {
            let mut n = 0;
            for (d, s) in buf.iter_mut().zip(rest) {
                *d = *s;
                n += 1;
            }
            this.pos += n;
            if this.pos >= this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

// ----- responses

fn response(status: StatusCode, body: Body, close: bool) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static(if close { "close" } else { "keep-alive" }),
    );
    h.insert(header::SERVER, HeaderValue::from_static("rdht-proxy"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn error(status: StatusCode, msg: &str, close: bool) -> Response<Body> {
    response(status, Body::full(error_body(msg)), close)
}

fn json_line(o: &Object) -> String {
    let mut s = to_ascii_json(o);
    s.push('\n');
    s
}

fn wants_close(req: &Request<Incoming>) -> bool {
    let close_header = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    let keep_alive_header = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("keep-alive")));
    close_header || (req.version() == hyper::Version::HTTP_10 && !keep_alive_header)
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let close = wants_close(&req);
    if let Some(r) = ui::serve(shared, &req, peer, close).await {
        return r;
    }
    let r = route(req.method().as_str(), req.uri().path());
    tracing::trace!(%peer, method = %req.method(), path = req.uri().path(), ?r, "request");
    match r {
        Route::NodeInfo => node_info(shared, peer, close).await,
        Route::Stats => stats(shared, close).await,
        Route::Get(key) => response(StatusCode::OK, Body::get(shared.shares.get(key), None), close),
        Route::Put(key) => match read_json(shared, req).await {
            Ok(j) => changed(shared, key, put(shared, key, j, close).await),
            Err(r) => *r,
        },
        Route::Listen(key) => listen(shared, key, close),
        Route::Options => options(close),
        Route::Subscribe(key) => match read_json(shared, req).await {
            Ok(j) => subscribe(shared, key, j, close).await,
            Err(r) => *r,
        },
        Route::Unsubscribe(key) => match read_json(shared, req).await {
            Ok(j) => unsubscribe(shared, key, &j, close),
            Err(r) => *r,
        },
        Route::PingPush => match read_json(shared, req).await {
            Ok(j) => ping_push(shared, &j, close),
            Err(r) => *r,
        },
        Route::Sign(key) => match read_json(shared, req).await {
            Ok(j) => changed(shared, key, put_by_node(shared, key, j, false, close).await),
            Err(r) => *r,
        },
        Route::Encrypt(key) => match read_json(shared, req).await {
            Ok(j) => changed(shared, key, put_by_node(shared, key, j, true, close).await),
            Err(r) => *r,
        },
        Route::Unknown => error(StatusCode::NOT_IMPLEMENTED, "Not implemented", true),
    }
}

/// After a put through the proxy: a get of `key` that just finished no longer answers gets.
fn changed(shared: &Shared, key: InfoHash, r: Response<Body>) -> Response<Body> {
    shared.shares.changed(&key);
    r
}

struct BodyGuard<'a>(&'a Counters);

impl Drop for BodyGuard<'_> {
    fn drop(&mut self) {
        self.0.bodies.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads the body (bounded in size and time) and parses it as JSON; the error responses of
/// OpenDHT for an empty body and for bad JSON.
async fn read_json(shared: &Shared, req: Request<Incoming>) -> Result<Json, Box<Response<Body>>> {
    let limits = &shared.config.limits;
    let refuse = |status, msg| {
        shared.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
        Err(Box::new(error(status, msg, true)))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "Body too large");
    }
    let c = &shared.counters;
    if c.bodies.fetch_add(1, Ordering::AcqRel) >= limits.max_bodies_in_flight {
        c.bodies.fetch_sub(1, Ordering::AcqRel);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Server busy");
    }
    let _in_flight = BodyGuard(c);
    let body = http_body_util::Limited::new(req.into_body(), limits.max_body);
    let collected = async { Some(body.collect().await) }
        .or(async {
            Timer::after(limits.body_read_timeout).await;
            None
        })
        .await;
    let bytes: Bytes = match collected {
        None => return refuse(StatusCode::REQUEST_TIMEOUT, "Request body timeout"),
        Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "Body too large");
        }
        Some(Err(_)) => return Err(Box::new(error(StatusCode::BAD_REQUEST, "Bad request body", true))),
        Some(Ok(c)) => c.to_bytes(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "Missing parameters",
            false,
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "Incorrect JSON", false)))
}

// ----- node info and stats

async fn cached_info(shared: &Shared) -> Option<NodeInfo> {
    let now = Instant::now();
    if let Some((at, info)) = &*lock(&shared.info)
        && now.duration_since(*at) < shared.config.timers.info_cache
    {
        return Some(info.clone());
    }
    let info = shared.dht.info().await?;
    *lock(&shared.info) = Some((now, info.clone()));
    Some(info)
}

fn family_json(f: &FamilyInfo) -> Json {
    // A family with dubious nodes and no good one would leave OpenDHT's client "connecting" for
    // ever, holding every operation (spec §9.1): report it as disconnected instead.
    let dubious = if f.good == 0 { 0 } else { f.dubious };
    serde_json::json!({ "dubious": dubious, "good": f.good, "incoming": f.incoming })
}

fn info_object(info: &NodeInfo) -> Object {
    let mut o = Object::new();
    o.insert("node_id", Json::String(info.node_id.to_string()));
    if let Some(id) = info.id {
        o.insert("id", Json::String(id.to_string()));
    }
    o.insert("ipv4", family_json(&info.ipv4));
    o.insert("ipv6", family_json(&info.ipv6));
    o.insert("ops", Json::from(info.ops));
    o.insert("storage_values", Json::from(info.storage_values));
    o.insert("storage_size", Json::from(info.storage_size));
    o.insert("port_ipv4", Json::from(info.port_ipv4));
    o.insert("port_ipv6", Json::from(info.port_ipv6));
    o
}

async fn node_info(shared: &Shared, peer: SocketAddr, close: bool) -> Response<Body> {
    let Some(info) = cached_info(shared).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Incorrect DhtRunner", close);
    };
    let mut o = info_object(&info);
    o.insert("public_ip", Json::String(peer.ip().to_string()));
    response(StatusCode::OK, Body::full(json_line(&o)), close)
}

async fn stats(shared: &Shared, close: bool) -> Response<Body> {
    let Some(info) = cached_info(shared).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Incorrect DhtRunner", close);
    };
    let requests = shared.counters.requests.load(Ordering::Relaxed);
    let rate = {
        let mut r = lock(&shared.rate);
        let now = Instant::now();
        let secs = now.duration_since(r.0).as_secs_f64();
        let rate = if secs > 0.0 {
            requests.saturating_sub(r.1) as f64 / secs
        } else {
            0.0
        };
        *r = (now, requests);
        rate
    };
    let (puts, put_keys, tokens) = {
        let st = lock(&shared.state);
        let mut tokens: Vec<&str> = st.subs.keys().map(|(t, _, _)| t.as_str()).collect();
        tokens.dedup();
        (st.n_puts, st.puts.len(), tokens.len())
    };
    let mut o = Object::new();
    o.insert(
        "listenCount",
        Json::from(shared.counters.listens.load(Ordering::Relaxed)),
    );
    o.insert("putCount", Json::from(put_keys));
    o.insert("totalPermanentPuts", Json::from(puts));
    o.insert("pushListenersCount", Json::from(tokens));
    o.insert("requestRate", Json::from(rate));
    o.insert(
        "nodeInfo",
        Json::Object(
            info_object(&info)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ),
    );
    o.insert("serverStartTime", Json::from(shared.start_unix));
    o.insert("lastUpdated", Json::from(unix_ms() / 1000));
    response(StatusCode::OK, Body::full(json_line(&o)), close)
}

// ----- put

fn same_content(a: &Value, b: &Value) -> bool {
    let mut b = b.clone();
    b.id = a.id;
    a.content_eq(&b)
}

/// `"permanent"`: absent, `null` or `false` → a plain put; an object → permanent with push data;
/// anything else (`true`) → permanent.
fn permanent_of(o: &serde_json::Map<String, Json>) -> Option<Option<PushTarget>> {
    match o.get("permanent") {
        None | Some(Json::Null) | Some(Json::Bool(false)) => None,
        Some(Json::Object(p)) => Some(Some(PushTarget::from_object(p))),
        Some(_) => Some(None),
    }
}

fn random_id(taken: Option<&BTreeMap<u64, PermanentPut>>) -> u64 {
    loop {
        let id = OsRng.next_u64();
        if id != 0 && !taken.is_some_and(|m| m.contains_key(&id)) {
            return id;
        }
    }
}

fn refresh(p: &mut PermanentPut, now: Instant, lifetime: Duration, push: &Option<PushTarget>) {
    p.expires = now + lifetime;
    p.reminded = false;
    if let (Some(old), Some(new)) = (&mut p.push, push)
        && !new.session_id.is_empty()
    {
        old.session_id = new.session_id.clone();
    }
}

async fn put(shared: &Arc<Shared>, key: InfoHash, j: Json, close: bool) -> Response<Body> {
    let Some(obj) = j.as_object() else {
        return error(StatusCode::BAD_REQUEST, "Value must be a JSON object", close);
    };
    let mut value = match value_from_json(&j) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string(), close),
    };
    let ok = |v: &Value| response(StatusCode::OK, Body::full(value_line(v, false)), close);
    let Some(push) = permanent_of(obj) else {
        return match shared.dht.put(key, value.clone(), false).await {
            Ok(r) if r.ok => {
                value.id = r.id;
                ok(&value)
            }
            Ok(_) => error(StatusCode::BAD_GATEWAY, "Put failed", close),
            Err(e) => {
                tracing::debug!(%key, error = %e, "put refused");
                error(StatusCode::BAD_GATEWAY, "Put failed", close)
            }
        };
    };
    let lifetime = shared.config.timers.permanent_put_lifetime;
    let now = Instant::now();
    let created = {
        let mut st = lock(&shared.state);
        let same_owner = |p: &PermanentPut| {
            let (t, c) = p
                .push
                .as_ref()
                .map_or(("", ""), |p| (p.token.as_str(), p.client_id.as_str()));
            let (t2, c2) = push
                .as_ref()
                .map_or(("", ""), |p| (p.token.as_str(), p.client_id.as_str()));
            t == t2 && c == c2
        };
        let puts = st.puts.get_mut(&key);
        if value.id == 0 {
            // Id 0 and the same content and owner as a put we hold: that put, refreshed.
            if let Some(p) = puts.and_then(|m| {
                m.values_mut()
                    .find(|p| same_owner(p) && same_content(&p.value, &value))
            }) {
                refresh(p, now, lifetime, &push);
                return ok(&p.value.clone());
            }
            value.id = random_id(st.puts.get(&key));
        } else if let Some(p) = puts.and_then(|m| m.get_mut(&value.id)) {
            refresh(p, now, lifetime, &push);
            if p.value.content_eq(&value) {
                return ok(&value);
            }
            // New content under a known id: announce it again below.
            p.value = value.clone();
        }
        let exists = st.puts.get(&key).is_some_and(|m| m.contains_key(&value.id));
        if !exists {
            if st.n_puts >= shared.config.limits.max_permanent_puts {
                shared.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
                return error(StatusCode::SERVICE_UNAVAILABLE, "Too many permanent puts", close);
            }
            let timer = smol::spawn(put_timer(Arc::downgrade(shared), key, value.id));
            st.puts.entry(key).or_default().insert(
                value.id,
                PermanentPut {
                    value: value.clone(),
                    expires: now + lifetime,
                    push,
                    reminded: false,
                    timer: Some(timer),
                },
            );
            st.n_puts += 1;
        }
        !exists
    };
    match shared.dht.put(key, value.clone(), true).await {
        Ok(r) if r.ok => ok(&value),
        // As OpenDHT: the put stays held (and announced by the node) although this one failed.
        Ok(_) => error(StatusCode::BAD_GATEWAY, "Put failed", close),
        Err(e) => {
            tracing::debug!(%key, error = %e, "permanent put refused");
            if created {
                let _ = lock(&shared.state).remove_put(&key, value.id);
            }
            error(StatusCode::BAD_GATEWAY, "Put failed", close)
        }
    }
}

/// `POST /key/{h}/sign` and `/encrypt` (OpenDHT's identity builds): the node signs, or
/// encrypts to the public key whose id is `"to"`, with its own identity. The answer is the value
/// as posted with its id (the node signs or encrypts its own copy).
async fn put_by_node(
    shared: &Arc<Shared>,
    key: InfoHash,
    j: Json,
    encrypt: bool,
    close: bool,
) -> Response<Body> {
    let Some(obj) = j.as_object() else {
        return error(StatusCode::BAD_REQUEST, "Value must be a JSON object", close);
    };
    let mut value = match value_from_json(&j) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string(), close),
    };
    let r = if encrypt {
        let to = obj
            .get("to")
            .and_then(Json::as_str)
            .and_then(|t| InfoHash::from_hex(t).ok())
            .filter(|t| !t.is_zero());
        let Some(to) = to else {
            return error(StatusCode::BAD_REQUEST, "No destination found", close);
        };
        shared.dht.put_encrypted(key, to, value.clone()).await
    } else {
        shared.dht.put_signed(key, value.clone()).await
    };
    match r {
        Ok(r) if r.ok => {
            value.id = r.id;
            response(StatusCode::OK, Body::full(value_line(&value, false)), close)
        }
        Ok(_) => error(StatusCode::BAD_GATEWAY, "Put failed", close),
        Err(e) => {
            tracing::debug!(%key, error = %e, "signed or encrypted put refused");
            error(StatusCode::BAD_GATEWAY, "Put failed", close)
        }
    }
}

fn reminder_at(expires: Instant, margin: Duration) -> Instant {
    expires.checked_sub(margin).unwrap_or(expires)
}

/// Expires a permanent put 24 h after its last refresh, and sends its reminder push 2 h before.
async fn put_timer(shared: Weak<Shared>, key: InfoHash, id: u64) {
    loop {
        let deadline = {
            let Some(s) = shared.upgrade() else { return };
            let st = lock(&s.state);
            let Some(p) = st.puts.get(&key).and_then(|m| m.get(&id)) else {
                return;
            };
            if p.push.is_some() && !p.reminded {
                reminder_at(p.expires, s.config.timers.reminder_margin)
            } else {
                p.expires
            }
        };
        Timer::at(deadline).await;
        let Some(s) = shared.upgrade() else { return };
        let now = Instant::now();
        let mut st = lock(&s.state);
        let Some(p) = st.puts.get_mut(&key).and_then(|m| m.get_mut(&id)) else {
            return;
        };
        if now >= p.expires {
            if let Some(mut p) = st.remove_put(&key, id)
                && let Some(t) = p.timer.take()
            {
                // This task is that timer: let it finish rather than cancel itself.
                t.detach();
            }
            drop(st);
            tracing::debug!(%key, id, "permanent put expired");
            s.dht.cancel_put(key, id);
            return;
        }
        if !p.reminded
            && now >= reminder_at(p.expires, s.config.timers.reminder_margin)
            && let Some(target) = &p.push
        {
            p.reminded = true;
            let mut data = BTreeMap::new();
            data.insert("timeout".to_owned(), Json::String(key.to_string()));
            data.insert("to".to_owned(), Json::String(target.client_id.clone()));
            data.insert("vid".to_owned(), Json::String(id.to_string()));
            data.insert("s".to_owned(), Json::String(target.session_id.clone()));
            let n = notification(&s, target, false, data);
            drop(st);
            send_push(&s, n);
        }
    }
}

// ----- listen and CORS

struct ListenGuard(Arc<Shared>);

impl Drop for ListenGuard {
    fn drop(&mut self) {
        self.0.counters.listens.fetch_sub(1, Ordering::AcqRel);
    }
}

fn listen(shared: &Arc<Shared>, key: InfoHash, close: bool) -> Response<Body> {
    let c = &shared.counters;
    if c.listens.fetch_add(1, Ordering::AcqRel) >= shared.config.limits.max_listens {
        c.listens.fetch_sub(1, Ordering::AcqRel);
        c.refused_requests.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::SERVICE_UNAVAILABLE, "Too many listens", close);
    }
    let guard = Box::new(ListenGuard(shared.clone()));
    response(
        StatusCode::OK,
        Body::listen(shared.shares.listen(key), guard),
        close,
    )
}

fn options(close: bool) -> Response<Body> {
    let mut r = response(StatusCode::OK, Body::empty(), close);
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("OPTIONS, GET, POST, LISTEN"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    r
}

// ----- push subscriptions

fn notification(
    shared: &Shared,
    target: &PushTarget,
    high_priority: bool,
    data: BTreeMap<String, Json>,
) -> PushNotification {
    PushNotification {
        token: target.token.clone(),
        platform: Platform::parse(&target.platform),
        topic: if target.topic.is_empty() {
            shared.config.bundle_id.clone()
        } else {
            target.topic.clone()
        },
        high_priority,
        data,
    }
}

fn send_push(shared: &Shared, n: PushNotification) {
    shared.counters.pushes.fetch_add(1, Ordering::Relaxed);
    match &shared.config.push {
        Some(sink) => sink.push(n),
        None => tracing::trace!(token = %n.token, "push dropped: no push sink"),
    }
}

async fn subscribe(shared: &Arc<Shared>, key: InfoHash, j: Json, close: bool) -> Response<Body> {
    let Some(obj) = j.as_object() else {
        return error(StatusCode::BAD_REQUEST, "Incorrect JSON", close);
    };
    let target = PushTarget::from_object(obj);
    if target.token.is_empty() {
        return error(StatusCode::BAD_REQUEST, "No token", close);
    }
    let refresh = obj.get("refresh").and_then(Json::as_bool).unwrap_or(false);
    let expires = Instant::now() + shared.config.timers.subscription_lifetime;
    let sk: SubKey = (target.token.clone(), key, target.client_id.clone());
    {
        let mut st = lock(&shared.state);
        if let Some(sub) = st.subs.get_mut(&sk) {
            sub.last = target;
            sub.expires = expires;
            sub.reminded = false;
            drop(st);
            return if refresh {
                response(StatusCode::OK, Body::chunked("{}\n"), close)
            } else {
                response(StatusCode::OK, Body::get(shared.shares.get(key), None), close)
            };
        }
        if st.subs.len() >= shared.config.limits.max_subscriptions {
            shared.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::SERVICE_UNAVAILABLE, "Too many subscriptions", close);
        }
        let weak = Arc::downgrade(shared);
        let listen = shared.config.push.is_some().then(|| {
            smol::spawn(subscription_listen(
                weak.clone(),
                sk.clone(),
                shared.shares.listen(key),
            ))
        });
        let timer = smol::spawn(subscription_timer(weak, sk.clone()));
        st.subs.insert(
            sk,
            Subscription {
                first: target.clone(),
                last: target,
                expires,
                reminded: false,
                timer: Some(timer),
                _listen: listen,
            },
        );
    }
    response(StatusCode::OK, Body::full("{}\n"), close)
}

fn unsubscribe(shared: &Shared, key: InfoHash, j: &Json, close: bool) -> Response<Body> {
    let Some(obj) = j.as_object() else {
        return error(StatusCode::BAD_REQUEST, "Incorrect JSON", close);
    };
    let target = PushTarget::from_object(obj);
    if target.token.is_empty() {
        return error(StatusCode::BAD_REQUEST, "No token", close);
    }
    let removed = lock(&shared.state)
        .subs
        .remove(&(target.token, key, target.client_id));
    drop(removed);
    response(StatusCode::OK, Body::empty(), close)
}

fn ping_push(shared: &Shared, j: &Json, close: bool) -> Response<Body> {
    let Some(obj) = j.as_object() else {
        return error(StatusCode::BAD_REQUEST, "Incorrect JSON", close);
    };
    let target = PushTarget::from_object(obj);
    if target.token.is_empty() {
        return error(StatusCode::BAD_REQUEST, "No token", close);
    }
    if shared.config.push.is_none() {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "Push notifications are not enabled",
            close,
        );
    }
    let mut data = BTreeMap::new();
    data.insert("to".to_owned(), Json::String(target.client_id.clone()));
    data.insert("pong".to_owned(), Json::Bool(true));
    send_push(shared, notification(shared, &target, true, data));
    response(StatusCode::OK, Body::full("{}\n"), close)
}

/// Turns a subscription's DHT listen into value pushes (spec §6).
async fn subscription_listen(shared: Weak<Shared>, sk: SubKey, mut events: BoxStream<ListenEvent>) {
    while let Some(ev) = events.next().await {
        let Some(s) = shared.upgrade() else { return };
        let (vals, expired) = match &ev {
            ListenEvent::Added(v) => (v, false),
            ListenEvent::Expired(v) => (v, true),
        };
        if vals.is_empty() {
            continue;
        }
        let n = {
            let st = lock(&s.state);
            let Some(sub) = st.subs.get(&sk) else { return };
            let mut data = BTreeMap::new();
            data.insert("key".to_owned(), Json::String(sk.1.to_string()));
            data.insert("to".to_owned(), Json::String(sub.first.client_id.clone()));
            data.insert("t".to_owned(), Json::from(unix_ms()));
            data.insert("s".to_owned(), Json::String(sub.last.session_id.clone()));
            let ids: Vec<String> = vals.iter().map(|v| v.id.to_string()).collect();
            // As 2.4.12: a single expired value is named; two or more make the client re-fetch.
            if expired && vals.len() < 2 {
                data.insert("exp".to_owned(), Json::String(ids.join(",")));
            }
            data.insert("ids".to_owned(), Json::String(ids.join(",")));
            let high = !expired && vals.iter().map(|v| v.priority).min() == Some(0);
            notification(&s, &sub.first, high, data)
        };
        send_push(&s, n);
    }
}

/// Expires a subscription 24 h after its last SUBSCRIBE; the reminder push 2 h before.
async fn subscription_timer(shared: Weak<Shared>, sk: SubKey) {
    loop {
        let deadline = {
            let Some(s) = shared.upgrade() else { return };
            let st = lock(&s.state);
            let Some(sub) = st.subs.get(&sk) else { return };
            if sub.reminded {
                sub.expires
            } else {
                reminder_at(sub.expires, s.config.timers.reminder_margin)
            }
        };
        Timer::at(deadline).await;
        let Some(s) = shared.upgrade() else { return };
        let now = Instant::now();
        let mut st = lock(&s.state);
        let Some(sub) = st.subs.get_mut(&sk) else { return };
        if now >= sub.expires {
            if let Some(mut sub) = st.subs.remove(&sk)
                && let Some(t) = sub.timer.take()
            {
                t.detach();
            }
            tracing::debug!(key = %sk.1, "push subscription expired");
            return;
        }
        if !sub.reminded && now >= reminder_at(sub.expires, s.config.timers.reminder_margin) {
            sub.reminded = true;
            let mut data = BTreeMap::new();
            data.insert("timeout".to_owned(), Json::String(sk.1.to_string()));
            data.insert("to".to_owned(), Json::String(sub.last.client_id.clone()));
            data.insert("s".to_owned(), Json::String(sub.last.session_id.clone()));
            let n = notification(&s, &sub.last, false, data);
            drop(st);
            send_push(&s, n);
        }
    }
}
