//! What the console runs its commands against: [`Backend`], implemented for a node of ours
//! ([`dht_mio::Handle`]) and for a client of a DHT proxy ([`ProxyBackend`], `--proxyclient`),
//! which has no UDP socket: every command becomes an HTTP request to the proxy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dht_mio::{Change, GetSummary, Handle, PutMode};
use dht_proto::crypto::Identity;
use dht_proto::value::{Query, Value};
use dht_proto::{ExportedValue, InfoHash, PutOptions};
use dht_proxy::{ListenEvent, ProxyClient};
use smol::stream::StreamExt;

/// Called with values as a get finds them.
pub type OnValues = Box<dyn FnMut(&[Value]) + Send>;
/// Called once at the end of a get: how it ended, or why it failed.
pub type OnDone = Box<dyn FnOnce(Result<GetEnd, String>) + Send>;
/// Called with each change a listen reports.
pub type OnChange = Box<dyn FnMut(Change<'_>) + Send>;
/// Called once with a put's outcome.
pub type OnPut = Box<dyn FnOnce(Result<Stored, String>) + Send>;
/// Ends a listen.
pub type Cancel = Box<dyn FnOnce() + Send>;

/// How a get ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetEnd {
    /// A node of ours: complete or not, and how many of the closest nodes answered.
    Nodes(GetSummary),
    /// Through a proxy: its answer ended (it says nothing of the nodes behind it).
    Proxy,
}

/// Where a put went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stored {
    /// Stored on this many nodes (a node of ours).
    Nodes(usize),
    /// Accepted by the proxy (which answers once its node's put is done).
    Proxy,
}

/// The operations of the console.
pub trait Backend: Send {
    /// What `ll` prints.
    fn info(&self) -> String;
    /// What `lr` prints.
    fn routing(&self) -> Result<String, String>;
    /// What `ls` prints.
    fn searches(&self) -> Result<String, String>;
    /// The values stored here (`ld`).
    fn stored(&self) -> Result<Vec<ExportedValue>, String>;
    /// Joins the network of a node (`b`); returns the addresses tried.
    fn bootstrap(&self, host: &str) -> Result<String, String>;
    /// A get.
    fn get(&self, key: InfoHash, query: Query, on_values: OnValues, on_done: OnDone) -> Result<(), String>;
    /// A listen, until the returned [`Cancel`] runs.
    fn listen(&self, key: InfoHash, query: Query, on_change: OnChange) -> Result<Cancel, String>;
    /// A put; returns the value id at once.
    fn put(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        mode: PutMode,
        on_done: OnPut,
    ) -> Result<u64, String>;
    /// Ends a permanent put.
    fn cancel_put(&self, key: InfoHash, vid: u64);
    /// Hands a push notification's data to the client (`rp`); what it did.
    fn push_notification(&self, data: BTreeMap<String, String>) -> Result<String, String> {
        let _ = data;
        Err("push notifications are for a proxy client (--proxyclient with --devicekey)".into())
    }
}

impl Backend for Handle {
    fn info(&self) -> String {
        crate::show::info(self)
    }

    fn routing(&self) -> Result<String, String> {
        self.inspect(crate::show::routing).map_err(|e| e.to_string())
    }

    fn searches(&self) -> Result<String, String> {
        self.inspect(|n| n.searches_text()).map_err(|e| e.to_string())
    }

    fn stored(&self) -> Result<Vec<ExportedValue>, String> {
        self.export_values().map_err(|e| e.to_string())
    }

    fn bootstrap(&self, host: &str) -> Result<String, String> {
        let addrs = self.bootstrap_host(host).map_err(|e| e.to_string())?;
        Ok(format!("bootstrapping from {addrs:?}"))
    }

    fn get(&self, key: InfoHash, query: Query, on_values: OnValues, on_done: OnDone) -> Result<(), String> {
        Handle::get_with_summary(self, key, query, on_values, move |r| {
            on_done(r.map(GetEnd::Nodes).map_err(|e| e.to_string()))
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    fn listen(&self, key: InfoHash, query: Query, on_change: OnChange) -> Result<Cancel, String> {
        let id = Handle::listen(self, key, query, on_change).map_err(|e| e.to_string())?;
        let node = self.clone();
        Ok(Box::new(move || node.cancel_listen(id)))
    }

    fn put(
        &self,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        mode: PutMode,
        on_done: OnPut,
    ) -> Result<u64, String> {
        self.put_as(key, value, opts, mode, move |r| {
            on_done(
                r.map(|o| Stored::Nodes(o.total_acked()))
                    .map_err(|e| e.to_string()),
            )
        })
        .map_err(|e| e.to_string())
    }

    fn cancel_put(&self, key: InfoHash, vid: u64) {
        Handle::cancel_put(self, key, vid);
    }
}

/// The console's operations through a DHT proxy (`--proxyclient`): gets, puts and listens are
/// HTTP requests; signed and encrypted values are signed and encrypted here, with our identity,
/// before they are posted (as OpenDHT's proxy client does), and values encrypted to us are
/// opened. Routing tables, searches, storage and bootstrap are the proxy's business.
pub struct ProxyBackend {
    client: ProxyClient,
    server: String,
    identity: Arc<Identity>,
}

impl std::fmt::Debug for ProxyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBackend")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

const NOT_HERE: &str = "not available through a proxy (--proxyclient)";

impl ProxyBackend {
    /// A backend on `client`, a client of `server`, signing with `identity`.
    pub fn new(client: ProxyClient, server: &str, identity: Identity) -> ProxyBackend {
        ProxyBackend {
            client,
            server: server.to_owned(),
            identity: Arc::new(identity),
        }
    }

    /// The client.
    pub fn client(&self) -> &ProxyClient {
        &self.client
    }
}

/// A value as shown: opened when it is encrypted to us.
fn opened(v: &Value, me: &Identity) -> Value {
    if v.is_encrypted() {
        dht_proto::crypto::decrypt_value(v, me).unwrap_or_else(|_| v.clone())
    } else {
        v.clone()
    }
}

impl Backend for ProxyBackend {
    fn info(&self) -> String {
        let info = smol::block_on(async {
            smol::future::or(async { Some(self.client.node_info().await) }, async {
                smol::Timer::after(Duration::from_secs(5)).await;
                None
            })
            .await
        });
        let state = if self.client.is_connected() {
            "connected"
        } else {
            "not connected"
        };
        let node = match info {
            Some(Ok(j)) => format!(
                "proxy node id {}\nproxy node info {j}",
                j.get("node_id").and_then(|v| v.as_str()).unwrap_or("?")
            ),
            Some(Err(e)) => format!("proxy node info: {e}"),
            None => "proxy node info: timed out".to_owned(),
        };
        format!(
            "proxy client of {} ({state}){}\npublic key {} (id {})\n{node}",
            self.server,
            if self.client.push_token().is_some() {
                ", push mode"
            } else {
                ""
            },
            crate::show::hex(&self.identity.public().to_bytes()),
            self.identity.public().id()
        )
    }

    fn routing(&self) -> Result<String, String> {
        Err(NOT_HERE.into())
    }

    fn searches(&self) -> Result<String, String> {
        Err(NOT_HERE.into())
    }

    fn stored(&self) -> Result<Vec<ExportedValue>, String> {
        Err(NOT_HERE.into())
    }

    fn bootstrap(&self, _host: &str) -> Result<String, String> {
        Err(NOT_HERE.into())
    }

    fn get(
        &self,
        key: InfoHash,
        query: Query,
        mut on_values: OnValues,
        on_done: OnDone,
    ) -> Result<(), String> {
        let mut values = self.client.get(key);
        let me = self.identity.clone();
        smol::spawn(async move {
            while let Some(v) = values.next().await {
                match v {
                    Ok(v) => {
                        // The proxy's API has no query: filter here.
                        let v = opened(&v, &me);
                        if query.where_.matches(&v) {
                            on_values(std::slice::from_ref(&v));
                        }
                    }
                    Err(e) => return on_done(Err(e.to_string())),
                }
            }
            on_done(Ok(GetEnd::Proxy));
        })
        .detach();
        Ok(())
    }

    fn listen(&self, key: InfoHash, query: Query, mut on_change: OnChange) -> Result<Cancel, String> {
        let mut events = self.client.listen(key);
        let me = self.identity.clone();
        let task = smol::spawn(async move {
            while let Some(e) = events.next().await {
                let (vs, added) = match e {
                    ListenEvent::Added(vs) => (vs, true),
                    ListenEvent::Expired(vs) => (vs, false),
                    _ => continue,
                };
                let vs: Vec<Value> = vs
                    .iter()
                    .map(|v| opened(v, &me))
                    .filter(|v| query.where_.matches(v))
                    .collect();
                if vs.is_empty() {
                    continue;
                }
                if added {
                    on_change(Change::Added(&vs));
                } else {
                    on_change(Change::Expired(&vs));
                }
            }
        });
        Ok(Box::new(move || drop(task)))
    }

    fn put(
        &self,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
        mode: PutMode,
        on_done: OnPut,
    ) -> Result<u64, String> {
        if value.id == 0 {
            value.id = loop {
                let id = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
                if id != 0 {
                    break id;
                }
            };
        }
        let value = match mode {
            PutMode::Plain => value,
            PutMode::Signed => {
                dht_proto::crypto::sign_value(&mut value, &self.identity);
                value
            }
            PutMode::EncryptedTo(to) => {
                dht_proto::crypto::encrypt_value(&value, &self.identity, &to, &mut rand_core::OsRng)
            }
            _ => {
                return Err(
                    "through a proxy, encrypt to a public key (64 hex digits), not to a key id".into(),
                );
            }
        };
        let vid = value.id;
        let client = self.client.clone();
        smol::spawn(async move {
            let r = if opts.permanent {
                client.put_permanent(key, value).await.map(|_| Stored::Proxy)
            } else {
                client.put(key, value).await.map(|_| Stored::Proxy)
            };
            on_done(r.map_err(|e| e.to_string()));
        })
        .detach();
        Ok(vid)
    }

    fn cancel_put(&self, key: InfoHash, vid: u64) {
        self.client.cancel_put(key, vid);
    }

    fn push_notification(&self, data: BTreeMap<String, String>) -> Result<String, String> {
        if self.client.push_token().is_none() {
            return Err("no device key (--devicekey): the client is not in push mode".into());
        }
        let r = smol::block_on(self.client.push_notification_received(&data));
        Ok(format!("push: {r:?}"))
    }
}
