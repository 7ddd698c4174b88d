//! LAN peer discovery with dht-smol, inside a network namespace of its own (only `lo`;
//! `../../dht-driver/tests/support/netns.rs`): two nodes with no bootstrap find each other on
//! both families and exchange a value; other networks are ignored.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

#[path = "../../dht-driver/tests/support/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use dht_proto::value::Value;
use dht_proto::{Family, InfoHash, Status};
use dht_smol::{Config, DiscoveryConfig, Handle};
use smol::future::FutureExt;

const WAIT: Duration = Duration::from_secs(30);

fn config(network: u32) -> Config {
    let mut c = Config {
        discovery: Some(DiscoveryConfig::default()),
        ..Config::loopback()
    };
    c.node.network = network;
    c
}

/// Polls `f` until it holds, at most `WAIT`.
async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if f() {
            return true;
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    f()
}

fn connected_both(h: &Handle) -> bool {
    h.status(Family::V4) == Status::Connected && h.status(Family::V6) == Status::Connected
}

#[test]
fn two_smol_nodes_without_bootstrap_find_each_other_and_exchange_a_value() {
    if !netns::inside("two_smol_nodes_without_bootstrap_find_each_other_and_exchange_a_value") {
        return;
    }
    smol::block_on(async {
        let a = Handle::start(config(0)).await.unwrap();
        let b = Handle::start(config(0)).await.unwrap();
        assert!(a.discovery_stats().is_some() && b.discovery_stats().is_some());
        assert!(
            wait_for(|| connected_both(&a) && connected_both(&b)).await,
            "both families connect"
        );
        let nodes = b.export_nodes().await.unwrap();
        for fam in [Family::V4, Family::V6] {
            assert!(
                nodes
                    .iter()
                    .any(|n| n.id == a.node_id() && Family::of(&n.addr) == fam),
                "{fam:?}"
            );
        }
        let key = InfoHash::get("found by smol");
        let put = a.put(key, Value::new(3, b"smol".to_vec()));
        put.or(async {
            smol::Timer::after(WAIT).await;
            panic!("put timed out")
        })
        .await
        .unwrap();
        let got = b.get_all(key).or(async {
            smol::Timer::after(WAIT).await;
            panic!("get timed out")
        });
        assert!(got.await.unwrap().iter().any(|v| v.data == b"smol"));
        assert!(b.discovery_stats().unwrap().bootstraps >= 1);
    });
}

#[test]
fn smol_nodes_of_other_networks_ignore_each_other() {
    if !netns::inside("smol_nodes_of_other_networks_ignore_each_other") {
        return;
    }
    smol::block_on(async {
        let a = Handle::start(config(5)).await.unwrap();
        let b = Handle::start(config(6)).await.unwrap();
        let heard = |h: &Handle| h.discovery_stats().is_some_and(|s| s.other_network >= 2);
        assert!(wait_for(|| heard(&a) && heard(&b)).await);
        for h in [&a, &b] {
            assert_eq!(h.discovery_stats().unwrap().bootstraps, 0);
            assert!(h.export_nodes().await.unwrap().is_empty());
        }
    });
}
