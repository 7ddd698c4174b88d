//! [`Handle`]: the commands that do not wait, callable from any thread, callbacks included.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dht_driver::Ids;
use dht_proto::value::{Query, Value};
use dht_proto::{Family, InfoHash, PutOptions, PutOutcome, Stats, Status};

use crate::command::{Change, Command, Shared};
use crate::host::{HostCtl, HostMsg, on_host};
use crate::{Error, GetId, GetSummary, ListenId, PutMode};

/// A cheap, cloneable way to command a runner from any thread, callbacks included. It does not
/// keep the runner alive: once the [`Runner`](crate::Runner) is shut down or dropped its calls
/// fail with [`Error::Closed`].
#[derive(Clone)]
pub struct Handle {
    pub(crate) host: Arc<HostCtl>,
    pub(crate) slot: u64,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) ids: Arc<Ids>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub(crate) fn send(&self, c: Command) -> Result<(), Error> {
        if self.is_stopped() {
            return Err(Error::Closed);
        }
        self.host
            .tx
            .send(HostMsg::Cmd(self.slot, Box::new(c)))
            .map_err(|_| Error::Closed)?;
        if on_host(self.host.serial) {
            return Ok(());
        }
        self.host.waker.wake().map_err(|_| Error::Closed)
    }

    pub(crate) fn not_on_runner(&self) -> Result<(), Error> {
        if std::thread::current().id() == self.host.thread_id {
            Err(Error::OnRunnerThread)
        } else {
            Ok(())
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.shared.lock().map(|s| s.stopped).unwrap_or(true)
    }

    /// The bound addresses (IPv4 first).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Our node id.
    pub fn node_id(&self) -> InfoHash {
        self.shared.lock().map(|s| s.id).unwrap_or_default()
    }

    /// The node's counters (traffic, drops, routing table, storage). From another thread they
    /// are exact (asked of the node); from a callback, or once the node has stopped, they are as
    /// of its last published turn (published at most every 20 ms, and at the end).
    pub fn stats(&self) -> Stats {
        if self.not_on_runner().is_ok()
            && !self.is_stopped()
            && let Ok(s) = self.inspect(|n| n.stats())
        {
            return s;
        }
        self.shared.lock().map(|s| s.stats.clone()).unwrap_or_default()
    }

    /// LAN peer discovery's counters (heard, answered, bootstrapped, dropped by reason), as of
    /// the node's last published turn; `None` when discovery is off or could not start.
    pub fn discovery_stats(&self) -> Option<dht_driver::DiscoveryStats> {
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.discovery.as_deref().copied())
    }

    /// Connectivity of `family`, as of the node's last turn.
    pub fn status(&self, family: Family) -> Status {
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.status[family])
            .unwrap_or(Status::Disconnected)
    }

    /// Pings `addr` to join its network.
    pub fn bootstrap_addr(&self, addr: SocketAddr) -> Result<(), Error> {
        self.send(Command::Bootstrap(addr))
    }

    /// Resolves `spec` (`host:port`, `[v6]:port`, or a bare host for port 4222, see
    /// [`resolve`](crate::resolve)) and pings every address it names. Resolution runs on the
    /// calling thread.
    pub fn bootstrap_host(&self, spec: &str) -> Result<Vec<SocketAddr>, Error> {
        let addrs = dht_driver::resolve(spec)?;
        for a in &addrs {
            self.send(Command::Bootstrap(*a))?;
        }
        Ok(addrs)
    }

    /// Waits until either family is connected, at most `limit`.
    pub fn wait_connected(&self, limit: Duration) -> bool {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            if self.status(Family::V4) == Status::Connected || self.status(Family::V6) == Status::Connected {
                return true;
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
        false
    }

    /// A get: `on_values` gets values as they arrive, `on_done` the end (`Ok(true)` when the
    /// closest nodes answered, `Err` when the node refused the get). Both run on the runner thread.
    /// [`Handle::get_with_summary`] tells how many of the closest nodes answered.
    pub fn get(
        &self,
        key: InfoHash,
        query: Query,
        on_values: impl FnMut(&[Value]) + Send + 'static,
        on_done: impl FnOnce(Result<bool, Error>) + Send + 'static,
    ) -> Result<GetId, Error> {
        self.get_with_summary(key, query, on_values, move |r| on_done(r.map(|s| s.ok)))
    }

    /// [`Handle::get`], whose end tells how it ended: `on_done` gets the [`GetSummary`]
    /// (complete or not, and how many of the closest nodes answered in full out of how many
    /// were asked), or `Err` when the node refused the get. Both callbacks run on the runner
    /// thread.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use dht_mio::{Config, Runner};
    /// use dht_proto::{InfoHash, value::{Query, Value}};
    ///
    /// let a = Runner::run(Config::loopback()).unwrap();
    /// let b = Runner::run(Config::loopback()).unwrap();
    /// b.bootstrap_addr(a.local_addrs()[0]).unwrap();
    /// assert!(b.wait_connected(Duration::from_secs(10)));
    /// let key = InfoHash::get("hello");
    /// a.put_blocking(key, Value::new(0, b"world".to_vec()), Duration::from_secs(10)).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// b.get_with_summary(key, Query::default(), |_values| {}, move |done| {
    ///     let _ = tx.send(done);
    /// })
    /// .unwrap();
    /// let summary = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    /// // `a` is the only node `b` knows (over IPv4, and over IPv6 once learned): it answered.
    /// assert!(summary.ok && summary.answered >= 1 && summary.answered <= summary.asked);
    /// println!("get done: {summary}"); // e.g. "get done: 2/2 answered"
    /// ```
    pub fn get_with_summary(
        &self,
        key: InfoHash,
        query: Query,
        on_values: impl FnMut(&[Value]) + Send + 'static,
        on_done: impl FnOnce(Result<GetSummary, Error>) + Send + 'static,
    ) -> Result<GetId, Error> {
        let id = self.ids.get_id();
        self.send(Command::Get {
            id,
            key,
            query,
            on_values: Box::new(on_values),
            on_done: Box::new(on_done),
        })?;
        Ok(id)
    }

    /// Stops a get: its callbacks are dropped without another call.
    pub fn cancel_get(&self, id: GetId) {
        let _ = self.send(Command::CancelGet(id));
    }

    /// A put; `on_done` gets its outcome (or why the node refused it), on the runner thread.
    /// Returns the value id (a value id of 0 is replaced by a fresh one here).
    pub fn put(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        on_done: impl FnOnce(Result<PutOutcome, Error>) + Send + 'static,
    ) -> Result<u64, Error> {
        self.put_as(key, value, opts, PutMode::Plain, on_done)
    }

    /// A put signed with the node's identity (`Config::identity`); see [`Handle::put_as`].
    pub fn put_signed(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        on_done: impl FnOnce(Result<PutOutcome, Error>) + Send + 'static,
    ) -> Result<u64, Error> {
        self.put_as(key, value, opts, PutMode::Signed, on_done)
    }

    /// A put encrypted to `to` (and signed inside) with the node's identity; see
    /// [`Handle::put_as`] for encrypting to a key id instead.
    pub fn put_encrypted(
        &self,
        key: InfoHash,
        to: dht_proto::crypto::PublicKey,
        value: Value,
        opts: PutOptions,
        on_done: impl FnOnce(Result<PutOutcome, Error>) + Send + 'static,
    ) -> Result<u64, Error> {
        self.put_as(key, value, opts, PutMode::EncryptedTo(to), on_done)
    }

    /// A put signed, or encrypted, with the node's identity ([`PutMode`]). Without an identity
    /// `on_done` gets `CommandError::NoIdentity`.
    pub fn put_as(
        &self,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
        mode: PutMode,
        on_done: impl FnOnce(Result<PutOutcome, Error>) + Send + 'static,
    ) -> Result<u64, Error> {
        let vid = self.ids.fill_value_id(&mut value);
        self.send(Command::Put {
            key,
            value,
            opts,
            mode,
            on_done: Box::new(on_done),
        })?;
        Ok(vid)
    }

    /// Stops announcing a value and drops our copy.
    pub fn cancel_put(&self, key: InfoHash, vid: u64) {
        let _ = self.send(Command::CancelPut(key, vid));
    }

    /// A listen: `on_change` runs on the runner thread for added values, for values gone, and
    /// once with [`Change::Failed`] if the node refused the listen.
    pub fn listen(
        &self,
        key: InfoHash,
        query: Query,
        on_change: impl FnMut(Change<'_>) + Send + 'static,
    ) -> Result<ListenId, Error> {
        let id = self.ids.listen_id();
        self.send(Command::Listen {
            id,
            key,
            query,
            on_change: Box::new(on_change),
        })?;
        Ok(id)
    }

    /// Stops a listen: its callback is not called again once this command is applied.
    pub fn cancel_listen(&self, id: ListenId) {
        let _ = self.send(Command::CancelListen(id));
    }

    /// Adds exported nodes.
    pub fn import_nodes(&self, nodes: Vec<dht_proto::wire::NodeInfo>) -> Result<(), Error> {
        self.send(Command::With(Box::new(move |n, now| n.import_nodes(now, &nodes))))
    }

    /// Stores exported values again.
    pub fn import_values(&self, values: Vec<dht_proto::ExportedValue>) -> Result<(), Error> {
        self.send(Command::With(Box::new(move |n, now| {
            n.import_values(now, values)
        })))
    }

    /// Asks the node to shut down (pending puts finish first) without waiting; callable from
    /// callbacks. [`Runner::join`](crate::Runner::join) or
    /// [`Runner::shutdown`](crate::Runner::shutdown) then ends the thread.
    pub fn request_shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}
