//! HTTPS: our client against our server on a TLS port (OpenDHT's `--proxyserverssl`), with a
//! self-signed certificate made here; put, get and listen go through, and a client that does
//! not trust the certificate, or speaks plain HTTP, gets nothing.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_proxy::{
    ClientConfig, ClientError, ClientTls, Config, ListenEvent, ProxyClient, ProxyServer, ServerTls,
};
use smol::stream::StreamExt;

fn quick(tls: ClientTls) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        status_disconnected: Duration::from_millis(200),
        retry_min: Duration::from_millis(50),
        tls: Some(tls),
        ..ClientConfig::default()
    }
}

async fn until_added(l: &mut dht_proxy::ListenStream, data: &[u8]) {
    within(30, "listen event", async {
        loop {
            match l.next().await.expect("listen ended") {
                ListenEvent::Added(vs) if vs.iter().any(|v| v.data == data) => return,
                _ => {}
            }
        }
    })
    .await
}

#[test]
fn our_client_puts_gets_and_listens_through_our_server_over_https() {
    smol::block_on(async {
        let (a, b) = real_pair().await;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert_pem = cert.cert.pem();
        let tls = ServerTls::from_pem(cert_pem.as_bytes(), cert.key_pair.serialize_pem().as_bytes()).unwrap();
        let server = ProxyServer::bind_tls(loopback(), Arc::new(b.clone()), Config::default(), tls)
            .await
            .unwrap();
        let url = format!("https://127.0.0.1:{}", server.local_addr().port());
        let roots = ClientTls::with_roots_pem(cert_pem.as_bytes()).unwrap();
        let client = ProxyClient::new(&url, quick(roots)).unwrap();

        let info = within(20, "node info", client.node_info()).await.unwrap();
        assert_eq!(info["node_id"], b.node_id().to_string());

        let key = InfoHash::get("over-tls");
        let mut listen = client.listen(key);
        let stored = within(30, "put", client.put(key, Value::new(0, b"secret".to_vec())))
            .await
            .unwrap();
        assert_ne!(stored.id, 0);
        until_added(&mut listen, b"secret").await;
        let got = within(30, "get", client.get_all(key)).await.unwrap();
        assert!(got.iter().any(|v| v.data == b"secret"), "{got:?}");

        // A value put on the plain node reaches the listen over TLS.
        a.put(key, Value::new(0, b"from-a".to_vec())).await.unwrap();
        until_added(&mut listen, b"from-a").await;

        // A client that trusts another certificate fails the handshake.
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let wary = ProxyClient::new(
            &url,
            quick(ClientTls::with_roots_pem(other.cert.pem().as_bytes()).unwrap()),
        )
        .unwrap();
        let e = within(20, "wary get", wary.get_all(key)).await.unwrap_err();
        assert!(matches!(e, ClientError::Tls(_)), "{e:?}");

        // Plain HTTP on the TLS port gets no answer, and the server goes on serving.
        let plain = format!("127.0.0.1:{}", server.local_addr().port());
        let plain = ProxyClient::new(
            &plain,
            ClientConfig {
                request_timeout: Duration::from_secs(3),
                ..ClientConfig::default()
            },
        )
        .unwrap();
        assert!(within(20, "plain get", plain.get_all(key)).await.is_err());
        let got = within(30, "get again", client.get_all(key)).await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");

        drop(listen);
        server.shutdown().await;
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn bad_pem_is_a_clear_error() {
    assert!(ServerTls::from_pem(b"nothing", b"nothing").is_err());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let e = ServerTls::from_pem(
        cert.cert.pem().as_bytes(),
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("encrypted"), "{e}");
    assert!(ClientTls::with_roots_pem(b"no pem here").is_err());
}
