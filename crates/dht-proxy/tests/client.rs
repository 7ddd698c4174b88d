//! Our `ProxyClient` against our server (with a restart in the middle) and against OpenDHT's
//! proxy server (Debian's `dhtnode --proxyserver`, skipped when it is missing unless
//! `DHT_REQUIRE_OPENDHT` is set).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_proxy::{ClientConfig, Config, ListenEvent, ProxyClient, ProxyServer};
use smol::stream::StreamExt;

fn quick() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        status_disconnected: Duration::from_millis(200),
        retry_min: Duration::from_millis(50),
        ..ClientConfig::default()
    }
}

async fn next_event(l: &mut dht_proxy::ListenStream, what: &str) -> ListenEvent {
    within(30, what, l.next()).await.expect("listen ended")
}

fn added(ev: &ListenEvent) -> Vec<Vec<u8>> {
    match ev {
        ListenEvent::Added(v) => v.iter().map(|v| v.data.clone()).collect(),
        other => panic!("not an addition: {other:?}"),
    }
}

#[test]
fn our_client_against_our_server_across_a_restart() {
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let server = ProxyServer::bind(loopback(), Arc::new(b.clone()), Config::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let client = ProxyClient::new(&addr.to_string(), quick()).unwrap();
        eventually(20, "connected", || client.is_connected()).await;
        let info = client.node_info().await.unwrap();
        assert_eq!(info["node_id"], b.node_id().to_string());

        // put, then get through the proxy and directly.
        let key = InfoHash::get("client-k1");
        let stored = client.put(key, Value::new(0, b"one".to_vec())).await.unwrap();
        assert_ne!(stored.id, 0);
        assert_eq!(stored.data, b"one");
        let got = client.get_all(key).await.unwrap();
        assert_eq!(got, vec![stored.clone()]);
        let direct = within(20, "direct", a.get_all(key)).await.unwrap();
        assert_eq!(direct, vec![stored]);
        assert!(
            client
                .get_all(InfoHash::get("client-none"))
                .await
                .unwrap()
                .is_empty()
        );

        // listen: known values, then a put by the plain node.
        let lkey = InfoHash::get("client-listen");
        a.put(lkey, Value::new(1, b"l1".to_vec())).await.unwrap();
        let mut l = client.listen(lkey);
        assert_eq!(added(&next_event(&mut l, "known").await), vec![b"l1".to_vec()]);
        let a2 = a.clone();
        smol::spawn(async move { a2.put(lkey, Value::new(2, b"l2".to_vec())).await }).detach();
        assert_eq!(added(&next_event(&mut l, "new").await), vec![b"l2".to_vec()]);

        // A permanent put, then the server restarts: the put is POSTed again, the listen comes
        // back and reports only what is new.
        let pkey = InfoHash::get("client-perm");
        let pid = client
            .put_permanent(pkey, Value::new(0, b"perm".to_vec()))
            .await
            .unwrap();
        assert_eq!(server.stats().permanent_puts, 1);
        server.shutdown().await;
        let server = ProxyServer::bind(addr, Arc::new(b.clone()), Config::default())
            .await
            .unwrap();
        eventually(30, "permanent put re-POSTed", || {
            server.stats().permanent_puts == 1
        })
        .await;
        eventually(30, "listen re-opened", || server.stats().listens == 1).await;
        let a3 = a.clone();
        smol::spawn(async move { a3.put(lkey, Value::new(3, b"l3".to_vec())).await }).detach();
        assert_eq!(
            added(&next_event(&mut l, "after restart").await),
            vec![b"l3".to_vec()]
        );
        let got = client.get_all(pkey).await.unwrap();
        assert_eq!(got.iter().map(|v| v.id).collect::<Vec<_>>(), vec![pid]);

        // Dropping the listen closes it on the server; cancel_put stops the refreshes.
        drop(l);
        eventually(10, "listen closed", || server.stats().listens == 0).await;
        client.cancel_put(pkey, pid);
        assert_eq!(client.permanent_puts(), 0);

        // Errors: a server that is not there, a bad address.
        assert!(ProxyClient::new("ftp://x", quick()).is_err());
        assert!(ProxyClient::new("https://", quick()).is_err());
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let nobody = ProxyClient::new(&closed.to_string(), quick()).unwrap();
        let e = nobody.put(key, Value::new(0, b"x".to_vec())).await.unwrap_err();
        assert!(matches!(e, dht_proxy::ClientError::Connection(_)), "{e:?}");
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn our_client_against_opendht_proxy_server() {
    const DHTNODE: &str = "/usr/bin/dhtnode";
    if !std::path::Path::new(DHTNODE).exists() {
        assert!(
            std::env::var_os("DHT_REQUIRE_OPENDHT").is_none(),
            "{DHTNODE} is missing and DHT_REQUIRE_OPENDHT is set"
        );
        eprintln!("skipping: {DHTNODE} is not installed (apt-get install dhtnode)");
        return;
    }
    smol::block_on(async {
        // Their proxy node joins our plain node `a`, which puts and listens directly.
        let (a, b) = real_pair().await;
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let boot = a.local_addrs()[0].to_string();
        let child = Command::new(DHTNODE)
            .args([
                "-p",
                &udp.to_string(),
                "-b",
                &boot,
                "--proxyserver",
                &http.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _theirs = Killed(child);
        let client = ProxyClient::new(&format!("127.0.0.1:{http}"), quick()).unwrap();
        within(30, "their proxy up and connected", async {
            loop {
                if let Ok(info) = client.node_info().await
                    && info["ipv4"]["good"].as_u64().unwrap_or(0) > 0
                {
                    break;
                }
                smol::Timer::after(Duration::from_millis(100)).await;
            }
        })
        .await;

        let key = InfoHash::get("client-opendht-k1");
        let stored = client
            .put(key, Value::new(0, b"through-opendht".to_vec()))
            .await
            .unwrap();
        assert_ne!(stored.id, 0);
        let direct = within(20, "direct", a.get_all(key)).await.unwrap();
        assert!(direct.iter().any(|v| v.data == b"through-opendht"), "{direct:?}");

        let k2 = InfoHash::get("client-opendht-k2");
        a.put(k2, Value::new(5, b"from-rust".to_vec())).await.unwrap();
        let got = client.get_all(k2).await.unwrap();
        assert_eq!(
            got.iter().map(|v| v.data.clone()).collect::<Vec<_>>(),
            vec![b"from-rust".to_vec()]
        );

        let lkey = InfoHash::get("client-opendht-listen");
        let mut l = client.listen(lkey);
        // Their server sends headers at once; give the listen a moment to reach the DHT by
        // waiting for the first value put before it, then a second one.
        a.put(lkey, Value::new(7, b"l1".to_vec())).await.unwrap();
        assert_eq!(added(&next_event(&mut l, "first").await), vec![b"l1".to_vec()]);
        let a2 = a.clone();
        smol::spawn(async move { a2.put(lkey, Value::new(8, b"l2".to_vec())).await }).detach();
        assert_eq!(added(&next_event(&mut l, "second").await), vec![b"l2".to_vec()]);

        let pkey = InfoHash::get("client-opendht-perm");
        let pid = client
            .put_permanent(pkey, Value::new(0, b"perm".to_vec()))
            .await
            .unwrap();
        let direct = within(20, "direct perm", a.get_all(pkey)).await.unwrap();
        assert_eq!(direct.iter().map(|v| v.id).collect::<Vec<_>>(), vec![pid]);
        drop(l);
        a.shutdown().await;
        b.shutdown().await;
    });
}
