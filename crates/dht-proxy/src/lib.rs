//! # dht-proxy
//!
//! An HTTP proxy server for a DHT node, compatible with OpenDHT's `DhtProxyServer` (REST API of
//! OpenDHT 2.4.12, spec `opendht-proxy.md`): phones and browsers that cannot run a UDP node get,
//! put and listen over HTTP, and OpenDHT's own proxy client (`dhtnode --proxyclient`) works
//! against it unchanged. [`Gateway`] sends its push notifications; [`ProxyClient`] is the other
//! side, working against our server or OpenDHT's. HTTP/1.1 through hyper 1 on smol; no tokio
//! runtime. HTTPS through rustls (ring provider): [`ProxyServer::bind_tls`] with a
//! [`ServerTls`], and `https://` URLs for the client with a [`ClientTls`]. The node behind the
//! server is any [`Dht`]: a `dht_smol::Handle` or a `dht_mio::Handle` (as `dhtnode
//! --proxyserver` serves it).
//!
//! ```
//! use std::sync::Arc;
//! use dht_proxy::{Config, ProxyServer};
//!
//! smol::block_on(async {
//!     // The DHT node the proxy serves (here alone on loopback).
//!     let node = dht_smol::Handle::start(dht_smol::Config::loopback()).await.unwrap();
//!     let server = ProxyServer::bind("127.0.0.1:0".parse().unwrap(), Arc::new(node.clone()), Config::default())
//!         .await
//!         .unwrap();
//!     let addr = server.local_addr();
//!
//!     // `GET /node/info` with a plain TCP client.
//!     use smol::io::{AsyncReadExt, AsyncWriteExt};
//!     let mut s = smol::net::TcpStream::connect(addr).await.unwrap();
//!     s.write_all(b"GET /node/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
//!     let mut reply = String::new();
//!     s.read_to_string(&mut reply).await.unwrap();
//!     assert!(reply.starts_with("HTTP/1.1 200 OK"));
//!     assert!(reply.contains(&format!("\"node_id\":\"{}\"", node.node_id())));
//!
//!     server.shutdown().await;
//!     node.shutdown().await;
//! });
//! ```
//!
//! ## Routes
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/`, `/node/info` | node info (`node_id`, `ipv4`/`ipv6` good/dubious counts, `ops`, `public_ip`, …) |
//! | GET | `/node/stats` | server stats (`listenCount`, `putCount`, `totalPermanentPuts`, …) |
//! | GET | `/key/{h}`, `/{h}` | get: a chunked stream of JSON lines, one value each, ending with the get |
//! | POST | `/key/{h}`, `/{h}` | put a JSON value; `"permanent"` keeps it announced for 24 h after the last POST |
//! | GET | `/key/{h}/listen` | listen: a chunked stream that never ends; expirations carry `"expired":true` |
//! | OPTIONS | `/{h}`, `/key/{h}`, `/key/{h}/listen` | CORS preflight; also `GET /key/{h}/options` |
//! | SUBSCRIBE | `/key/{h}`, `/{h}` | push subscription (24 h, reminder at 22 h) |
//! | UNSUBSCRIBE | `/key/{h}`, `/{h}` | ends push subscriptions of a (token, client id) |
//! | POST | `/node/pingPush` | a test push (only with a [`PushSink`]) |
//! | POST | `/key/{h}/sign`, `/key/{h}/encrypt` | a put signed, or encrypted to `"to"`, by the node's identity |
//!
//! A `{h}` segment is a key: its first 40 characters when they are hex, otherwise SHA-1 of the
//! segment as written ([`parse_key`]). Values are JSON as OpenDHT writes them ([`value_line`]):
//! sorted keys, decimal string ids, padded base64.
//!
//! ## Where we differ from OpenDHT 2.4.12 (deliberately)
//!
//! - `"permanent": false` (or `null`) makes a plain put; 2.4.12 treats the mere presence of the
//!   member as permanent.
//! - `OPTIONS /key/{h}` and `OPTIONS /key/{h}/listen` answer the CORS preflight (2.4.12: 501, so
//!   browsers cannot POST to `/key/…`).
//! - Node info never reports `dubious` nodes in a family with no good node: OpenDHT's client
//!   would stay "connecting" for ever and hold every operation (spec §9.1). It sees such a
//!   family as disconnected instead, runs its operations and asks again a minute later.
//! - Invalid base64, a malformed `owner` or `to`, or a JSON body that is not an object get
//!   `400` with a reason (2.4.12 decodes garbage or answers 500).
//! - Error bodies use the key `"err"` everywhere (2.4.12 writes `"err:"` for bad JSON); unknown
//!   routes get `501` with `{"err":"Not implemented"}` and `Connection: close` (2.4.12: empty);
//!   UNSUBSCRIBE without a token gets `400 {"err":"No token"}` (2.4.12: empty 501).
//! - Limits OpenDHT does not have (see [`Limits`]): connections, listen streams, permanent puts,
//!   subscriptions, body size, header/body read and write timeouts. Over a limit the client gets
//!   a JSON error (`503`, `413`, `408`) and everyone else is served as before.
//! - Values are re-announced by the node while a permanent put lives; at its expiry, or when
//!   the server shuts down, the put is cancelled (2.4.12 keeps them in the node after a stop).
//! - Pushes: the server computes them (spec §6) and hands them to a [`PushSink`]; [`Gateway`]
//!   sends them over plain HTTP to a gorush gateway in 2.4.12's format and to UnifiedPush
//!   endpoints, keeping the endpoint's port (2.4.12 drops it) and adding `TTL`/`Urgency`, with a
//!   bounded queue and bounded retries with backoff. Not done yet: HTTPS gateways and endpoints,
//!   RFC 8291 encryption of UnifiedPush bodies, HEAD's Android format.
//! - The identity routes (`/sign`, `/encrypt`) are served (OpenDHT: identity builds only); they
//!   answer the value as posted with its id. `GET /key/{h}/{value id}` and `GET /{h}/listen`
//!   stay 501, as in OpenDHT 2.4.12 and HEAD.
//!
//! ## The client
//!
//! [`ProxyClient`] gets (a stream), puts, keeps permanent puts alive (re-POSTed every 22 h and
//! after each reconnection) and listens (a stream that re-opens its connection after a break and
//! reports only changes), over HTTP or HTTPS. In push mode ([`ClientConfig::push_token`]) a
//! listen is a push subscription instead of a stream, and
//! [`ProxyClient::push_notification_received`] turns each push into the listen's changes (or a
//! permanent put's refresh, or a renewed subscription), as OpenDHT's `DhtProxyClient`.
//!
//! ## Runtime
//!
//! [`ProxyServer::bind`] spawns its tasks on smol's global executor (`smol::spawn`), like
//! `dht_smol::Handle::start`. Each connection is one task. Requests on one key share DHT work:
//! gets that overlap share one DHT get, listen streams and push subscriptions one DHT listen
//! (one task per key polls it and fans the values out); it is cancelled when its last request
//! goes.

mod body;
mod client;
mod details;
mod dht;
mod gateway;
mod json;
mod mio;
mod push;
mod route;
mod server;
mod share;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use body::Body;
pub use client::{ClientConfig, ClientError, ListenStream, ProxyClient, PushNotificationResult, ValueStream};
pub use details::NodeDetails;
pub use dht::{BoxFuture, BoxStream, Dht, FamilyInfo, ListenEvent, NodeInfo, PutResult};
pub use gateway::{Gateway, GatewayConfig, GatewayStats};
pub use json::{ValueJsonError, owner_to_pem, value_from_json, value_line};
pub use push::{Platform, PushNotification, PushSink};
pub use route::parse_key;
pub use tls::{ClientTls, ServerTls, TlsError};

/// Limits that keep one client from hurting the others.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections; more are answered `503` and closed.
    pub max_connections: usize,
    /// Open listen streams (`GET /key/{h}/listen`); more get `503`.
    pub max_listens: usize,
    /// Permanent puts held; more get `503`.
    pub max_permanent_puts: usize,
    /// Push subscriptions held; more get `503`.
    pub max_subscriptions: usize,
    /// Largest request body; larger ones get `413`.
    pub max_body: usize,
    /// Request bodies being read at once (each up to `max_body`); more get `503`. With the
    /// defaults, bodies in flight hold at most 64 MiB.
    pub max_bodies_in_flight: usize,
    /// Time to send a request's headers (from the first wait for them); then `408` and close.
    pub header_read_timeout: Duration,
    /// Time to send a request's body; then `408` and close.
    pub body_read_timeout: Duration,
    /// Time a write may stay blocked (a client not reading); then the connection is closed.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            max_listens: 16_384,
            max_permanent_puts: 65_536,
            max_subscriptions: 65_536,
            // A 64 KiB value is about 88 KiB of base64, plus its fields.
            max_body: 256 * 1024,
            max_bodies_in_flight: 256,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// The server's timers (spec §5); shorten them to test expiry.
#[derive(Clone, Debug)]
pub struct Timers {
    /// A permanent put lives this long after its last POST (OpenDHT: 24 h).
    pub permanent_put_lifetime: Duration,
    /// A push subscription lives this long after its last SUBSCRIBE (OpenDHT: 24 h).
    pub subscription_lifetime: Duration,
    /// Reminder pushes (`timeout`) are sent this long before expiry (OpenDHT: 2 h).
    pub reminder_margin: Duration,
    /// Node info is computed at most this often (OpenDHT snapshots every 2 min; we stay fresh).
    pub info_cache: Duration,
    /// A DHT get answers further gets of its key for this long after it finished, unless a put
    /// through the proxy or a listen the proxy holds changes the key first; zero: every get
    /// after one finished asks the DHT again. Bounds the DHT gets a busy key costs (see
    /// `share.rs`).
    pub get_cache: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            permanent_put_lifetime: Duration::from_secs(24 * 3600),
            subscription_lifetime: Duration::from_secs(24 * 3600),
            reminder_margin: Duration::from_secs(2 * 3600),
            info_cache: Duration::from_millis(500),
            get_cache: Duration::from_millis(500),
        }
    }
}

/// How to run the server.
#[derive(Clone, Default)]
pub struct Config {
    /// Limits.
    pub limits: Limits,
    /// Timers.
    pub timers: Timers,
    /// The default push topic (OpenDHT's `--bundleid`).
    pub bundle_id: String,
    /// Where pushes go; `None`: pushes are counted and dropped, and subscriptions start no DHT
    /// listen.
    pub push: Option<Arc<dyn PushSink>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("limits", &self.limits)
            .field("timers", &self.timers)
            .field("bundle_id", &self.bundle_id)
            .field("push", &self.push.is_some())
            .finish()
    }
}

/// Counters of a running server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now.
    pub connections: usize,
    /// Listen streams open now.
    pub listens: usize,
    /// Request bodies being read now ([`Limits::max_bodies_in_flight`] bounds them).
    pub bodies_in_flight: usize,
    /// Permanent puts held.
    pub permanent_puts: usize,
    /// Keys with at least one permanent put.
    pub permanent_put_keys: usize,
    /// Push subscriptions held.
    pub subscriptions: usize,
    /// Requests handled since start.
    pub requests: u64,
    /// Connections refused over the connection limit.
    pub refused_connections: u64,
    /// Requests refused by a limit (listens, puts, subscriptions, body size, timeouts).
    pub refused_requests: u64,
    /// Pushes computed (handed to the sink, or dropped without one).
    pub pushes: u64,
    /// DHT gets started since start: concurrent gets of one key share one.
    pub dht_gets: u64,
    /// Gets answered with the values of a DHT get of their key that had just finished
    /// ([`Timers::get_cache`]).
    pub cached_gets: u64,
    /// Listen requests answered without hyper since start (the head came whole in the
    /// connection's first read): such a stream holds no HTTP buffers while idle.
    pub direct_listens: u64,
    /// DHT listens started since start: listen streams and subscriptions on one key share one.
    pub dht_listens: u64,
    /// DHT listens open now (keys listened to).
    pub dht_listens_open: usize,
}

/// A running proxy server. Dropping it stops it as [`ProxyServer::shutdown`] does, without
/// waiting.
pub struct ProxyServer {
    inner: server::Server,
}

impl std::fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyServer")
            .field("addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl ProxyServer {
    /// Binds `addr` (port 0 picks one) and starts serving `dht`.
    pub async fn bind(addr: SocketAddr, dht: Arc<dyn Dht>, config: Config) -> io::Result<ProxyServer> {
        Ok(ProxyServer {
            inner: server::Server::bind(addr, dht, config, None)?,
        })
    }

    /// Binds `addr` and serves `dht` over HTTPS (OpenDHT's `--proxyserverssl`): the same
    /// routes, after a TLS handshake bounded by the header timeout.
    pub async fn bind_tls(
        addr: SocketAddr,
        dht: Arc<dyn Dht>,
        config: Config,
        tls: ServerTls,
    ) -> io::Result<ProxyServer> {
        Ok(ProxyServer {
            inner: server::Server::bind(addr, dht, config, Some(tls))?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        self.inner.stats()
    }

    /// Stops accepting, closes every connection, ends subscriptions and cancels the permanent
    /// puts in the node. The port is free when this returns.
    pub async fn shutdown(self) {
        self.inner.shutdown().await;
    }
}
