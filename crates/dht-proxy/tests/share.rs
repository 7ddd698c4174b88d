//! Requests on one key share DHT work: concurrent gets one DHT get, listen streams (and push
//! subscriptions) one DHT listen, counted through the fake DHT.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use dht_proto::value::Value;
use dht_proxy::{Config, ProxyServer, parse_key};

const FOO: &str = "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33";

async fn fake_server() -> (Fake, ProxyServer) {
    let fake = Fake::new();
    let server = ProxyServer::bind(loopback(), Arc::new(fake.clone()), Config::default())
        .await
        .unwrap();
    (fake, server)
}

fn count(fake: &Fake, f: impl Fn(&Call) -> bool) -> usize {
    fake.calls().iter().filter(|c| f(c)).count()
}

fn get_request() -> String {
    format!("GET /key/{FOO} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

/// Gets of one key while a DHT get of it runs join it: one DHT get, and every request gets
/// every value (a late joiner the ones found before it came too).
#[test]
fn concurrent_gets_share_one_dht_get() {
    smol::block_on(async {
        let (fake, server) = fake_server().await;
        let key = parse_key("foo");
        fake.store(key, Value::new(1, b"one".to_vec()));
        fake.store(key, Value::new(2, b"two".to_vec()));
        fake.0.lock().unwrap().get_delay = Duration::from_millis(800);
        let addr = server.local_addr();
        let first = smol::spawn(async move { exchange(addr, &get_request()).await });
        // The second comes after the DHT get has found its first value.
        smol::Timer::after(Duration::from_millis(300)).await;
        let second = smol::spawn(async move { exchange(addr, &get_request()).await });
        let (a, b) = (first.await, second.await);
        for r in [&a, &b] {
            assert_eq!(r.status, 200);
            assert_eq!(ids(r), ["1", "2"], "{}", r.body);
        }
        assert_eq!(count(&fake, |c| matches!(c, Call::Get(_))), 1);
        assert_eq!(server.stats().dht_gets, 1);
        assert_eq!(server.stats().cached_gets, 0);
        server.shutdown().await;
    });
}

fn ids(r: &Reply) -> Vec<String> {
    r.lines()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

fn dht_gets(fake: &Fake) -> usize {
    count(fake, |c| matches!(c, Call::Get(_)))
}

/// A get that just finished answers the gets of its key for `Timers::get_cache`, complete at
/// once, without asking the DHT (so a busy key costs the DHT one get per window, not one per
/// request); the first get after the window asks the DHT again. A put through the proxy, or a
/// change its listen on the key hears, ends the window at once.
#[test]
fn a_finished_get_answers_for_a_short_window_until_the_key_changes() {
    smol::block_on(async {
        let fake = Fake::new();
        let config = Config {
            timers: dht_proxy::Timers {
                get_cache: Duration::from_millis(300),
                ..Default::default()
            },
            ..Config::default()
        };
        let server = ProxyServer::bind(loopback(), Arc::new(fake.clone()), config)
            .await
            .unwrap();
        let addr = server.local_addr();
        let key = parse_key("foo");
        fake.store(key, Value::new(1, b"one".to_vec()));
        assert_eq!(ids(&exchange(addr, &get_request()).await), ["1"]);
        assert_eq!(dht_gets(&fake), 1);

        // Stored behind the proxy's back: the window's answer does not have it yet...
        fake.store(key, Value::new(2, b"two".to_vec()));
        let r = exchange(addr, &get_request()).await;
        assert_eq!((r.status, ids(&r)), (200, vec!["1".to_owned()]), "{}", r.body);
        assert_eq!(dht_gets(&fake), 1);
        assert!(server.stats().cached_gets >= 1);
        // ...the first get after the window asks the DHT, and one DHT get serves the window.
        let end = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = exchange(addr, &get_request()).await;
            if ids(&r) == ["1", "2"] {
                break;
            }
            assert!(std::time::Instant::now() < end, "never asked the DHT again");
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(dht_gets(&fake), 2);

        // A put through the proxy: the next get asks the DHT and sees it.
        let put = exchange(
            addr,
            &request(
                "POST",
                &format!("/key/{FOO}"),
                "{\"data\":\"dGhyZWU=\",\"id\":\"3\"}",
            ),
        )
        .await;
        assert_eq!(put.status, 200, "{}", put.body);
        assert_eq!(ids(&exchange(addr, &get_request()).await), ["1", "2", "3"]);
        assert_eq!(dht_gets(&fake), 3);

        // A change the proxy's listen on the key hears: the same.
        let mut l = open_listen(&server).await;
        for _ in 0..3 {
            assert!(within(10, "held values", l.chunk()).await.is_some());
        }
        assert_eq!(ids(&exchange(addr, &get_request()).await), ["1", "2", "3"]);
        let gets = dht_gets(&fake);
        fake.store(key, Value::new(4, b"four".to_vec()));
        assert!(
            within(10, "4 on the listen", l.chunk())
                .await
                .unwrap()
                .contains("\"id\":\"4\"")
        );
        assert_eq!(ids(&exchange(addr, &get_request()).await), ["1", "2", "3", "4"]);
        assert_eq!(dht_gets(&fake), gets + 1);
        server.shutdown().await;
    });
}

/// A get whose requests all went away is cancelled.
#[test]
fn abandoned_get_is_forgotten() {
    smol::block_on(async {
        let (fake, server) = fake_server().await;
        let key = parse_key("foo");
        fake.store(key, Value::new(1, b"one".to_vec()));
        fake.store(key, Value::new(2, b"two".to_vec()));
        fake.0.lock().unwrap().get_delay = Duration::from_secs(3600);
        let mut c = Conn::connect(server.local_addr()).await;
        c.send(get_request().as_bytes()).await;
        assert_eq!(within(10, "head", c.head()).await.unwrap().status, 200);
        assert!(within(10, "first value", c.chunk()).await.is_some());
        drop(c);
        smol::Timer::after(Duration::from_millis(200)).await;
        // A new request starts a new get rather than waiting on the abandoned one.
        let mut c = Conn::connect(server.local_addr()).await;
        c.send(get_request().as_bytes()).await;
        assert_eq!(within(10, "head", c.head()).await.unwrap().status, 200);
        assert!(within(10, "first value", c.chunk()).await.is_some());
        assert_eq!(count(&fake, |c| matches!(c, Call::Get(_))), 2);
        server.shutdown().await;
    });
}

async fn open_listen(server: &ProxyServer) -> Conn {
    let mut c = Conn::connect(server.local_addr()).await;
    c.send(format!("GET /key/{FOO}/listen HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    assert_eq!(within(10, "head", c.head()).await.unwrap().status, 200);
    c
}

/// Two listen streams on one key: one DHT listen; both hear every change; the second, opened
/// later, first gets the values the listen holds. The DHT listen ends with the last stream, and
/// a new stream opens a new one.
#[test]
fn listen_streams_share_one_dht_listen() {
    smol::block_on(async {
        let (fake, server) = fake_server().await;
        let key = parse_key("foo");
        fake.store(key, Value::new(1, b"one".to_vec()));
        let mut a = open_listen(&server).await;
        let line1 = "{\"data\":\"b25l\",\"id\":\"1\",\"type\":0}\n";
        assert_eq!(within(10, "a: 1", a.chunk()).await.unwrap(), line1);
        let mut b = open_listen(&server).await;
        assert_eq!(within(10, "b: 1", b.chunk()).await.unwrap(), line1);
        assert_eq!(count(&fake, |c| matches!(c, Call::Listen(_))), 1);
        assert_eq!(fake.open_listens(), 1);
        assert_eq!(server.stats().listens, 2);
        assert_eq!(server.stats().dht_listens_open, 1);

        fake.store(key, Value::new(2, b"two".to_vec()));
        let line2 = "{\"data\":\"dHdv\",\"id\":\"2\",\"type\":0}\n";
        assert_eq!(within(10, "a: 2", a.chunk()).await.unwrap(), line2);
        assert_eq!(within(10, "b: 2", b.chunk()).await.unwrap(), line2);
        fake.expire(key, &[1]);
        let gone = "{\"data\":\"b25l\",\"expired\":true,\"id\":\"1\",\"type\":0}\n";
        assert_eq!(within(10, "a: expired", a.chunk()).await.unwrap(), gone);
        assert_eq!(within(10, "b: expired", b.chunk()).await.unwrap(), gone);

        // A third stream gets only what is there now.
        let mut c = open_listen(&server).await;
        assert_eq!(within(10, "c: 2", c.chunk()).await.unwrap(), line2);
        drop(c);

        drop(a);
        smol::Timer::after(Duration::from_millis(200)).await;
        assert_eq!(fake.open_listens(), 1, "b still listens");
        drop(b);
        eventually(10, "DHT listen cancelled", || fake.open_listens() == 0).await;
        eventually(10, "stats", || server.stats().dht_listens_open == 0).await;

        let mut d = open_listen(&server).await;
        assert_eq!(within(10, "d: 2", d.chunk()).await.unwrap(), line2);
        assert_eq!(count(&fake, |c| matches!(c, Call::Listen(_))), 2);
        server.shutdown().await;
    });
}
