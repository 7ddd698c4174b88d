//! Our encoder talks to a real OpenDHT node on loopback (Debian's 2.4.12 `dhtnode`, and a 4.4.2
//! node of the PyPI wheel), and our decoder reads its replies: ping, find, get, put (inline and
//! fragmented), get of both values, and a bad token.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant as StdInstant};

use dht_proto::value::Value;
use dht_proto::wire::fragment::{self, Progress, Reassembler};
use dht_proto::wire::{self, Body, ErrorCode, Message, PutRequest, Reply, RequestKind, Values, Want};
use dht_proto::{InfoHash, Instant};
use dht_tests::opendht::{OpenDhtNode, Version};

struct Client {
    sock: UdpSocket,
    peer: SocketAddr,
    id: InfoHash,
    tid: u32,
    reassembler: Reassembler,
}

impl Client {
    fn new(peer: SocketAddr) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Client {
            sock,
            peer,
            id: InfoHash::get("rdht interop client"),
            tid: 1000,
            reassembler: Reassembler::default(),
        }
    }

    fn send(&self, msg: &Message) {
        self.sock.send_to(&msg.encode_to_vec(), self.peer).unwrap();
    }

    /// Sends a request (and its value data, if any) until the reply with its tid arrives, re-sending
    /// every second, for at most `deadline`. Fragmented replies are reassembled.
    fn ask(&mut self, kind: RequestKind, data: &[Vec<u8>], deadline: Duration) -> Body {
        self.tid += 1;
        let tid = self.tid;
        let msg = Message::request(tid, self.id, kind);
        let start = StdInstant::now();
        let mut last_send: Option<StdInstant> = None;
        let mut buf = vec![0u8; 65536];
        loop {
            assert!(
                start.elapsed() < deadline,
                "no reply to tid {tid} within {deadline:?}"
            );
            if last_send.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                self.send(&msg);
                for parts in fragment::slices(data) {
                    self.send(&Message {
                        tid,
                        network: 0,
                        is_client: false,
                        body: Body::ValueData(parts),
                    });
                }
                last_send = Some(StdInstant::now());
            }
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(m) = wire::decode(&buf[..n]) else {
                panic!("undecodable datagram from dhtnode")
            };
            if m.tid != tid {
                continue;
            }
            let now = Instant::from_micros(start.elapsed().as_micros() as u64);
            let complete = match &m.body {
                Body::ValueData(parts) => match self.reassembler.on_parts(now, from, tid, parts.clone()) {
                    Ok(Progress::Complete(done)) => done,
                    _ => continue,
                },
                _ if fragment::is_fragmented(&m) => match self.reassembler.on_header(now, from, m) {
                    Ok(Progress::Complete(done)) => done,
                    _ => continue,
                },
                _ => m,
            };
            return complete.body;
        }
    }

    /// A plain get of `key`.
    fn get(&mut self, key: InfoHash, deadline: Duration) -> Reply {
        reply(self.ask(
            RequestKind::Get {
                key,
                query: Default::default(),
                want: None,
            },
            &[],
            deadline,
        ))
    }

    /// Puts one value, inline or as fragments as OpenDHT would; returns the acknowledgement and
    /// whether the value went as fragments.
    fn put(&mut self, key: InfoHash, value: &Value, token: &[u8], deadline: Duration) -> (Reply, bool) {
        let out = fragment::prepare(std::slice::from_ref(value));
        let fragmented = !out.data.is_empty();
        let kind = RequestKind::Put(PutRequest {
            key,
            values: out.values,
            created: None,
            token: token.into(),
        });
        (reply(self.ask(kind, &out.data, deadline)), fragmented)
    }
}

fn reply(body: Body) -> Reply {
    match body {
        Body::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn values(r: &Reply) -> Vec<Value> {
    match &r.values {
        Some(Values::Inline(v)) => v.to_vec(),
        other => panic!("expected values, got {other:?}"),
    }
}

#[test]
fn our_messages_against_real_opendht() {
    messages_against(Version::V2_4_12);
}

#[test]
fn our_messages_against_real_opendht_4_4_2() {
    messages_against(Version::V4_4_2);
}

fn messages_against(version: Version) {
    let Some(node) = OpenDhtNode::start_version(version) else {
        return;
    };
    let mut c = Client::new(SocketAddr::from(([127, 0, 0, 1], node.port)));
    let wait = Duration::from_secs(15);

    // Ping: the first reply also shows the node is up.
    let pong = reply(c.ask(RequestKind::Ping, &[], wait));
    assert!(!pong.id.is_zero());
    assert_eq!(pong.addr, Some("127.0.0.1".parse().unwrap()));

    // Find: a token, always.
    let found = reply(c.ask(
        RequestKind::Find {
            target: InfoHash::get("somewhere"),
            want: Some(Want::BOTH),
        },
        &[],
        wait,
    ));
    assert!(found.token.is_some());

    // Get of an empty key: a token and no values.
    let key = InfoHash::get("rdht interop key");
    let got = c.get(key, wait);
    let token = got.token.clone().expect("get replies carry a token");
    assert!(
        got.values
            .as_ref()
            .is_none_or(|v| matches!(v, Values::Inline(v) if v.is_empty()))
    );

    // Put a small value inline: acknowledged with its id.
    let small = Value::new(0x5151, b"hello from rust".to_vec());
    let (ack, fragmented) = c.put(key, &small, &token, wait);
    assert!(!fragmented);
    assert_eq!(ack.vid, Some(0x5151));

    // Put a 32 KiB value as fragments.
    let big = Value::new(0x3232, (0..32 * 1024).map(|i| (i % 251) as u8).collect());
    let (ack, fragmented) = c.put(key, &big, &token, wait);
    assert!(fragmented);
    assert_eq!(ack.vid, Some(0x3232));

    // Get both back; the reply's values come as fragments we reassemble.
    let got = c.get(key, wait);
    let mut vals = values(&got);
    vals.sort_by_key(|v| v.id);
    assert_eq!(vals, vec![big, small]);

    // A put with a bad token is refused with 401.
    let bad = c.ask(
        RequestKind::Put(PutRequest {
            key,
            values: Values::Inline(vec![Value::new(9, b"x".to_vec())].into()),
            created: None,
            token: b"forged".as_slice().into(),
        }),
        &[],
        wait,
    );
    match bad {
        Body::Error(e) => assert_eq!(e.code, ErrorCode::UNAUTHORIZED),
        other => panic!("expected 401, got {other:?}"),
    }
}
