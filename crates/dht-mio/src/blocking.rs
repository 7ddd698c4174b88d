//! The calls of [`Handle`] that wait for the runner thread: never from a callback (they return
//! [`Error::OnRunnerThread`] there instead of deadlocking).

use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dht_proto::value::{Query, Value};
use dht_proto::wire::NodeInfo;
use dht_proto::{BucketSummary, ExportedValue, Family, InfoHash, Node, PerFamily, PutOptions, PutOutcome};

use crate::command::Command;
use crate::{Error, GetSummary, Handle, PutMode};

impl Handle {
    /// Every value at `key` matching `query`, once the get is done (at most `limit`).
    pub fn get_query_blocking(
        &self,
        key: InfoHash,
        query: Query,
        limit: Duration,
    ) -> Result<Vec<Value>, Error> {
        self.get_with_summary_blocking(key, query, limit)
            .map(|(values, _)| values)
    }

    /// Every value at `key` matching `query` once the get is done (at most `limit`), and how
    /// it ended ([`GetSummary`]: complete or not, how many of the closest nodes answered).
    ///
    /// ```
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
    /// let (values, summary) = b.get_with_summary_blocking(key, Query::default(), Duration::from_secs(10)).unwrap();
    /// assert_eq!(values[0].data, b"world");
    /// assert!(summary.ok && summary.answered >= 1);
    /// ```
    pub fn get_with_summary_blocking(
        &self,
        key: InfoHash,
        query: Query,
        limit: Duration,
    ) -> Result<(Vec<Value>, GetSummary), Error> {
        self.not_on_runner()?;
        let (tx, rx) = mpsc::channel();
        let found = Arc::new(Mutex::new(Vec::new()));
        let sink = found.clone();
        let id = self.get_with_summary(
            key,
            query,
            move |v| {
                if let Ok(mut f) = sink.lock() {
                    f.extend_from_slice(v);
                }
            },
            move |r| {
                let _ = tx.send(r);
            },
        )?;
        let summary = match rx.recv_timeout(limit) {
            Ok(r) => r?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.cancel_get(id);
                return Err(Error::Timeout);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::Closed),
        };
        let values = found.lock().map(|f| f.clone()).unwrap_or_default();
        Ok((values, summary))
    }

    /// Every value at `key`, once the get is done (at most `limit`).
    pub fn get_blocking(&self, key: InfoHash, limit: Duration) -> Result<Vec<Value>, Error> {
        self.get_query_blocking(key, Query::default(), limit)
    }

    /// [`Handle::put_as`], waiting for the outcome at most `limit`.
    pub fn put_as_blocking(
        &self,
        key: InfoHash,
        value: Value,
        mode: PutMode,
        limit: Duration,
    ) -> Result<PutOutcome, Error> {
        self.put_waiting(key, value, PutOptions::default(), mode, limit)
    }

    fn put_waiting(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        mode: PutMode,
        limit: Duration,
    ) -> Result<PutOutcome, Error> {
        self.not_on_runner()?;
        let (tx, rx) = mpsc::channel();
        self.put_as(key, value, opts, mode, move |o| {
            let _ = tx.send(o);
        })?;
        match rx.recv_timeout(limit) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }

    /// A put, waiting for its outcome at most `limit`.
    pub fn put_blocking(&self, key: InfoHash, value: Value, limit: Duration) -> Result<PutOutcome, Error> {
        self.put_opts_blocking(key, value, PutOptions::default(), limit)
    }

    /// A put with options (e.g. [`PutOptions::permanent`]), waiting for its outcome at most `limit`.
    pub fn put_opts_blocking(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        limit: Duration,
    ) -> Result<PutOutcome, Error> {
        self.put_waiting(key, value, opts, PutMode::Plain, limit)
    }

    /// Runs `f` on the runner thread with read access to the node and waits for its result
    /// (for views: routing tables, searches, stored values).
    pub fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Node) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.not_on_runner()?;
        let (tx, rx) = mpsc::channel();
        self.send(Command::With(Box::new(move |node, _| {
            let _ = tx.send(f(node));
        })))?;
        rx.recv().map_err(|_| Error::Closed)
    }

    /// Our public addresses as peers report them.
    pub fn public_addresses(&self) -> Result<Vec<IpAddr>, Error> {
        self.inspect(|n| {
            let mut v = n.public_addresses(Family::V4);
            v.extend(n.public_addresses(Family::V6));
            v
        })
    }

    /// The routing tables as counts per bucket (IPv4 and IPv6), asked of the node.
    pub fn routing_summary(&self) -> Result<PerFamily<Vec<BucketSummary>>, Error> {
        self.inspect(|n| n.routing_summary())
    }

    /// Nodes worth remembering across restarts.
    pub fn export_nodes(&self) -> Result<Vec<NodeInfo>, Error> {
        self.inspect(|n| n.export_nodes())
    }

    /// Every stored value with the life it has left.
    pub fn export_values(&self) -> Result<Vec<ExportedValue>, Error> {
        self.inspect(|n| n.export_values())
    }
}
