//! What the console prints: the shared output, values as one line each, and the node's figures.

use std::io::Write;
use std::sync::{Arc, Mutex};

use dht_mio::Handle;
use dht_proto::value::Value;
use dht_proto::{Family, Status};

/// Where command output goes; shared with the callbacks of listens.
pub type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// Writes one line to `out` and flushes it (listens print from the runner's thread).
pub(crate) fn say(out: &Out, line: impl AsRef<str>) {
    if let Ok(mut o) = out.lock() {
        let _ = writeln!(o, "{}", line.as_ref());
        let _ = o.flush();
    }
}

/// Bytes as lower-case hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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

/// What `ll` prints: node id, public key, addresses, connectivity, storage figures, the uplink's
/// pacing (`--uplink-rate`) and traffic.
pub(crate) fn info(h: &Handle) -> String {
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
    let uplink = match h.inspect(|n| n.config().uplink_bytes_per_sec) {
        Ok(Some(rate)) => format!(
            "uplink paced at {rate} bytes/s; {} retransmitted gets not answered twice",
            s.duplicate_gets
        ),
        _ => "uplink not paced".to_string(),
    };
    let received = s.received.total();
    let sent = s.sent.total();
    let dropped = s.dropped.total();
    format!(
        "node id {}\n{key}\nbound {:?}, public {public}\nIPv4 {} ({} nodes, {} good), IPv6 {} ({} nodes, {} good)\n\
         storage {} keys, {} values, {} bytes; {} remote listeners\n{uplink}\n\
         datagrams in {received}, out {sent}, dropped {dropped}; {} searches, {} operations",
        h.node_id(),
        h.local_addrs(),
        status(Family::V4),
        s.nodes[Family::V4],
        s.good_nodes[Family::V4],
        status(Family::V6),
        s.nodes[Family::V6],
        s.good_nodes[Family::V6],
        s.stored_keys,
        s.stored_values,
        s.stored_bytes,
        s.remote_listeners,
        s.searches,
        s.operations,
    )
}

/// What `lr` prints: both routing tables.
pub(crate) fn routing(n: &dht_proto::Node) -> String {
    format!(
        "IPv4 routing table:\n{}IPv6 routing table:\n{}",
        n.routing_table_text(Family::V4),
        n.routing_table_text(Family::V6)
    )
}

/// The end of a timed operation: " in 12.3 ms".
pub(crate) fn took(started: std::time::Instant) -> String {
    format!(" in {:.1} ms", started.elapsed().as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_text_as_text_and_bytes_as_hex() {
        let text = Value::new(0xff, b"hello".to_vec());
        assert_eq!(
            show_value(&text),
            "id 00000000000000ff type 0 seq 0 size 5 data \"hello\""
        );
        let bytes = Value::new(1, vec![0; 40]);
        let shown = show_value(&bytes);
        assert!(
            shown.ends_with(&format!("data 0x{}…", "00".repeat(32))),
            "{shown}"
        );
    }
}
