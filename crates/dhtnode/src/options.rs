//! The command line of `dhtnode`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

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
    #[arg(short = 'b', long = "bootstrap", value_name = "HOST[:PORT]", value_parser = bootstrap_spec)]
    pub bootstrap: Vec<String>,
    /// Network id: nodes of other networks are ignored (0 is the public network).
    #[arg(short = 'n', long = "network", default_value_t = 0)]
    pub network: u32,
    /// More log output (-v debug, -vv trace). Without it, commands typed at a terminal log
    /// warnings only, and scripts and services information too.
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
    /// LAN peer discovery, compatible with OpenDHT's (`dhtnode -D`): announce this node on UDP
    /// port 8888 (239.192.0.1 and ff08::101) and join the nodes heard there, with no bootstrap
    /// address needed.
    #[arg(short = 'D', long = "peer-discovery", visible_alias = "discovery")]
    pub peer_discovery: bool,
    /// IPv4 only.
    #[arg(short = '4', long = "ipv4-only", conflicts_with = "ipv6_only")]
    pub ipv4_only: bool,
    /// IPv6 only.
    #[arg(short = '6', long = "ipv6-only")]
    pub ipv6_only: bool,
    /// The uplink's rate, in bytes per second (`125000`) or with a unit: `kB`, `MB` (1000,
    /// 1,000,000), `KiB`, `MiB` (1024, 1,048,576). Value data of get replies is then sent at
    /// this pace, round robin between askers, so that large answers on a slow uplink arrive
    /// whole instead of queueing unseen. Default: not paced (as OpenDHT).
    #[arg(long = "uplink-rate", value_name = "BYTES_PER_SEC", value_parser = uplink_rate)]
    pub uplink_rate: Option<u64>,
    /// How long `g`, `q` and `p` wait for their end, in seconds.
    #[arg(long = "timeout", default_value_t = 30)]
    pub timeout: u64,
    /// Serve OpenDHT's REST proxy API over HTTP on this TCP port (0: any free port; the
    /// address is printed).
    #[arg(long = "proxyserver", value_name = "PORT")]
    pub proxyserver: Option<u16>,
    /// Serve the proxy API over HTTPS on this TCP port, with `--proxy-certificate` and
    /// `--proxy-privkey`.
    #[arg(long = "proxyserverssl", value_name = "PORT", requires_all = ["proxy_certificate", "proxy_privkey"])]
    pub proxyserverssl: Option<u16>,
    /// The HTTPS proxy's certificate chain (PEM).
    #[arg(long = "proxy-certificate", value_name = "FILE")]
    pub proxy_certificate: Option<PathBuf>,
    /// The HTTPS proxy's private key (PEM: PKCS#8, PKCS#1 or SEC1, not encrypted).
    #[arg(long = "proxy-privkey", value_name = "FILE")]
    pub proxy_privkey: Option<PathBuf>,
    /// The password of an encrypted private key (OpenDHT's option; refused: decrypt the key
    /// first, e.g. with `openssl pkey`).
    #[arg(long = "proxy-privkey-password", value_name = "PASSWORD")]
    pub proxy_privkey_password: Option<String>,
    /// The address the proxy servers bind (default: every address, IPv6 and IPv4).
    #[arg(long = "proxy-addr", value_name = "ADDR")]
    pub proxy_addr: Option<IpAddr>,
    /// The push gateway of the proxy server (gorush): `host:port`, a bare port, or an
    /// `http(s)://` URL.
    #[arg(long = "pushserver", value_name = "HOST:PORT")]
    pub pushserver: Option<String>,
    /// The default push topic (iOS bundle id) of the proxy server.
    #[arg(long = "bundleid", value_name = "ID")]
    pub bundleid: Option<String>,
    /// Run as a client of this DHT proxy (`host:port`, `http://…` or `https://…`), with no
    /// UDP socket: every command goes through the proxy.
    #[arg(long = "proxyclient", value_name = "URL", conflicts_with_all = ["proxyserver", "proxyserverssl", "bootstrap", "persist"])]
    pub proxyclient: Option<String>,
    /// The proxy client's push token: listens become push subscriptions, and `rp` hands it
    /// the pushes.
    #[arg(long = "devicekey", value_name = "TOKEN", requires = "proxyclient")]
    pub devicekey: Option<String>,
    /// Trust this root certificate (PEM) for an `https://` proxy instead of the system's
    /// (not an OpenDHT option: for self-signed proxies).
    #[arg(long = "proxy-ca", value_name = "FILE", requires = "proxyclient")]
    pub proxy_ca: Option<PathBuf>,
}

/// A node to bootstrap from, as typed (`host`, `host:port`, `[v6]:port` or an address; no port
/// means the default one); refused when it names port 0, where no node can be reached.
pub fn bootstrap_spec(spec: &str) -> Result<String, String> {
    if explicit_port(spec) == Some(0) {
        return Err(format!(
            "{spec}: port 0 is no node's port (a node listens on a port of its own, {} by default)",
            dht_proto::DEFAULT_PORT
        ));
    }
    Ok(spec.to_string())
}

/// An uplink rate as typed: bytes per second, or a number with a unit (`k`/`kB`: 1000,
/// `M`/`MB`: 1,000,000, `Ki`/`KiB`: 1024, `Mi`/`MiB`: 1,048,576; the unit's case and a trailing
/// `/s` do not matter). Refused when it is 0 (leave the option out for no pacing) or does not
/// fit 64 bits.
pub fn uplink_rate(spec: &str) -> Result<u64, String> {
    let s = spec.trim();
    let s = s
        .strip_suffix("/s")
        .or_else(|| s.strip_suffix("/S"))
        .unwrap_or(s)
        .trim_end();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{spec}: expected bytes per second, e.g. 125000, 500kB or 2MiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1_000_000,
        "ki" | "kib" => 1024,
        "mi" | "mib" => 1 << 20,
        other => return Err(format!("{spec}: unknown unit {other:?} (kB, MB, KiB or MiB)")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err(format!(
            "{spec}: a rate of 0 sends nothing; leave the option out for no pacing"
        )),
        Some(rate) => Ok(rate),
        None => Err(format!("{spec}: too large")),
    }
}

/// The port written in `spec`, read as the runner reads it.
fn explicit_port(spec: &str) -> Option<u16> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Some(addr.port());
    }
    if spec.parse::<IpAddr>().is_ok() {
        return None;
    }
    spec.rsplit_once(':').and_then(|(_, port)| port.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_discovery_is_off_by_default_and_has_three_spellings() {
        use clap::Parser;
        assert!(!Options::parse_from(["dhtnode"]).peer_discovery);
        for flag in ["-D", "--peer-discovery", "--discovery"] {
            assert!(Options::parse_from(["dhtnode", flag]).peer_discovery, "{flag}");
        }
    }

    #[test]
    fn uplink_rates_in_bytes_or_with_a_unit() {
        use clap::Parser;
        assert_eq!(Options::parse_from(["dhtnode"]).uplink_rate, None);
        for (typed, rate) in [
            ("125000", 125_000),
            ("500kB", 500_000),
            ("500 k", 500_000),
            ("2MB/s", 2_000_000),
            ("64KiB", 65_536),
            ("1mib", 1_048_576),
        ] {
            assert_eq!(uplink_rate(typed), Ok(rate), "{typed}");
            let opts = Options::parse_from(["dhtnode", "--uplink-rate", typed]);
            assert_eq!(opts.uplink_rate, Some(rate), "{typed}");
        }
        for (bad, why) in [
            ("0", "rate of 0"),
            ("0KiB", "rate of 0"),
            ("fast", "expected bytes per second"),
            ("-5", "expected bytes per second"),
            ("12 parsecs", "unknown unit"),
            ("99999999999999999999", "expected bytes per second"),
            ("99999999999999999MiB", "too large"),
        ] {
            let e = uplink_rate(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(Options::try_parse_from(["dhtnode", "--uplink-rate", "0"]).is_err());
    }

    #[test]
    fn bootstrap_port_0_is_refused_in_every_spelling() {
        for bad in ["127.0.0.1:0", "[::1]:0", "localhost:0", "example.net:00"] {
            let e = bootstrap_spec(bad).err();
            assert!(e.is_some_and(|e| e.contains("port 0")), "{bad}");
        }
        for good in [
            "127.0.0.1:4222",
            "[::1]:1",
            "::1",
            "::",
            "localhost",
            "example.net:4222",
        ] {
            assert_eq!(bootstrap_spec(good).as_deref(), Ok(good));
        }
    }
}
