//! Complete gets through the async driver (issue 20): a get's end tells how many of the closest
//! nodes answered, and the uplink rate of the driver's config paces a node's replies. A module
//! of `node.rs`, on its fixtures.

use std::time::{Duration, Instant};

use dht_proto::value::{Query, Value};
use dht_proto::{ExportedValue, InfoHash};
use dht_smol::{Config, GetSummary, Handle};
use smol::stream::StreamExt;

use super::{WAIT, bounded, network};

#[test]
fn a_get_tells_how_many_of_the_closest_nodes_answered() {
    smol::block_on(async {
        let net = network(6).await;
        let key = InfoHash::get("summary");
        bounded("put", net[2].put(key, Value::new(0, b"here".to_vec())))
            .await
            .unwrap();
        for n in &net {
            let (values, summary) = bounded("get", n.get_all_with_summary(key, Query::default()))
                .await
                .unwrap();
            assert_eq!(values.len(), 1);
            assert_eq!(values[0].data, b"here");
            assert!(summary.ok, "{summary:?}");
            assert!(summary.answered >= 1, "{summary:?}");
            assert!(
                summary.answered <= summary.asked && summary.asked <= 10,
                "{summary:?}"
            );
        }
        // The stream form: no summary before the end, then the summary, and `outcome` as before.
        let mut get = net[5].get(key);
        assert_eq!(get.summary(), None);
        let got: Vec<Value> = bounded("stream", async {
            let mut got = Vec::new();
            while let Some(v) = get.next().await {
                got.push(v);
            }
            got
        })
        .await;
        assert_eq!(got.len(), 1);
        let summary = get.summary().unwrap();
        assert!(summary.ok && summary.answered >= 1, "{summary:?}");
        assert!(matches!(get.outcome(), Some(Ok(true))));
        for n in &net {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_lone_node_s_get_asked_no_one_and_a_closed_node_s_get_has_no_summary() {
    smol::block_on(async {
        let lone = Handle::start(Config::loopback()).await.unwrap();
        let (values, summary) = bounded(
            "lone get",
            lone.get_all_with_summary(InfoHash::get("nobody"), Query::default()),
        )
        .await
        .unwrap();
        assert!(values.is_empty());
        assert_eq!(
            summary,
            GetSummary {
                ok: false,
                answered: 0,
                asked: 0
            }
        );
        lone.shutdown().await;
        let mut get = lone.get(InfoHash::get("after"));
        assert!(bounded("closed get", get.next()).await.is_none());
        assert_eq!(get.summary(), None);
        assert!(matches!(get.outcome(), Some(Err(dht_smol::Error::Closed))));
        assert!(
            lone.get_all_with_summary(InfoHash::get("after"), Query::default())
                .await
                .is_err()
        );
    });
}

/// Bytes per second of the slow node's uplink, and the value it serves.
const RATE: u64 = 32_000;
const SIZE: usize = 60_000;

#[test]
fn the_uplink_rate_of_the_config_paces_a_large_reply() {
    smol::block_on(async {
        let mut slow = Config::loopback().with_uplink_rate(Some(RATE));
        // The value stays on the slow node only: no re-replication to the asker.
        slow.node.replicate = false;
        let a = Handle::start(slow).await.unwrap();
        assert_eq!(
            a.inspect(|n| n.config().uplink_bytes_per_sec).await.unwrap(),
            Some(RATE)
        );
        let b = Handle::start(Config::loopback()).await.unwrap();
        b.bootstrap_addr(a.local_addrs()[0]).unwrap();
        b.wait_connected(WAIT).await.unwrap();
        a.wait_connected(WAIT).await.unwrap();
        let key = InfoHash::get("large");
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 247) as u8).collect();
        a.import_values(vec![ExportedValue {
            key,
            value: Value::new(7, data.clone()),
            remaining: None,
        }])
        .await
        .unwrap();
        let started = Instant::now();
        let (values, summary) = bounded("paced get", b.get_all_with_summary(key, Query::default()))
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].data, data);
        assert!(summary.ok && summary.answered >= 1, "{summary:?}");
        // 60 KB at 32 KB/s: about 1.9 s per reply (unpaced, loopback takes milliseconds).
        let paced = Duration::from_millis(SIZE as u64 * 1000 / RATE / 2);
        assert!(took >= paced, "took {took:?}, less than {paced:?}: not paced");
        a.shutdown().await;
        b.shutdown().await;
    });
}
