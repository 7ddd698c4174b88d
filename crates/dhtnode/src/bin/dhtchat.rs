//! `dhtchat`: chat in a channel over the DHT, as OpenDHT's example of the same name.
//!
//! Every line read from stdin is put at the channel's key; a listen on that key prints what
//! others say. `dhtchat -b host:port lobby` joins channel `lobby` through a node of the network.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use dht_mio::{Change, Config, Runner};
use dht_proto::value::{Query, Value};
use dht_proto::{InfoHash, PutOptions};

/// Chat through a DHT channel.
#[derive(Debug, Parser)]
#[command(name = "dhtchat", version)]
struct Options {
    /// The channel to join (any text).
    channel: String,
    /// A node of the network to join (`host[:port]`); may repeat.
    #[arg(short = 'b', long = "bootstrap")]
    bootstrap: Vec<String>,
    /// UDP port (0: any).
    #[arg(short = 'p', long, default_value_t = 0)]
    port: u16,
    /// Network id.
    #[arg(short = 'n', long = "network", default_value_t = 0)]
    network: u32,
    /// The name shown with your messages (default: the start of the node id).
    #[arg(long)]
    nick: Option<String>,
    /// IPv4 address to bind.
    #[arg(long = "bind4", default_value_t = Ipv4Addr::UNSPECIFIED)]
    bind4: Ipv4Addr,
    /// IPv6 address to bind.
    #[arg(long = "bind6", default_value_t = Ipv6Addr::UNSPECIFIED)]
    bind6: Ipv6Addr,
}

fn main() -> ExitCode {
    let opts = Options::parse();
    let mut node = dht_proto::Config::default();
    node.network = opts.network;
    let runner = match Runner::run(Config {
        port: opts.port,
        bind4: Some(opts.bind4),
        bind6: Some(opts.bind6),
        node,
        seed: None,
        bootstrap: opts.bootstrap.clone(),
        discovery: None,
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dhtchat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nick = opts
        .nick
        .clone()
        .unwrap_or_else(|| runner.node_id().to_string().chars().take(8).collect());
    let key = InfoHash::get(format!("dhtchat:{}", opts.channel));
    // Our own messages, by value id, so the listen does not echo them.
    let mine: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let seen = mine.clone();
    let listening = runner.listen(key, Query::default(), move |c| match c {
        Change::Added(values) => {
            let own = seen.lock().map(|s| s.clone()).unwrap_or_default();
            for v in values.iter().filter(|v| !own.contains(&v.id)) {
                println!("{}", String::from_utf8_lossy(&v.data));
            }
        }
        Change::Expired(_) => {}
        Change::Failed(e) => eprintln!("dhtchat: listen failed: {e}"),
    });
    if let Err(e) = listening {
        eprintln!("dhtchat: {e}");
        return ExitCode::FAILURE;
    }
    println!("joined #{} as {nick} (node {})", opts.channel, runner.node_id());
    let interactive = std::io::stdin().is_terminal();
    for (n, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let Ok(bytes) = line else { break };
        // A message that is not UTF-8 is not sent, but the chat goes on (as dhtnode does).
        let Ok(line) = String::from_utf8(bytes) else {
            eprintln!("dhtchat: line {} is not UTF-8, not sent", n + 1);
            continue;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // The id is ours, and known before the put: the listen may report the value before
        // `put` returns, and must recognise it as ours.
        let vid = rand_core::RngCore::next_u64(&mut rand_core::OsRng).max(1);
        if let Ok(mut m) = mine.lock() {
            m.insert(vid);
        }
        let value = Value::new(vid, format!("<{nick}> {line}").into_bytes());
        let sent = runner.put(key, value, PutOptions::default(), move |r| {
            if let Err(e) = r {
                eprintln!("dhtchat: not sent: {e}");
            }
        });
        if let Err(e) = sent {
            eprintln!("dhtchat: {e}");
        }
        if interactive {
            println!("<{nick}> {line}");
        }
    }
    let _ = runner.shutdown(Duration::from_secs(5));
    ExitCode::SUCCESS
}
