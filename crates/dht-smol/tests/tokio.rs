//! The driver is a plain future: it runs on tokio too (async-io's own thread drives the sockets
//! and timers when no `smol::block_on` does). Loopback only, bounded in time.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

use std::time::Duration;

use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_smol::{Config, Error, Handle};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "current_thread")]
async fn two_nodes_driven_by_tokio_put_get_and_end() {
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        let (a, driver_a) = Handle::bind(Config::loopback()).await.unwrap();
        let (b, driver_b) = Handle::bind(Config::loopback()).await.unwrap();
        let driver_a = tokio::spawn(driver_a);
        let driver_b = tokio::spawn(driver_b);
        b.bootstrap_addr(a.local_addrs()[0]).unwrap();
        b.wait_connected(WAIT).await.unwrap();
        a.wait_connected(WAIT).await.unwrap();

        let key = InfoHash::get("driven by tokio");
        let stored = a.put(key, Value::new(0, b"tokio".to_vec())).await.unwrap();
        assert!(stored.outcome.total_acked() >= 1);
        let values = b.get_all(key).await.unwrap();
        assert!(values.iter().any(|v| v.id == stored.vid && v.data == b"tokio"));

        a.shutdown().await;
        b.shutdown().await;
        // Both drivers end once their nodes have shut down, and later calls say so.
        driver_a.await.unwrap();
        driver_b.await.unwrap();
        assert!(matches!(a.stats().await, Err(Error::Closed)));
    })
    .await;
    assert!(
        outcome.is_ok(),
        "the tokio-driven nodes did not finish within 30 s"
    );
}
