//! One node on a host: its sockets, its core, and the callbacks of its operations; how it applies
//! a command, and how it drains the core after each input.

use std::sync::{Arc, Mutex};

use dht_driver::{LanDiscovery, Routed, Routes};
use dht_proto::{Event, Family, Node, PerFamily};
use mio::net::UdpSocket;

use crate::command::{Change, Command, DoneCb, ListenCb, PutCb, Shared, ValuesCb};

/// A node's LAN discovery: its sockets on port 8888 and the shared logic.
pub(crate) struct SlotDiscovery {
    pub(crate) sock4: Option<UdpSocket>,
    pub(crate) sock6: Option<UdpSocket>,
    pub(crate) lan: LanDiscovery,
}

/// One node on a host.
pub(crate) struct Slot {
    pub(crate) sock4: Option<UdpSocket>,
    pub(crate) sock6: Option<UdpSocket>,
    pub(crate) node: Node,
    pub(crate) shared: Arc<Mutex<Shared>>,
    /// Where each get's values and end, each put's outcome and each listen's changes go.
    routes: Routes<(ValuesCb, DoneCb), PutCb, ListenCb>,
    shutting_down: bool,
    pub(crate) deadline: Option<dht_proto::Instant>,
    /// When the counters were last published.
    published: Option<dht_proto::Instant>,
    /// LAN peer discovery, when configured (boxed: 432 bytes that most nodes, discovery off,
    /// would carry for nothing).
    pub(crate) discovery: Option<Box<SlotDiscovery>>,
}

impl Slot {
    pub(crate) fn new(
        sock4: Option<UdpSocket>,
        sock6: Option<UdpSocket>,
        node: Node,
        shared: Arc<Mutex<Shared>>,
        discovery: Option<Box<SlotDiscovery>>,
    ) -> Slot {
        Slot {
            sock4,
            sock6,
            node,
            shared,
            routes: Routes::new(),
            shutting_down: false,
            deadline: None,
            published: None,
            discovery,
        }
    }

    /// The earliest of the node's and discovery's deadlines.
    pub(crate) fn next_deadline(&self) -> Option<dht_proto::Instant> {
        let d = self.discovery.as_ref().and_then(|d| d.lan.poll_timeout());
        match (self.node.poll_timeout(), d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A due timer: the node's turn, then the callback tables give back what they no longer use
    /// (as the node does on its ticks).
    pub(crate) fn timeout(&mut self, now: dht_proto::Instant) {
        self.deadline = None;
        // The deadline may have been discovery's (its turn comes in `drain`).
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.routes.compact();
    }

    pub(crate) fn command(&mut self, now: dht_proto::Instant, c: Command) {
        match c {
            Command::Bootstrap(addr) => self.node.bootstrap(now, addr),
            Command::Get {
                id,
                key,
                query,
                on_values,
                on_done,
            } => match self.node.get(now, key, query) {
                Ok(op) => self.routes.add_get(id, op, (on_values, on_done)),
                Err(e) => on_done(Err(e.into())),
            },
            Command::CancelGet(id) => {
                if let Some(op) = self.routes.cancel_get(id) {
                    let _ = self.node.cancel_get(now, op);
                }
            }
            Command::Put {
                key,
                value,
                opts,
                mode,
                on_done,
            } => match mode.put(&mut self.node, now, key, value, opts) {
                Ok(h) => self.routes.add_put(h.op, on_done),
                Err(e) => on_done(Err(e.into())),
            },
            Command::CancelPut(key, vid) => {
                let _ = self.node.cancel_put(now, key, vid);
            }
            Command::Listen {
                id,
                key,
                query,
                mut on_change,
            } => match self.node.listen(now, key, query) {
                Ok(t) => self.routes.add_listen(id, t, on_change),
                Err(e) => on_change(Change::Failed(e.into())),
            },
            Command::CancelListen(id) => {
                if let Some(t) = self.routes.cancel_listen(id) {
                    let _ = self.node.cancel_listen(now, t);
                }
            }
            Command::With(f) => f(&mut self.node, now),
            Command::Shutdown => {
                self.shutting_down = true;
                self.node.shutdown(now);
            }
        }
    }

    /// Sends what the node has queued, dispatches its events and publishes its view; whether
    /// the node has stopped (read under the same lock).
    pub(crate) fn drain(&mut self, now: dht_proto::Instant, out: &mut Vec<u8>) -> bool {
        if let Some(d) = self.discovery.as_mut() {
            d.lan.tick(now, &self.node);
            let (s4, s6) = (&d.sock4, &d.sock6);
            let pick = |f: Family| if f == Family::V4 { s4.as_ref() } else { s6.as_ref() };
            d.lan.flush(
                now,
                &mut self.node,
                |f, data, to| {
                    if let Some(s) = pick(f) {
                        let _ = s.send_to(data, to);
                    }
                },
                |f| {
                    if let Some(s) = pick(f) {
                        rejoin(s, f);
                    }
                },
            );
        }
        while let Some(t) = self.node.poll_transmit(now, out) {
            let sock = if t.destination.is_ipv4() {
                self.sock4.as_ref()
            } else {
                self.sock6.as_ref()
            };
            if let (Some(s), Some(data)) = (sock, out.get(..t.len)) {
                // A full socket buffer drops the datagram, as a network would; the node retries.
                let _ = s.send_to(data, t.destination);
            }
        }
        while let Some(e) = self.node.poll_event() {
            self.dispatch(e);
        }
        // Counters cost a walk of the tables: publish them at most every 20 ms (and at the end);
        // `Handle::stats` asks the node itself when it can.
        let publish = self.shutting_down
            || self
                .published
                .is_none_or(|t| now.as_micros().saturating_sub(t.as_micros()) >= 20_000);
        let Ok(mut s) = self.shared.lock() else {
            return true;
        };
        if publish {
            s.stats = self.node.stats();
            crate::command::publish_discovery(
                &mut s.discovery,
                self.discovery.as_ref().map(|d| d.lan.stats()),
            );
            self.published = Some(now);
        }
        s.status = PerFamily::new(
            Some(self.node.status(Family::V4)),
            Some(self.node.status(Family::V6)),
        );
        s.stopped
    }

    fn dispatch(&mut self, e: Event) {
        match self.routes.route(e) {
            Routed::Values { sink, values, .. } => (sink.0)(&values),
            Routed::GetDone { sink, summary } => (sink.1)(Ok(summary)),
            Routed::PutDone { sink, outcome } => sink(Ok(outcome)),
            Routed::ListenAdded { sink, values } => sink(Change::Added(&values)),
            Routed::ListenExpired { sink, values } => sink(Change::Expired(&values)),
            Routed::Unrouted(Event::StatusChanged { family, status }) => {
                tracing::info!(?family, ?status, "connectivity changed");
            }
            Routed::Unrouted(Event::PublicAddressChanged { family, addr }) => {
                tracing::info!(?family, %addr, "public address");
            }
            Routed::Unrouted(Event::ShutdownComplete) => {
                tracing::debug!("shutdown complete");
                if self.shutting_down
                    && let Ok(mut s) = self.shared.lock()
                {
                    s.stopped = true;
                }
            }
            Routed::Unrouted(_) => {}
        }
    }
}

/// Leaves and joins `family`'s group on a mio socket.
fn rejoin(s: &UdpSocket, family: Family) {
    use dht_proto::discovery::{GROUP_V4, GROUP_V6};
    use std::net::Ipv4Addr;
    let _ = match family {
        Family::V4 => s.leave_multicast_v4(&GROUP_V4, &Ipv4Addr::UNSPECIFIED),
        Family::V6 => s.leave_multicast_v6(&GROUP_V6, 0),
    };
    let _ = match family {
        Family::V4 => s.join_multicast_v4(&GROUP_V4, &Ipv4Addr::UNSPECIFIED),
        Family::V6 => s.join_multicast_v6(&GROUP_V6, 0),
    };
}
