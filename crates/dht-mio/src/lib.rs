//! # dht-mio
//!
//! A thread runner for [`dht_proto::Node`], like OpenDHT's `DhtRunner`: one thread owns a
//! `mio::Poll`, an IPv4 and an IPv6 UDP socket (same port) and the node; commands arrive over a
//! channel and a `mio::Waker`; results go to callbacks, which run on the runner thread, or to
//! blocking calls built on them. A [`Pool`] carries many nodes on one thread (for processes that
//! run hundreds or thousands of them). `docs/runner.md` describes the design; what it shares
//! with the other drivers (config, sockets, names, clock, ids, errors) is `dht-driver`'s.
//!
//! ## The callback contract
//!
//! Callbacks run on the runner thread, between two turns of the node. From a callback you may:
//! call any method of a [`Handle`] that does not wait (`get`, `put`, `listen`, `cancel_*`,
//! `bootstrap_*`, `import_*`, `stats`, `status`, `node_id`, `request_shutdown`) on this runner
//! or any other; send to channels; spawn threads. The waiting calls (`get_blocking`,
//! `put_blocking`, `inspect` and the getters built on it, [`Runner::shutdown`]) return
//! [`Error::OnRunnerThread`] when called from this runner's own thread instead of
//! deadlocking. A callback that blocks for long stalls the node (it answers no one meanwhile).
//!
//! ```
//! use std::time::Duration;
//! use dht_mio::{Config, Runner};
//! use dht_proto::{InfoHash, value::Value};
//!
//! let local = Config::loopback();
//! let a = Runner::run(local.clone()).unwrap();
//! let b = Runner::run(local).unwrap();
//! b.bootstrap_addr(a.local_addrs()[0]).unwrap();
//! assert!(b.wait_connected(Duration::from_secs(10)));
//! let key = InfoHash::get("hello");
//! let outcome = a.put_blocking(key, Value::new(0, b"world".to_vec()), Duration::from_secs(10)).unwrap();
//! assert!(outcome.total_acked() >= 1);
//! let values = b.get_blocking(key, Duration::from_secs(10)).unwrap();
//! assert_eq!(values[0].data, b"world");
//! a.shutdown(Duration::from_secs(5)).unwrap();
//! b.shutdown(Duration::from_secs(5)).unwrap();
//! ```
//!
//! ## Modules
//!
//! `runner` starts and stops nodes ([`Runner`], [`Pool`]); `host` is the thread and its poll
//! loop; `slot` one node on it (commands in, events out to callbacks); `handle` the commands
//! that do not wait, `blocking` those that do; `command` what travels between them.

mod blocking;
mod command;
mod handle;
mod host;
mod runner;
mod slot;

pub use command::Change;
pub use dht_driver::{
    Config, DiscoveryConfig, DiscoveryStats, Error, GetId, GetSummary, ListenId, PutMode, SOCKET_BUFFER,
    resolve,
};
pub use handle::Handle;
pub use runner::{Pool, Runner};
