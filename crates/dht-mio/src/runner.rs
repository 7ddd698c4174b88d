//! Starting and stopping nodes: a [`Runner`] with a thread of its own, or many on a [`Pool`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dht_driver::Setup;
use mio::net::UdpSocket;
use mio::{Interest, Token};

use crate::command::Shared;
use crate::host::{HostCtl, HostMsg, start_host};
use crate::slot::Slot;
use crate::{Config, Error, Handle};

/// A running node: its thread, sockets and node. Derefs to [`Handle`] for every command.
/// Dropping it stops the node at once; [`Runner::shutdown`] lets pending puts finish first.
pub struct Runner {
    handle: Handle,
    /// Its own thread (none on a pool).
    thread: Option<JoinHandle<()>>,
}

impl std::ops::Deref for Runner {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("addrs", &self.handle.addrs)
            .finish_non_exhaustive()
    }
}

/// Many runners on one thread: for processes that run hundreds or thousands of nodes (tests,
/// benchmarks, swarms), where a thread per node costs memory and context switches. Every
/// runner of a pool shares its thread, so a callback of one delays the others, and waiting calls
/// from a callback to any runner of the pool return [`Error::OnRunnerThread`].
///
/// ```
/// use std::time::Duration;
/// use dht_mio::{Config, Pool};
/// use dht_proto::{InfoHash, value::Value};
///
/// let pool = Pool::new().unwrap();
/// let nodes: Vec<_> = (0..20).map(|_| pool.run(Config::loopback()).unwrap()).collect();
/// for n in &nodes[1..] {
///     n.bootstrap_addr(nodes[0].local_addrs()[0]).unwrap();
/// }
/// assert!(nodes[19].wait_connected(Duration::from_secs(10)));
/// let key = InfoHash::get("pooled");
/// nodes[3].put_blocking(key, Value::new(0, b"v".to_vec()), Duration::from_secs(10)).unwrap();
/// assert_eq!(nodes[17].get_blocking(key, Duration::from_secs(10)).unwrap()[0].data, b"v");
/// ```
pub struct Pool {
    host: Arc<HostCtl>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts the pool's thread.
    pub fn new() -> Result<Pool, Error> {
        let (host, thread) = start_host(false)?;
        Ok(Pool {
            host,
            thread: Some(thread),
        })
    }

    /// Starts a node on the pool's thread (see [`Runner::run`]).
    pub fn run(&self, config: Config) -> Result<Runner, Error> {
        Runner::start(&self.host, config, None)
    }
}

impl Drop for Pool {
    /// Ends the thread once its runners are gone (dropping them, or after their shutdown).
    fn drop(&mut self) {
        self.host.close();
        if std::thread::current().id() != self.host.thread_id
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

impl Runner {
    /// Binds the sockets, resolves the bootstrap list and starts the node on a thread of its own.
    pub fn run(config: Config) -> Result<Runner, Error> {
        let (host, thread) = start_host(true)?;
        let r = Runner::start(&host, config, Some(thread));
        if r.is_err() {
            host.close();
        }
        r
    }

    fn start(host: &Arc<HostCtl>, config: Config, thread: Option<JoinHandle<()>>) -> Result<Runner, Error> {
        let bootstrap = config.resolve_bootstrap()?;
        let slot_id = host.next_slot.fetch_add(1, Ordering::Relaxed);
        let base = usize::try_from(slot_id)
            .unwrap_or(usize::MAX / 2)
            .saturating_mul(4);
        let setup = Setup::bind(config, &host.clock, &bootstrap)?;
        let addrs = setup.sockets.local_addrs();
        let register = |s: Option<std::net::UdpSocket>, token| -> Result<Option<UdpSocket>, Error> {
            let Some(s) = s else { return Ok(None) };
            let mut s = UdpSocket::from_std(s);
            host.registry
                .register(&mut s, token, Interest::READABLE)
                .map_err(Error::Io)?;
            Ok(Some(s))
        };
        let sock4 = register(setup.sockets.v4, Token(base))?;
        let sock6 = register(setup.sockets.v6, Token(base + 1))?;
        let discovery = match setup.discovery {
            Some((ds, lan)) => Some(Box::new(crate::slot::SlotDiscovery {
                sock4: register(ds.v4, Token(base + 2))?,
                sock6: register(ds.v6, Token(base + 3))?,
                lan,
            })),
            None => None,
        };
        let shared = Arc::new(Mutex::new(Shared {
            id: setup.node.node_id(),
            discovery: discovery.as_ref().map(|d| Box::new(d.lan.stats())),
            ..Shared::default()
        }));
        let slot = Slot::new(sock4, sock6, setup.node, shared.clone(), discovery);
        host.tx
            .send(HostMsg::Add(slot_id, Box::new(slot)))
            .map_err(|_| Error::Closed)?;
        host.waker.wake().map_err(Error::Io)?;
        Ok(Runner {
            handle: Handle {
                host: host.clone(),
                slot: slot_id,
                shared,
                addrs,
                ids: Arc::new(setup.ids),
            },
            thread,
        })
    }

    /// A handle for other threads and callbacks (it does not keep the runner alive).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the node, letting pending puts finish for at most `limit`, and closes its sockets
    /// (joining its thread unless it belongs to a [`Pool`]).
    /// Returns [`Error::OnRunnerThread`] (and does nothing) when called from a callback.
    pub fn shutdown(mut self, limit: Duration) -> Result<(), Error> {
        self.handle.not_on_runner()?;
        self.handle.request_shutdown();
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end && !self.handle.is_stopped() {
            std::thread::park_timeout(Duration::from_millis(2));
        }
        self.stop();
        Ok(())
    }

    /// Waits, without a bound, until the runner stops (after [`Handle::request_shutdown`] from
    /// anywhere, e.g. a callback), and closes it.
    pub fn join(mut self) -> Result<(), Error> {
        self.handle.not_on_runner()?;
        while !self.handle.is_stopped() {
            std::thread::park_timeout(Duration::from_millis(5));
        }
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        if let Ok(mut s) = self.handle.shared.lock() {
            s.stopped = true;
        }
        let host = &self.handle.host;
        let _ = host.tx.send(HostMsg::Remove(self.handle.slot));
        if self.thread.is_some() {
            let _ = host.tx.send(HostMsg::Close);
        }
        let _ = host.waker.wake();
        if std::thread::current().id() == host.thread_id {
            // Dropped from a callback: the host removes it after this turn; nothing to wait for.
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        } else {
            // On a pool: wait (bounded) until the sockets are closed, so the port is free.
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < end
                && !self.handle.shared.lock().map(|s| s.removed).unwrap_or(true)
            {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}
