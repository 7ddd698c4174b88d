//! A node that joins a network, puts a value and gets it back.
//!
//! `cargo run -p dht-smol --example put_get -- [host:port]`: without an address it starts a second
//! local node to join, so it runs on its own.

use dht_proto::InfoHash;
use dht_proto::value::Value;
use dht_smol::{Config, Handle};
use smol::stream::StreamExt;

fn main() -> Result<(), dht_smol::Error> {
    smol::block_on(async {
        let node = Handle::start(Config::loopback()).await?;
        let _peer = match std::env::args().nth(1) {
            Some(addr) => {
                node.bootstrap_host(&addr).await?;
                None
            }
            None => {
                let peer = Handle::start(Config::loopback()).await?;
                for addr in peer.local_addrs() {
                    node.bootstrap_addr(addr)?;
                }
                Some(peer)
            }
        };
        node.wait_connected(std::time::Duration::from_secs(10)).await?;
        let key = InfoHash::get("dht-smol example");
        let stored = node
            .put(key, Value::new(0, b"hello from dht-smol".to_vec()))
            .await?;
        println!(
            "stored on {} nodes as {:016x}",
            stored.outcome.total_acked(),
            stored.vid
        );
        let mut values = node.get(key);
        while let Some(v) = values.next().await {
            println!("got {:016x}: {}", v.id, String::from_utf8_lossy(&v.data));
        }
        node.shutdown().await;
        Ok(())
    })
}
