//! A listener that prints every change at a key.
//!
//! `cargo run -p dht-smol --example listen -- <host:port> <key>` joins through `host:port` and
//! prints additions and expiries at `key` (any text, hashed) until interrupted.

use dht_proto::InfoHash;
use dht_smol::{Change, Config, Handle};
use smol::stream::StreamExt;

fn main() -> Result<(), dht_smol::Error> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(key)) = (args.next(), args.next()) else {
        eprintln!("usage: listen <host:port> <key>");
        std::process::exit(2);
    };
    smol::block_on(async {
        let node = Handle::start(Config::default()).await?;
        node.bootstrap_host(&addr).await?;
        let mut changes = node.listen(InfoHash::get(&key));
        while let Some(change) = changes.next().await {
            match change? {
                Change::Added(values) => {
                    for v in values {
                        println!("+ {:016x} {}", v.id, String::from_utf8_lossy(&v.data));
                    }
                }
                Change::Expired(values) => {
                    for v in values {
                        println!("- {:016x}", v.id);
                    }
                }
            }
        }
        Ok(())
    })
}
