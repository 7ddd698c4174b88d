//! `POST /key/{h}/sign` and `/encrypt` (routes of OpenDHT's identity builds): the proxy's node
//! signs, or encrypts to the key id in `"to"`, with its own identity; without an identity, or
//! without a `"to"`, a JSON error.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use dht_proxy::{Config, ProxyServer};

#[test]
fn the_proxys_node_signs_and_a_fake_without_identity_refuses() {
    smol::block_on(async {
        let mut config = dht_smol::Config::loopback();
        config.node.identity = Some(dht_proto::crypto::Identity::from_seed(&[7; 32]));
        let node = dht_smol::Handle::start(config).await.unwrap();
        let other = dht_smol::Handle::start(dht_smol::Config::loopback())
            .await
            .unwrap();
        other.bootstrap_addr(node.local_addrs()[0]).unwrap();
        within(
            20,
            "connected",
            node.wait_connected(std::time::Duration::from_secs(20)),
        )
        .await
        .unwrap();
        let server = ProxyServer::bind(loopback(), Arc::new(node.clone()), Config::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let r = within(
            30,
            "sign",
            exchange(
                addr,
                &request("POST", "/key/signed/sign", "{\"data\":\"c2lnbmVk\"}"),
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        // The other node holds it signed by the proxy's node.
        let got = within(30, "get", other.get_all(dht_proxy::parse_key("signed")))
            .await
            .unwrap();
        let pk = dht_proto::crypto::Identity::from_seed(&[7; 32]).public();
        assert!(
            got.iter().any(|v| v.data == b"signed"
                && dht_proto::crypto::verify_value(v).is_ok_and(|k| k.id() == pk.id())),
            "{got:?}"
        );
        let r = exchange(
            addr,
            &request("POST", "/key/secret/encrypt", "{\"data\":\"eA==\"}"),
        )
        .await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "{\"err\":\"No destination found\"}")
        );
        server.shutdown().await;

        // A node that cannot sign: 502, as a failed put.
        let fake = Fake::new();
        let server = ProxyServer::bind(loopback(), Arc::new(fake), Config::default())
            .await
            .unwrap();
        let r = exchange(
            server.local_addr(),
            &request("POST", "/key/k/sign", "{\"data\":\"eA==\"}"),
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (502, "{\"err\":\"Put failed\"}"));
        server.shutdown().await;
        node.shutdown().await;
        other.shutdown().await;
    });
}

/// `POST /key/{h}/encrypt` end to end: the proxy's node encrypts the posted value to the
/// recipient's key id (finding its public key in the DHT), a node without that identity holds
/// only ciphertext, and the recipient's node opens it to the posted data, signed by the proxy's
/// node.
#[test]
fn an_encrypted_put_is_opened_by_its_recipient_only() {
    smol::block_on(async {
        let proxy_id = dht_proto::crypto::Identity::from_seed(&[7; 32]);
        let recipient_id = dht_proto::crypto::Identity::from_seed(&[9; 32]);
        let mut config = dht_smol::Config::loopback();
        config.node.identity = Some(proxy_id.clone());
        let node = dht_smol::Handle::start(config).await.unwrap();
        let mut config = dht_smol::Config::loopback();
        config.node.identity = Some(recipient_id.clone());
        let recipient = dht_smol::Handle::start(config).await.unwrap();
        let plain = dht_smol::Handle::start(dht_smol::Config::loopback())
            .await
            .unwrap();
        recipient.bootstrap_addr(node.local_addrs()[0]).unwrap();
        plain.bootstrap_addr(node.local_addrs()[0]).unwrap();
        for n in [&node, &recipient, &plain] {
            within(
                20,
                "connected",
                n.wait_connected(std::time::Duration::from_secs(20)),
            )
            .await
            .unwrap();
        }
        let server = ProxyServer::bind(loopback(), Arc::new(node.clone()), Config::default())
            .await
            .unwrap();
        let to = recipient_id.public().id();
        let body = format!("{{\"data\":\"c2VjcmV0IG5vdGU=\",\"to\":\"{to}\"}}");
        // The recipient announces its public key once connected: retry until the proxy's node
        // finds it (502 until then).
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let r = loop {
            let r = exchange(
                server.local_addr(),
                &request("POST", "/key/secret/encrypt", &body),
            )
            .await;
            if r.status == 200 || std::time::Instant::now() > end {
                break r;
            }
            smol::Timer::after(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(r.status, 200, "{r:?}");
        let id = r.json()["id"].as_str().unwrap().parse::<u64>().unwrap();
        assert_ne!(id, 0);
        let key = dht_proxy::parse_key("secret");

        // A node without the recipient's identity: ciphertext only, for that id.
        let seen = within(30, "plain get", plain.get_all(key)).await.unwrap();
        let v = seen.iter().find(|v| v.id == id).expect("stored");
        assert!(v.is_encrypted(), "{v:?}");
        assert!(v.data.is_empty() && !v.cypher.is_empty(), "{v:?}");

        // The recipient's node opens it: the posted data, signed by the proxy's node, to it.
        let opened = within(30, "recipient get", recipient.get_all(key)).await.unwrap();
        let v = opened.iter().find(|v| v.id == id).expect("delivered");
        assert_eq!(v.data, b"secret note");
        assert!(!v.is_encrypted());
        assert_eq!(v.recipient, Some(to));
        assert!(
            dht_proto::crypto::verify_value(v).is_ok_and(|k| k.id() == proxy_id.public().id()),
            "{v:?}"
        );
        server.shutdown().await;
        for n in [node, recipient, plain] {
            n.shutdown().await;
        }
    });
}
