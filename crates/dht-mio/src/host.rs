//! A host: one thread that owns a `mio::Poll` and carries one or more nodes (slots). Slot `i`
//! registers its sockets under the tokens `4i` (IPv4) and `4i + 1` (IPv6), and its discovery
//! sockets, if any, under `4i + 2` and `4i + 3`; the waker has its own.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{JoinHandle, ThreadId};

use dht_driver::Clock;
use mio::{Events, Poll, Token, Waker};

use crate::Error;
use crate::command::Command;
use crate::slot::Slot;

const WAKE: Token = Token(usize::MAX);

/// The handles' side of a host: how to reach its thread.
pub(crate) struct HostCtl {
    pub(crate) registry: mio::Registry,
    pub(crate) tx: Sender<HostMsg>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) clock: Clock,
    pub(crate) next_slot: AtomicU64,
    pub(crate) thread_id: ThreadId,
    /// This host's number in [`ON_HOST`].
    pub(crate) serial: u64,
}

/// Numbers hosts: 0 is none.
static HOST_SERIALS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The host whose thread this is (0 elsewhere): a command it sends itself, from a callback,
    /// needs no wake-up, as its loop reads the command queue before it next waits.
    static ON_HOST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Whether this thread is host `serial`'s own.
pub(crate) fn on_host(serial: u64) -> bool {
    ON_HOST.get() == serial
}

pub(crate) enum HostMsg {
    Add(u64, Box<Slot>),
    Cmd(u64, Box<Command>),
    /// Close the node's sockets and forget it.
    Remove(u64),
    /// The pool is gone: end once no node is left.
    Close,
}

impl HostCtl {
    /// Tells the thread to end once no node is left, and wakes it.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(HostMsg::Close);
        let _ = self.waker.wake();
    }
}

/// Starts a host's thread; `exclusive`: a runner's own, which ends with its node.
pub(crate) fn start_host(exclusive: bool) -> Result<(Arc<HostCtl>, JoinHandle<()>), Error> {
    let poll = Poll::new().map_err(Error::Io)?;
    let registry = poll.registry().try_clone().map_err(Error::Io)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(Error::Io)?);
    let (tx, rx) = mpsc::channel();
    let clock = Clock::new();
    let serial = HOST_SERIALS.fetch_add(1, Ordering::Relaxed);
    let mut host = Host {
        poll,
        rx,
        clock,
        slots: BTreeMap::new(),
        timers: BinaryHeap::new(),
        buf: vec![0u8; dht_proto::wire::MAX_DATAGRAM],
        out: Vec::with_capacity(2048),
        exclusive,
        closed: false,
    };
    let thread = std::thread::Builder::new()
        .name("dht-mio".into())
        .spawn(move || {
            ON_HOST.set(serial);
            host.run()
        })
        .map_err(Error::Io)?;
    let ctl = Arc::new(HostCtl {
        registry,
        tx,
        waker,
        clock,
        next_slot: AtomicU64::new(0),
        thread_id: thread.thread().id(),
        serial,
    });
    Ok((ctl, thread))
}

/// The thread's side of a host.
struct Host {
    poll: Poll,
    rx: Receiver<HostMsg>,
    clock: Clock,
    slots: BTreeMap<u64, Box<Slot>>,
    /// Every node's next deadline, earliest first, and old ones: a node whose deadline moves
    /// leaves its old entry, skipped when it comes up (it is not the slot's `deadline` any
    /// more), so moving a deadline allocates nothing once the heap has grown (a B-tree set
    /// allocated and freed nodes as deadlines came and went). Rebuilt from the slots when
    /// old entries outnumber them.
    timers: BinaryHeap<Reverse<(dht_proto::Instant, u64)>>,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// A runner's own thread: ends with its node.
    exclusive: bool,
    closed: bool,
}

impl Host {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            // Commands this thread's own callbacks sent (without a wake-up) go before it waits.
            self.messages();
            if self.closed && self.slots.is_empty() {
                return;
            }
            let timeout = self.earliest().map(|t| self.clock.until(t));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return;
            }
            // Commands first: one sent before a datagram it should affect is always applied
            // before that datagram (a cancelled listen hears nothing more).
            self.messages();
            for ev in events.iter() {
                let Token(t) = ev.token();
                if ev.token() != WAKE {
                    self.receive(t as u64 / 4, t % 4);
                }
            }
            let now = self.clock.now();
            while let Some(t) = self.earliest() {
                if t > now {
                    break;
                }
                let Some(Reverse((_, id))) = self.timers.pop() else {
                    break;
                };
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.timeout(now);
                }
                self.after(id, now);
            }
        }
    }

    fn messages(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                HostMsg::Add(id, slot) => {
                    self.slots.insert(id, slot);
                    self.after(id, self.clock.now());
                }
                HostMsg::Cmd(id, c) => {
                    let now = self.clock.now();
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.command(now, *c);
                    }
                    self.after(id, now);
                }
                HostMsg::Remove(id) => self.remove(id),
                HostMsg::Close => {
                    self.closed = true;
                }
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if self.exclusive {
            // A runner's own thread ends with its node.
            self.closed = true;
        }
        if let Some(mut slot) = self.slots.remove(&id) {
            // Its deadline's entry is skipped when it comes up.
            let disc = slot.discovery.as_mut();
            let (d4, d6) = match disc {
                Some(d) => (d.sock4.as_mut(), d.sock6.as_mut()),
                None => (None, None),
            };
            for s in [slot.sock4.as_mut(), slot.sock6.as_mut(), d4, d6]
                .into_iter()
                .flatten()
            {
                let _ = self.poll.registry().deregister(s);
            }
            let shared = slot.shared.clone();
            let last = slot.node.stats();
            let last_discovery = slot.discovery.as_ref().map(|d| d.lan.stats());
            drop(slot);
            if let Ok(mut s) = shared.lock() {
                s.stats = last;
                crate::command::publish_discovery(&mut s.discovery, last_discovery);
                s.stopped = true;
                s.removed = true;
            }
        }
    }

    /// Reads every waiting datagram of socket `which` of node `id` (0, 1: DHT IPv4 and IPv6;
    /// 2, 3: discovery IPv4 and IPv6).
    fn receive(&mut self, id: u64, which: usize) {
        loop {
            let Some(slot) = self.slots.get_mut(&id) else {
                return;
            };
            let disc = slot.discovery.as_ref();
            let sock = match which {
                0 => slot.sock4.as_ref(),
                1 => slot.sock6.as_ref(),
                2 => disc.and_then(|d| d.sock4.as_ref()),
                _ => disc.and_then(|d| d.sock6.as_ref()),
            };
            let Some(sock) = sock else { return };
            match sock.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    // Commands that came in meanwhile go first (see `run`).
                    self.messages();
                    let now = self.clock.now();
                    if let (Some(slot), Some(data)) = (self.slots.get_mut(&id), self.buf.get(..len)) {
                        match slot.discovery.as_mut() {
                            Some(d) if which >= 2 => d.lan.datagram(now, from, data),
                            _ => slot.node.handle_datagram(now, from, data),
                        }
                    }
                    self.after(id, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors surface here on some systems: the datagram is lost, carry on.
                Err(_) => {}
            }
        }
    }

    /// After a node's turn at `now`: send, dispatch events, publish its view, rearm its timer;
    /// remove it once it has stopped.
    fn after(&mut self, id: u64, now: dht_proto::Instant) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let stopped = slot.drain(now, &mut self.out);
        let next = slot.next_deadline();
        if slot.deadline != next {
            // The old entry, if any, is skipped when it comes up.
            if let Some(t) = next {
                self.timers.push(Reverse((t, id)));
            }
            slot.deadline = next;
            if self.timers.len() > 4 * self.slots.len() + 64 {
                self.rebuild_timers();
            }
        }
        if stopped {
            self.remove(id);
        }
    }

    /// The earliest current deadline, after dropping the old entries before it.
    fn earliest(&mut self) -> Option<dht_proto::Instant> {
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if self.slots.get(&id).is_some_and(|s| s.deadline == Some(t)) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    /// The heap again from the slots' current deadlines only (in place: its room is kept).
    fn rebuild_timers(&mut self) {
        let mut v = std::mem::take(&mut self.timers).into_vec();
        v.clear();
        v.extend(
            self.slots
                .iter()
                .filter_map(|(id, s)| s.deadline.map(|t| Reverse((t, *id)))),
        );
        self.timers = BinaryHeap::from(v);
    }
}
