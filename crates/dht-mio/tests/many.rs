//! 2,000 runners in one process (OpenDHT's runner aborts near 330, where `select` runs out of
//! descriptors): they join one network and serve puts and gets.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test fixtures

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dht_mio::{Config, Pool, Runner};
use dht_proto::InfoHash;
use dht_proto::value::Value;

const RUNNERS: usize = 2000;

fn swarm(start: impl Fn(Config) -> Runner) {
    let config = Config {
        bind4: Some(Ipv4Addr::LOCALHOST),
        bind6: None,
        ..Config::loopback()
    };
    let started = Instant::now();
    let mut runners: Vec<Runner> = Vec::with_capacity(RUNNERS);
    for i in 0..RUNNERS {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let r = start(Config {
            seed: Some(seed),
            ..config.clone()
        });
        // Each joins through an earlier one (a tree, so no islands).
        if i > 0 {
            r.bootstrap_addr(runners[(i.wrapping_mul(2_654_435_761) >> 5) % i].local_addrs()[0])
                .unwrap();
        }
        runners.push(r);
    }
    let deadline = Duration::from_secs(240);
    for (i, r) in runners.iter().enumerate().skip(1) {
        let left = deadline.saturating_sub(started.elapsed());
        assert!(r.wait_connected(left), "runner {i} did not connect");
    }
    eprintln!("{RUNNERS} runners connected in {:?}", started.elapsed());
    // Connected is not settled: 2,000 bootstrap lookups still run on one thread in the pool
    // case, and a reply queued behind them past the retransmission timeouts makes a lookup
    // give up the closest nodes (a put and a get can then settle on different sets). The puts
    // and gets start once the joins' lookups have ended, within a bound.
    let settle = Instant::now();
    let searching = |rs: &[Runner]| rs.iter().map(|r| r.handle().stats().searches).sum::<usize>();
    while searching(&runners) > 0 && settle.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "lookups settled ({} searches left) at {:?}",
        searching(&runners),
        started.elapsed()
    );
    let wait = Duration::from_secs(30);
    for k in 0..10usize {
        let key = InfoHash::get(format!("many {k}"));
        let from = &runners[(k * 397) % RUNNERS];
        let outcome = from
            .put_blocking(key, Value::new(0, format!("v{k}").into_bytes()), wait)
            .unwrap();
        assert!(outcome.total_acked() >= 1, "{outcome:?}");
        let to = &runners[(k * 1009 + 13) % RUNNERS];
        let got = to.get_blocking(key, wait).unwrap();
        assert!(
            got.iter().any(|v| v.data == format!("v{k}").into_bytes()),
            "key {k}: put {outcome:?}, get found {} values",
            got.len()
        );
    }
    eprintln!("puts and gets done at {:?}", started.elapsed());
    let handles: Vec<_> = runners
        .into_iter()
        .map(|r| std::thread::spawn(move || r.shutdown(Duration::from_secs(5))))
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}

#[test]
fn two_thousand_runners_each_on_its_own_thread() {
    swarm(|c| Runner::run(c).unwrap());
}

#[test]
fn two_thousand_nodes_on_one_pool_thread() {
    let pool = Pool::new().unwrap();
    swarm(|c| pool.run(c).unwrap());
}
