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
