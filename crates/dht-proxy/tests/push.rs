//! Pushes reach a push gateway played by the test (a local HTTP listener), field by field, in
//! the formats of OpenDHT 2.4.12: gorush for Android and iOS, the bare data for UnifiedPush
//! (to the endpoint's own port, which 2.4.12 drops); retries with backoff when the gateway is
//! down or failing; reminders on a shortened clock.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dht_proto::value::Value;
use dht_proxy::{Config, Gateway, GatewayConfig, ProxyServer, Timers, parse_key};
use serde_json::{Value as Json, json};

fn gateway_config(gateway: Option<String>) -> GatewayConfig {
    GatewayConfig {
        gateway,
        backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        ..GatewayConfig::default()
    }
}

async fn server_with(gateway: &Gateway, timers: Timers) -> (Fake, ProxyServer) {
    let fake = Fake::new();
    let config = Config {
        push: Some(Arc::new(gateway.clone())),
        bundle_id: "com.example.app".into(),
        timers,
        ..Config::default()
    };
    let server = ProxyServer::bind(loopback(), Arc::new(fake.clone()), config)
        .await
        .unwrap();
    (fake, server)
}

fn subscribe(token: &str, platform: &str, topic: &str, client: &str, session: &str) -> String {
    json!({"key": token, "platform": platform, "topic": topic, "client_id": client, "session_id": session})
        .to_string()
}

#[test]
fn value_pushes_reach_the_gateway_field_by_field() {
    smol::block_on(async {
        let gw = FakeGateway::start(vec![]).await;
        let up = FakeGateway::start(vec![]).await;
        let gateway = Gateway::start(gateway_config(Some(gw.addr.to_string())));
        let (fake, server) = server_with(&gateway, Timers::default()).await;
        let addr = server.local_addr();
        let key = parse_key("pushed");
        fake.store(key, Value::new(11, b"v".to_vec()));

        // Android: the known value is pushed at once, high priority.
        let r = exchange(
            addr,
            &request(
                "SUBSCRIBE",
                "/key/pushed",
                &subscribe("tokA", "android", "", "cliA", "sessA"),
            ),
        )
        .await;
        assert_eq!(r.body, "{}\n");
        eventually(10, "android push", || gw.got().len() == 1).await;
        let p = &gw.got()[0];
        assert_eq!(p.request_line, "POST /api/push HTTP/1.1");
        assert_eq!(p.header("content-type"), Some("application/json"));
        assert_eq!(p.header("connection"), Some("close"));
        assert_eq!(p.header("host"), Some(gw.addr.to_string().as_str()));
        let n = &p.json()["notifications"][0];
        let t = n["data"]["t"].as_u64().expect("t is an integer");
        assert_eq!(
            p.json(),
            json!({"notifications": [{
                "data": {"ids": "11", "key": key.to_string(), "s": "sessA", "t": t, "to": "cliA"},
                "platform": 2, "priority": "high", "time_to_live": 86400, "tokens": ["tokA"]}]})
        );

        // iOS with its topic; then a subscriber with no platform: the iOS form, the bundle id.
        exchange(
            addr,
            &request(
                "SUBSCRIBE",
                "/key/pushed",
                &subscribe("tokI", "ios", "com.example.topic", "cliI", "sessI"),
            ),
        )
        .await;
        exchange(
            addr,
            &request(
                "SUBSCRIBE",
                "/key/pushed",
                &subscribe("tokN", "", "", "dhtnode", "sessN"),
            ),
        )
        .await;
        eventually(10, "ios pushes", || gw.got().len() == 3).await;
        let got = gw.got();
        let by_token = |tok: &str| {
            got.iter()
                .map(|p| p.json()["notifications"][0].clone())
                .find(|n| n["tokens"][0] == tok)
                .unwrap()
        };
        let ios = by_token("tokI");
        assert_eq!(ios["platform"], 1);
        assert_eq!(ios["push_type"], "alert");
        assert_eq!(ios["alert"], json!({"title": "hello"}));
        assert_eq!(ios["mutable_content"], true);
        assert_eq!(ios["topic"], "com.example.topic");
        assert!(ios["expiration"].as_u64().unwrap() > 1_700_000_000);
        assert_eq!(ios["data"]["to"], "cliI");
        let none = by_token("tokN");
        assert_eq!(
            (none["platform"].as_u64(), none["topic"].as_str()),
            (Some(1), Some("com.example.app"))
        );

        // A single expired value: normal priority, `exp`; iOS background form.
        fake.expire(key, &[11]);
        eventually(10, "expiry pushes", || gw.got().len() == 6).await;
        let got = gw.got();
        let ios_exp = got[3..]
            .iter()
            .map(|p| p.json()["notifications"][0].clone())
            .find(|n| n["tokens"][0] == "tokI")
            .unwrap();
        assert_eq!(ios_exp["priority"], "normal");
        assert_eq!(ios_exp["push_type"], "background");
        assert_eq!(ios_exp["content_available"], true);
        assert_eq!(ios_exp["data"]["exp"], "11");

        // UnifiedPush: the data alone, to the endpoint's own port, path and query.
        let endpoint = format!("http://{}/up/abc?x=1", up.addr);
        exchange(
            addr,
            &request(
                "SUBSCRIBE",
                "/key/up",
                &subscribe(&endpoint, "unifiedpush", "", "cliU", "sessU"),
            ),
        )
        .await;
        fake.store(parse_key("up"), Value::new(12, b"u".to_vec()));
        eventually(10, "unifiedpush", || up.got().len() == 1).await;
        let p = &up.got()[0];
        assert_eq!(p.request_line, "POST /up/abc?x=1 HTTP/1.1");
        assert_eq!(p.header("host"), Some(up.addr.to_string().as_str()));
        assert_eq!(p.header("ttl"), Some("86400"));
        assert_eq!(p.header("urgency"), Some("high"));
        let t = p.json()["t"].as_u64().unwrap();
        assert_eq!(
            p.json(),
            json!({"ids": "12", "key": parse_key("up").to_string(), "s": "sessU", "t": t, "to": "cliU"})
        );
        assert_eq!(gw.got().len(), 6, "UnifiedPush does not go through the gateway");
        let stats = gateway.stats();
        assert_eq!((stats.sent, stats.failed, stats.dropped), (7, 0, 0));
        server.shutdown().await;
    });
}

#[test]
fn a_failing_or_absent_gateway_is_retried_with_backoff_then_given_up() {
    smol::block_on(async {
        // Failing twice, then accepting: one push, two retries.
        let gw = FakeGateway::start(vec![503, 500]).await;
        let gateway = Gateway::start(gateway_config(Some(gw.addr.to_string())));
        let (fake, server) = server_with(&gateway, Timers::default()).await;
        fake.store(parse_key("k"), Value::new(1, b"v".to_vec()));
        exchange(
            server.local_addr(),
            &request("SUBSCRIBE", "/key/k", &subscribe("t", "android", "", "c", "s")),
        )
        .await;
        eventually(10, "sent after retries", || gateway.stats().sent == 1).await;
        assert_eq!(gateway.stats().retries, 2);
        assert_eq!(gw.got().len(), 3);
        // A 4xx is not retried.
        let gw4 = FakeGateway::start(vec![400]).await;
        let gateway4 = Gateway::start(gateway_config(Some(gw4.addr.to_string())));
        let (fake4, server4) = server_with(&gateway4, Timers::default()).await;
        fake4.store(parse_key("k"), Value::new(1, b"v".to_vec()));
        exchange(
            server4.local_addr(),
            &request("SUBSCRIBE", "/key/k", &subscribe("t", "android", "", "c", "s")),
        )
        .await;
        eventually(10, "refused", || gateway4.stats().failed == 1).await;
        assert_eq!((gateway4.stats().retries, gw4.got().len()), (0, 1));

        // Nobody listening: three tries, then failed; the proxy keeps serving.
        let closed = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let down = Gateway::start(gateway_config(Some(closed.to_string())));
        let (fake_d, server_d) = server_with(&down, Timers::default()).await;
        fake_d.store(parse_key("k"), Value::new(1, b"v".to_vec()));
        exchange(
            server_d.local_addr(),
            &request("SUBSCRIBE", "/key/k", &subscribe("t", "ios", "", "c", "s")),
        )
        .await;
        eventually(10, "given up", || down.stats().failed == 1).await;
        assert_eq!(down.stats().retries, 2);
        assert_eq!(
            exchange(server_d.local_addr(), &request("GET", "/", ""))
                .await
                .status,
            200
        );

        // No gateway configured: Android pushes fail at once.
        let none = Gateway::start(gateway_config(None));
        let (fake_n, server_n) = server_with(&none, Timers::default()).await;
        fake_n.store(parse_key("k"), Value::new(1, b"v".to_vec()));
        exchange(
            server_n.local_addr(),
            &request("SUBSCRIBE", "/key/k", &subscribe("t", "android", "", "c", "s")),
        )
        .await;
        eventually(10, "no gateway", || none.stats().failed == 1).await;
        for s in [server, server4, server_d, server_n] {
            s.shutdown().await;
        }
    });
}

#[test]
fn reminders_reach_the_gateway_on_a_short_clock() {
    smol::block_on(async {
        let gw = FakeGateway::start(vec![]).await;
        let gateway = Gateway::start(gateway_config(Some(gw.addr.to_string())));
        let timers = Timers {
            permanent_put_lifetime: Duration::from_millis(1200),
            subscription_lifetime: Duration::from_millis(1200),
            reminder_margin: Duration::from_millis(400),
            ..Timers::default()
        };
        let (_fake, server) = server_with(&gateway, timers).await;
        let addr = server.local_addr();
        exchange(
            addr,
            &request(
                "SUBSCRIBE",
                "/key/quiet",
                &subscribe("tokS", "android", "", "cliS", "sessS"),
            ),
        )
        .await;
        let put = "{\"data\":\"eA==\",\"permanent\":{\"key\":\"tokP\",\"client_id\":\"cliP\",\"platform\":\"android\",\"session_id\":\"sessP\"}}";
        let r = exchange(addr, &request("POST", "/key/kept", put)).await;
        let vid = r.json()["id"].as_str().unwrap().to_owned();
        eventually(10, "two reminders", || gw.got().len() == 2).await;
        let mut data: Vec<Json> = gw
            .got()
            .iter()
            .map(|p| {
                let n = &p.json()["notifications"][0];
                assert_eq!(n["priority"], "normal");
                n["data"].clone()
            })
            .collect();
        data.sort_by_key(|d| d["to"].as_str().unwrap().to_owned());
        assert_eq!(
            data,
            vec![
                json!({"timeout": parse_key("kept").to_string(), "to": "cliP", "vid": vid, "s": "sessP"}),
                json!({"timeout": parse_key("quiet").to_string(), "to": "cliS", "s": "sessS"}),
            ]
        );
        eventually(10, "both expired", || {
            let s = server.stats();
            s.subscriptions == 0 && s.permanent_puts == 0
        })
        .await;
        server.shutdown().await;
    });
}
