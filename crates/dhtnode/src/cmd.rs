//! The command language: one line, one [`Cmd`]. [`COMMANDS`] is the table of commands, their
//! names, usage and parser; the help text is made from it.

use crate::options::bootstrap_spec;

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
    /// `cpp key vid`: cancel a permanent put.
    CancelPut {
        /// The key as typed.
        key: String,
        /// The value id (hex, as `p` printed it).
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
    /// `rp {json object}`: a push notification's data, handed to the proxy client.
    Push(String),
    /// An empty line.
    Nothing,
}

/// A command line cut into its command word, its first argument and the rest (each trimmed).
#[derive(Debug, Clone, Copy)]
pub struct Words<'a> {
    /// The command as typed.
    pub word: &'a str,
    /// The first argument, usually the key ("" when missing).
    pub first: &'a str,
    /// The rest of the line after the first argument ("" when missing).
    pub rest: &'a str,
}

impl<'a> Words<'a> {
    fn cut(line: &'a str) -> Words<'a> {
        let (word, rest) = split_word(line.trim());
        let (first, rest) = split_word(rest);
        Words { word, first, rest }
    }

    fn key(&self) -> Result<String, String> {
        self.first_or(&format!("{}: missing key", self.word))
    }

    fn first_or(&self, error: &str) -> Result<String, String> {
        match self.first {
            "" => Err(error.to_string()),
            first => Ok(first.to_string()),
        }
    }

    fn text(&self) -> Result<String, String> {
        match self.rest {
            "" => Err(format!("{}: missing value", self.word)),
            rest => Ok(rest.to_string()),
        }
    }
}

/// `("word", "the rest")`, both trimmed.
fn split_word(s: &str) -> (&str, &str) {
    let (word, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    (word, rest.trim())
}

/// One command of the table.
#[derive(Debug)]
pub struct Command {
    /// Its names; the first is the one the help shows.
    pub names: &'static [&'static str],
    /// Its arguments, as the help shows them.
    pub args: &'static str,
    /// What it does, in a few words.
    pub does: &'static str,
    /// Makes the [`Cmd`] of a line that starts with one of the names.
    pub parse: fn(Words<'_>) -> Result<Cmd, String>,
}

/// Every command, in the order of the help.
pub const COMMANDS: &[Command] = &[
    Command {
        names: &["h", "help"],
        args: "",
        does: "this help",
        parse: |_| Ok(Cmd::Help),
    },
    Command {
        names: &["x", "exit", "quit"],
        args: "",
        does: "exit (pending puts finish first)",
        parse: |_| Ok(Cmd::Exit),
    },
    Command {
        names: &["ll"],
        args: "",
        does: "node id, addresses, connectivity, figures",
        parse: |_| Ok(Cmd::Info),
    },
    Command {
        names: &["lr"],
        args: "",
        does: "routing tables",
        parse: |_| Ok(Cmd::Routing),
    },
    Command {
        names: &["ls"],
        args: "",
        does: "searches",
        parse: |_| Ok(Cmd::Searches),
    },
    Command {
        names: &["ld"],
        args: "[key]",
        does: "stored values",
        parse: storage,
    },
    Command {
        names: &["b"],
        args: "<host[:port]>",
        does: "bootstrap from a node",
        parse: bootstrap,
    },
    Command {
        names: &["g"],
        args: "<key>",
        does: "get",
        parse: get,
    },
    Command {
        names: &["q"],
        args: "<key> <query>",
        does: "get with a query (SELECT ... WHERE ...)",
        parse: query,
    },
    Command {
        names: &["l"],
        args: "<key> [query]",
        does: "listen",
        parse: listen,
    },
    Command {
        names: &["cl"],
        args: "<key> <n>",
        does: "cancel listen number n",
        parse: cancel_listen,
    },
    Command {
        names: &["p"],
        args: "<key> <text>",
        does: "put",
        parse: put,
    },
    Command {
        names: &["pp"],
        args: "<key> <text>",
        does: "permanent put",
        parse: put,
    },
    Command {
        names: &["cpp"],
        args: "<key> <vid>",
        does: "cancel a permanent put (value id in hex)",
        parse: cancel_put,
    },
    Command {
        names: &["s"],
        args: "<key> <text>",
        does: "signed put (with this node's identity)",
        parse: signed_put,
    },
    Command {
        names: &["e"],
        args: "<key> <to> <text>",
        does: "put encrypted to a public key (64 hex) or a key id (40 hex)",
        parse: encrypted_put,
    },
    Command {
        names: &["rp"],
        args: "<json>",
        does: "hand a push notification's data to the proxy client",
        parse: push,
    },
];

impl Cmd {
    /// Parses one line; the error says what is wrong, in words for the user.
    pub fn parse(line: &str) -> Result<Cmd, String> {
        let words = Words::cut(line);
        if words.word.is_empty() {
            return Ok(Cmd::Nothing);
        }
        match COMMANDS.iter().find(|c| c.names.contains(&words.word)) {
            Some(command) => (command.parse)(words),
            None => Err(format!("unknown command {:?} (h for help)", words.word)),
        }
    }
}

/// The help text, from [`COMMANDS`].
pub fn help_text() -> String {
    let mut text = String::from("Commands:\n");
    for c in COMMANDS {
        let usage = format!("{} {}", c.names.first().copied().unwrap_or_default(), c.args);
        text.push_str(&format!("  {:<22}{}\n", usage.trim_end(), c.does));
    }
    text.push_str("A key is 40 hex digits, or any text (hashed to a key).");
    text
}

fn storage(w: Words<'_>) -> Result<Cmd, String> {
    Ok(Cmd::Storage((!w.first.is_empty()).then(|| w.first.to_string())))
}

fn bootstrap(w: Words<'_>) -> Result<Cmd, String> {
    let spec = w.first_or("b: missing host[:port]")?;
    let spec = bootstrap_spec(&spec).map_err(|e| format!("b: {e}"))?;
    Ok(Cmd::Bootstrap(spec))
}

fn get(w: Words<'_>) -> Result<Cmd, String> {
    Ok(Cmd::Get {
        key: w.key()?,
        query: String::new(),
    })
}

fn query(w: Words<'_>) -> Result<Cmd, String> {
    let key = w.key()?;
    if w.rest.is_empty() {
        return Err("q: missing query".into());
    }
    Ok(Cmd::Get {
        key,
        query: w.rest.into(),
    })
}

fn listen(w: Words<'_>) -> Result<Cmd, String> {
    Ok(Cmd::Listen {
        key: w.key()?,
        query: w.rest.into(),
    })
}

fn cancel_listen(w: Words<'_>) -> Result<Cmd, String> {
    let key = w.key()?;
    let n = w
        .rest
        .parse()
        .map_err(|_| "cl: missing or bad listen number".to_string())?;
    Ok(Cmd::CancelListen { key, n })
}

fn put(w: Words<'_>) -> Result<Cmd, String> {
    Ok(Cmd::Put {
        key: w.key()?,
        data: w.text()?,
        permanent: w.word == "pp",
    })
}

fn cancel_put(w: Words<'_>) -> Result<Cmd, String> {
    let key = w.key()?;
    let vid =
        u64::from_str_radix(w.rest, 16).map_err(|_| "cpp: missing or bad value id (hex)".to_string())?;
    Ok(Cmd::CancelPut { key, vid })
}

fn push(w: Words<'_>) -> Result<Cmd, String> {
    let text = format!("{} {}", w.first, w.rest);
    match text.trim() {
        "" => Err("rp: missing push data (a JSON object)".into()),
        t => Ok(Cmd::Push(t.to_owned())),
    }
}

fn signed_put(w: Words<'_>) -> Result<Cmd, String> {
    Ok(Cmd::SignedPut {
        key: w.key()?,
        data: w.text()?,
    })
}

fn encrypted_put(w: Words<'_>) -> Result<Cmd, String> {
    let key = w.key()?;
    let (to, data) = split_word(w.rest);
    if to.is_empty() || data.is_empty() {
        return Err("e: usage: e <key> <public key> <text>".into());
    }
    Ok(Cmd::EncryptedPut {
        key,
        to: to.into(),
        data: data.into(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn commands_parse_and_bad_lines_say_why() {
        assert_eq!(Cmd::parse("  ").unwrap(), Cmd::Nothing);
        assert_eq!(Cmd::parse("ll").unwrap(), Cmd::Info);
        assert_eq!(Cmd::parse("quit").unwrap(), Cmd::Exit);
        assert_eq!(Cmd::parse("ld").unwrap(), Cmd::Storage(None));
        assert_eq!(Cmd::parse("ld k").unwrap(), Cmd::Storage(Some("k".into())));
        assert_eq!(
            Cmd::parse("b 127.0.0.1:4222").unwrap(),
            Cmd::Bootstrap("127.0.0.1:4222".into())
        );
        assert_eq!(
            Cmd::parse("q key SELECT id").unwrap(),
            Cmd::Get {
                key: "key".into(),
                query: "SELECT id".into()
            }
        );
        assert_eq!(
            Cmd::parse("l key").unwrap(),
            Cmd::Listen {
                key: "key".into(),
                query: String::new()
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
            Cmd::parse("e k abcd  secret words").unwrap(),
            Cmd::EncryptedPut {
                key: "k".into(),
                to: "abcd".into(),
                data: "secret words".into()
            }
        );
        for (bad, why) in [
            ("g", "g: missing key"),
            ("p k", "p: missing value"),
            ("q k", "q: missing query"),
            ("cl k x", "bad listen number"),
            ("cpp k zz", "bad value id"),
            ("b", "b: missing host"),
            ("b 127.0.0.1:0", "b: 127.0.0.1:0: port 0"),
            ("frobnicate", "unknown command"),
            ("s k", "s: missing value"),
            ("e k abcd", "usage: e"),
        ] {
            let e = Cmd::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_help_lists_every_command_of_the_table() {
        let help = help_text();
        for c in COMMANDS {
            assert!(help.contains(&format!("\n  {} ", c.names[0])), "{}", c.names[0]);
            for name in c.names {
                assert!(Cmd::parse(name).is_ok() || !c.args.is_empty(), "{name}");
            }
        }
        assert!(help.contains("  cpp <key> <vid>       cancel"), "{help}");
    }
}
