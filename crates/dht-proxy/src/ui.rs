//! The node's status page, `GET /ui/`: static files built into the binary, and the JSON they
//! poll (`/ui/api/status`, `/ui/api/routing`, `/ui/api/hash`). A child module of `server` (it reads the server's
//! counters); the routing of OpenDHT's paths is untouched, except that a GET of a path
//! starting with `/ui/` is ours (`GET /ui`, `GET /key/ui` and other methods stay OpenDHT's).
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and fetches from this
//! origin only, nothing inline, no frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use dht_proto::{BucketSummary, DropReason, MessageKind, Status};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value as Json, json};

use super::{Shared, lock};
use crate::body::Body;
use crate::route::parse_key;

const INDEX: &str = include_str!("../ui/index.html");
const APP: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// The policy of every `/ui/` answer.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                              connect-src 'self'; img-src 'self'; base-uri 'none'; \
                              form-action 'none'; frame-ancestors 'none'";

/// The answer to a `/ui/` request, or `None` when the request is not ours.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    req: &Request<Incoming>,
    peer: SocketAddr,
    close: bool,
) -> Option<Response<Body>> {
    if req.method() != hyper::Method::GET {
        return None;
    }
    let path = req.uri().path().strip_prefix("/ui/")?;
    Some(match path {
        "" | "index.html" => file(INDEX, "text/html; charset=utf-8", close),
        "app.js" => file(APP, "text/javascript; charset=utf-8", close),
        "style.css" => file(STYLE, "text/css; charset=utf-8", close),
        "api/status" => status(shared, peer, close).await,
        "api/routing" => routing(shared, close).await,
        "api/hash" => hash(req.uri().query().unwrap_or(""), close),
        _ => answer(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Body::full("not found\n"),
            close,
        ),
    })
}

fn answer(status: StatusCode, content_type: &'static str, body: Body, close: bool) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static(if close { "close" } else { "keep-alive" }),
    );
    h.insert(header::SERVER, HeaderValue::from_static("rdht-proxy"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn file(text: &'static str, content_type: &'static str, close: bool) -> Response<Body> {
    answer(StatusCode::OK, content_type, Body::full(text), close)
}

fn json_answer(status: StatusCode, j: &Json, close: bool) -> Response<Body> {
    let mut s = j.to_string();
    s.push('\n');
    answer(status, "application/json", Body::full(s), close)
}

/// `GET /ui/api/hash?s=…`: the key of a name as dhtnode computes it (the first 40 characters
/// when hex, else SHA-1 of the percent-decoded text), so that `hello world` typed in the page
/// is the key of `hello world`, not of `hello%20world`.
fn hash(query: &str, close: bool) -> Response<Body> {
    let raw = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("s="))
        .unwrap_or("");
    let Some(name) = percent_decode(raw) else {
        return json_answer(StatusCode::BAD_REQUEST, &json!({"err": "Bad name"}), close);
    };
    json_answer(
        StatusCode::OK,
        &json!({"key": parse_key(&name).to_string()}),
        close,
    )
}

/// `%XX` and `+` (a space, as forms send it) decoded; `None` when not UTF-8 or malformed.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Connected => "connected",
        Status::Connecting => "connecting",
        Status::Disconnected => "disconnected",
    }
}

/// The first `depth` bits of `first`, as `0`s and `1`s.
fn prefix_bits(first: &dht_proto::InfoHash, depth: u32) -> String {
    let bytes = first.as_bytes();
    (0..depth.min(160) as usize)
        .map(|i| {
            let byte = bytes.get(i / 8).copied().unwrap_or(0);
            if byte & (0x80 >> (i % 8)) != 0 { '1' } else { '0' }
        })
        .collect()
}

fn buckets_json(b: &[BucketSummary]) -> Json {
    Json::Array(
        b.iter()
            .map(|b| {
                json!({"first": b.first.to_string(), "depth": b.depth,
                       "prefix": prefix_bits(&b.first, b.depth), "good": b.good,
                       "dubious": b.dubious, "bad": b.bad, "cached": b.cached, "own": b.own})
            })
            .collect(),
    )
}

/// `GET /ui/api/routing`: the node's routing tables, bucket by bucket, from
/// [`crate::Dht::routing`]. `503` when the node gives none (a node without details, or shut
/// down).
async fn routing(shared: &Arc<Shared>, close: bool) -> Response<Body> {
    match shared.dht.routing().await {
        Some(t) => json_answer(
            StatusCode::OK,
            &json!({"ipv4": buckets_json(&t.v4), "ipv6": buckets_json(&t.v6)}),
            close,
        ),
        None => json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"err": "The node gives no routing table"}),
            close,
        ),
    }
}

/// `GET /ui/api/status`: the node (detailed when the [`crate::Dht`] gives details, else its
/// node info) and the proxy's own counters. `503` when the node does not answer.
async fn status(shared: &Arc<Shared>, peer: SocketAddr, close: bool) -> Response<Body> {
    let c = &shared.counters;
    let (puts, put_keys, subs) = {
        let st = lock(&shared.state);
        (st.n_puts, st.puts.len(), st.subs.len())
    };
    let proxy = json!({
        "connections": c.connections.load(Ordering::Relaxed),
        "listens": c.listens.load(Ordering::Relaxed),
        "permanent_puts": puts,
        "permanent_put_keys": put_keys,
        "subscriptions": subs,
        "requests": c.requests.load(Ordering::Relaxed),
        "refused_connections": c.refused_connections.load(Ordering::Relaxed),
        "refused_requests": c.refused_requests.load(Ordering::Relaxed),
        "pushes": c.pushes.load(Ordering::Relaxed),
        "start_time": shared.start_unix,
        "client": peer.ip().to_string(),
    });
    let node = if let Some(d) = shared.dht.details().await {
        let s = &d.stats;
        // In the protocol's order, not sorted by name.
        let messages: Vec<Json> = MessageKind::ALL
            .iter()
            .map(|&k| json!({"kind": format!("{k:?}"), "received": s.received(k), "sent": s.sent(k)}))
            .collect();
        let dropped: serde_json::Map<String, Json> = DropReason::ALL
            .iter()
            .map(|&r| (format!("{r:?}"), Json::from(s.dropped(r))))
            .collect();
        json!({
            "detailed": true,
            "node_id": d.node_id.to_string(),
            "network": d.network,
            "status": {"ipv4": status_name(d.status.v4), "ipv6": status_name(d.status.v6)},
            "public_addresses": d.public_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "local_addrs": d.local_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "nodes": {"ipv4": {"total": s.nodes.v4, "good": s.good_nodes.v4},
                      "ipv6": {"total": s.nodes.v6, "good": s.good_nodes.v6}},
            "searches": s.searches,
            "operations": s.operations,
            "pending_requests": s.pending_requests,
            "storage": {"keys": s.stored_keys, "values": s.stored_values,
                        "bytes": s.stored_bytes, "listeners": s.remote_listeners},
            "traffic": {
                "messages": messages,
                "dropped": dropped,
                "rate_limited": s.dropped(DropReason::RateLimitedPeer) + s.dropped(DropReason::RateLimitedGlobal),
                "timeouts": s.timeouts,
                "retransmits": s.retransmits,
                "errors_sent": s.errors_sent,
                "transmit_overflow": s.transmit_overflow,
            },
        })
    } else if let Some(i) = shared.dht.info().await {
        let fam = |f: &crate::FamilyInfo| {
            let st = if f.good > 0 {
                "connected"
            } else if f.dubious > 0 {
                "connecting"
            } else {
                "disconnected"
            };
            (st, json!({"total": f.good + f.dubious, "good": f.good}))
        };
        let (s4, n4) = fam(&i.ipv4);
        let (s6, n6) = fam(&i.ipv6);
        json!({
            "detailed": false,
            "node_id": i.node_id.to_string(),
            "status": {"ipv4": s4, "ipv6": s6},
            "nodes": {"ipv4": n4, "ipv6": n6},
            "operations": i.ops,
            "storage": {"values": i.storage_values, "bytes": i.storage_size},
            "ports": {"ipv4": i.port_ipv4, "ipv6": i.port_ipv6},
        })
    } else {
        return json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"err": "The node does not answer", "proxy": proxy}),
            close,
        );
    };
    json_answer(StatusCode::OK, &json!({"node": node, "proxy": proxy}), close)
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, prefix_bits};

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("hello%20world").as_deref(), Some("hello world"));
        assert_eq!(percent_decode("a+b%2Bc").as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode("").as_deref(), Some(""));
    }

    #[test]
    fn bucket_prefixes_as_bits() {
        let mut id = [0u8; 20];
        id[0] = 0b1010_0000;
        let h = dht_proto::InfoHash(id);
        assert_eq!(prefix_bits(&h, 0), "");
        assert_eq!(prefix_bits(&h, 3), "101");
        assert_eq!(prefix_bits(&h, 9), "101000000");
        assert_eq!(prefix_bits(&h, 500).len(), 160);
    }
}
