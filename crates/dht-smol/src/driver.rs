//! The [`Driver`]: the future that owns the core and its sockets and runs the loop.

use std::future::Future;
use std::io;
use std::net::UdpSocket;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use dht_driver::{Clock, LanDiscovery, Routed, Routes, discovery_rejoin};
use dht_proto::{Event, Family, Status};
use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::{Async, Timer};

use crate::command::{Command, GetMsg, GetSink, ListenSink, PutSink};
use crate::handle::Inner;
use crate::{Change, Error};

/// The task that runs a node: spawn it on an executor that polls smol's reactor. It ends when the
/// node has shut down (or when every handle and stream is gone).
pub struct Driver(pub(crate) Pin<Box<dyn Future<Output = ()> + Send>>);

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

pub(crate) fn status_code(s: Status) -> u64 {
    match s {
        Status::Disconnected => 0,
        Status::Connecting => 1,
        Status::Connected => 2,
    }
}

/// The driver's state: the node, its sockets, and where each operation's results go.
pub(crate) struct Core {
    pub(crate) node: dht_proto::Node,
    pub(crate) clock: Clock,
    pub(crate) sock4: Option<Async<UdpSocket>>,
    pub(crate) sock6: Option<Async<UdpSocket>>,
    pub(crate) rx: Receiver<Box<Command>>,
    pub(crate) inner: std::sync::Weak<Inner>,
    pub(crate) routes: Routes<GetSink, PutSink, ListenSink>,
    pub(crate) shutdown: Vec<smol::channel::Sender<()>>,
    pub(crate) shutting_down: bool,
    pub(crate) out: Vec<u8>,
    /// LAN discovery's sockets (port 8888) and logic, when configured.
    pub(crate) disc4: Option<Async<UdpSocket>>,
    pub(crate) disc6: Option<Async<UdpSocket>>,
    pub(crate) lan: Option<LanDiscovery>,
}

enum Wake {
    Command(Option<Box<Command>>),
    Readable,
    Timer,
}

async fn readable(s: &Option<Async<UdpSocket>>) -> Wake {
    match s {
        Some(s) => {
            let _ = s.readable().await;
            Wake::Readable
        }
        None => smol::future::pending().await,
    }
}

impl Core {
    pub(crate) async fn run(mut self) {
        self.drain();
        loop {
            let disc_deadline = self.lan.as_ref().and_then(|l| l.poll_timeout());
            let deadline = match (self.node.poll_timeout(), disc_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(|t| self.clock.std_instant(t));
            let wake = {
                let rx = &self.rx;
                let cmd = async { Wake::Command(rx.recv().await.ok()) };
                let timer = async {
                    match deadline {
                        Some(t) => {
                            Timer::at(t).await;
                            Wake::Timer
                        }
                        None => smol::future::pending().await,
                    }
                };
                cmd.or(readable(&self.sock4))
                    .or(readable(&self.sock6))
                    .or(readable(&self.disc4))
                    .or(readable(&self.disc6))
                    .or(timer)
                    .await
            };
            match wake {
                Wake::Command(None) => return,
                Wake::Command(Some(c)) => self.command(*c),
                Wake::Readable | Wake::Timer => {}
            }
            // Commands first (one sent before a datagram it should affect is applied before it).
            if !self.commands() {
                return;
            }
            self.drain();
            if !self.receive() {
                return;
            }
            let now = self.clock.now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                // The tables give back what they no longer use, as the node does on its ticks.
                self.routes.compact();
            }
            self.drain();
            if self.shutting_down && self.shutdown.is_empty() {
                // Shutdown complete: end the driver.
                return;
            }
        }
    }

    /// Applies every waiting command; false once the channel is closed and empty.
    fn commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(c) => self.command(*c),
                Err(smol::channel::TryRecvError::Empty) => return true,
                Err(smol::channel::TryRecvError::Closed) => return false,
            }
        }
    }

    /// Reads every waiting datagram of both sockets, into the executor thread's buffer (shared
    /// by every node driven on that thread: nothing awaits while it is borrowed).
    fn receive(&mut self) -> bool {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; dht_proto::wire::MAX_DATAGRAM]);
        }
        BUF.with(|b| match b.try_borrow_mut() {
            Ok(mut buf) => self.receive_into(&mut buf),
            // Only if a node's driver were polled from inside another's turn: use a buffer of its own.
            Err(_) => self.receive_into(&mut vec![0u8; dht_proto::wire::MAX_DATAGRAM]),
        })
    }

    fn receive_into(&mut self, buf: &mut [u8]) -> bool {
        for which in 0..4 {
            loop {
                let sock = match which {
                    0 => &self.sock4,
                    1 => &self.sock6,
                    2 => &self.disc4,
                    _ => &self.disc6,
                };
                let Some(sock) = sock else { break };
                match sock.get_ref().recv_from(buf) {
                    Ok((len, from)) => {
                        if !self.commands() {
                            return false;
                        }
                        let now = self.clock.now();
                        if let Some(data) = buf.get(..len) {
                            match self.lan.as_mut() {
                                Some(lan) if which >= 2 => lan.datagram(now, from, data),
                                _ => self.node.handle_datagram(now, from, data),
                            }
                        }
                        self.drain();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // ICMP errors surface here on some systems: that datagram is lost.
                    Err(_) => {}
                }
            }
        }
        true
    }

    fn command(&mut self, c: Command) {
        let now = self.clock.now();
        match c {
            Command::Bootstrap(addr) => self.node.bootstrap(now, addr),
            Command::Get(id, key, query, tx) => match self.node.get(now, key, query) {
                Ok(op) => self.routes.add_get(id, op, tx),
                Err(e) => {
                    let _ = tx.try_send(GetMsg::Done(Err(e.into())));
                }
            },
            Command::CancelGet(id) => {
                if let Some(op) = self.routes.cancel_get(id) {
                    let _ = self.node.cancel_get(now, op);
                }
            }
            Command::Put(key, value, opts, mode, tx) => match mode.put(&mut self.node, now, key, value, opts)
            {
                Ok(h) => self.routes.add_put(h.op, tx),
                Err(e) => {
                    let _ = tx.try_send(Err(e.into()));
                }
            },
            Command::CancelPut(key, vid) => {
                let _ = self.node.cancel_put(now, key, vid);
            }
            Command::Listen(id, key, query, tx) => match self.node.listen(now, key, query) {
                Ok(t) => self.routes.add_listen(id, t, tx),
                Err(e) => {
                    let _ = tx.try_send(Err(Error::from(e)));
                }
            },
            Command::CancelListen(id) => {
                if let Some(t) = self.routes.cancel_listen(id) {
                    let _ = self.node.cancel_listen(now, t);
                }
            }
            Command::With(f) => f(&mut self.node, now),
            Command::Shutdown(tx) => {
                self.shutdown.push(tx);
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.node.shutdown(now);
                }
            }
        }
    }

    /// Sends what the node has queued, dispatches its events, publishes its status.
    fn drain(&mut self) {
        let now = self.clock.now();
        if let Some(lan) = self.lan.as_mut() {
            lan.tick(now, &self.node);
            let (d4, d6) = (&self.disc4, &self.disc6);
            let pick = |f: Family| if f == Family::V4 { d4.as_ref() } else { d6.as_ref() };
            lan.flush(
                now,
                &mut self.node,
                |f, data, to| {
                    if let Some(s) = pick(f) {
                        let _ = s.get_ref().send_to(data, to);
                    }
                },
                |f| {
                    if let Some(s) = pick(f) {
                        discovery_rejoin(s.get_ref(), f);
                    }
                },
            );
        }
        while let Some(t) = self.node.poll_transmit(now, &mut self.out) {
            let sock = if t.destination.is_ipv4() {
                &self.sock4
            } else {
                &self.sock6
            };
            if let (Some(s), Some(data)) = (sock, self.out.get(..t.len)) {
                // Non-blocking: a full socket buffer drops the datagram, as a network would.
                let _ = s.get_ref().send_to(data, t.destination);
            }
        }
        while let Some(e) = self.node.poll_event() {
            self.dispatch(e);
        }
        if let Some(inner) = self.inner.upgrade() {
            for (f, s) in inner.status.pairs() {
                s.store(status_code(self.node.status(f)), Ordering::Relaxed);
            }
            if let (Some(lan), Ok(mut d)) = (self.lan.as_ref(), inner.discovery.lock()) {
                *d = Some(lan.stats());
            }
        }
    }

    fn dispatch(&mut self, e: Event) {
        match self.routes.route(e) {
            Routed::Values { op, sink, values } => {
                if sink.try_send(GetMsg::Values(values)).is_err() {
                    // The stream is gone without its cancel having arrived yet.
                    self.routes.remove_get(op);
                    let _ = self.node.cancel_get(self.clock.now(), op);
                }
            }
            Routed::GetDone { sink, summary } => {
                let _ = sink.try_send(GetMsg::Done(Ok(summary)));
            }
            Routed::PutDone { sink, outcome } => {
                let _ = sink.try_send(Ok(outcome));
            }
            Routed::ListenAdded { sink, values } => {
                let _ = sink.try_send(Ok(Change::Added(values)));
            }
            Routed::ListenExpired { sink, values } => {
                let _ = sink.try_send(Ok(Change::Expired(values)));
            }
            Routed::Unrouted(Event::StatusChanged { family, status }) => {
                tracing::info!(?family, ?status, "connectivity changed");
            }
            Routed::Unrouted(Event::ShutdownComplete) => {
                for tx in self.shutdown.drain(..) {
                    let _ = tx.try_send(());
                }
            }
            Routed::Unrouted(_) => {}
        }
    }
}
