//! The server over loopback: the spec's transcripts as golden exchanges, round trips through a
//! real node, permanent puts and subscriptions on short timers, bad input and limits.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_proxy::{Config, Limits, ProxyServer, PushNotification, Timers, parse_key};
use serde_json::json;

const FOO: &str = "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33";

async fn fake_server(config: Config) -> (Fake, ProxyServer) {
    let fake = Fake::new();
    let server = ProxyServer::bind(loopback(), Arc::new(fake.clone()), config)
        .await
        .unwrap();
    (fake, server)
}

fn is_decimal_id(j: &serde_json::Value) -> bool {
    j.as_str()
        .is_some_and(|s| !s.is_empty() && s != "0" && s.parse::<u64>().is_ok())
}

/// Spec §4.1: `GET /node/info` and OpenDHT's client status request `GET /` (§9.1).
#[test]
fn golden_node_info() {
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let server = ProxyServer::bind(loopback(), Arc::new(b.clone()), Config::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let r = exchange(addr, "GET /node/info HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n").await;
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        r.assert_common_headers();
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert!(r.body.ends_with("}\n"), "{:?}", r.body);
        let j = r.json();
        assert_eq!(j["node_id"], b.node_id().to_string());
        assert_eq!(j["public_ip"], "127.0.0.1");
        assert!(j["ipv4"]["good"].as_u64().unwrap() >= 1, "{j}");
        for fam in ["ipv4", "ipv6"] {
            for k in ["good", "dubious", "incoming"] {
                assert!(j[fam][k].is_u64(), "{fam}.{k} in {j}");
            }
        }
        assert!(j["ops"].is_u64());
        // Compact, keys in alphabetical order at every level, as jsoncpp writes them.
        assert_eq!(format!("{}\n", serde_json::to_string(&j).unwrap()), r.body);

        // The OpenDHT client's status request, byte for byte.
        let mut c = Conn::connect(addr).await;
        c.send(
            b"GET / HTTP/1.1\r\nAccept: */*\r\nContent-Type: application/json\r\nHost: 127.0.0.1:8081\r\n\
              User-Agent: Mozilla/5.0\r\nConnection: close\r\n\r\n",
        )
        .await;
        let r = within(10, "GET /", c.reply()).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.json()["node_id"], b.node_id().to_string());
        assert!(
            within(10, "close", c.closed()).await,
            "the server closes after Connection: close"
        );

        // Stats (§4.2).
        let r = exchange(addr, &request("GET", "/node/stats", "")).await;
        assert_eq!(r.status, 200);
        r.assert_common_headers();
        let j = r.json();
        for k in [
            "listenCount",
            "putCount",
            "totalPermanentPuts",
            "pushListenersCount",
        ] {
            assert_eq!(j[k], 0, "{k} in {j}");
        }
        assert!(j["requestRate"].is_f64(), "{j}");
        assert_eq!(j["nodeInfo"]["node_id"], b.node_id().to_string());
        assert!(j["nodeInfo"].get("public_ip").is_none());
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Spec §4.4 and §4.3: POST then GET through a real node; the value is in the DHT (got by
/// another node directly), and the transcripts' shapes hold byte for byte.
#[test]
fn golden_put_get_through_a_real_node() {
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let server = ProxyServer::bind(loopback(), Arc::new(b.clone()), Config::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        // §4.4 transcript: the body without an id.
        let r = exchange(
            addr,
            &format!(
                "POST /key/{FOO} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{{\"data\":\"aGVsbG8=\",\"type\":0}}"
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.assert_common_headers();
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let j = r.json();
        assert!(is_decimal_id(&j["id"]), "{j}");
        let id1: u64 = j["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            r.body,
            format!("{{\"data\":\"aGVsbG8=\",\"id\":\"{id1}\",\"type\":0}}\n")
        );

        // A given id is kept; §9.4's request from dhtnode (id "0", utype) gets a fresh one.
        let r = exchange(
            addr,
            &request(
                "POST",
                &format!("/{FOO}"),
                "{\"data\":\"d29ybGQ=\",\"id\":\"42\",\"type\":0}",
            ),
        )
        .await;
        assert_eq!(r.body, "{\"data\":\"d29ybGQ=\",\"id\":\"42\",\"type\":0}\n");
        let body = "{\"data\":\"ZnJvbUM=\",\"id\":\"0\",\"type\":0,\"utype\":\"text/plain\"}";
        let raw = format!(
            "POST /key/{FOO} HTTP/1.1\r\nAccept: */*\r\nContent-Type: application/json\r\nHost: 127.0.0.1:8081\r\n\
             User-Agent: RESTinio client\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = exchange(addr, &raw).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        let id3 = r.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(
            r.body,
            format!("{{\"data\":\"ZnJvbUM=\",\"id\":\"{id3}\",\"type\":0,\"utype\":\"text/plain\"}}\n")
        );

        // The other node sees all three.
        let key = InfoHash::from_hex(FOO).unwrap();
        let direct = within(20, "direct get", a.get_all(key)).await.unwrap();
        let mut ids: Vec<u64> = direct.iter().map(|v| v.id).collect();
        ids.sort();
        let mut want = vec![id1, 42, id3.parse().unwrap()];
        want.sort();
        assert_eq!(ids, want);

        // §4.3: GET by key name (SHA-1 fallback) and by hex: chunked JSON lines.
        for path in ["/key/foo", &format!("/key/{FOO}"), &format!("/{FOO}"), "/foo/"] {
            let r = exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
            assert_eq!(r.status, 200);
            r.assert_common_headers();
            assert_eq!(r.header("transfer-encoding"), Some("chunked"));
            assert!(r.header("content-length").is_none());
            assert!(r.body.ends_with('\n'));
            let mut lines: Vec<String> = r.body.lines().map(str::to_owned).collect();
            lines.sort();
            let mut want = vec![
                format!("{{\"data\":\"aGVsbG8=\",\"id\":\"{id1}\",\"type\":0}}"),
                "{\"data\":\"d29ybGQ=\",\"id\":\"42\",\"type\":0}".to_owned(),
                format!("{{\"data\":\"ZnJvbUM=\",\"id\":\"{id3}\",\"type\":0,\"utype\":\"text/plain\"}}"),
            ];
            want.sort();
            assert_eq!(lines, want, "{path}");
        }

        // A value put on the plain node is got through the proxy.
        let k2 = InfoHash::get("from-a");
        a.put(k2, Value::new(7, b"fromA".to_vec())).await.unwrap();
        let r = exchange(
            addr,
            "GET /key/from-a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(r.body, "{\"data\":\"ZnJvbUE=\",\"id\":\"7\",\"type\":0}\n");

        // Nothing there: headers, then the last chunk alone.
        let r = exchange(addr, "GET /key/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.chunks, Some(vec![]));
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Spec §4.5: a listen streams the known values, then new ones as a plain node puts them, one
/// chunk per value; closing the connection cancels the listen.
#[test]
fn listen_through_a_real_node() {
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let server = ProxyServer::bind(loopback(), Arc::new(b.clone()), Config::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let key = InfoHash::get("listened");
        a.put(key, Value::new(1, b"one".to_vec())).await.unwrap();
        let mut c = Conn::connect(addr).await;
        c.send(
            b"GET /key/listened/listen HTTP/1.1\r\nAccept: */*\r\nContent-Type: application/json\r\n\
              Host: 127.0.0.1:8081\r\nUser-Agent: RESTinio client\r\nConnection: keep-alive\r\n\r\n",
        )
        .await;
        let h = within(10, "listen head", c.head()).await.unwrap();
        assert_eq!(h.status, 200);
        h.assert_common_headers();
        assert_eq!(h.header("connection"), Some("keep-alive"));
        assert_eq!(h.header("transfer-encoding"), Some("chunked"));
        let first = within(20, "known value", c.chunk()).await.unwrap();
        assert_eq!(first, "{\"data\":\"b25l\",\"id\":\"1\",\"type\":0}\n");
        assert_eq!(server.stats().listens, 1);
        let a2 = a.clone();
        smol::spawn(async move { a2.put(key, Value::new(2, b"two".to_vec())).await }).detach();
        let second = within(20, "new value", c.chunk()).await.unwrap();
        assert_eq!(second, "{\"data\":\"dHdv\",\"id\":\"2\",\"type\":0}\n");
        drop(c);
        eventually(10, "listen closed", || server.stats().listens == 0).await;
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Expirations carry `"expired":true` (keys still sorted); the DHT listen ends with the
/// connection.
#[test]
fn listen_reports_expired_values() {
    smol::block_on(async {
        let (fake, server) = fake_server(Config::default()).await;
        let key = parse_key("foo");
        fake.store(key, Value::new(10038640691906095, b"hello".to_vec()));
        fake.store(key, Value::new(42, b"world".to_vec()));
        let mut c = Conn::connect(server.local_addr()).await;
        c.send(format!("GET /key/{FOO}/listen HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        assert_eq!(within(10, "head", c.head()).await.unwrap().status, 200);
        // The transcript's chunks: one value each.
        assert_eq!(
            within(10, "1", c.chunk()).await.unwrap(),
            "{\"data\":\"aGVsbG8=\",\"id\":\"10038640691906095\",\"type\":0}\n"
        );
        assert_eq!(
            within(10, "2", c.chunk()).await.unwrap(),
            "{\"data\":\"d29ybGQ=\",\"id\":\"42\",\"type\":0}\n"
        );
        fake.expire(key, &[10038640691906095]);
        assert_eq!(
            within(10, "expired", c.chunk()).await.unwrap(),
            "{\"data\":\"aGVsbG8=\",\"expired\":true,\"id\":\"10038640691906095\",\"type\":0}\n"
        );
        assert_eq!(fake.open_listens(), 1);
        drop(c);
        eventually(10, "DHT listen cancelled", || fake.open_listens() == 0).await;
        server.shutdown().await;
    });
}

fn short_timers() -> Timers {
    Timers {
        permanent_put_lifetime: Duration::from_millis(1500),
        subscription_lifetime: Duration::from_millis(1500),
        reminder_margin: Duration::from_millis(500),
        ..Timers::default()
    }
}

type Pushes = Arc<Mutex<Vec<(Instant, PushNotification)>>>;

fn recording_sink() -> (Pushes, Arc<dyn dht_proxy::PushSink>) {
    let pushes: Pushes = Arc::default();
    let p = pushes.clone();
    let sink = move |n: PushNotification| p.lock().unwrap().push((Instant::now(), n));
    (pushes, Arc::new(sink))
}

/// Spec §4.4: permanent puts are refreshed by a re-POST (known id, or id 0 with the same
/// content), get a reminder push 2 h (here 0.5 s) before expiry, and are cancelled 24 h (here
/// 1.5 s) after the last refresh; `"permanent": false` is a plain put.
#[test]
fn permanent_puts_refresh_and_expire() {
    smol::block_on(async {
        let (pushes, sink) = recording_sink();
        let config = Config {
            timers: short_timers(),
            push: Some(sink),
            bundle_id: "com.example.app".into(),
            ..Config::default()
        };
        let (fake, server) = fake_server(config).await;
        let addr = server.local_addr();
        let key = parse_key("perm");
        let body = "{\"data\":\"cGVybQ==\",\"type\":0,\"permanent\":{\"key\":\"tokP\",\"client_id\":\"cliP\",\"platform\":\"android\",\"session_id\":\"sessP\"}}";
        let t0 = Instant::now();
        let r = exchange(addr, &request("POST", "/key/perm", body)).await;
        assert_eq!(r.status, 200);
        let id: u64 = r.json()["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            r.body,
            format!("{{\"data\":\"cGVybQ==\",\"id\":\"{id}\",\"type\":0}}\n")
        );
        assert_eq!(fake.calls(), vec![common::Call::Put(key, id, true)]);
        // The same content again with id 0 and a new session: the same put, answered at once.
        let body2 = body.replace("sessP", "sessP2");
        let r = exchange(addr, &request("POST", "/key/perm", &body2)).await;
        assert_eq!(r.json()["id"], id.to_string());
        assert_eq!(fake.calls().len(), 1, "no second DHT put");
        let j = exchange(addr, &request("GET", "/node/stats", "")).await.json();
        assert_eq!(
            (j["putCount"].as_u64(), j["totalPermanentPuts"].as_u64()),
            (Some(1), Some(1))
        );

        // `true` and a known id: the client's 22 h refresh.
        let r = exchange(
            addr,
            &request(
                "POST",
                "/key/other",
                "{\"data\":\"eA==\",\"id\":\"77\",\"permanent\":true}",
            ),
        )
        .await;
        assert_eq!(r.json()["id"], "77");
        smol::Timer::after(Duration::from_millis(700)).await;
        let refreshed = Instant::now();
        let r = exchange(
            addr,
            &request(
                "POST",
                "/key/other",
                "{\"data\":\"eA==\",\"id\":\"77\",\"permanent\":true}",
            ),
        )
        .await;
        assert_eq!(r.status, 200);

        // `"permanent": false` is a plain put (2.4.12 would keep it permanent).
        let r = exchange(
            addr,
            &request("POST", "/key/plain", "{\"data\":\"eA==\",\"permanent\":false}"),
        )
        .await;
        let pid: u64 = r.json()["id"].as_str().unwrap().parse().unwrap();
        assert!(
            fake.calls()
                .contains(&common::Call::Put(parse_key("plain"), pid, false))
        );

        // Reminder, then expiry, for the first; the refreshed one lives longer.
        eventually(10, "both expired", || server.stats().permanent_puts == 0).await;
        let calls = fake.calls();
        let cancel_at = |k: InfoHash, i: u64| {
            calls.iter().find_map(|c| match c {
                common::Call::CancelPut(ck, ci, at) if *ck == k && *ci == i => Some(*at),
                _ => None,
            })
        };
        let first = cancel_at(key, id).expect("first put cancelled");
        let other = cancel_at(parse_key("other"), 77).expect("second put cancelled");
        assert!(first >= t0 + Duration::from_millis(1500));
        assert!(
            other >= refreshed + Duration::from_millis(1500),
            "a refresh restarts the 24 h"
        );
        let pushes = pushes.lock().unwrap().clone();
        assert_eq!(pushes.len(), 1, "{pushes:?}");
        let (at, n) = &pushes[0];
        assert!(*at >= t0 + Duration::from_millis(1000) && *at < first);
        assert_eq!(n.token, "tokP");
        assert_eq!(n.platform, dht_proxy::Platform::Android);
        assert_eq!(n.topic, "com.example.app");
        assert!(!n.high_priority);
        assert_eq!(
            serde_json::to_value(&n.data).unwrap(),
            json!({"timeout": key.to_string(), "to": "cliP", "vid": id.to_string(), "s": "sessP2"})
        );
        server.shutdown().await;
    });
}

/// Spec §4.7/§4.8: SUBSCRIBE answers `{}\n`, then (existing) the values, or `{}` chunked with
/// `refresh`; pushes carry key/to/t/s; the subscription expires after its lifetime, with a
/// reminder before; UNSUBSCRIBE answers an empty 200.
#[test]
fn subscriptions() {
    smol::block_on(async {
        let (pushes, sink) = recording_sink();
        let config = Config {
            timers: short_timers(),
            push: Some(sink),
            ..Config::default()
        };
        let (fake, server) = fake_server(config).await;
        let addr = server.local_addr();
        let key = parse_key("sub");
        fake.store(key, Value::new(5, b"v".to_vec()));
        let sub = |s: &str| {
            format!(
                "{{\"key\":\"tok1\",\"platform\":\"android\",\"client_id\":\"c1\",\"session_id\":\"{s}\"}}"
            )
        };
        let r = exchange(addr, &request("SUBSCRIBE", "/key/sub", &sub("s1"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("3"));
        assert_eq!(r.body, "{}\n");
        // The DHT listen reports the known value at once: a push.
        eventually(10, "value push", || !pushes.lock().unwrap().is_empty()).await;
        {
            let p = pushes.lock().unwrap();
            let n = &p[0].1;
            assert_eq!((n.token.as_str(), n.high_priority), ("tok1", true));
            assert_eq!(n.data["key"], key.to_string());
            assert_eq!(n.data["to"], "c1");
            assert_eq!(n.data["s"], "s1");
            assert!(n.data["t"].is_u64());
            assert!(!n.data.contains_key("exp"));
        }
        // Existing subscription: the values, chunked (the legacy path, as 2.4.12's resubscribe).
        let r = exchange(addr, &request("SUBSCRIBE", "/sub", &sub("s2"))).await;
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.body, "{\"data\":\"dg==\",\"id\":\"5\",\"type\":0}\n");
        let refresh = "{\"key\":\"tok1\",\"client_id\":\"c1\",\"session_id\":\"s3\",\"refresh\":true} ";
        let r = exchange(addr, &request("SUBSCRIBE", "/key/sub", refresh)).await;
        assert_eq!(r.chunks, Some(vec!["{}\n".to_owned()]));
        // An expired value is named in `exp`, with normal priority and the latest session.
        fake.expire(key, &[5]);
        eventually(10, "expiry push", || pushes.lock().unwrap().len() >= 2).await;
        {
            let p = pushes.lock().unwrap();
            let n = &p[1].1;
            assert_eq!(n.data["exp"], "5");
            assert_eq!(n.data["s"], "s3");
            assert!(!n.high_priority);
        }
        let j = exchange(addr, &request("GET", "/node/stats", "")).await.json();
        assert_eq!(j["pushListenersCount"], 1);
        // Errors.
        let r = exchange(addr, &request("SUBSCRIBE", "/key/sub", "{\"client_id\":\"c1\"}")).await;
        assert_eq!((r.status, r.body.as_str()), (400, "{\"err\":\"No token\"}"));
        let r = exchange(addr, &request("SUBSCRIBE", "/key/sub", "nope")).await;
        assert_eq!((r.status, r.body.as_str()), (400, "{\"err\":\"Incorrect JSON\"}"));
        // A second subscription that we let expire: reminder first, then gone.
        let r = exchange(
            addr,
            &request(
                "SUBSCRIBE",
                "/key/other",
                "{\"key\":\"tok2\",\"client_id\":\"c2\",\"session_id\":\"z\"}",
            ),
        )
        .await;
        assert_eq!(r.status, 200);
        // UNSUBSCRIBE the first: an empty 200.
        let r = exchange(
            addr,
            &request(
                "UNSUBSCRIBE",
                "/key/sub",
                "{\"key\":\"tok1\",\"client_id\":\"c1\"}",
            ),
        )
        .await;
        assert_eq!(
            (r.status, r.header("content-length"), r.body.as_str()),
            (200, Some("0"), "")
        );
        eventually(10, "subscription expired", || server.stats().subscriptions == 0).await;
        let p = pushes.lock().unwrap().clone();
        let reminder = p
            .iter()
            .find(|(_, n)| n.token == "tok2")
            .expect("a reminder push");
        assert_eq!(
            serde_json::to_value(&reminder.1.data).unwrap(),
            json!({"timeout": parse_key("other").to_string(), "to": "c2", "s": "z"})
        );
        server.shutdown().await;
    });
}

/// Spec §4.6: a browser's preflight before `POST /key/…` (unrouted in 2.4.12) and the other
/// CORS routes.
#[test]
fn browser_preflight() {
    smol::block_on(async {
        let (_fake, server) = fake_server(Config::default()).await;
        let addr = server.local_addr();
        for (m, p) in [
            ("OPTIONS", "/key/foo"),
            ("OPTIONS", "/key/foo/listen"),
            ("OPTIONS", &format!("/{FOO}") as &str),
            ("GET", "/key/foo/options"),
        ] {
            let raw = format!(
                "{m} {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://app.example\r\n\
                 Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
            );
            let r = exchange(addr, &raw).await;
            assert_eq!(r.status, 200, "{m} {p}");
            r.assert_common_headers();
            assert_eq!(r.header("content-length"), Some("0"));
            assert_eq!(
                r.header("access-control-allow-methods"),
                Some("OPTIONS, GET, POST, LISTEN")
            );
            assert_eq!(r.header("access-control-allow-headers"), Some("content-type"));
            assert_eq!(r.header("access-control-max-age"), Some("86400"));
        }
        // And the actual cross-origin POST then carries the allow-origin header.
        let r = exchange(addr, &request("POST", "/key/foo", "{\"data\":\"eA==\"}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        server.shutdown().await;
    });
}

/// Bad input gets a JSON error; the server goes on serving.
#[test]
fn bad_input() {
    smol::block_on(async {
        let config = Config {
            limits: Limits {
                max_body: 1024,
                ..Limits::default()
            },
            ..Config::default()
        };
        let (fake, server) = fake_server(config).await;
        let addr = server.local_addr();
        let cases: Vec<(String, u16, &str)> = vec![
            (
                request("POST", "/key/foo", ""),
                400,
                "{\"err\":\"Missing parameters\"}",
            ),
            (
                request("POST", "/key/foo", "{not json"),
                400,
                "{\"err\":\"Incorrect JSON\"}",
            ),
            (
                request("POST", "/key/foo", "[1,2]"),
                400,
                "{\"err\":\"Value must be a JSON object\"}",
            ),
            (
                request("POST", "/key/foo", "{\"data\":\"a\"}"),
                400,
                "{\"err\":\"invalid base64 in \\\"data\\\"\"}",
            ),
            (
                request("POST", "/key/foo", "{\"type\":65536}"),
                400,
                "{\"err\":\"invalid \\\"type\\\"\"}",
            ),
            (
                request(
                    "POST",
                    "/key/foo",
                    &format!("{{\"data\":\"{}\"}}", "A".repeat(2000)),
                ),
                413,
                "{\"err\":\"Body too large\"}",
            ),
            (
                request("PUT", "/key/foo", "{}"),
                501,
                "{\"err\":\"Not implemented\"}",
            ),
            (
                request("DELETE", "/foo", ""),
                501,
                "{\"err\":\"Not implemented\"}",
            ),
            (
                request("LISTEN", "/key/foo", ""),
                501,
                "{\"err\":\"Not implemented\"}",
            ),
            (
                request("GET", "/key/foo/123", ""),
                501,
                "{\"err\":\"Not implemented\"}",
            ),
            (
                request("GET", "/foo/listen", ""),
                501,
                "{\"err\":\"Not implemented\"}",
            ),
            (
                request("UNSUBSCRIBE", "/key/foo", "{\"key\":\"\"}"),
                400,
                "{\"err\":\"No token\"}",
            ),
            (
                request("POST", "/node/pingPush", "{\"key\":\"t\"}"),
                501,
                "{\"err\":\"Push notifications are not enabled\"}",
            ),
        ];
        for (raw, status, body) in &cases {
            let r = exchange(addr, raw).await;
            assert_eq!((r.status, r.body.as_str()), (*status, *body), "{raw}");
            r.assert_common_headers();
        }
        // 501 closes the connection even when the client wanted to keep it.
        let r = exchange(addr, "PATCH /key/foo HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!((r.status, r.header("connection")), (501, Some("close")));
        // A chunked body over the limit (no Content-Length to refuse it early).
        let mut c = Conn::connect(addr).await;
        c.send(b"POST /key/foo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        for _ in 0..3 {
            c.send(format!("200\r\n{}\r\n", "A".repeat(0x200)).as_bytes())
                .await;
        }
        let r = within(10, "chunked 413", c.reply()).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (413, "{\"err\":\"Body too large\"}"));
        // HTTP/1.0 is answered (hyper answers it in HTTP/1.0; OpenDHT in 1.1) and closed.
        let mut c = Conn::connect(addr).await;
        c.send(b"GET /node/info HTTP/1.0\r\n\r\n").await;
        let r = within(10, "HTTP/1.0", c.reply()).await.unwrap();
        assert_eq!((r.status, r.header("connection")), (200, Some("close")));
        assert!(within(10, "closed", c.closed()).await);
        // A request line hyper cannot parse: 400 from hyper, connection closed.
        let r = exchange(addr, "\u{1}\u{2} / HTTP/1.1\r\n\r\n").await;
        assert_eq!(r.status, 400);
        // Nothing was stored by any of it, and the server still serves.
        assert!(!fake.calls().iter().any(|c| matches!(c, common::Call::Put(..))));
        let r = exchange(addr, &request("GET", "/", "")).await;
        assert_eq!(r.status, 200);
        eventually(10, "every connection closed", || server.stats().connections == 0).await;
        server.shutdown().await;
    });
}

/// Slow clients (headers or body dribbling in) get 408 and are closed; others are served
/// meanwhile.
#[test]
fn slow_clients_time_out() {
    smol::block_on(async {
        let config = Config {
            limits: Limits {
                header_read_timeout: Duration::from_millis(300),
                body_read_timeout: Duration::from_millis(300),
                ..Limits::default()
            },
            ..Config::default()
        };
        let (_fake, server) = fake_server(config).await;
        let addr = server.local_addr();
        let mut slow = Conn::connect(addr).await;
        slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        let mut slow_body = Conn::connect(addr).await;
        slow_body
            .send(b"POST /key/foo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"d")
            .await;
        // Served while the two stall.
        assert_eq!(
            exchange(addr, &request("GET", "/node/info", "")).await.status,
            200
        );
        let r = within(10, "header timeout", slow.reply()).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (408, "{\"err\":\"Request header timeout\"}")
        );
        assert!(within(10, "closed", slow.closed()).await);
        let r = within(10, "body timeout", slow_body.reply()).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (408, "{\"err\":\"Request body timeout\"}")
        );
        assert_eq!(r.header("connection"), Some("close"));
        eventually(10, "connections closed", || server.stats().connections == 0).await;
        server.shutdown().await;
    });
}

/// More connections or listens than configured: 503 with a JSON body; the limit frees up as
/// clients leave.
#[test]
fn connection_and_listen_limits() {
    smol::block_on(async {
        let config = Config {
            limits: Limits {
                max_connections: 3,
                max_listens: 1,
                max_bodies_in_flight: 1,
                ..Limits::default()
            },
            ..Config::default()
        };
        let (_fake, server) = fake_server(config).await;
        let addr = server.local_addr();
        let mut listen = Conn::connect(addr).await;
        listen
            .send(b"GET /key/foo/listen HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        assert_eq!(within(10, "listen", listen.head()).await.unwrap().status, 200);
        let r = exchange(addr, "GET /key/bar/listen HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "{\"err\":\"Too many listens\"}")
        );
        // A connection that has had its answer may still be counted for a moment: each step
        // waits until the server has let go of the previous one, so the counts below are exact.
        eventually(10, "the refused listen closed", || {
            server.stats().connections == 1
        })
        .await;
        // A body that dribbles in holds the only body slot: another POST is told the server is busy.
        let mut stalled = Conn::connect(addr).await;
        stalled
            .send(b"POST /key/foo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
            .await;
        eventually(10, "the stalled body holds the slot", || {
            let s = server.stats();
            s.connections == 2 && s.bodies_in_flight == 1
        })
        .await;
        let r = exchange(addr, &request("POST", "/key/foo", "{}")).await;
        assert_eq!((r.status, r.body.as_str()), (503, "{\"err\":\"Server busy\"}"));
        eventually(10, "the refused POST closed", || server.stats().connections == 2).await;
        let idle = Conn::connect(addr).await;
        eventually(10, "three connections", || server.stats().connections == 3).await;
        let r = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "{\"err\":\"Too many connections\"}")
        );
        assert_eq!(r.header("connection"), Some("close"));
        drop(idle);
        drop(listen);
        drop(stalled);
        eventually(10, "slots free", || {
            server.stats().connections == 0 && server.stats().listens == 0
        })
        .await;
        let mut c = Conn::connect(addr).await;
        c.send(b"GET /key/bar/listen HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(within(10, "listen again", c.head()).await.unwrap().status, 200);
        assert_eq!(
            exchange(addr, &request("POST", "/key/foo", "{}")).await.status,
            200
        );
        assert!(server.stats().refused_connections >= 1);
        server.shutdown().await;
    });
}

/// Many clients at once, each putting and getting through a real node.
#[test]
fn many_clients_at_once() {
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let server = ProxyServer::bind(loopback(), Arc::new(b.clone()), Config::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let mut tasks = Vec::new();
        for i in 0..64 {
            tasks.push(smol::spawn(async move {
                let body = format!("{{\"data\":\"eA==\",\"id\":\"{}\"}}", i + 1);
                let r = exchange(addr, &request("POST", &format!("/key/many{}", i % 8), &body)).await;
                assert_eq!(r.status, 200, "{r:?}");
                let r = exchange(addr, &request("GET", &format!("/key/many{}", i % 8), "")).await;
                assert_eq!(r.status, 200);
                let ids: Vec<String> = r
                    .lines()
                    .iter()
                    .map(|l| l["id"].as_str().unwrap().to_owned())
                    .collect();
                assert!(ids.contains(&(i + 1).to_string()), "{ids:?}");
                let r = exchange(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
                assert_eq!(r.status, 200);
            }));
        }
        within(60, "64 clients", async {
            for t in tasks {
                t.await;
            }
        })
        .await;
        assert_eq!(server.stats().requests, 64 * 3);
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Keep-alive and pipelining: several requests on one connection are answered in order.
#[test]
fn pipelined_requests_in_order() {
    smol::block_on(async {
        let (fake, server) = fake_server(Config::default()).await;
        fake.store(parse_key("foo"), Value::new(9, b"x".to_vec()));
        let mut c = Conn::connect(server.local_addr()).await;
        c.send(b"GET /key/foo HTTP/1.1\r\nHost: x\r\n\r\nGET /node/info HTTP/1.1\r\nHost: x\r\n\r\nGET /foo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let r1 = within(10, "1", c.reply()).await.unwrap();
        let r2 = within(10, "2", c.reply()).await.unwrap();
        let r3 = within(10, "3", c.reply()).await.unwrap();
        assert_eq!(r1.body, "{\"data\":\"eA==\",\"id\":\"9\",\"type\":0}\n");
        assert_eq!(r2.json()["node_id"], InfoHash::get("fake").to_string());
        assert_eq!(r3.body, r1.body);
        assert!(within(10, "closed", c.closed()).await);
        server.shutdown().await;
    });
}

/// A put the node reports as failed answers 502 `{"err":"Put failed"}` (spec §1.3).
#[test]
fn failed_put_is_502() {
    smol::block_on(async {
        let (fake, server) = fake_server(Config::default()).await;
        fake.0.lock().unwrap().put_fails = true;
        let r = exchange(
            server.local_addr(),
            &request("POST", "/key/foo", "{\"data\":\"eA==\"}"),
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (502, "{\"err\":\"Put failed\"}"));
        server.shutdown().await;
    });
}

/// Node info never reports dubious nodes without a good one (OpenDHT's client would freeze).
#[test]
fn node_info_without_good_nodes_reads_as_disconnected() {
    smol::block_on(async {
        let (fake, server) = fake_server(Config {
            timers: Timers {
                info_cache: Duration::ZERO,
                ..Timers::default()
            },
            ..Config::default()
        })
        .await;
        fake.0.lock().unwrap().info.ipv4 = dht_proxy::FamilyInfo {
            good: 0,
            dubious: 3,
            incoming: 0,
        };
        let j = exchange(server.local_addr(), &request("GET", "/", ""))
            .await
            .json();
        assert_eq!(j["ipv4"], json!({"dubious": 0, "good": 0, "incoming": 0}));
        fake.0.lock().unwrap().info.ipv4.good = 2;
        let j = exchange(server.local_addr(), &request("GET", "/", ""))
            .await
            .json();
        assert_eq!(j["ipv4"], json!({"dubious": 3, "good": 2, "incoming": 0}));
        server.shutdown().await;
    });
}

/// Sends `raw` in one write and reads until `until` has come; the bytes read, and the
/// connection.
async fn raw_until(addr: std::net::SocketAddr, raw: &[u8], until: &[u8]) -> (Vec<u8>, smol::net::TcpStream) {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = smol::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    within(10, "answer", async {
        while !got.windows(until.len()).any(|w| w == until) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    (got, s)
}

/// A listen request that comes whole is answered without hyper (an idle stream then holds no
/// HTTP buffers), byte for byte as hyper answers one it cannot take that way (here: followed
/// by a stray CRLF); over the listen limit, a whole 503 on the direct path too.
#[test]
fn listens_answered_without_hyper_are_byte_identical() {
    smol::block_on(async {
        let (fake, server) = fake_server(Config {
            limits: Limits {
                max_listens: 2,
                ..Limits::default()
            },
            ..Config::default()
        })
        .await;
        fake.store(parse_key(FOO), Value::new(1, b"one".to_vec()));
        let addr = server.local_addr();
        let req = format!("GET /key/{FOO}/listen HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n");
        let line = b"{\"data\":\"b25l\",\"id\":\"1\",\"type\":0}\n\r\n";
        let (direct, _a) = raw_until(addr, req.as_bytes(), line).await;
        assert_eq!(server.stats().direct_listens, 1);
        let (by_hyper, _b) = raw_until(addr, format!("{req}\r\n").as_bytes(), line).await;
        assert_eq!(server.stats().direct_listens, 1, "the second went to hyper");
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&by_hyper)
        );
        assert!(direct.starts_with(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"));
        assert!(direct.ends_with(
            b"\r\nTransfer-Encoding: chunked\r\n\r\n22\r\n{\"data\":\"b25l\",\"id\":\"1\",\"type\":0}\n\r\n"
        ));
        // Both streams are still open: a third is refused, in a complete answer.
        let (refused, _c) = raw_until(addr, req.as_bytes(), b"listens\"}").await;
        let text = String::from_utf8_lossy(&refused);
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: "), "{text}");
        assert!(text.contains("\r\n\r\n{\"err\":\"Too many listens\"}"), "{text}");
        assert_eq!(server.stats().direct_listens, 2);
        server.shutdown().await;
    });
}
