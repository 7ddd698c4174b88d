//! # dhtnode
//!
//! The pieces of the `dhtnode` binary: its options ([`Options`]), its interactive commands
//! ([`Cmd`], parsed by [`Cmd::parse`] and run by [`Console`]), the identity file and the state
//! file. The binary reads commands from a terminal or, when stdin is not one, from a script.
//!
//! Commands, as OpenDHT's `dhtnode` names them:
//!
//! | command | does |
//! |---|---|
//! | `h`, `help` | list the commands |
//! | `x`, `exit`, `quit` | stop (pending puts finish first) |
//! | `ll` | node id, addresses, connectivity, traffic and storage figures |
//! | `lr` | routing tables |
//! | `ls` | searches |
//! | `ld [key]` | stored values (all, or one key's) |
//! | `b <host[:port]>` | bootstrap from a node |
//! | `g <key>` | get the values at a key |
//! | `q <key> <query>` | get with a query, e.g. `q k SELECT id WHERE value_type=0` |
//! | `l <key> [query]` | listen to a key |
//! | `cl <key> <listen>` | cancel a listen (its number as `l` printed it) |
//! | `p <key> <text>` | put a value |
//! | `pp <key> <text>` | put a permanent value (kept alive until cancelled) |
//! | `cpp <key> <value id>` | cancel a put |
//! | `s <key> <text>` | put a value signed with the node's identity |
//! | `e <key> <to> <text>` | put a value encrypted to a public key (64 hex digits) or to the key with a short id (40 hex digits, looked up), as `ll` prints them |
//!
//! A key is 40 hex digits or any other text, which is hashed (SHA-1) to a key.
//!
//! ```
//! use dhtnode::Cmd;
//! assert_eq!(Cmd::parse("p chat hello world").unwrap(), Cmd::Put {
//!     key: "chat".into(), data: "hello world".into(), permanent: false,
//! });
//! assert!(Cmd::parse("g").is_err());
//! ```

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dht_mio::{Change, Handle, ListenId, PutMode, RunError, Runner};
use dht_proto::value::{Query, Value};
use dht_proto::{Family, InfoHash, PutOptions, Status};

/// The options of `dhtnode`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "dhtnode",
    version,
    about = "Run a DHT node that speaks OpenDHT's protocol."
)]
pub struct Options {
    /// UDP port for IPv4 and IPv6 (0: any free port).
    #[arg(short = 'p', long, default_value_t = dht_proto::DEFAULT_PORT)]
    pub port: u16,
    /// Join the network of this node (`host`, `host:port` or `[v6]:port`); may repeat.
    #[arg(short = 'b', long = "bootstrap", value_name = "HOST[:PORT]")]
    pub bootstrap: Vec<String>,
    /// Network id: nodes of other networks are ignored (0 is the public network).
    #[arg(short = 'n', long = "network", default_value_t = 0)]
    pub network: u32,
    /// More log output (-v debug, -vv trace).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Write the log to this file instead of standard error.
    #[arg(short = 'l', long = "logfile", value_name = "FILE")]
    pub logfile: Option<PathBuf>,
    /// Service mode: no commands; run until SIGINT or SIGTERM.
    #[arg(short = 's', long = "service")]
    pub service: bool,
    /// Identity file: the node's 32-byte secret seed as hex (its id derives from it). Created,
    /// readable by the owner only, when missing.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Keep known nodes and stored values in this file across restarts.
    #[arg(long = "persist", value_name = "FILE")]
    pub persist: Option<PathBuf>,
    /// IPv4 address to bind.
    #[arg(long = "bind4", default_value_t = Ipv4Addr::UNSPECIFIED)]
    pub bind4: Ipv4Addr,
    /// IPv6 address to bind.
    #[arg(long = "bind6", default_value_t = Ipv6Addr::UNSPECIFIED)]
    pub bind6: Ipv6Addr,
    /// IPv4 only.
    #[arg(short = '4', long = "ipv4-only", conflicts_with = "ipv6_only")]
    pub ipv4_only: bool,
    /// IPv6 only.
    #[arg(short = '6', long = "ipv6-only")]
    pub ipv6_only: bool,
    /// How long `g`, `q` and `p` wait for their end, in seconds.
    #[arg(long = "timeout", default_value_t = 30)]
    pub timeout: u64,
}

/// Errors of the files and commands of `dhtnode`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The identity file could not be read or written.
    #[error("identity file {path}: {source}")]
    IdentityIo {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The identity file does not hold a seed.
    #[error("identity file {0}: expected 64 hex digits (a 32-byte seed)")]
    IdentityFormat(PathBuf),
    /// The state file could not be read or written.
    #[error("state file {path}: {source}")]
    StateIo {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The state file is corrupt.
    #[error("state file {path}: {reason} (delete it to start afresh)")]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The runner failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Reads the seed in `path`, or creates the file (mode 0600) with a fresh seed from the OS.
pub fn load_or_create_identity(path: &Path) -> Result<[u8; 32], CliError> {
    let io_err = |source| CliError::IdentityIo {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_seed(text.trim()).ok_or_else(|| CliError::IdentityFormat(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(io_err)?;
            writeln!(f, "{}", hex(&seed)).map_err(io_err)?;
            Ok(seed)
        }
        Err(e) => Err(io_err(e)),
    }
}

fn parse_seed(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(seed)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Loads a state file written by [`save_state`]; a missing file is an empty state.
pub fn load_state(
    path: &Path,
) -> Result<(Vec<dht_proto::wire::NodeInfo>, Vec<dht_proto::ExportedValue>), CliError> {
    match std::fs::read(path) {
        Ok(bytes) => dht_proto::state::decode(&bytes).map_err(|e| CliError::StateFormat {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Vec::new(), Vec::new())),
        Err(source) => Err(CliError::StateIo {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the runner's nodes and values to `path` (through a temporary file and a rename, so a
/// crash never leaves half a file).
pub fn save_state(handle: &Handle, path: &Path) -> Result<(), CliError> {
    let nodes = handle.export_nodes()?;
    let values = handle.export_values()?;
    let bytes = dht_proto::state::encode(&nodes, &values);
    let tmp = path.with_extension("tmp");
    let io_err = |source| CliError::StateIo {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

/// One command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cmd {
    /// `h`: the list of commands.
    Help,
    /// `x`: stop.
    Exit,
    /// `ll`: node information.
    Info,
    /// `lr`: routing tables.
    Routing,
    /// `ls`: searches.
    Searches,
    /// `ld [key]`: stored values.
    Storage(Option<String>),
    /// `b host[:port]`.
    Bootstrap(String),
    /// `g key` / `q key query`.
    Get {
        /// The key as typed.
        key: String,
        /// The query as typed (empty: everything).
        query: String,
    },
    /// `l key [query]`.
    Listen {
        /// The key as typed.
        key: String,
        /// The query as typed.
        query: String,
    },
    /// `cl key n`.
    CancelListen {
        /// The key as typed.
        key: String,
        /// The listen's number.
        n: u64,
    },
    /// `p` / `pp key text`.
    Put {
        /// The key as typed.
        key: String,
        /// The value's data.
        data: String,
        /// `pp`.
        permanent: bool,
    },
    /// `cpp key vid`.
    CancelPut {
        /// The key as typed.
        key: String,
        /// The value id (hex, as `p` printed it, or decimal with no letters).
        vid: u64,
    },
    /// `s key text`: a signed put.
    SignedPut {
        /// The key as typed.
        key: String,
        /// The value's data.
        data: String,
    },
    /// `e key pubkey text`: an encrypted put.
    EncryptedPut {
        /// The key as typed.
        key: String,
        /// The recipient's public key, hex.
        to: String,
        /// The value's data.
        data: String,
    },
    /// An empty line.
    Nothing,
}

impl Cmd {
    /// Parses one line; the error says what is wrong, in words for the user.
    pub fn parse(line: &str) -> Result<Cmd, String> {
        let line = line.trim();
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let (arg1, arg2) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let arg2 = arg2.trim();
        let need = |what: &str| -> Result<(), String> {
            if arg1.is_empty() {
                Err(format!("{word}: missing {what}"))
            } else {
                Ok(())
            }
        };
        Ok(match word {
            "" => Cmd::Nothing,
            "h" | "help" => Cmd::Help,
            "x" | "exit" | "quit" => Cmd::Exit,
            "ll" => Cmd::Info,
            "lr" => Cmd::Routing,
            "ls" => Cmd::Searches,
            "ld" => Cmd::Storage((!arg1.is_empty()).then(|| arg1.to_string())),
            "b" => {
                need("host[:port]")?;
                Cmd::Bootstrap(arg1.to_string())
            }
            "g" => {
                need("key")?;
                Cmd::Get {
                    key: arg1.into(),
                    query: String::new(),
                }
            }
            "q" => {
                need("key")?;
                if arg2.is_empty() {
                    return Err("q: missing query".into());
                }
                Cmd::Get {
                    key: arg1.into(),
                    query: arg2.into(),
                }
            }
            "l" => {
                need("key")?;
                Cmd::Listen {
                    key: arg1.into(),
                    query: arg2.into(),
                }
            }
            "cl" => {
                need("key")?;
                let n = arg2
                    .parse()
                    .map_err(|_| "cl: missing or bad listen number".to_string())?;
                Cmd::CancelListen { key: arg1.into(), n }
            }
            "p" | "pp" => {
                need("key")?;
                if arg2.is_empty() {
                    return Err(format!("{word}: missing value"));
                }
                Cmd::Put {
                    key: arg1.into(),
                    data: arg2.into(),
                    permanent: word == "pp",
                }
            }
            "cpp" => {
                need("key")?;
                let vid = u64::from_str_radix(arg2, 16)
                    .map_err(|_| "cpp: missing or bad value id (hex)".to_string())?;
                Cmd::CancelPut {
                    key: arg1.into(),
                    vid,
                }
            }
            "s" => {
                need("key")?;
                if arg2.is_empty() {
                    return Err("s: missing value".into());
                }
                Cmd::SignedPut {
                    key: arg1.into(),
                    data: arg2.into(),
                }
            }
            "e" => {
                need("key")?;
                let (to, data) = arg2.split_once(char::is_whitespace).unwrap_or((arg2, ""));
                if to.is_empty() || data.trim().is_empty() {
                    return Err("e: usage: e <key> <public key> <text>".into());
                }
                Cmd::EncryptedPut {
                    key: arg1.into(),
                    to: to.into(),
                    data: data.trim().into(),
                }
            }
            other => return Err(format!("unknown command {other:?} (h for help)")),
        })
    }
}

/// The help text.
pub const HELP: &str = "\
Commands:
  h                     this help
  x                     exit (pending puts finish first)
  ll                    node id, addresses, connectivity, figures
  lr                    routing tables
  ls                    searches
  ld [key]              stored values
  b <host[:port]>       bootstrap from a node
  g <key>               get
  q <key> <query>       get with a query (SELECT ... WHERE ...)
  l <key> [query]       listen
  cl <key> <n>          cancel listen number n
  p <key> <text>        put
  pp <key> <text>       permanent put
  cpp <key> <vid>       cancel a put (value id in hex)
  s <key> <text>        signed put (with this node's identity)
  e <key> <to> <text>   put encrypted to a public key (64 hex) or a key id (40 hex)
A key is 40 hex digits, or any text (hashed to a key).";

/// Where command output goes; shared with the callbacks of listens.
pub type Out = Arc<Mutex<Box<dyn Write + Send>>>;

fn say(out: &Out, line: impl AsRef<str>) {
    if let Ok(mut o) = out.lock() {
        let _ = writeln!(o, "{}", line.as_ref());
        let _ = o.flush();
    }
}

/// A value as one line: id, type, size and its data (text when it is printable, else hex).
pub fn show_value(v: &Value) -> String {
    let data = match std::str::from_utf8(&v.data) {
        Ok(s) if s.chars().all(|c| !c.is_control()) && s.len() <= 200 => format!("{s:?}"),
        _ => {
            let shown = v.data.get(..32).unwrap_or(&v.data);
            let more = if v.data.len() > 32 { "…" } else { "" };
            format!("0x{}{more}", hex(shown))
        }
    };
    let owner = match v
        .owner
        .as_deref()
        .map(dht_proto::crypto::PublicKey::from_spki_der)
    {
        Some(Ok(pk)) => format!(" signed by {}", hex(&pk.to_bytes())),
        Some(Err(_)) => " signed (key of another kind)".to_string(),
        None if v.is_encrypted() => " encrypted (not for us)".to_string(),
        None => String::new(),
    };
    format!(
        "id {:016x} type {} seq {} size {} data {data}{owner}",
        v.id,
        v.value_type,
        v.seq,
        v.data.len()
    )
}

/// Runs commands against a runner.
pub struct Console {
    handle: Handle,
    out: Out,
    timeout: Duration,
    listens: BTreeMap<u64, (InfoHash, ListenId)>,
    next_listen: u64,
}

impl Console {
    /// A console for `runner`, writing to `out`; `g`/`q`/`p` wait at most `timeout`.
    pub fn new(runner: &Runner, out: Out, timeout: Duration) -> Console {
        Console {
            handle: runner.handle(),
            out,
            timeout,
            listens: BTreeMap::new(),
            next_listen: 1,
        }
    }

    /// Runs one command; false once it was `x`.
    pub fn run(&mut self, cmd: Cmd) -> bool {
        let out = self.out.clone();
        let h = self.handle.clone();
        match cmd {
            Cmd::Nothing => {}
            Cmd::Help => say(&out, HELP),
            Cmd::Exit => return false,
            Cmd::Info => say(&out, self.info()),
            Cmd::Routing => match h.inspect(|n| {
                format!(
                    "IPv4 routing table:\n{}IPv6 routing table:\n{}",
                    n.routing_table_text(Family::V4),
                    n.routing_table_text(Family::V6)
                )
            }) {
                Ok(t) => say(&out, t.trim_end()),
                Err(e) => say(&out, format!("error: {e}")),
            },
            Cmd::Searches => match h.inspect(|n| n.searches_text()) {
                Ok(t) if t.is_empty() => say(&out, "no searches"),
                Ok(t) => say(&out, t.trim_end()),
                Err(e) => say(&out, format!("error: {e}")),
            },
            Cmd::Storage(key) => {
                let key = key.map(|k| InfoHash::from_hex_or_hash(&k));
                match h.export_values() {
                    Ok(values) => {
                        let mut n = 0;
                        for e in values.iter().filter(|e| key.is_none_or(|k| k == e.key)) {
                            n += 1;
                            let life = e
                                .remaining
                                .map(|d| format!("{} s left", d.as_secs()))
                                .unwrap_or_else(|| "permanent".into());
                            say(&out, format!("{} {} ({life})", e.key, show_value(&e.value)));
                        }
                        say(&out, format!("{n} values stored"));
                    }
                    Err(e) => say(&out, format!("error: {e}")),
                }
            }
            Cmd::Bootstrap(host) => match h.bootstrap_host(&host) {
                Ok(addrs) => say(&out, format!("bootstrapping from {addrs:?}")),
                Err(e) => say(&out, format!("error: {e}")),
            },
            Cmd::Get { key, query } => {
                let k = InfoHash::from_hex_or_hash(&key);
                let query = match parse_query(&query) {
                    Ok(q) => q,
                    Err(e) => return self.error(e),
                };
                let started = std::time::Instant::now();
                let (tx, rx) = std::sync::mpsc::channel();
                let o = out.clone();
                let r = h.get(
                    k,
                    query,
                    move |vs| {
                        for v in vs {
                            say(&o, format!("value {k} {}", show_value(v)));
                        }
                    },
                    move |r| {
                        let _ = tx.send(r);
                    },
                );
                if let Err(e) = r {
                    return self.error(e);
                }
                match rx.recv_timeout(self.timeout) {
                    Ok(Ok(ok)) => say(
                        &out,
                        format!(
                            "get done{} in {:.1} ms",
                            if ok {
                                ""
                            } else {
                                " (not every closest node answered)"
                            },
                            started.elapsed().as_secs_f64() * 1e3
                        ),
                    ),
                    Ok(Err(e)) => say(&out, format!("get failed: {e}")),
                    Err(_) => say(&out, "get timed out"),
                }
            }
            Cmd::Listen { key, query } => {
                let k = InfoHash::from_hex_or_hash(&key);
                let query = match parse_query(&query) {
                    Ok(q) => q,
                    Err(e) => return self.error(e),
                };
                let n = self.next_listen;
                let o = out.clone();
                match h.listen(k, query, move |c| match c {
                    Change::Added(vs) => {
                        for v in vs {
                            say(&o, format!("listen {n}: new {k} {}", show_value(v)));
                        }
                    }
                    Change::Expired(vs) => {
                        for v in vs {
                            say(&o, format!("listen {n}: expired {k} {}", show_value(v)));
                        }
                    }
                    Change::Failed(e) => say(&o, format!("listen {n} failed: {e}")),
                }) {
                    Ok(id) => {
                        self.next_listen += 1;
                        self.listens.insert(n, (k, id));
                        say(&out, format!("listening on {k} (listen {n})"));
                    }
                    Err(e) => return self.error(e),
                }
            }
            Cmd::CancelListen { key, n } => {
                let k = InfoHash::from_hex_or_hash(&key);
                match self.listens.get(&n) {
                    Some((lk, id)) if *lk == k => {
                        h.cancel_listen(*id);
                        self.listens.remove(&n);
                        say(&out, format!("listen {n} cancelled"));
                    }
                    _ => say(&out, format!("no listen {n} on {k}")),
                }
            }
            Cmd::Put { key, data, permanent } => {
                let opts = if permanent {
                    PutOptions::permanent()
                } else {
                    PutOptions::default()
                };
                self.put(
                    &key,
                    data,
                    opts,
                    PutMode::Plain,
                    if permanent { " (permanent)" } else { "" },
                );
            }
            Cmd::SignedPut { key, data } => {
                self.put(&key, data, PutOptions::default(), PutMode::Signed, " (signed)");
            }
            Cmd::EncryptedPut { key, to, data } => {
                // 40 hex digits: a short id, looked up; 64: the public key itself.
                let mode = if to.len() == 40 {
                    match InfoHash::from_hex(&to) {
                        Ok(id) => PutMode::EncryptedToId(id),
                        Err(e) => return self.error(format!("recipient id: {e}")),
                    }
                } else {
                    match parse_public_key(&to) {
                        Ok(k) => PutMode::EncryptedTo(k),
                        Err(e) => return self.error(e),
                    }
                };
                self.put(&key, data, PutOptions::default(), mode, " (encrypted)");
            }
            Cmd::CancelPut { key, vid } => {
                let k = InfoHash::from_hex_or_hash(&key);
                h.cancel_put(k, vid);
                say(&out, format!("put {vid:016x} on {k} cancelled"));
            }
        }
        true
    }

    fn put(&self, key: &str, data: String, opts: PutOptions, mode: PutMode, note: &str) {
        let out = &self.out;
        let k = InfoHash::from_hex_or_hash(key);
        let started = std::time::Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        // Typed as OpenDHT's dhtnode types its puts, so its `g` shows the text.
        let mut value = Value::new(0, data.into_bytes());
        value.user_type = "text/plain".into();
        let vid = match self.handle.put_as(k, value, opts, mode, move |r| {
            let _ = tx.send(r);
        }) {
            Ok(v) => v,
            Err(e) => {
                self.error(e);
                return;
            }
        };
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(o)) => say(
                out,
                format!(
                    "put {k} id {vid:016x}: stored on {} nodes{note} in {:.1} ms",
                    o.total_acked(),
                    started.elapsed().as_secs_f64() * 1e3
                ),
            ),
            Ok(Err(e)) => say(out, format!("put failed: {e}")),
            Err(_) => say(out, "put timed out"),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> bool {
        say(&self.out, format!("error: {e}"));
        true
    }

    fn info(&self) -> String {
        let h = &self.handle;
        let s = h.stats();
        let status = |f| match h.status(f) {
            Status::Connected => "connected",
            Status::Connecting => "connecting",
            Status::Disconnected => "disconnected",
        };
        let public = h
            .public_addresses()
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|e| e.to_string());
        let key = match h.inspect(|n| n.config().identity.as_ref().map(|i| i.public())) {
            Ok(Some(pk)) => format!("public key {} (id {})", hex(&pk.to_bytes()), pk.id()),
            _ => "no identity".to_string(),
        };
        let received: u64 = s.received.iter().sum();
        let sent: u64 = s.sent.iter().sum();
        let dropped: u64 = s.dropped.iter().sum();
        format!(
            "node id {}\n{key}\nbound {:?}, public {public}\nIPv4 {} ({} nodes, {} good), IPv6 {} ({} nodes, {} good)\n\
             storage {} keys, {} values, {} bytes; {} remote listeners\n\
             datagrams in {received}, out {sent}, dropped {dropped}; {} searches, {} operations",
            h.node_id(),
            h.local_addrs(),
            status(Family::V4),
            s.nodes[0],
            s.good_nodes[0],
            status(Family::V6),
            s.nodes[1],
            s.good_nodes[1],
            s.stored_keys,
            s.stored_values,
            s.stored_bytes,
            s.remote_listeners,
            s.searches,
            s.operations,
        )
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn commands_parse_and_bad_lines_say_why() {
        assert_eq!(Cmd::parse("  ").unwrap(), Cmd::Nothing);
        assert_eq!(Cmd::parse("ll").unwrap(), Cmd::Info);
        assert_eq!(Cmd::parse("ld k").unwrap(), Cmd::Storage(Some("k".into())));
        assert_eq!(
            Cmd::parse("q key SELECT id").unwrap(),
            Cmd::Get {
                key: "key".into(),
                query: "SELECT id".into()
            }
        );
        assert_eq!(
            Cmd::parse("cl key 3").unwrap(),
            Cmd::CancelListen {
                key: "key".into(),
                n: 3
            }
        );
        assert_eq!(
            Cmd::parse("cpp key 00000000000000ff").unwrap(),
            Cmd::CancelPut {
                key: "key".into(),
                vid: 255
            }
        );
        assert_eq!(
            Cmd::parse("pp k  two words ").unwrap(),
            Cmd::Put {
                key: "k".into(),
                data: "two words".into(),
                permanent: true
            }
        );
        assert_eq!(
            Cmd::parse("s k signed words").unwrap(),
            Cmd::SignedPut {
                key: "k".into(),
                data: "signed words".into()
            }
        );
        assert_eq!(
            Cmd::parse("e k abcd secret words").unwrap(),
            Cmd::EncryptedPut {
                key: "k".into(),
                to: "abcd".into(),
                data: "secret words".into()
            }
        );
        assert!(parse_public_key("abcd").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
        for bad in [
            "g",
            "p k",
            "q k",
            "cl k x",
            "cpp k zz",
            "b",
            "frobnicate",
            "s k",
            "e k abcd",
        ] {
            assert!(Cmd::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identity_files_are_created_private_and_bad_ones_refused() {
        let dir = std::env::temp_dir().join(format!("dhtnode-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("id");
        let seed = load_or_create_identity(&path).unwrap();
        assert_eq!(load_or_create_identity(&path).unwrap(), seed);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            load_or_create_identity(&path),
            Err(CliError::IdentityFormat(_))
        ));
        // A directory cannot be read as a file.
        assert!(matches!(
            load_or_create_identity(&dir),
            Err(CliError::IdentityIo { .. })
        ));
        std::fs::write(dir.join("state"), b"junk").unwrap();
        assert!(matches!(
            load_state(&dir.join("state")),
            Err(CliError::StateFormat { .. })
        ));
        assert!(load_state(&dir.join("missing")).unwrap().0.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
