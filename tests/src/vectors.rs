//! Golden vectors: real OpenDHT datagrams captured on loopback (see `tests/vectors/README.md`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One captured datagram.
#[derive(Clone, Debug)]
pub struct Vector {
    /// Position in capture order.
    pub index: usize,
    /// Sender's UDP address.
    pub from: SocketAddr,
    /// Receiver's UDP address.
    pub to: SocketAddr,
    /// The payload.
    pub bytes: Vec<u8>,
}

/// The OpenDHT 2.4.12 capture, in order.
pub fn opendht_2_4_12() -> Vec<Vector> {
    parse(include_str!("../vectors/opendht-2.4.12.txt"))
}

/// Parses the vector text format: `index src_port dst_port family hex`, `#` comments.
pub fn parse(text: &str) -> Vec<Vector> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [index, src, dst, fam, hex] = f.as_slice() else {
                panic!("bad vector line: {l}")
            };
            let ip: IpAddr = if *fam == "v6" {
                Ipv6Addr::LOCALHOST.into()
            } else {
                Ipv4Addr::LOCALHOST.into()
            };
            Vector {
                index: index.parse().expect("index"),
                from: SocketAddr::new(ip, src.parse().expect("port")),
                to: SocketAddr::new(ip, dst.parse().expect("port")),
                bytes: (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                    .collect(),
            }
        })
        .collect()
}
