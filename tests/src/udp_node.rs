//! A minimal real-socket driver for tests against real OpenDHT nodes (the real drivers come with
//! `dht-mio` and `dht-smol`): one IPv4 UDP socket on loopback, the wall clock mapped to
//! `dht_proto::Instant`.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use dht_proto::{Config, Event, Instant, Node};

/// A node on a loopback UDP socket.
pub struct UdpNode {
    /// The state machine.
    pub node: Node,
    /// Everything it reported.
    pub events: Vec<Event>,
    /// Its address.
    pub addr: SocketAddr,
    sock: UdpSocket,
    origin: std::time::Instant,
}

impl UdpNode {
    /// Binds `127.0.0.1:0`, default config.
    pub fn new(seed: u8) -> UdpNode {
        UdpNode::with_config(seed, Config::default())
    }

    /// Binds `127.0.0.1:0`.
    pub fn with_config(seed: u8, config: Config) -> UdpNode {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        UdpNode {
            node: Node::new(config, [seed; 32], Instant::ZERO),
            events: Vec::new(),
            addr,
            sock,
            origin: std::time::Instant::now(),
        }
    }

    /// The node's clock.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// Receives what is waiting (up to a couple of milliseconds), fires due timers, sends.
    pub fn turn(&mut self) {
        let mut buf = vec![0u8; 65536];
        while let Ok((len, from)) = self.sock.recv_from(&mut buf) {
            let now = self.now();
            self.node.handle_datagram(now, from, &buf[..len]);
            self.flush();
        }
        let now = self.now();
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.flush();
    }

    /// Sends the node's transmits and collects its events.
    pub fn flush(&mut self) {
        let mut buf = Vec::new();
        let now = self.now();
        while let Some(t) = self.node.poll_transmit(now, &mut buf) {
            let _ = self.sock.send_to(&buf[..t.len], t.destination);
        }
        while let Some(e) = self.node.poll_event() {
            self.events.push(e);
        }
    }

    /// Runs `f` on the node now, then flushes.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now();
        let r = f(&mut self.node, now);
        self.flush();
        r
    }
}

/// Turns every node until `cond` holds or `deadline` passes; returns whether it held.
pub fn drive(
    nodes: &mut [&mut UdpNode],
    deadline: Duration,
    mut cond: impl FnMut(&[&mut UdpNode]) -> bool,
) -> bool {
    let end = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < end {
        for n in nodes.iter_mut() {
            n.turn();
        }
        if cond(nodes) {
            return true;
        }
    }
    cond(nodes)
}
