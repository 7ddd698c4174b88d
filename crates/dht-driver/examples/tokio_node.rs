//! Bring your own runtime: two `dht_proto::Node`s driven straight from tokio, with nothing of
//! dht-mio or dht-smol; `dht-driver` gives the sockets, the clock, the ids and the routing of
//! events, and the loop is the one `docs/runner.md` states:
//!
//! 1. build the core (`Setup`, or `Node::new` and `set_unix_time`);
//! 2. on each input (a datagram: `handle_datagram`; the deadline: `handle_timeout`; a command:
//!    `put`, `get`, ...) feed the core, then drain `poll_transmit` to the socket and
//!    `poll_event` to the callers;
//! 3. wait for the next datagram, no later than `poll_timeout`.
//!
//! `cargo run -p dht-driver --example tokio_node`: node B joins node A on 127.0.0.1, A puts a
//! value, B gets it back; exit code 0 on success, 1 on failure or after 20 seconds.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use dht_driver::{Clock, Config, GetId, Ids, Routed, Routes, Setup};
use dht_proto::value::{Query, Value};
use dht_proto::{Family, InfoHash, Node, PutOptions, PutOutcome, Status};

/// One node on one tokio UDP socket (IPv4 only, to keep it short).
struct Peer {
    node: Node,
    sock: tokio::net::UdpSocket,
    clock: Clock,
    ids: Ids,
    /// A get's sink collects its values; a put's sink is its value id; no listens here.
    routes: Routes<(GetId, Vec<Value>), u64, ()>,
    gets_done: BTreeMap<GetId, Vec<Value>>,
    puts_done: BTreeMap<u64, PutOutcome>,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Peer {
    /// Binds 127.0.0.1 on any port and builds the node; it joins `bootstrap`.
    fn bind(clock: Clock, bootstrap: &[SocketAddr]) -> Result<Peer, String> {
        let config = Config {
            bind4: Some(Ipv4Addr::LOCALHOST),
            bind6: None,
            ..Config::loopback()
        };
        let setup = Setup::bind(config, &clock, bootstrap).map_err(|e| e.to_string())?;
        let std_sock = setup.sockets.v4.ok_or("no IPv4 socket")?;
        // `bind_udp` made it non-blocking, as tokio wants it.
        let sock = tokio::net::UdpSocket::from_std(std_sock).map_err(|e| e.to_string())?;
        let mut peer = Peer {
            node: setup.node,
            sock,
            clock,
            ids: setup.ids,
            routes: Routes::new(),
            gets_done: BTreeMap::new(),
            puts_done: BTreeMap::new(),
            out: Vec::new(),
            buf: vec![0u8; dht_proto::wire::MAX_DATAGRAM],
        };
        // The core may have queued pings to the bootstrap nodes.
        peer.drain();
        Ok(peer)
    }

    fn addr(&self) -> Result<SocketAddr, String> {
        self.sock.local_addr().map_err(|e| e.to_string())
    }

    fn connected(&self) -> bool {
        self.node.status(Family::V4) == Status::Connected
    }

    /// Waits for one input (a datagram, or the core's deadline), feeds it to the core, drains.
    /// Cancel-safe: it awaits only before touching the core.
    async fn turn(&mut self) {
        let deadline = self
            .node
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(self.clock.std_instant(t)));
        let timer = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = self.sock.recv_from(&mut self.buf) => {
                // An error (e.g. ICMP for an earlier datagram) loses that datagram only.
                if let Ok((len, from)) = received
                    && let Some(data) = self.buf.get(..len)
                {
                    self.node.handle_datagram(self.clock.now(), from, data);
                }
            }
            () = timer => {}
        }
        let now = self.clock.now();
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.drain();
    }

    /// After every input and command: send what the core queued, hand its events to callers.
    fn drain(&mut self) {
        let now = self.clock.now();
        while let Some(t) = self.node.poll_transmit(now, &mut self.out) {
            if let Some(data) = self.out.get(..t.len) {
                // A full socket buffer drops the datagram, as a network would; the core retries.
                let _ = self.sock.try_send_to(data, t.destination);
            }
        }
        while let Some(event) = self.node.poll_event() {
            match self.routes.route(event) {
                Routed::Values { sink, values, .. } => sink.1.extend(values),
                Routed::GetDone {
                    sink: (id, values), ..
                } => {
                    self.gets_done.insert(id, values);
                }
                Routed::PutDone { sink: vid, outcome } => {
                    self.puts_done.insert(vid, outcome);
                }
                Routed::ListenAdded { .. } | Routed::ListenExpired { .. } | Routed::Unrouted(_) => {}
            }
        }
    }

    /// A command: put `value` at `key`; its value id.
    fn put(&mut self, key: InfoHash, mut value: Value) -> Result<u64, String> {
        let vid = self.ids.fill_value_id(&mut value);
        let put = self
            .node
            .put(self.clock.now(), key, value, PutOptions::default())
            .map_err(|e| e.to_string())?;
        self.routes.add_put(put.op, vid);
        self.drain();
        Ok(vid)
    }

    /// A command: get every value at `key`.
    fn get(&mut self, key: InfoHash) -> Result<GetId, String> {
        let id = self.ids.get_id();
        let op = self
            .node
            .get(self.clock.now(), key, Query::default())
            .map_err(|e| e.to_string())?;
        self.routes.add_get(id, op, (id, Vec::new()));
        self.drain();
        Ok(id)
    }
}

/// Turns both nodes until `done` holds.
async fn run_until(a: &mut Peer, b: &mut Peer, done: impl Fn(&Peer, &Peer) -> bool) {
    while !done(a, b) {
        tokio::select! {
            () = a.turn() => {}
            () = b.turn() => {}
        }
    }
}

/// B joins A; A puts a value; B gets it. The value B got.
pub(crate) async fn put_then_get() -> Result<Vec<u8>, String> {
    let clock = Clock::new();
    let mut a = Peer::bind(clock, &[])?;
    let mut b = Peer::bind(clock, &[a.addr()?])?;
    run_until(&mut a, &mut b, |a, b| a.connected() && b.connected()).await;

    let key = InfoHash::get("tokio_node example");
    let vid = a.put(key, Value::new(0, b"hello from tokio".to_vec()))?;
    run_until(&mut a, &mut b, |a, _| a.puts_done.contains_key(&vid)).await;
    let acked = a.puts_done.get(&vid).map(|o| o.total_acked()).unwrap_or(0);
    if acked == 0 {
        return Err("no node stored the value".into());
    }

    let id = b.get(key)?;
    run_until(&mut a, &mut b, |_, b| b.gets_done.contains_key(&id)).await;
    let values = b.gets_done.remove(&id).unwrap_or_default();
    match values.into_iter().find(|v| v.id == vid) {
        Some(v) => Ok(v.data),
        None => Err("the get ended without the value".into()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match tokio::time::timeout(Duration::from_secs(20), put_then_get()).await {
        Ok(Ok(data)) => {
            println!("got {:?}", String::from_utf8_lossy(&data));
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("failed: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("failed: no result within 20 s");
            ExitCode::FAILURE
        }
    }
}
