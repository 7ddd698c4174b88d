//! [`Console`]: runs one [`Cmd`] against a [`Backend`] (a node of ours, or a proxy client), one
//! method per command, and prints what came of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dht_mio::{Change, PutMode};
use dht_proto::value::{Query, Value};
use dht_proto::{InfoHash, PutOptions};

use crate::backend::{Backend, Cancel, GetEnd, Stored};
use crate::cmd::{Cmd, help_text};
use crate::show::{Out, say, show_value, took};

/// Runs commands against a backend.
pub struct Console {
    node: Box<dyn Backend>,
    out: Out,
    timeout: Duration,
    listens: BTreeMap<u64, (InfoHash, Cancel)>,
    next_listen: u64,
    /// The permanent puts made here, by key and value id: the runner cancels a put it does not
    /// have without a word, and `cpp` should say there is no such put.
    permanent_puts: BTreeSet<(InfoHash, u64)>,
}

impl Console {
    /// A console for `node` (a runner's [`dht_mio::Handle`], or a
    /// [`ProxyBackend`](crate::ProxyBackend)), writing to `out`; `g`/`q`/`p` wait at most
    /// `timeout`.
    pub fn new(node: Box<dyn Backend>, out: Out, timeout: Duration) -> Console {
        Console {
            node,
            out,
            timeout,
            listens: BTreeMap::new(),
            next_listen: 1,
            permanent_puts: BTreeSet::new(),
        }
    }

    /// Parses and runs one line (a line that does not parse is an error printed); false once it
    /// was `x`.
    pub fn run_line(&mut self, line: &str) -> bool {
        match Cmd::parse(line) {
            Ok(cmd) => self.run(cmd),
            Err(e) => {
                say(&self.out, format!("error: {e}"));
                true
            }
        }
    }

    /// Runs one command; false once it was `x`.
    pub fn run(&mut self, cmd: Cmd) -> bool {
        let done = match cmd {
            Cmd::Exit => return false,
            Cmd::Nothing => Ok(()),
            Cmd::Help => self.print(help_text()),
            Cmd::Info => self.print(self.node.info()),
            Cmd::Routing => self.routing(),
            Cmd::Searches => self.searches(),
            Cmd::Storage(key) => self.storage(key.as_deref()),
            Cmd::Bootstrap(host) => self.bootstrap(&host),
            Cmd::Get { key, query } => self.get(&key, &query),
            Cmd::Listen { key, query } => self.listen(&key, &query),
            Cmd::CancelListen { key, n } => self.cancel_listen(&key, n),
            Cmd::Put { key, data, permanent } => self.plain_put(&key, data, permanent),
            Cmd::SignedPut { key, data } => {
                self.put(&key, data, PutOptions::default(), PutMode::Signed, " (signed)")
            }
            Cmd::EncryptedPut { key, to, data } => self.encrypted_put(&key, &to, data),
            Cmd::CancelPut { key, vid } => self.cancel_put(&key, vid),
            Cmd::Push(json) => self.push(&json),
        };
        if let Err(e) = done {
            self.print(format!("error: {e}")).ok();
        }
        true
    }

    fn print(&self, line: impl AsRef<str>) -> Result<(), String> {
        say(&self.out, line);
        Ok(())
    }

    fn routing(&self) -> Result<(), String> {
        let text = self.node.routing()?;
        self.print(text.trim_end())
    }

    fn searches(&self) -> Result<(), String> {
        let text = self.node.searches()?;
        match text.trim_end() {
            "" => self.print("no searches"),
            text => self.print(text),
        }
    }

    fn storage(&self, key: Option<&str>) -> Result<(), String> {
        let key = key.map(InfoHash::from_hex_or_hash);
        let values = self.node.stored()?;
        let mut n = 0;
        for e in values.iter().filter(|e| key.is_none_or(|k| k == e.key)) {
            n += 1;
            let life = e
                .remaining
                .map(|d| format!("{} s left", d.as_secs()))
                .unwrap_or_else(|| "permanent".into());
            say(&self.out, format!("{} {} ({life})", e.key, show_value(&e.value)));
        }
        self.print(format!("{n} values stored"))
    }

    fn bootstrap(&self, host: &str) -> Result<(), String> {
        let said = self.node.bootstrap(host)?;
        self.print(said)
    }

    fn get(&self, key: &str, query: &str) -> Result<(), String> {
        let k = InfoHash::from_hex_or_hash(key);
        let query = parse_query(query)?;
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = self.out.clone();
        let on_values = move |vs: &[Value]| {
            for v in vs {
                say(&out, format!("value {k} {}", show_value(v)));
            }
        };
        let on_done = move |r| {
            let _ = tx.send(r);
        };
        self.node.get(k, query, Box::new(on_values), Box::new(on_done))?;
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(GetEnd::Nodes(s))) if s.ok => self.print(format!("get done: {s}{}", took(started))),
            Ok(Ok(GetEnd::Nodes(s))) => self.print(format!(
                "get done: {s}, not every closest node answered{}",
                took(started)
            )),
            Ok(Ok(_)) => self.print(format!("get done{}", took(started))),
            Ok(Err(e)) => self.print(format!("get failed: {e}")),
            Err(_) => self.print("get timed out"),
        }
    }

    fn listen(&mut self, key: &str, query: &str) -> Result<(), String> {
        let k = InfoHash::from_hex_or_hash(key);
        let query = parse_query(query)?;
        let n = self.next_listen;
        let out = self.out.clone();
        let on_change = move |c: Change<'_>| match c {
            Change::Added(vs) => {
                for v in vs {
                    say(&out, format!("listen {n}: new {k} {}", show_value(v)));
                }
            }
            Change::Expired(vs) => {
                for v in vs {
                    say(&out, format!("listen {n}: expired {k} {}", show_value(v)));
                }
            }
            Change::Failed(e) => say(&out, format!("listen {n} failed: {e}")),
        };
        let cancel = self.node.listen(k, query, Box::new(on_change))?;
        self.next_listen += 1;
        self.listens.insert(n, (k, cancel));
        self.print(format!("listening on {k} (listen {n})"))
    }

    fn cancel_listen(&mut self, key: &str, n: u64) -> Result<(), String> {
        let k = InfoHash::from_hex_or_hash(key);
        match self.listens.remove(&n) {
            Some((lk, cancel)) if lk == k => {
                cancel();
                self.print(format!("listen {n} cancelled"))
            }
            Some(other) => {
                self.listens.insert(n, other);
                self.print(format!("no listen {n} on {k}"))
            }
            None => self.print(format!("no listen {n} on {k}")),
        }
    }

    fn plain_put(&mut self, key: &str, data: String, permanent: bool) -> Result<(), String> {
        if permanent {
            self.put(key, data, PutOptions::permanent(), PutMode::Plain, " (permanent)")
        } else {
            self.put(key, data, PutOptions::default(), PutMode::Plain, "")
        }
    }

    fn encrypted_put(&mut self, key: &str, to: &str, data: String) -> Result<(), String> {
        // 40 hex digits: a short id, looked up; 64: the public key itself.
        let mode = if to.len() == 40 {
            let id = InfoHash::from_hex(to).map_err(|e| format!("recipient id: {e}"))?;
            PutMode::EncryptedToId(id)
        } else {
            PutMode::EncryptedTo(parse_public_key(to)?)
        };
        self.put(key, data, PutOptions::default(), mode, " (encrypted)")
    }

    fn put(
        &mut self,
        key: &str,
        data: String,
        opts: PutOptions,
        mode: PutMode,
        note: &str,
    ) -> Result<(), String> {
        let k = InfoHash::from_hex_or_hash(key);
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        // Typed as OpenDHT's dhtnode types its puts, so its `g` shows the text.
        let mut value = Value::new(0, data.into_bytes());
        value.user_type = "text/plain".into();
        let on_done = move |r| {
            let _ = tx.send(r);
        };
        let vid = self.node.put(k, value, opts, mode, Box::new(on_done))?;
        if opts.permanent {
            self.permanent_puts.insert((k, vid));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(Stored::Nodes(n))) => self.print(format!(
                "put {k} id {vid:016x}: stored on {n} nodes{note}{}",
                took(started)
            )),
            Ok(Ok(_)) => self.print(format!(
                "put {k} id {vid:016x}: stored through the proxy{note}{}",
                took(started)
            )),
            Ok(Err(e)) => {
                self.permanent_puts.remove(&(k, vid));
                self.print(format!("put failed: {e}"))
            }
            Err(_) => self.print("put timed out"),
        }
    }

    fn cancel_put(&mut self, key: &str, vid: u64) -> Result<(), String> {
        let k = InfoHash::from_hex_or_hash(key);
        if !self.permanent_puts.remove(&(k, vid)) {
            return self.print(format!("no permanent put {vid:016x} on {k}"));
        }
        self.node.cancel_put(k, vid);
        self.print(format!("put {vid:016x} on {k} cancelled"))
    }

    /// `rp {...}`: the members of a JSON object as strings, as a phone hands a push's data over.
    fn push(&self, json: &str) -> Result<(), String> {
        let j: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("rp: {e}"))?;
        let Some(o) = j.as_object() else {
            return Err("rp: push data must be a JSON object".into());
        };
        let data = o
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect();
        let said = self.node.push_notification(data)?;
        self.print(said)
    }
}

/// A public key as 64 hex digits.
pub fn parse_public_key(hex_key: &str) -> Result<dht_proto::crypto::PublicKey, String> {
    let bytes: Option<Vec<u8>> = (0..hex_key.len() / 2)
        .map(|i| {
            hex_key
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    match bytes {
        Some(b) if hex_key.len() == 64 => {
            dht_proto::crypto::PublicKey::from_bytes(&b).map_err(|e| format!("public key: {e}"))
        }
        _ => Err("public key: expected 64 hex digits".into()),
    }
}

fn parse_query(q: &str) -> Result<Query, String> {
    if q.is_empty() {
        Ok(Query::default())
    } else {
        Query::parse(q).map_err(|e| format!("bad query: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_64_hex_digits() {
        assert!(parse_public_key("abcd").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
        assert!(parse_query("SELECT id").is_ok());
        assert!(parse_query("").is_ok());
        assert!(parse_query("FROBNICATE").is_err());
    }
}
