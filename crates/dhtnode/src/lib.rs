//! # dhtnode
//!
//! The pieces of the `dhtnode` binary, one module each: its options ([`Options`], `options.rs`),
//! its command language ([`Cmd`] and the table [`COMMANDS`], `cmd.rs`), the [`Console`] that runs
//! a command (`console.rs`), the loop that reads lines (`repl.rs`), what it prints (`show.rs`), the log (`log.rs`), and the identity and
//! state files (`files.rs`). The binary reads commands from a terminal or, when stdin is not one,
//! from a script.
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
//! | `g <key>` | get the values at a key; its last line says how many of the closest nodes answered (`get done: 8/8 answered in 3.1 ms`) |
//! | `q <key> <query>` | get with a query, e.g. `q k SELECT id WHERE value_type=0` |
//! | `l <key> [query]` | listen to a key |
//! | `cl <key> <listen>` | cancel a listen (its number as `l` printed it) |
//! | `p <key> <text>` | put a value |
//! | `pp <key> <text>` | put a permanent value (kept alive until cancelled) |
//! | `cpp <key> <value id>` | cancel a permanent put (its id as `pp` printed it) |
//! | `s <key> <text>` | put a value signed with the node's identity |
//! | `e <key> <to> <text>` | put a value encrypted to a public key (64 hex digits) or to the key with a short id (40 hex digits, looked up), as `ll` prints them |
//! | `rp <json>` | hand a push notification's data (a JSON object) to the proxy client (`--proxyclient` with `--devicekey`) |
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

mod backend;
mod cmd;
mod console;
mod files;
pub mod log;
mod options;
pub mod proxy;
mod repl;
mod show;

pub use backend::{Backend, Cancel, GetEnd, OnChange, OnDone, OnPut, OnValues, ProxyBackend, Stored};
pub use cmd::{COMMANDS, Cmd, Command, Words, help_text};
pub use console::{Console, parse_public_key};
pub use files::{CliError, load_or_create_identity, load_state, save_state};
pub use options::{Options, bootstrap_spec, uplink_rate};
pub use repl::{Input, PROMPT, PipedLines, Read, Terminal, run_lines};
pub use show::{Out, show_value};
