//! [`ProxyClient`]: the DHT through a proxy server (ours or OpenDHT's), over HTTP.
//!
//! Like OpenDHT's `DhtProxyClient`: each request is one connection; a get is a stream of values
//! that ends with the response; a put answers with the value's id; a permanent put is re-POSTed
//! before the server's 24 h expiry and after every reconnection; a listen is a stream that, when
//! the connection breaks, opens it again with a growing delay and reports only changes (values
//! it had not seen, and expirations of values it had). A status task asks `GET /` every 15 min
//! while connected and every minute (and at once after a failed request) while not; each return
//! to connected re-POSTs the permanent puts.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use dht_proto::InfoHash;
use dht_proto::value::Value;
use event_listener::Event;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use serde_json::Value as Json;
use smol::future::FutureExt;
use smol::stream::Stream;
use smol::{Task, Timer};

use crate::dht::ListenEvent;
use crate::gateway::Target;
use crate::json::{Object, to_ascii_json, value_from_json, value_object};
use crate::tls::ClientTls;

/// How a [`ProxyClient`] behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Bound on connecting and receiving a response's head (and a put's whole answer).
    pub request_timeout: Duration,
    /// A permanent put is re-POSTed this often (OpenDHT: 22 h, the server keeps it 24 h).
    pub permanent_refresh: Duration,
    /// `GET /` period while connected (OpenDHT: 15 min).
    pub status_connected: Duration,
    /// `GET /` period while disconnected (OpenDHT: 1 min).
    pub status_disconnected: Duration,
    /// First delay before a broken listen is opened again; doubled up to
    /// `status_disconnected`.
    pub retry_min: Duration,
    /// Longest line of a streamed body; a longer one ends the stream with an error.
    pub max_line: usize,
    /// The roots an `https://` proxy's certificate must chain to; `None`: the system's.
    pub tls: Option<ClientTls>,
    /// Push mode (OpenDHT's `push_token`, dhtnode's `--devicekey`): listens become push
    /// subscriptions for this device token, and [`ProxyClient::push_notification_received`]
    /// is fed the pushes.
    pub push_token: Option<String>,
    /// The push platform sent with subscriptions: `"android"`, `"ios"`, `"unifiedpush"`, or
    /// `""` (the server then uses the iOS form).
    pub push_platform: String,
    /// The push topic (iOS bundle id, UnifiedPush keys); `""`: the server's default.
    pub push_topic: String,
    /// This client's id in pushes (`"to"`; OpenDHT's `push_node_id`).
    pub client_id: String,
    /// A push subscription is renewed this often (OpenDHT: 22 h; the server keeps it 24 h).
    pub subscription_refresh: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(30),
            permanent_refresh: Duration::from_secs(22 * 3600),
            status_connected: Duration::from_secs(15 * 60),
            status_disconnected: Duration::from_secs(60),
            retry_min: Duration::from_secs(1),
            max_line: 1 << 20,
            tls: None,
            push_token: None,
            push_platform: String::new(),
            push_topic: String::new(),
            client_id: "rdht".into(),
            subscription_refresh: Duration::from_secs(22 * 3600),
        }
    }
}

/// What can go wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server address is not `host:port` or an `http://` or `https://` URL.
    #[error("bad proxy address {0:?}")]
    BadAddress(String),
    /// No connection, or it broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The server answered with another status than 200.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The body (an error JSON from our server or OpenDHT's).
        body: String,
    },
    /// The answer was not what the API says (bad JSON, a line too long).
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// The client is gone.
    #[error("client closed")]
    Closed,
    /// TLS could not be set up (no roots) or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct PermanentPut {
    value: Value,
    _task: Task<()>,
}

struct Inner {
    target: Target,
    config: ClientConfig,
    connected: AtomicBool,
    /// Notified when a request fails for want of a connection (the status task checks at once).
    failed: Event,
    /// Notified on each return to connected (permanent puts are re-POSTed).
    reconnected: Event,
    puts: Mutex<BTreeMap<(InfoHash, u64), PermanentPut>>,
    status_task: Mutex<Option<Task<()>>>,
    /// The TLS roots, once an `https://` request needed them.
    tls: Mutex<Option<ClientTls>>,
    /// Push mode: 8 characters drawn at creation, echoed as `"s"` in our pushes.
    session_id: String,
    /// Push mode: the subscribed keys.
    subs: Mutex<BTreeMap<InfoHash, Subscribed>>,
    next_listener: AtomicU64,
}

/// A key subscribed for pushes: the values known (to report changes only) and the listeners.
struct Subscribed {
    known: BTreeMap<u64, Value>,
    listeners: Vec<(u64, smol::channel::Sender<ListenEvent>)>,
    /// Renews the subscription (every `subscription_refresh`, and after a reconnection).
    _task: Task<()>,
}

impl Subscribed {
    /// Sends `event` to every listener, dropping the ones that are gone.
    fn tell(&mut self, event: &ListenEvent) {
        self.listeners.retain(|(_, tx)| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(smol::channel::TrySendError::Full(_)) => {
                tracing::debug!("listener too slow: a push change dropped");
                true
            }
            Err(smol::channel::TrySendError::Closed(_)) => false,
        });
    }

    /// Reports `values` as current: new or changed ones as added; with `complete`, the known
    /// ones missing from `values` as expired.
    fn update(&mut self, values: Vec<Value>, complete: bool) {
        let mut added = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for v in values {
            seen.insert(v.id);
            if self.known.get(&v.id) != Some(&v) {
                self.known.insert(v.id, v.clone());
                added.push(v);
            }
        }
        if !added.is_empty() {
            self.tell(&ListenEvent::Added(added));
        }
        if complete {
            let gone: Vec<u64> = self
                .known
                .keys()
                .filter(|id| !seen.contains(id))
                .copied()
                .collect();
            self.expire(&gone);
        }
    }

    fn expire(&mut self, ids: &[u64]) -> bool {
        let gone: Vec<Value> = ids.iter().filter_map(|id| self.known.remove(id)).collect();
        if gone.is_empty() {
            return false;
        }
        self.tell(&ListenEvent::Expired(gone));
        true
    }
}

/// What [`ProxyClient::push_notification_received`] did with a push (OpenDHT HEAD's
/// `PushNotificationResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushNotificationResult {
    /// A `timeout` push with `vid`: the permanent put was re-POSTed.
    PutRefresh,
    /// A `timeout` push without `vid`: the key's subscription was renewed.
    ListenRefresh,
    /// A value push: the key's values were fetched again and the changes reported.
    Values,
    /// A push with `exp`: those values were reported expired, with no request.
    ValuesExpired,
    /// The push was for another session of this client id (`"s"` differs).
    IgnoredWrongSession,
    /// Nothing of ours is about this push (unknown key or put, or no `key`).
    IgnoredNoOp,
    /// The client has no push token.
    IgnoredDisabled,
    /// The request the push called for failed.
    Error,
}

/// A client of a DHT proxy server. Cheap to clone; the last clone dropped stops its tasks
/// (status checks, permanent-put refreshes). Runs on smol's global executor.
#[derive(Clone)]
pub struct ProxyClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProxyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyClient")
            .field("server", &self.inner.target)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// A response with the task that drives its connection.
struct Exchange {
    response: Response<Incoming>,
    _conn: Task<()>,
}

impl Inner {
    fn note_failure(&self, e: &ClientError) {
        if matches!(e, ClientError::Connection(_) | ClientError::Timeout) {
            self.connected.store(false, Ordering::Relaxed);
            self.failed.notify(usize::MAX);
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        keep_alive: bool,
    ) -> Result<Exchange, ClientError> {
        let r = self
            .request_inner(method, path, body, keep_alive)
            .or(async {
                Timer::after(self.config.request_timeout).await;
                Err(ClientError::Timeout)
            })
            .await;
        if let Err(e) = &r {
            self.note_failure(e);
        }
        r
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        keep_alive: bool,
    ) -> Result<Exchange, ClientError> {
        let conn_err = |e: &dyn std::fmt::Display| ClientError::Connection(e.to_string());
        let stream = smol::net::TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|e| conn_err(&e))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = if self.target.tls {
            let tls = self.tls()?;
            let name = rustls_pki_types::ServerName::try_from(self.target.host.clone())
                .map_err(|e| ClientError::BadAddress(format!("{}: {e}", self.target.host)))?;
            let stream = futures_rustls::TlsConnector::from(tls.config)
                .connect(name, stream)
                .await
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            handshake(stream).await?
        } else {
            handshake(stream).await?
        };
        let mut req = Request::new(Full::new(Bytes::from(body.unwrap_or_default())));
        *req.method_mut() = method;
        *req.uri_mut() = path
            .parse()
            .map_err(|_| ClientError::BadAddress(path.to_owned()))?;
        let h = req.headers_mut();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&self.target.host_header()) {
            h.insert(header::HOST, v);
        }
        h.insert(header::USER_AGENT, HeaderValue::from_static("rdht-proxy client"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static(if keep_alive { "keep-alive" } else { "close" }),
        );
        let response = sender.send_request(req).await.map_err(|e| conn_err(&e))?;
        Ok(Exchange {
            response,
            _conn: conn,
        })
    }

    /// The TLS roots: the configured ones, or the system's (read once).
    fn tls(&self) -> Result<ClientTls, ClientError> {
        let mut t = lock(&self.tls);
        if let Some(t) = &*t {
            return Ok(t.clone());
        }
        let roots = match &self.config.tls {
            Some(c) => c.clone(),
            None => ClientTls::system().map_err(|e| ClientError::Tls(e.to_string()))?,
        };
        *t = Some(roots.clone());
        Ok(roots)
    }

    /// The push fields of a request body (SUBSCRIBE, or a permanent put's `"permanent"`).
    fn push_object(&self, token: &str) -> Object {
        let mut o = Object::new();
        o.insert("client_id", Json::from(self.config.client_id.as_str()));
        o.insert("key", Json::from(token));
        o.insert("platform", Json::from(self.config.push_platform.as_str()));
        o.insert("session_id", Json::from(self.session_id.as_str()));
        o.insert("topic", Json::from(self.config.push_topic.as_str()));
        o
    }

    /// `SUBSCRIBE /key/{h}`: the values the server streams back (an existing subscription
    /// without `refresh`), none for a new one.
    async fn subscribe(&self, key: InfoHash, token: &str, refresh: bool) -> Result<Vec<Value>, ClientError> {
        let mut o = self.push_object(token);
        if refresh {
            o.insert("refresh", Json::Bool(true));
        }
        // OpenDHT's client ends this body with a space.
        let body = format!("{} ", to_ascii_json(&o));
        let ex = self
            .request(
                Method::from_bytes(b"SUBSCRIBE").map_err(|e| ClientError::BadAddress(e.to_string()))?,
                &format!("/key/{key}"),
                Some(body),
                false,
            )
            .await?;
        let (status, body) = self.body(ex).await?;
        if status != 200 {
            return Err(ClientError::Status { status, body });
        }
        let mut values = Vec::new();
        for line in body.lines() {
            let line = line.trim();
            if line.is_empty() || line == "{}" {
                continue;
            }
            values.push(parse_line(line)?.0);
        }
        Ok(values)
    }

    /// `UNSUBSCRIBE /key/{h}`.
    async fn unsubscribe(&self, key: InfoHash, token: &str) -> Result<(), ClientError> {
        let mut o = Object::new();
        o.insert("client_id", Json::from(self.config.client_id.as_str()));
        o.insert("key", Json::from(token));
        let method =
            Method::from_bytes(b"UNSUBSCRIBE").map_err(|e| ClientError::BadAddress(e.to_string()))?;
        let ex = self
            .request(method, &format!("/key/{key}"), Some(to_ascii_json(&o)), false)
            .await?;
        let (status, body) = self.body(ex).await?;
        if status != 200 {
            return Err(ClientError::Status { status, body });
        }
        Ok(())
    }

    /// A whole, bounded body.
    async fn body(&self, ex: Exchange) -> Result<(u16, String), ClientError> {
        let status = ex.response.status().as_u16();
        let limited = http_body_util::Limited::new(ex.response.into_body(), self.config.max_line);
        let bytes = limited
            .collect()
            .or(async {
                Timer::after(self.config.request_timeout).await;
                Err("timed out".into())
            })
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn post(&self, key: InfoHash, value: &Value, permanent: bool) -> Result<Value, ClientError> {
        let mut o: Object = value_object(value);
        if permanent {
            // In push mode the server reminds us (a `timeout` push) before the put expires.
            let p = match &self.config.push_token {
                Some(token) => Json::Object(
                    self.push_object(token)
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                ),
                None => Json::Bool(true),
            };
            o.insert("permanent", p);
        }
        let ex = self
            .request(
                Method::POST,
                &format!("/key/{key}"),
                Some(to_ascii_json(&o)),
                false,
            )
            .await?;
        let (status, body) = self.body(ex).await?;
        if status != 200 {
            return Err(ClientError::Status { status, body });
        }
        let j: Json = serde_json::from_str(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        let mut stored = value_from_json(&j).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        if stored.id == 0 {
            stored.id = value.id;
        }
        Ok(stored)
    }
}

/// HTTP/1.1 on `stream`, its connection driven by a task.
async fn handshake<S>(stream: S) -> Result<(SendRequest<Full<Bytes>>, Task<()>), ClientError>
where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(smol_hyper::rt::FuturesIo::new(stream))
        .await
        .map_err(|e| ClientError::Connection(e.to_string()))?;
    let conn = smol::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, conn))
}

/// OpenDHT's session id alphabet: printable ASCII without quote, backslash or `-`.
const SESSION_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,./:;<=>?@[]^_`{|}~";

fn session_id() -> String {
    let mut bytes = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes
        .iter()
        .map(|b| {
            let i = usize::from(*b) % SESSION_CHARS.len();
            char::from(SESSION_CHARS.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

impl ProxyClient {
    /// A client of the proxy at `server`: `host:port`, `http://host[:port]` or
    /// `https://host[:port]` (TLS, with [`ClientConfig::tls`]'s roots). No request is made
    /// until the first operation; the status task starts at once.
    pub fn new(server: &str, config: ClientConfig) -> Result<ProxyClient, ClientError> {
        let target = Target::server(server).ok_or_else(|| ClientError::BadAddress(server.to_owned()))?;
        let inner = Arc::new(Inner {
            target,
            config,
            connected: AtomicBool::new(false),
            failed: Event::new(),
            reconnected: Event::new(),
            puts: Mutex::new(BTreeMap::new()),
            status_task: Mutex::new(None),
            tls: Mutex::new(None),
            session_id: session_id(),
            subs: Mutex::new(BTreeMap::new()),
            next_listener: AtomicU64::new(1),
        });
        let task = smol::spawn(status_loop(Arc::downgrade(&inner)));
        *lock(&inner.status_task) = Some(task);
        Ok(ProxyClient { inner })
    }

    /// The push token, in push mode.
    pub fn push_token(&self) -> Option<&str> {
        self.inner.config.push_token.as_deref()
    }

    /// This client's session id (push mode: pushes of another session are ignored).
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// Hands over a push notification's data (every member a string, as a phone delivers it),
    /// as OpenDHT's `DhtProxyClient::pushNotificationReceived`: a `timeout` push with `vid`
    /// re-POSTs that permanent put; a `timeout` push without renews the key's subscription; a
    /// value push (`key`) fetches the key's values and reports the changes to its listens, or,
    /// with `exp`, reports those ids expired without a request. A push with another session's
    /// `s` is ignored. Any push means the proxy is reachable.
    pub async fn push_notification_received(
        &self,
        data: &BTreeMap<String, String>,
    ) -> PushNotificationResult {
        let inner = &self.inner;
        let Some(token) = inner.config.push_token.clone() else {
            return PushNotificationResult::IgnoredDisabled;
        };
        if let Some(s) = data.get("s")
            && *s != inner.session_id
        {
            return PushNotificationResult::IgnoredWrongSession;
        }
        if !inner.connected.swap(true, Ordering::Relaxed) {
            inner.reconnected.notify(usize::MAX);
        }
        if let Some(timeout) = data.get("timeout") {
            let key = crate::route::parse_key(timeout);
            if let Some(vid) = data.get("vid") {
                let Ok(vid) = vid.parse::<u64>() else {
                    return PushNotificationResult::IgnoredNoOp;
                };
                let Some(value) = lock(&inner.puts).get(&(key, vid)).map(|p| p.value.clone()) else {
                    return PushNotificationResult::IgnoredNoOp;
                };
                return match inner.post(key, &value, true).await {
                    Ok(_) => PushNotificationResult::PutRefresh,
                    Err(e) => {
                        tracing::debug!(%key, vid, error = %e, "permanent put refresh failed");
                        PushNotificationResult::Error
                    }
                };
            }
            if !lock(&inner.subs).contains_key(&key) {
                return PushNotificationResult::IgnoredNoOp;
            }
            return match inner.subscribe(key, &token, true).await {
                Ok(values) => {
                    if let Some(sub) = lock(&inner.subs).get_mut(&key) {
                        sub.update(values, false);
                    }
                    PushNotificationResult::ListenRefresh
                }
                Err(e) => {
                    tracing::debug!(%key, error = %e, "resubscribe failed");
                    PushNotificationResult::Error
                }
            };
        }
        let Some(key) = data.get("key").map(|k| crate::route::parse_key(k)) else {
            return PushNotificationResult::IgnoredNoOp;
        };
        if !lock(&inner.subs).contains_key(&key) {
            return PushNotificationResult::IgnoredNoOp;
        }
        if let Some(exp) = data.get("exp") {
            let ids: Vec<u64> = exp.split(',').filter_map(|i| i.trim().parse().ok()).collect();
            if let Some(sub) = lock(&inner.subs).get_mut(&key) {
                sub.expire(&ids);
            }
            return PushNotificationResult::ValuesExpired;
        }
        match self.get_all(key).await {
            Ok(values) => {
                if let Some(sub) = lock(&inner.subs).get_mut(&key) {
                    sub.update(values, true);
                }
                PushNotificationResult::Values
            }
            Err(e) => {
                tracing::debug!(%key, error = %e, "get after a push failed");
                PushNotificationResult::Error
            }
        }
    }

    /// True when the last `GET /` found the proxy's node with a good node.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// The proxy's node info (`GET /`).
    pub async fn node_info(&self) -> Result<Json, ClientError> {
        node_info(&self.inner).await
    }

    /// The values at `key` as the proxy finds them; the stream ends with the response. An
    /// error, if any, is the last item.
    pub fn get(&self, key: InfoHash) -> ValueStream {
        let (tx, rx) = smol::channel::bounded(64);
        let weak = Arc::downgrade(&self.inner);
        let task = smol::spawn(async move {
            let Some(inner) = weak.upgrade() else { return };
            let r = async {
                let ex = inner
                    .request(Method::GET, &format!("/key/{key}"), None, false)
                    .await?;
                let max = inner.config.max_line;
                drop(inner);
                read_lines(ex, max, |line| {
                    let tx = tx.clone();
                    async move {
                        if line.trim().is_empty() {
                            return true;
                        }
                        match parse_line(&line) {
                            Ok((v, _)) => tx.send(Ok(v)).await.is_ok(),
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                false
                            }
                        }
                    }
                })
                .await
            }
            .await;
            if let Err(e) = r {
                let _ = tx.send(Err(e)).await;
            }
        });
        ValueStream {
            rx: Box::pin(rx),
            _task: task,
        }
    }

    /// Every value at `key`.
    pub async fn get_all(&self, key: InfoHash) -> Result<Vec<Value>, ClientError> {
        let mut s = self.get(key);
        let mut out = Vec::new();
        while let Some(v) = smol::stream::StreamExt::next(&mut s).await {
            out.push(v?);
        }
        Ok(out)
    }

    /// Puts `value` at `key`; returns the value as stored (its id filled in by the server
    /// when it was 0).
    pub async fn put(&self, key: InfoHash, value: Value) -> Result<Value, ClientError> {
        self.inner.post(key, &value, false).await
    }

    /// A permanent put: the server keeps it announced; this client re-POSTs it every
    /// `permanent_refresh` and after each reconnection, until [`ProxyClient::cancel_put`].
    /// Returns the value id.
    pub async fn put_permanent(&self, key: InfoHash, value: Value) -> Result<u64, ClientError> {
        let stored = self.inner.post(key, &value, true).await?;
        let id = stored.id;
        let task = smol::spawn(refresh_loop(Arc::downgrade(&self.inner), key, id));
        lock(&self.inner.puts).insert(
            (key, id),
            PermanentPut {
                value: stored,
                _task: task,
            },
        );
        Ok(id)
    }

    /// Stops refreshing a permanent put. As with OpenDHT, nothing is sent: the server drops it
    /// at its own expiry (24 h after the last refresh).
    pub fn cancel_put(&self, key: InfoHash, id: u64) {
        drop(lock(&self.inner.puts).remove(&(key, id)));
    }

    /// Permanent puts being kept alive.
    pub fn permanent_puts(&self) -> usize {
        lock(&self.inner.puts).len()
    }

    /// A listen at `key`: the values known and then the changes. The stream opens its
    /// connection again when it breaks (a server restart) and reports only changes. Dropping it
    /// closes the connection, which ends the listen on the server.
    ///
    /// In push mode ([`ClientConfig::push_token`]) there is no stream from the server: the key
    /// is subscribed (`SUBSCRIBE`, renewed every `subscription_refresh` and after each
    /// reconnection), and the changes come from the pushes handed to
    /// [`ProxyClient::push_notification_received`]. Dropping the last listen of a key
    /// unsubscribes it.
    pub fn listen(&self, key: InfoHash) -> ListenStream {
        let (tx, rx) = smol::channel::bounded(64);
        if self.inner.config.push_token.is_some() {
            let id = self.inner.next_listener.fetch_add(1, Ordering::Relaxed);
            let mut subs = lock(&self.inner.subs);
            match subs.get_mut(&key) {
                Some(sub) => {
                    if !sub.known.is_empty() {
                        let _ = tx.try_send(ListenEvent::Added(sub.known.values().cloned().collect()));
                    }
                    sub.listeners.push((id, tx));
                }
                None => {
                    let task = smol::spawn(subscription_loop(Arc::downgrade(&self.inner), key));
                    subs.insert(
                        key,
                        Subscribed {
                            known: BTreeMap::new(),
                            listeners: vec![(id, tx)],
                            _task: task,
                        },
                    );
                }
            }
            return ListenStream {
                rx: Box::pin(rx),
                _task: None,
                _push: Some(PushListen {
                    inner: Arc::downgrade(&self.inner),
                    key,
                    id,
                }),
            };
        }
        let task = smol::spawn(listen_loop(Arc::downgrade(&self.inner), key, tx));
        ListenStream {
            rx: Box::pin(rx),
            _task: Some(task),
            _push: None,
        }
    }
}

fn parse_line(line: &str) -> Result<(Value, bool), ClientError> {
    let j: Json = serde_json::from_str(line).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
    let expired = j.get("expired").and_then(Json::as_bool).unwrap_or(false);
    let v = value_from_json(&j).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
    Ok((v, expired))
}

/// Reads a 200 streamed body line by line, calling `each` (which returns false to stop).
/// `Ok` when the body ended properly (or `each` stopped); an error when it broke.
async fn read_lines<F, Fut>(ex: Exchange, max_line: usize, mut each: F) -> Result<(), ClientError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let status = ex.response.status().as_u16();
    let mut body = ex.response.into_body();
    if status != 200 {
        let bytes = http_body_util::Limited::new(body, max_line)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(ClientError::Status {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match body.frame().await {
            None => return Ok(()),
            Some(Err(e)) => return Err(ClientError::Connection(e.to_string())),
            Some(Ok(frame)) => {
                let Ok(mut data) = frame.into_data() else { continue };
                while data.has_remaining() {
                    let chunk = data.chunk();
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    data.advance(n);
                }
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&line).into_owned();
                    if !each(line).await {
                        return Ok(());
                    }
                }
                if buf.len() > max_line {
                    return Err(ClientError::BadAnswer("line too long".into()));
                }
            }
        }
    }
}

async fn node_info(inner: &Inner) -> Result<Json, ClientError> {
    let ex = inner.request(Method::GET, "/", None, false).await?;
    let (status, body) = inner.body(ex).await?;
    if status != 200 {
        return Err(ClientError::Status { status, body });
    }
    serde_json::from_str(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))
}

fn good_nodes(info: &Json) -> u64 {
    ["ipv4", "ipv6"]
        .iter()
        .filter_map(|f| info.get(f)?.get("good")?.as_u64())
        .sum()
}

/// `GET /` now and then; a return to connected wakes the permanent puts.
async fn status_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let was = inner.connected.load(Ordering::Relaxed);
        let now = match node_info(&inner).await {
            Ok(info) => info.get("node_id").is_some() && good_nodes(&info) > 0,
            Err(_) => false,
        };
        inner.connected.store(now, Ordering::Relaxed);
        if now && !was {
            tracing::debug!(server = ?inner.target, "proxy connected");
            inner.reconnected.notify(usize::MAX);
        }
        let wait = if now {
            inner.config.status_connected
        } else {
            inner.config.status_disconnected
        };
        let failed = inner.failed.listen();
        drop(inner);
        sleep_unless(wait, failed).await;
    }
}

/// Re-POSTs a permanent put every `permanent_refresh` and after each reconnection; retries a
/// failed POST after the disconnected status period.
async fn refresh_loop(weak: Weak<Inner>, key: InfoHash, id: u64) {
    let mut wait_refresh = true;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let wait = if wait_refresh {
            inner.config.permanent_refresh
        } else {
            inner.config.status_disconnected
        };
        let reconnected = inner.reconnected.listen();
        drop(inner);
        sleep_unless(wait, reconnected).await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(value) = lock(&inner.puts).get(&(key, id)).map(|p| p.value.clone()) else {
            return;
        };
        wait_refresh = match inner.post(key, &value, true).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(%key, id, error = %e, "permanent put refresh failed");
                false
            }
        };
    }
}

/// Push mode: subscribes `key`, then renews the subscription every `subscription_refresh` and
/// after each return to connected; a failed SUBSCRIBE is tried again after the disconnected
/// status period.
async fn subscription_loop(weak: Weak<Inner>, key: InfoHash) {
    let mut refresh = false;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let Some(token) = inner.config.push_token.clone() else {
            return;
        };
        let wait = match inner.subscribe(key, &token, refresh).await {
            Ok(values) => {
                if let Some(sub) = lock(&inner.subs).get_mut(&key) {
                    sub.update(values, false);
                }
                refresh = true;
                inner.config.subscription_refresh
            }
            Err(e) => {
                tracing::debug!(%key, error = %e, "subscribe failed");
                inner.config.status_disconnected
            }
        };
        let reconnected = inner.reconnected.listen();
        drop(inner);
        sleep_unless(wait, reconnected).await;
    }
}

/// One push-mode listen; dropping the last of a key unsubscribes it.
struct PushListen {
    inner: Weak<Inner>,
    key: InfoHash,
    id: u64,
}

impl Drop for PushListen {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else { return };
        let last = {
            let mut subs = lock(&inner.subs);
            match subs.get_mut(&self.key) {
                Some(sub) => {
                    sub.listeners.retain(|(id, _)| *id != self.id);
                    if sub.listeners.is_empty() {
                        subs.remove(&self.key)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let (Some(last), Some(token)) = (last, inner.config.push_token.clone()) {
            drop(last);
            let key = self.key;
            smol::spawn(async move {
                if let Err(e) = inner.unsubscribe(key, &token).await {
                    tracing::debug!(%key, error = %e, "unsubscribe failed");
                }
            })
            .detach();
        }
    }
}

/// Keeps a listen open, reporting changes only.
async fn listen_loop(weak: Weak<Inner>, key: InfoHash, tx: smol::channel::Sender<ListenEvent>) {
    let mut known: BTreeMap<u64, Value> = BTreeMap::new();
    let mut delay = None;
    loop {
        if let Some(d) = delay {
            Timer::after(d).await;
        }
        let Some(inner) = weak.upgrade() else { return };
        let (min, max, max_line) = (
            inner.config.retry_min,
            inner.config.status_disconnected,
            inner.config.max_line,
        );
        let ex = inner
            .request(Method::GET, &format!("/key/{key}/listen"), None, true)
            .await;
        let r = match ex {
            Ok(ex) => {
                drop(inner);
                if ex.response.status().is_success() {
                    // Opened: the next break starts the backoff again from its minimum.
                    delay = None;
                }
                read_lines(ex, max_line, |line| {
                    let change = if line.trim().is_empty() {
                        None
                    } else {
                        match parse_line(&line) {
                            Ok((v, true)) => known.remove(&v.id).map(|_| ListenEvent::Expired(vec![v])),
                            Ok((v, false)) if known.get(&v.id) != Some(&v) => {
                                known.insert(v.id, v.clone());
                                Some(ListenEvent::Added(vec![v]))
                            }
                            _ => None,
                        }
                    };
                    let tx = tx.clone();
                    async move {
                        match change {
                            Some(c) => tx.send(c).await.is_ok(),
                            None => !tx.is_closed(),
                        }
                    }
                })
                .await
            }
            Err(e) => Err(e),
        };
        if tx.is_closed() {
            return;
        }
        match r {
            // A listen stream only ends when the server goes away.
            Ok(()) => delay = Some(min),
            Err(e) => {
                if let Some(inner) = weak.upgrade() {
                    inner.note_failure(&e);
                }
                tracing::debug!(%key, error = %e, "listen broke");
                delay = Some(delay.map_or(min, |d: Duration| d.saturating_mul(2).min(max)));
            }
        }
    }
}

/// The values of [`ProxyClient::get`].
pub struct ValueStream {
    rx: Pin<Box<smol::channel::Receiver<Result<Value, ClientError>>>>,
    _task: Task<()>,
}

impl std::fmt::Debug for ValueStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueStream").finish_non_exhaustive()
    }
}

impl Stream for ValueStream {
    type Item = Result<Value, ClientError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}

/// The changes of [`ProxyClient::listen`]; dropping it ends the listen.
pub struct ListenStream {
    rx: Pin<Box<smol::channel::Receiver<ListenEvent>>>,
    _task: Option<Task<()>>,
    _push: Option<PushListen>,
}

impl std::fmt::Debug for ListenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenStream").finish_non_exhaustive()
    }
}

impl Stream for ListenStream {
    type Item = ListenEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}

/// Sleeps `wait`, or less if `event` fires first (a reconnection, a failed request).
async fn sleep_unless(wait: Duration, event: event_listener::EventListener) {
    async {
        Timer::after(wait).await;
    }
    .or(event)
    .await;
}
