//! Sending pushes: a [`PushSink`] that posts to a gorush-style gateway (Android and iOS, the
//! format of OpenDHT 2.4.12, spec §7.2) and to UnifiedPush endpoints (§7.3), over plain HTTP.
//!
//! Pushes wait in a bounded queue and are sent by a few worker tasks, each push on a new
//! connection with `Connection: close`, as OpenDHT does. A push that fails for a reason worth
//! retrying (no connection, timeout, 5xx) is tried again after a growing delay, a bounded number
//! of times; a full queue drops the push. Nothing here blocks the server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use serde_json::Value as Json;
use smol::Timer;
use smol::future::FutureExt;

use crate::json::to_ascii_json;
use crate::push::{Platform, PushNotification, PushSink};

/// Where and how pushes are sent.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The gorush gateway (OpenDHT's `--pushserver`): `host:port`, a bare port (meaning
    /// `localhost:port`) or an `http://` URL. `None`: Android and iOS pushes are dropped;
    /// UnifiedPush pushes go straight to their endpoints.
    pub gateway: Option<String>,
    /// Pushes waiting to be sent; more are dropped.
    pub queue: usize,
    /// Pushes being sent at once.
    pub workers: usize,
    /// Tries per push (the first included).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each next one.
    pub backoff: Duration,
    /// Bound on one try: connect, send, and read the status.
    pub timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            gateway: None,
            queue: 4096,
            workers: 8,
            attempts: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of a [`Gateway`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayStats {
    /// Pushes the receiver answered with 200.
    pub sent: u64,
    /// Pushes given up after their last try, or refused (4xx), or with no place to go.
    pub failed: u64,
    /// Pushes dropped because the queue was full.
    pub dropped: u64,
    /// Retries made.
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

/// Sends pushes to a gorush gateway and UnifiedPush endpoints. Give it to the server as
/// [`Config::push`](crate::Config::push). Dropping every clone stops its workers once the queue
/// is empty.
#[derive(Clone)]
pub struct Gateway {
    tx: smol::channel::Sender<PushNotification>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("stats", &self.stats()).finish()
    }
}

impl Gateway {
    /// Starts the workers on smol's global executor.
    pub fn start(config: GatewayConfig) -> Gateway {
        let (tx, rx) = smol::channel::bounded(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        let config = Arc::new(config);
        for _ in 0..config.workers.max(1) {
            let rx = rx.clone();
            let config = config.clone();
            let counters = counters.clone();
            smol::spawn(async move {
                while let Ok(n) = rx.recv().await {
                    deliver(&config, &counters, &n).await;
                }
            })
            .detach();
        }
        Gateway { tx, counters }
    }

    /// Current counters.
    pub fn stats(&self) -> GatewayStats {
        let c = &self.counters;
        GatewayStats {
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }
}

impl PushSink for Gateway {
    fn push(&self, notification: PushNotification) {
        if self.tx.try_send(notification).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An `http://` target: host, port, path with query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
    /// `https://`: a proxy client speaks TLS to it (gateways do not, yet).
    pub(crate) tls: bool,
}

impl Target {
    /// `http://host[:port][/path]`; `https` is refused (no TLS yet).
    fn from_url(url: &str) -> Option<Target> {
        let (rest, tls) = match url.strip_prefix("http://") {
            Some(rest) => (rest, false),
            None => (url.strip_prefix("https://")?, true),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })?;
        Some(Target {
            host,
            port,
            path,
            tls,
        })
    }

    /// A proxy server: `host:port`, `host` (port 80) or an `http://` URL.
    pub(crate) fn server(s: &str) -> Option<Target> {
        if s.contains("://") {
            return Target::from_url(s);
        }
        let (host, port) = split_host_port(s, 80)?;
        Some(Target {
            host,
            port,
            path: "/".into(),
            tls: false,
        })
    }

    /// OpenDHT's `--pushserver`: `host:port`, a bare port (`localhost:port`), or a URL.
    fn gateway(s: &str) -> Option<Target> {
        let base = if s.contains("://") {
            Target::from_url(s).filter(|t| !t.tls)?
        } else if let Ok(port) = s.parse::<u16>() {
            Target {
                host: "localhost".into(),
                port,
                path: "/".into(),
                tls: false,
            }
        } else {
            let (host, port) = split_host_port(s, 80)?;
            Target {
                host,
                port,
                path: "/".into(),
                tls: false,
            }
        };
        Some(Target {
            path: "/api/push".into(),
            ..base
        })
    }

    pub(crate) fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if rest.is_empty() => default,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_owned(), default)),
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The gorush request body of OpenDHT 2.4.12 (spec §7.2).
pub(crate) fn gorush_body(n: &PushNotification, now_secs: u64) -> String {
    let mut o: BTreeMap<&str, Json> = BTreeMap::new();
    o.insert("data", serde_json::to_value(&n.data).unwrap_or(Json::Null));
    o.insert("tokens", Json::Array(vec![Json::String(n.token.clone())]));
    let priority = if n.high_priority { "high" } else { "normal" };
    o.insert("priority", Json::from(priority));
    if n.platform == Platform::Android {
        o.insert("platform", Json::from(2));
        o.insert("time_to_live", Json::from(86400));
    } else {
        // iOS, and subscribers with no platform (OpenDHT pushes those as iOS too).
        o.insert("platform", Json::from(1));
        o.insert("expiration", Json::from(now_secs + 86400));
        if !n.topic.is_empty() {
            o.insert("topic", Json::String(n.topic.clone()));
        }
        if n.high_priority {
            let mut alert = BTreeMap::new();
            alert.insert("title", Json::from("hello"));
            o.insert("alert", serde_json::to_value(alert).unwrap_or(Json::Null));
            o.insert("mutable_content", Json::Bool(true));
            o.insert("push_type", Json::from("alert"));
        } else {
            o.insert("content_available", Json::Bool(true));
            o.insert("push_type", Json::from("background"));
        }
    }
    let mut top = BTreeMap::new();
    top.insert(
        "notifications",
        Json::Array(vec![serde_json::to_value(o).unwrap_or(Json::Null)]),
    );
    to_ascii_json(&top)
}

enum Outcome {
    Sent,
    Retry(String),
    Fail(String),
}

async fn deliver(config: &GatewayConfig, counters: &Counters, n: &PushNotification) {
    let (target, body, unified) = if n.platform == Platform::UnifiedPush {
        (
            Target::from_url(&n.token).filter(|t| !t.tls),
            to_ascii_json(&n.data),
            true,
        )
    } else {
        let target = config.gateway.as_deref().and_then(Target::gateway);
        (target, gorush_body(n, unix_secs()), false)
    };
    let Some(target) = target else {
        tracing::debug!(token = %n.token, "push not sent: no gateway, or not an http:// endpoint");
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut delay = config.backoff;
    for attempt in 1..=config.attempts.max(1) {
        let once = send_once(&target, body.clone(), unified, n.high_priority);
        let outcome = once
            .or(async {
                Timer::after(config.timeout).await;
                Outcome::Retry("timed out".into())
            })
            .await;
        match outcome {
            Outcome::Sent => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Outcome::Fail(why) => {
                tracing::debug!(host = %target.host, %why, "push refused");
                break;
            }
            Outcome::Retry(why) => {
                tracing::debug!(host = %target.host, attempt, %why, "push failed");
                if attempt < config.attempts {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    Timer::after(delay).await;
                    delay = delay.saturating_mul(2);
                }
            }
        }
    }
    counters.failed.fetch_add(1, Ordering::Relaxed);
}

async fn send_once(target: &Target, body: String, unified: bool, high: bool) -> Outcome {
    let stream = match smol::net::TcpStream::connect((target.host.as_str(), target.port)).await {
        Ok(s) => s,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake(smol_hyper::rt::FuturesIo::new(stream)).await {
            Ok(x) => x,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
    let driver = smol::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = hyper::Method::POST;
    *req.uri_mut() = match target.path.parse() {
        Ok(u) => u,
        Err(_) => return Outcome::Fail(format!("bad path {}", target.path)),
    };
    let h = req.headers_mut();
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&target.host_header()) {
        h.insert(header::HOST, v);
    }
    h.insert(header::USER_AGENT, HeaderValue::from_static("rdht-proxy"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if unified {
        // RFC 8030 headers, as OpenDHT's newer versions send them.
        h.insert("ttl", HeaderValue::from_static("86400"));
        h.insert(
            "urgency",
            HeaderValue::from_static(if high { "high" } else { "normal" }),
        );
    }
    let outcome = match sender.send_request(req).await {
        Ok(resp) => {
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Outcome::Sent
            } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                Outcome::Retry(status.to_string())
            } else {
                Outcome::Fail(status.to_string())
            }
        }
        Err(e) => Outcome::Retry(e.to_string()),
    };
    drop(driver);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16, path: &str) -> Option<Target> {
        Some(Target {
            host: host.into(),
            port,
            path: path.into(),
            tls: false,
        })
    }

    #[test]
    fn targets() {
        assert_eq!(
            Target::gateway("127.0.0.1:8099"),
            t("127.0.0.1", 8099, "/api/push")
        );
        assert_eq!(Target::gateway("8099"), t("localhost", 8099, "/api/push"));
        assert_eq!(
            Target::gateway("http://gw.example"),
            t("gw.example", 80, "/api/push")
        );
        assert_eq!(Target::gateway("https://gw.example"), None);
        assert_eq!(Target::gateway(""), None);
        assert_eq!(
            Target::from_url("http://127.0.0.1:8099/up/abc?x=1"),
            t("127.0.0.1", 8099, "/up/abc?x=1")
        );
        assert_eq!(Target::from_url("http://[::1]:81?x"), t("::1", 81, "/?x"));
        assert_eq!(Target::from_url("http://h"), t("h", 80, "/"));
        assert_eq!(Target::from_url("http://h:x/"), None);
        assert_eq!(Target::from_url("ftp://h/"), None);
        assert_eq!(
            t("::1", 81, "/").map(|t| t.host_header()),
            Some("[::1]:81".into())
        );
        assert_eq!(t("h", 80, "/").map(|t| t.host_header()), Some("h".into()));
    }

    fn data(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn gorush_bodies_match_the_spec() {
        let d = data(&[
            ("key", Json::from("62cdb7020ff920e5aa642c3d4066950dd1f01f4d")),
            ("s", Json::from("sessA")),
            ("t", Json::from(1796082846793u64)),
            ("to", Json::from("cliA")),
        ]);
        let mut n = PushNotification {
            token: "tokA".into(),
            platform: Platform::Android,
            topic: "com.example.app".into(),
            high_priority: true,
            data: d,
        };
        assert_eq!(
            gorush_body(&n, 0),
            "{\"notifications\":[{\"data\":{\"key\":\"62cdb7020ff920e5aa642c3d4066950dd1f01f4d\",\"s\":\"sessA\",\"t\":1796082846793,\"to\":\"cliA\"},\"platform\":2,\"priority\":\"high\",\"time_to_live\":86400,\"tokens\":[\"tokA\"]}]}"
        );
        n.platform = Platform::Ios;
        n.token = "tokI".into();
        n.topic = "com.example.topic".into();
        assert_eq!(
            gorush_body(&n, 1796082846),
            "{\"notifications\":[{\"alert\":{\"title\":\"hello\"},\"data\":{\"key\":\"62cdb7020ff920e5aa642c3d4066950dd1f01f4d\",\"s\":\"sessA\",\"t\":1796082846793,\"to\":\"cliA\"},\"expiration\":1796169246,\"mutable_content\":true,\"platform\":1,\"priority\":\"high\",\"push_type\":\"alert\",\"tokens\":[\"tokI\"],\"topic\":\"com.example.topic\"}]}"
        );
        n.high_priority = false;
        n.platform = Platform::None;
        n.topic.clear();
        assert_eq!(
            gorush_body(&n, 1796082857),
            "{\"notifications\":[{\"content_available\":true,\"data\":{\"key\":\"62cdb7020ff920e5aa642c3d4066950dd1f01f4d\",\"s\":\"sessA\",\"t\":1796082846793,\"to\":\"cliA\"},\"expiration\":1796169257,\"platform\":1,\"priority\":\"normal\",\"push_type\":\"background\",\"tokens\":[\"tokI\"]}]}"
        );
    }
}
