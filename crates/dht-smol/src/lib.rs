//! # dht-smol
//!
//! An async driver for [`dht_proto::Node`] on smol: the node's IPv4 and IPv6 UDP sockets are
//! `smol::Async<UdpSocket>` (same port), the core runs in one task (the *driver*), and a cheap,
//! cloneable [`Handle`] (`Clone + Send + Sync`) gives futures and streams: [`Handle::get`] is a
//! `Stream` of values that ends when the search is done, [`Handle::put`] a future of its outcome,
//! [`Handle::listen`] a `Stream` of changes; dropping a stream cancels its get or listen. What it
//! shares with the other drivers (config, sockets, names, clock, ids, errors) is `dht-driver`'s.
//!
//! ```
//! use dht_smol::{Config, Handle};
//! use dht_proto::{InfoHash, value::Value};
//! use smol::stream::StreamExt;
//!
//! smol::block_on(async {
//!     let a = Handle::start(Config::loopback()).await.unwrap();
//!     let b = Handle::start(Config::loopback()).await.unwrap();
//!     b.bootstrap_addr(a.local_addrs()[0]).unwrap();
//!     b.wait_connected(std::time::Duration::from_secs(10)).await.unwrap();
//!     let key = InfoHash::get("hello");
//!     a.put(key, Value::new(0, b"world".to_vec())).await.unwrap();
//!     let values: Vec<_> = b.get(key).collect().await;
//!     assert_eq!(values[0].data, b"world");
//!     a.shutdown().await;
//!     b.shutdown().await;
//! });
//! ```
//!
//! ## Whose runtime
//!
//! Nothing here starts threads or an executor of its own. [`Handle::bind`] returns the handle and
//! the [`Driver`], a `Send + 'static` future that runs the node until it shuts down: spawn it on
//! any executor that can poll smol's reactor (`async-io`): `smol::spawn`, an
//! `async_executor::Executor`, or a `LocalExecutor` inside `smol::block_on`. async-io's reactor
//! runs on a thread of its own when no `block_on` drives it, so the driver runs on tokio too
//! (`tokio::spawn(driver)`, tested in `tests/tokio.rs`). [`Handle::start`] is `bind` plus
//! `smol::spawn(driver).detach()`.
//!
//! ```
//! use dht_smol::{Config, Handle};
//!
//! let ex = smol::LocalExecutor::new();
//! smol::block_on(ex.run(async {
//!     let (node, driver) = Handle::bind(Config::loopback()).await.unwrap();
//!     ex.spawn(driver).detach();
//!     assert!(!node.local_addrs().is_empty());
//!     node.shutdown().await;
//! }));
//! ```
//!
//! ## Modules
//!
//! `handle` binds a node and turns calls into commands; `driver` is the loop that applies them
//! and routes the core's events back; `stream` holds what operations return; `command` what
//! travels between them.

mod command;
mod driver;
mod handle;
mod stream;

pub use dht_driver::{
    Config, DiscoveryConfig, DiscoveryStats, Error, GetSummary, PutMode, SOCKET_BUFFER, resolve,
};
pub use driver::Driver;
pub use handle::Handle;
pub use stream::{Change, GetStream, ListenStream, Stored};

pub(crate) use dht_driver::{GetId, ListenId};
