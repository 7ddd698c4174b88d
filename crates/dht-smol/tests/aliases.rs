//! The former names still work while callers move (`Node`, `Node::bootstrap(host, port)`); drop
//! this file with the aliases.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

use std::time::Duration;

use dht_smol::{Config, Node};

#[test]
fn the_former_names_still_build_and_run() {
    smol::block_on(async {
        let a: Node = Node::start(Config::loopback()).await.unwrap();
        let b = Node::start(Config {
            bind6: None,
            ..Config::loopback()
        })
        .await
        .unwrap();
        let port = a.local_addrs()[0].port();
        let addrs = b.bootstrap("127.0.0.1", port).await.unwrap();
        assert_eq!(addrs, vec![a.local_addrs()[0]]);
        b.wait_connected(Duration::from_secs(15)).await.unwrap();
        a.shutdown().await;
        b.shutdown().await;
    });
}
