//! Typed messages, and their decoding and encoding.

use crate::prelude::*;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rmp::Marker;

use super::DecodeError;
use super::node_info::NodeInfo;
use crate::InfoHash;
use crate::msgpack::{Reader, Seen, write};
use crate::value::{Field, FieldRow, FieldValue, Query, Value, ValueId};

/// A transaction id. Requests carry a fresh one; replies echo it.
pub type Tid = u32;
/// A network id; nodes only talk to nodes with the same one. 0 is the public network.
pub type NetworkId = u32;
/// An opaque write token issued by a storing node: held inline up to 32 bytes (ours are 20,
/// OpenDHT's 32), so the tokens every find and get reply carries cost no allocation.
pub type Token = smallvec::SmallVec<[u8; 32]>;
/// A reply's node list: held inline up to the 8 nodes a reply carries, so decoding and
/// answering a find costs no allocation for it.
pub type NodeList = smallvec::SmallVec<[NodeInfo; 8]>;

/// The `"v"` user agent every OpenDHT message but value data carries.
const USER_AGENT: &str = "o2";

/// Largest value size (in a `values` header) that gets a reassembly slot: 64 KiB plus margin.
pub(crate) const MAX_FRAGMENTED_VALUE: u64 = 64 * 1024 + 32;

/// A decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Transaction id (`t`).
    pub tid: Tid,
    /// Network id (`n`), 0 when absent.
    pub network: NetworkId,
    /// The sender says it is a client (`s`): it stores nothing and should not be routed to.
    pub is_client: bool,
    /// What the message says.
    pub body: Body,
}

/// The kinds of message.
// A reply holds its node lists inline (about 0.9 KB): a message lives for one datagram and is
// moved a few times, which costs less than the two allocations boxing or vectors would.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// A request (`y: q`).
    Request(Request),
    /// A reply (`y: r`).
    Reply(Reply),
    /// An error reply (`y: e`).
    Error(ErrorReply),
    /// Fragments of values announced by another message's header (`y: p`).
    ValueData(Vec<ValuePart>),
    /// A protocol-v0 listen notice (`u`), for compatibility.
    LegacyUpdate(LegacyUpdate),
}

/// A request and its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Sender's node id.
    pub id: InfoHash,
    /// What is asked.
    pub kind: RequestKind,
}

/// Which address families a requester wants nodes of (`w`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Want {
    /// Wants IPv4 nodes.
    pub ipv4: bool,
    /// Wants IPv6 nodes.
    pub ipv6: bool,
}

impl Want {
    /// Both families.
    pub const BOTH: Want = Want {
        ipv4: true,
        ipv6: true,
    };
}

/// What a request asks. Absent hashes decode as [`InfoHash::ZERO`] and absent tokens as empty,
/// so that the node can answer them with OpenDHT's errors rather than drop them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind {
    /// `ping`.
    Ping,
    /// `find`: nodes close to `target`.
    Find {
        /// Target id.
        target: InfoHash,
        /// Families wanted; `None`: the requester's own.
        want: Option<Want>,
    },
    /// `get`: values at `key`, and nodes close to it.
    Get {
        /// Key.
        key: InfoHash,
        /// Query (empty when absent).
        query: Query,
        /// Families wanted; `None`: the requester's own.
        want: Option<Want>,
    },
    /// `listen`: subscribe socket `sid` of the sender to changes at `key`.
    Listen(ListenRequest),
    /// `put`: store values at `key`.
    Put(PutRequest),
    /// `refresh`: extend the life of value `vid` at `key`.
    Refresh {
        /// Key.
        key: InfoHash,
        /// Value id.
        vid: ValueId,
        /// Write token.
        token: Token,
    },
    /// `update`: a storing node tells a listener of new, refreshed or expired values.
    Update(UpdateRequest),
}

/// The arguments of a `listen` request: subscribe socket `sid` of the sender to changes at `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenRequest {
    /// Key.
    pub key: InfoHash,
    /// Write token from an earlier get.
    pub token: Token,
    /// The requester's socket id for this listen.
    pub sid: Tid,
    /// Protocol version (`ve`); `None` = legacy v0.
    pub version: Option<u32>,
    /// Query (empty when absent).
    pub query: Query,
}

/// The arguments of a `put` request: store values at `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRequest {
    /// Key.
    pub key: InfoHash,
    /// The value (OpenDHT sends exactly one per request).
    pub values: Values,
    /// Creation time in Unix seconds (`c`); `None` = now.
    pub created: Option<i64>,
    /// Write token.
    pub token: Token,
}

/// The arguments of an `update` request: a storing node tells a listener of new, refreshed or
/// expired values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRequest {
    /// Key (absent, i.e. zero, on refresh/expiry notices).
    pub key: InfoHash,
    /// The listener's socket id.
    pub sid: Tid,
    /// Protocol version (`ve`).
    pub version: Option<u32>,
    /// A fresh token for the listener.
    pub token: Option<Token>,
    /// What changed.
    pub payload: UpdatePayload,
}

/// What an update or a legacy notice reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdatePayload {
    /// New or edited values.
    Values {
        /// The values.
        values: Values,
        /// Creation time in Unix seconds.
        created: Option<i64>,
    },
    /// Values refreshed (`re`).
    Refreshed(Vec<ValueId>),
    /// Values expired (`exp`).
    Expired(Vec<ValueId>),
}

/// The values a message carries inline: OpenDHT puts one value in a put and few in a reply,
/// so one is held in place (a decoded put or reply allocates no list).
pub type ValueList = smallvec::SmallVec<[Value; 1]>;

/// A `values` array: the values themselves, or their sizes when they follow as value data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values {
    /// Values carried in the message. Values that fail to decode are skipped, as OpenDHT does.
    Inline(ValueList),
    /// Serialized size of each value, by index; the bytes follow in [`Body::ValueData`] messages.
    Sizes(Vec<u64>),
}

impl Default for Values {
    fn default() -> Self {
        Values::Inline(ValueList::new())
    }
}

/// A reply. OpenDHT replies do not say what they answer: the requester matches the tid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Replier's node id.
    pub id: InfoHash,
    /// The requester's IP as the replier sees it (`sa`).
    pub addr: Option<IpAddr>,
    /// IPv4 nodes close to the target (`n4`).
    pub nodes4: NodeList,
    /// IPv6 nodes close to the target (`n6`).
    pub nodes6: NodeList,
    /// A write token (find, get and listen replies).
    pub token: Option<Token>,
    /// Values found (get replies).
    pub values: Option<Values>,
    /// Selected fields (get replies to a query with a select).
    pub fields: Option<FieldRows>,
    /// The value acknowledged (put and refresh replies).
    pub vid: Option<ValueId>,
}

/// The `fileds` part of a get reply: for each matching value, the selected fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRows {
    /// Selected fields, sorted, never empty.
    pub fields: Vec<Field>,
    /// One row per value; each holds `fields.len()` values in that order.
    pub rows: Vec<FieldRow>,
}

/// OpenDHT's protocol error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode;

impl ErrorCode {
    /// 203: a zero key, or a put of value id 0.
    pub const NON_AUTHORITATIVE_INFORMATION: u16 = 203;
    /// 401: a put, listen or refresh whose token does not check out.
    pub const UNAUTHORIZED: u16 = 401;
    /// 404: a refresh for a key the storer holds nothing for.
    pub const NOT_FOUND: u16 = 404;
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    /// Replier's node id (zero when the error carried no body).
    pub id: InfoHash,
    /// Error code ([`ErrorCode`]).
    pub code: u16,
    /// Human-readable message.
    pub message: String,
}

/// A protocol-v0 listen notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyUpdate {
    /// Sender's node id.
    pub id: InfoHash,
    /// A fresh token.
    pub token: Option<Token>,
    /// What changed.
    pub payload: UpdatePayload,
}

/// One slice of a value sent as value data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValuePart {
    /// Index of the value in its header's `values` array.
    pub index: u32,
    /// Byte offset of this slice in the serialized value.
    pub offset: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Message {
    /// A request on network 0.
    pub fn request(tid: Tid, id: InfoHash, kind: RequestKind) -> Message {
        Message {
            tid,
            network: 0,
            is_client: false,
            body: Body::Request(Request { id, kind }),
        }
    }

    /// A reply on network 0.
    pub fn reply(tid: Tid, reply: Reply) -> Message {
        Message {
            tid,
            network: 0,
            is_client: false,
            body: Body::Reply(reply),
        }
    }

    /// An error reply on network 0.
    pub fn error(tid: Tid, id: InfoHash, code: u16, message: impl Into<String>) -> Message {
        Message {
            tid,
            network: 0,
            is_client: false,
            body: Body::Error(ErrorReply {
                id,
                code,
                message: message.into(),
            }),
        }
    }

    /// The sender's id, when the message names one.
    pub fn sender_id(&self) -> Option<&InfoHash> {
        match &self.body {
            Body::Request(r) => Some(&r.id),
            Body::Reply(r) => Some(&r.id),
            Body::Error(e) => Some(&e.id),
            Body::LegacyUpdate(u) => Some(&u.id),
            Body::ValueData(_) => None,
        }
    }

    /// Encodes into a new vector.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        encode(self, &mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes one datagram. Never panics; allocates no more than the input justifies.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    if data.len() > super::MAX_DATAGRAM {
        return Err(DecodeError::TooLarge(data.len()));
    }
    let mut r = Reader::new(data);
    let n = r.map_len("message")?;
    let mut top = Top::default();
    let mut seen = Seen::default();
    for _ in 0..n {
        let key = r.key()?.and_then(top_key).filter(|&k| seen.first_index(k as u32));
        let at = r.clone();
        match key {
            Some(TopKey::Y) => top.y = Some(at),
            Some(TopKey::Q) => {
                top.q = Some(r.str_bytes("q")?);
                continue;
            }
            Some(TopKey::T) => {
                top.tid = read_tid(&mut r.clone(), "t")?;
            }
            Some(TopKey::A) => top.a = Some(at),
            Some(TopKey::R) => top.r = Some(at),
            Some(TopKey::E) => top.e = Some(at),
            Some(TopKey::U) => top.u = Some(at),
            Some(TopKey::P) => top.p = Some(at),
            Some(TopKey::V) => {
                r.clone().str_bytes("v")?;
            }
            Some(TopKey::N) => top.network = r.clone().uint_as("n")?,
            Some(TopKey::S) => top.is_client = r.clone().bool("s")?,
            None => {}
        }
        // Bodies are parsed where they stand, saving a second walk; a body that fails here is
        // skipped and parsed again only if it turns out to be the one the message uses, so a
        // malformed unused body rejects nothing, as in OpenDHT.
        if let (Some(k @ (TopKey::A | TopKey::R | TopKey::U)), None) = (key, top.parsed) {
            let mut probe = r.clone();
            if top.fields.read_into(&mut probe).is_ok() {
                top.parsed = Some(k);
                r = probe;
                continue;
            }
            top.fields = BodyFields::default();
        }
        r.skip()?;
    }

    // The common case, a reply parsed where it stood, goes straight into the result: the reply
    // is moved once, not through the temporaries of the general path.
    if top.e.is_none() && top.a.is_none() && top.r.is_some() && top.parsed == Some(TopKey::R) {
        return Ok(Message {
            tid: top.tid,
            network: top.network,
            is_client: top.is_client,
            body: Body::Reply(core::mem::take(&mut top.fields.reply)),
        });
    }
    let body = if let Some(mut e) = top.e.clone() {
        let mut err = read_error(&mut e)?;
        if let Some(f) = top.body()? {
            err.id = f.reply.id;
        }
        Body::Error(err)
    } else if top.r.is_some() {
        Body::Reply(top.reply()?)
    } else if let Some(mut p) = top.p {
        Body::ValueData(read_value_parts(&mut p)?)
    } else if top.u.is_some() {
        let f = top.body()?.unwrap_or_default();
        Body::LegacyUpdate(LegacyUpdate {
            id: f.reply.id,
            token: f.reply.token.clone(),
            payload: f.update_payload(),
        })
    } else {
        if let Some(mut y) = top.y.clone()
            && y.str_bytes("y").map_err(|_| DecodeError::UnknownKind)? != b"q"
        {
            return Err(DecodeError::UnknownKind);
        }
        let name = top.q.ok_or(DecodeError::UnknownKind)?;
        if top.a.is_none() {
            return Err(DecodeError::NoBody);
        }
        let f = top.body()?.unwrap_or_default();
        Body::Request(f.into_request(name)?)
    };
    Ok(Message {
        tid: top.tid,
        network: top.network,
        is_client: top.is_client,
        body,
    })
}

/// The top-level keys of a message, numbered for [`Seen`]'s mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopKey {
    Y,
    Q,
    T,
    A,
    R,
    E,
    U,
    P,
    V,
    N,
    S,
}

fn top_key(k: &[u8]) -> Option<TopKey> {
    Some(match k {
        b"y" => TopKey::Y,
        b"q" => TopKey::Q,
        b"t" => TopKey::T,
        b"a" => TopKey::A,
        b"r" => TopKey::R,
        b"e" => TopKey::E,
        b"u" => TopKey::U,
        b"p" => TopKey::P,
        b"v" => TopKey::V,
        b"n" => TopKey::N,
        b"s" => TopKey::S,
        _ => return None,
    })
}

#[derive(Default)]
struct Top<'a> {
    /// Which body (`a`, `r` or `u`) was parsed where it stood, into `fields`.
    parsed: Option<TopKey>,
    /// The body parsed where it stood (empty unless `parsed`).
    fields: BodyFields,
    y: Option<Reader<'a>>,
    q: Option<&'a [u8]>,
    a: Option<Reader<'a>>,
    r: Option<Reader<'a>>,
    e: Option<Reader<'a>>,
    u: Option<Reader<'a>>,
    p: Option<Reader<'a>>,
    tid: Tid,
    network: NetworkId,
    is_client: bool,
}

impl Top<'_> {
    /// The reply of a message with an `r` (and no `a`): taken from the body parsed in place when
    /// it is the one, which saves moving the whole [`BodyFields`].
    fn reply(&mut self) -> Result<Reply, DecodeError> {
        if self.a.is_none() && self.parsed == Some(TopKey::R) {
            return Ok(core::mem::take(&mut self.fields.reply));
        }
        Ok(self.body()?.unwrap_or_default().reply)
    }

    /// The body OpenDHT uses: `a`, else `r`, else `u`.
    fn body(&mut self) -> Result<Option<BodyFields>, DecodeError> {
        let (key, reader) = match (&self.a, &self.r, &self.u) {
            (Some(a), _, _) => (TopKey::A, a.clone()),
            (None, Some(r), _) => (TopKey::R, r.clone()),
            (None, None, Some(u)) => (TopKey::U, u.clone()),
            (None, None, None) => return Ok(None),
        };
        if self.parsed.take() == Some(key) {
            return Ok(Some(core::mem::take(&mut self.fields)));
        }
        let mut reader = reader;
        BodyFields::read(&mut reader).map(Some)
    }
}

/// A tid is a uint32; for backward compatibility a 4-byte str or bin is read big-endian.
fn read_tid(r: &mut Reader<'_>, field: &'static str) -> Result<Tid, DecodeError> {
    match r.peek()? {
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 | Marker::FixStr(_) | Marker::Str8 => {
            let b = r.blob(field)?.into_vec();
            let arr: [u8; 4] = b.as_slice().try_into().map_err(|_| DecodeError::WrongType {
                field,
                expected: "uint32 or 4 bytes",
            })?;
            Ok(u32::from_be_bytes(arr))
        }
        _ => r.uint_as(field),
    }
}

fn read_error(r: &mut Reader<'_>) -> Result<ErrorReply, DecodeError> {
    let n = r.array_len("e")?;
    if n == 0 {
        return Err(DecodeError::MissingField("e[0]"));
    }
    let code = r.uint_as("e[0]")?;
    let mut message = String::new();
    if n >= 2 {
        let mut m = r.clone();
        if let Ok(b) = m.str_bytes("e[1]") {
            message = String::from_utf8_lossy(b).into_owned();
        }
    }
    Ok(ErrorReply {
        id: InfoHash::ZERO,
        code,
        message,
    })
}

fn read_value_parts(r: &mut Reader<'_>) -> Result<Vec<ValuePart>, DecodeError> {
    let n = r.map_len("p")?;
    let mut parts: Vec<ValuePart> = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let index: u32 = r.uint_as("p.index")?;
        let m = r.map_len("p.part")?;
        let (mut offset, mut data) = (None, None);
        let mut seen = Seen::default();
        for _ in 0..m {
            match seen.first(r.key()?, &[b"o", b"d"]) {
                Some(b"o") => offset = Some(r.uint_as::<u32>("p.o")?),
                Some(b"d") => data = Some(r.blob("p.d")?.into_vec()),
                _ => r.skip()?,
            }
        }
        // An entry missing `o` or `d` is ignored; a repeated index keeps the first entry.
        if let (Some(offset), Some(data)) = (offset, data)
            && !parts.iter().any(|p| p.index == index)
        {
            parts.push(ValuePart { index, offset, data });
        }
    }
    Ok(parts)
}

/// Every body key OpenDHT's parser knows, read in one pass whatever their order. The keys a
/// reply carries are read straight into a [`Reply`], handed out whole without moving field by
/// field (an absent `id` is zero there, as every caller reads it).
#[derive(Default)]
struct BodyFields {
    reply: Reply,
    h: Option<InfoHash>,
    target: Option<InfoHash>,
    query: Option<Query>,
    want: Option<Want>,
    sid: Option<Tid>,
    version: Option<u32>,
    created: Option<i64>,
    refreshed: Option<Vec<ValueId>>,
    expired: Option<Vec<ValueId>>,
}

fn read_hash(r: &mut Reader<'_>, field: &'static str) -> Result<InfoHash, DecodeError> {
    let b = r.bin(field)?;
    InfoHash::from_slice(b).ok_or(DecodeError::BadIdLength { field, len: b.len() })
}

fn read_ids(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<ValueId>, DecodeError> {
    let n = r.array_len(field)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.uint(field)?);
    }
    Ok(out)
}

/// OS address-family numbers: 2 is IPv4 everywhere; IPv6 is 10 (Linux), 23 (Windows),
/// 28 (FreeBSD) or 30 (macOS).
const AF_INET: u64 = 2;
const AF_INET6_ALL: [u64; 4] = [10, 23, 28, 30];
const AF_INET6: u64 = 10;

fn read_want(r: &mut Reader<'_>) -> Result<Want, DecodeError> {
    let n = r.array_len("w")?;
    let mut want = Want::default();
    for _ in 0..n {
        let mut item = r.clone();
        r.skip()?;
        match item.uint("w") {
            Ok(AF_INET) => want.ipv4 = true,
            Ok(f) if AF_INET6_ALL.contains(&f) => want.ipv6 = true,
            _ => {}
        }
    }
    Ok(want)
}

fn read_values(r: &mut Reader<'_>) -> Result<Values, DecodeError> {
    let n = r.array_len("values")?;
    let mut inline = ValueList::new();
    let mut sizes = Vec::new();
    for _ in 0..n {
        let mut item = r.clone();
        match r.peek()? {
            Marker::FixPos(_) | Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => {
                sizes.push(r.uint("values")?);
            }
            _ => match Value::read(&mut item) {
                Ok(v) => {
                    inline.push(v);
                    *r = item;
                }
                Err(_) => r.skip()?,
            },
        }
    }
    match (sizes.is_empty(), inline.is_empty()) {
        (true, _) => Ok(Values::Inline(inline)),
        (false, true) => Ok(Values::Sizes(sizes)),
        (false, false) => Err(DecodeError::BadValue(
            "values array mixes inline values and sizes",
        )),
    }
}

fn read_fields(r: &mut Reader<'_>) -> Result<FieldRows, DecodeError> {
    let n = r.map_len("fileds")?;
    let mut fields: Option<Vec<Field>> = None;
    let mut flat: Option<Reader<'_>> = None;
    let mut seen = Seen::default();
    for _ in 0..n {
        match seen.first(r.key()?, &[b"f", b"v"]) {
            Some(b"f") => {
                let len = r.array_len("fileds.f")?;
                let mut f = Vec::with_capacity(len);
                for _ in 0..len {
                    let id = r.uint("fileds.f")?;
                    f.push(Field::from_id(id).ok_or(DecodeError::BadValue("unknown field id"))?);
                }
                f.sort_unstable();
                f.dedup();
                fields = Some(f);
            }
            Some(b"v") => {
                flat = Some(r.clone());
                r.skip()?;
            }
            _ => r.skip()?,
        }
    }
    let fields = fields.ok_or(DecodeError::MissingField("fileds.f"))?;
    if fields.is_empty() {
        return Err(DecodeError::BadValue("empty field selection"));
    }
    let mut rows = Vec::new();
    if let Some(mut v) = flat {
        let len = v.array_len("fileds.v")?;
        for _ in 0..len / fields.len() {
            let mut row = FieldRow {
                values: Vec::with_capacity(fields.len()),
            };
            let mut ok = true;
            for f in &fields {
                let mut item = v.clone();
                v.skip()?;
                match FieldValue::read_selected(*f, &mut item) {
                    Ok(fv) => row.values.push(fv),
                    Err(_) => ok = false,
                }
            }
            // A row that fails to decode is dropped, as OpenDHT does.
            if ok {
                rows.push(row);
            }
        }
    }
    Ok(FieldRows { fields, rows })
}

/// The body keys OpenDHT's parser knows, numbered for [`Seen`]'s mask.
fn body_key(k: &[u8]) -> Option<u32> {
    Some(match k {
        b"id" => 0,
        b"h" => 1,
        b"target" => 2,
        b"q" => 3,
        b"w" => 4,
        b"token" => 5,
        b"sid" => 6,
        b"ve" => 7,
        b"vid" => 8,
        b"c" => 9,
        b"values" => 10,
        b"fileds" => 11,
        b"fields" => 12,
        b"n4" => 13,
        b"n6" => 14,
        b"sa" => 15,
        b"re" => 16,
        b"exp" => 17,
        _ => return None,
    })
}

impl BodyFields {
    fn read(r: &mut Reader<'_>) -> Result<BodyFields, DecodeError> {
        let mut f = BodyFields::default();
        f.read_into(r)?;
        Ok(f)
    }

    /// Reads a body into `self`, which must be empty (default).
    fn read_into(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let n = r.map_len("body")?;
        let f = self;
        let mut seen = Seen::default();
        for _ in 0..n {
            match r.key()?.and_then(body_key).filter(|&i| seen.first_index(i)) {
                Some(0) => f.reply.id = read_hash(r, "id")?,
                Some(1) => f.h = Some(read_hash(r, "h")?),
                Some(2) => f.target = Some(read_hash(r, "target")?),
                Some(3) => f.query = Some(Query::read(r)?),
                Some(4) => f.want = Some(read_want(r)?),
                Some(5) => f.reply.token = Some(r.with_blob("token", Token::from_slice)?),
                Some(6) => f.sid = Some(read_tid(r, "sid")?),
                Some(7) => f.version = Some(r.uint_as("ve")?),
                Some(8) => f.reply.vid = Some(r.uint("vid")?),
                Some(9) => f.created = Some(r.int("c")?),
                Some(10) => f.reply.values = Some(read_values(r)?),
                Some(11 | 12) => f.reply.fields = Some(read_fields(r)?),
                Some(13) => r.with_blob("n4", |b| NodeInfo::parse_v4_into(b, &mut f.reply.nodes4))??,
                Some(14) => r.with_blob("n6", |b| NodeInfo::parse_v6_into(b, &mut f.reply.nodes6))??,
                Some(15) => {
                    let b = r.bin("sa")?;
                    f.reply.addr = if let Ok(a) = <[u8; 4]>::try_from(b) {
                        Some(Ipv4Addr::from(a).into())
                    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
                        Some(Ipv6Addr::from(a).into())
                    } else {
                        None
                    };
                }
                Some(16) => f.refreshed = Some(read_ids(r, "re")?),
                Some(17) => f.expired = Some(read_ids(r, "exp")?),
                _ => r.skip()?,
            }
        }
        // OpenDHT reads values, else fields, else exp, else re.
        if f.reply.values.is_some() {
            f.reply.fields = None;
        }
        if f.reply.values.is_some() || f.reply.fields.is_some() {
            f.expired = None;
            f.refreshed = None;
        } else if f.expired.is_some() {
            f.refreshed = None;
        }
        Ok(())
    }

    fn update_payload(&self) -> UpdatePayload {
        match (&self.reply.values, &self.expired, &self.refreshed) {
            (Some(values), _, _) => UpdatePayload::Values {
                values: values.clone(),
                created: self.created,
            },
            (None, Some(exp), _) => UpdatePayload::Expired(exp.clone()),
            (None, None, Some(re)) => UpdatePayload::Refreshed(re.clone()),
            (None, None, None) => UpdatePayload::Values {
                values: Values::default(),
                created: self.created,
            },
        }
    }

    fn into_request(self, name: &[u8]) -> Result<Request, DecodeError> {
        let key = self.h.unwrap_or(InfoHash::ZERO);
        let kind = match name {
            b"ping" => RequestKind::Ping,
            b"find" => RequestKind::Find {
                target: self.target.unwrap_or(InfoHash::ZERO),
                want: self.want,
            },
            b"get" => RequestKind::Get {
                key,
                query: self.query.unwrap_or_default(),
                want: self.want,
            },
            b"listen" => RequestKind::Listen(ListenRequest {
                key,
                token: self.reply.token.unwrap_or_default(),
                sid: self.sid.unwrap_or(0),
                version: self.version,
                query: self.query.unwrap_or_default(),
            }),
            b"put" => RequestKind::Put(PutRequest {
                key,
                values: self.reply.values.unwrap_or_default(),
                created: self.created,
                token: self.reply.token.unwrap_or_default(),
            }),
            b"refresh" => RequestKind::Refresh {
                key,
                vid: self.reply.vid.unwrap_or(0),
                token: self.reply.token.unwrap_or_default(),
            },
            b"update" => {
                let payload = self.update_payload();
                RequestKind::Update(UpdateRequest {
                    key,
                    sid: self.sid.unwrap_or(0),
                    version: self.version,
                    token: self.reply.token,
                    payload,
                })
            }
            _ => return Err(DecodeError::UnknownKind),
        };
        Ok(Request {
            id: self.reply.id,
            kind,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends the msgpack form of `msg` to `out`, key for key as a C++ node writes it.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    let extra = u32::from(msg.network != 0) + u32::from(msg.is_client);
    match &msg.body {
        Body::Request(req) => {
            write::map(out, 5 + extra);
            write::key(out, "a");
            encode_request_args(req, out);
            if let RequestKind::Update(UpdateRequest {
                payload: UpdatePayload::Refreshed(_) | UpdatePayload::Expired(_),
                ..
            }) = req.kind
            {
                // C++ writes refresh/expiry notices with the keys in this order.
                write::key(out, "y");
                write::str(out, "q");
                write::key(out, "v");
                write::str(out, USER_AGENT);
                write::key(out, "q");
                write::str(out, "update");
                write::key(out, "t");
                write::uint(out, u64::from(msg.tid));
                write_net(msg, out);
            } else {
                write::key(out, "q");
                write::str(out, request_name(&req.kind));
                write_tail(msg, "q", out);
            }
        }
        Body::Reply(reply) => {
            write::map(out, 4 + extra);
            write::key(out, "r");
            encode_reply(reply, out);
            write_tail(msg, "r", out);
        }
        Body::Error(err) => {
            write::map(out, 5 + extra);
            write::key(out, "e");
            write::array(out, 2);
            write::uint(out, u64::from(err.code));
            write::str(out, &err.message);
            write::key(out, "r");
            write::map(out, 1);
            write::key(out, "id");
            write::bin(out, err.id.as_bytes());
            write_tail(msg, "e", out);
        }
        Body::LegacyUpdate(u) => {
            write::map(out, 4 + extra);
            write::key(out, "u");
            let n = 1 + u32::from(u.token.is_some()) + payload_extra(&u.payload);
            write::map(out, n);
            write::key(out, "id");
            write::bin(out, u.id.as_bytes());
            if let Some(t) = &u.token {
                write::key(out, "token");
                write::bin(out, t);
            }
            write_payload(&u.payload, out);
            write_tail(msg, "r", out);
        }
        Body::ValueData(parts) => {
            write::map(out, 3 + extra);
            write_net(msg, out);
            write::key(out, "y");
            write::str(out, "p");
            write::key(out, "t");
            write::uint(out, u64::from(msg.tid));
            write::key(out, "p");
            write::map(out, parts.len() as u32);
            for p in parts {
                write::uint(out, u64::from(p.index));
                write::map(out, 2);
                write::key(out, "o");
                write::uint(out, u64::from(p.offset));
                write::key(out, "d");
                write::bin(out, &p.data);
            }
        }
    }
}

/// `"t"`, `"y"`, `"v"` and the optional `"n"`/`"s"` that close every message but value data.
fn write_tail(msg: &Message, y: &str, out: &mut Vec<u8>) {
    write::key(out, "t");
    write::uint(out, u64::from(msg.tid));
    write::key(out, "y");
    write::str(out, y);
    write::key(out, "v");
    write::str(out, USER_AGENT);
    write_net(msg, out);
}

fn write_net(msg: &Message, out: &mut Vec<u8>) {
    if msg.network != 0 {
        write::key(out, "n");
        write::uint(out, u64::from(msg.network));
    }
    if msg.is_client {
        write::key(out, "s");
        write::bool(out, true);
    }
}

fn request_name(kind: &RequestKind) -> &'static str {
    match kind {
        RequestKind::Ping => "ping",
        RequestKind::Find { .. } => "find",
        RequestKind::Get { .. } => "get",
        RequestKind::Listen(_) => "listen",
        RequestKind::Put(_) => "put",
        RequestKind::Refresh { .. } => "refresh",
        RequestKind::Update(_) => "update",
    }
}

fn write_hash(out: &mut Vec<u8>, key: &str, h: &InfoHash) {
    write::key(out, key);
    write::bin(out, h.as_bytes());
}

fn write_want(out: &mut Vec<u8>, want: &Want) {
    write::key(out, "w");
    write::array(out, u32::from(want.ipv4) + u32::from(want.ipv6));
    if want.ipv4 {
        write::uint(out, AF_INET);
    }
    if want.ipv6 {
        write::uint(out, AF_INET6);
    }
}

fn write_values(out: &mut Vec<u8>, values: &Values) {
    write::key(out, "values");
    match values {
        Values::Inline(vs) => {
            write::array(out, vs.len() as u32);
            for v in vs {
                v.encode(out);
            }
        }
        Values::Sizes(sizes) => {
            write::array(out, sizes.len() as u32);
            for s in sizes {
                write::uint(out, *s);
            }
        }
    }
}

fn write_created(out: &mut Vec<u8>, created: Option<i64>) {
    if let Some(c) = created {
        write::key(out, "c");
        write::int(out, c);
    }
}

fn payload_extra(p: &UpdatePayload) -> u32 {
    match p {
        UpdatePayload::Values { created, .. } => 1 + u32::from(created.is_some()),
        UpdatePayload::Refreshed(_) | UpdatePayload::Expired(_) => 1,
    }
}

fn write_payload(p: &UpdatePayload, out: &mut Vec<u8>) {
    match p {
        UpdatePayload::Values { values, created } => {
            write_values(out, values);
            write_created(out, *created);
        }
        UpdatePayload::Refreshed(ids) | UpdatePayload::Expired(ids) => {
            write::key(
                out,
                if matches!(p, UpdatePayload::Refreshed(_)) {
                    "re"
                } else {
                    "exp"
                },
            );
            write::array(out, ids.len() as u32);
            for id in ids {
                write::uint(out, *id);
            }
        }
    }
}

fn encode_request_args(req: &Request, out: &mut Vec<u8>) {
    let id = &req.id;
    match &req.kind {
        RequestKind::Ping => {
            write::map(out, 1);
            write_hash(out, "id", id);
        }
        RequestKind::Find { target, want } => {
            write::map(out, 2 + u32::from(want.is_some()));
            write_hash(out, "id", id);
            write_hash(out, "target", target);
            if let Some(w) = want {
                write_want(out, w);
            }
        }
        RequestKind::Get { key, query, want } => {
            let send_query = !query.is_wire_empty();
            write::map(out, 2 + u32::from(send_query) + u32::from(want.is_some()));
            write_hash(out, "id", id);
            write_hash(out, "h", key);
            if send_query {
                write::key(out, "q");
                query.encode(out);
            }
            if let Some(w) = want {
                write_want(out, w);
            }
        }
        RequestKind::Listen(ListenRequest {
            key,
            token,
            sid,
            version,
            query,
        }) => {
            let send_query = !query.is_wire_empty();
            write::map(out, 4 + u32::from(version.is_some()) + u32::from(send_query));
            write_hash(out, "id", id);
            if let Some(v) = version {
                write::key(out, "ve");
                write::uint(out, u64::from(*v));
            }
            write_hash(out, "h", key);
            write::key(out, "token");
            write::bin(out, token);
            write::key(out, "sid");
            write::uint(out, u64::from(*sid));
            if send_query {
                write::key(out, "q");
                query.encode(out);
            }
        }
        RequestKind::Put(PutRequest {
            key,
            values,
            created,
            token,
        }) => {
            write::map(out, 4 + u32::from(created.is_some()));
            write_hash(out, "id", id);
            write_hash(out, "h", key);
            write_values(out, values);
            write_created(out, *created);
            write::key(out, "token");
            write::bin(out, token);
        }
        RequestKind::Refresh { key, vid, token } => {
            write::map(out, 4);
            write_hash(out, "id", id);
            write_hash(out, "h", key);
            write::key(out, "vid");
            write::uint(out, *vid);
            write::key(out, "token");
            write::bin(out, token);
        }
        RequestKind::Update(UpdateRequest {
            key,
            sid,
            version,
            token,
            payload,
        }) => {
            let n = 2
                + u32::from(version.is_some())
                + u32::from(token.is_some())
                + u32::from(!key.is_zero())
                + payload_extra(payload);
            write::map(out, n);
            write_hash(out, "id", id);
            if let Some(v) = version {
                write::key(out, "ve");
                write::uint(out, u64::from(*v));
            }
            if !key.is_zero() {
                write_hash(out, "h", key);
            }
            write::key(out, "sid");
            write::uint(out, u64::from(*sid));
            // C++ puts the token after new values but before the ids of a refresh/expiry notice.
            let notice = !matches!(payload, UpdatePayload::Values { .. });
            let write_token = |out: &mut Vec<u8>| {
                if let Some(t) = token {
                    write::key(out, "token");
                    write::bin(out, t);
                }
            };
            if notice {
                write_token(out);
            }
            write_payload(payload, out);
            if !notice {
                write_token(out);
            }
        }
    }
}

fn encode_reply(r: &Reply, out: &mut Vec<u8>) {
    let n = 1
        + u32::from(r.addr.is_some())
        + u32::from(!r.nodes4.is_empty())
        + u32::from(!r.nodes6.is_empty())
        + u32::from(r.token.is_some())
        + u32::from(r.values.is_some())
        + u32::from(r.fields.is_some())
        + u32::from(r.vid.is_some());
    write::map(out, n);
    write_hash(out, "id", &r.id);
    if let Some(vid) = r.vid {
        write::key(out, "vid");
        write::uint(out, vid);
    }
    if let Some(addr) = r.addr {
        write::key(out, "sa");
        match addr {
            IpAddr::V4(a) => write::bin(out, &a.octets()),
            IpAddr::V6(a) => write::bin(out, &a.octets()),
        }
    }
    if !r.nodes4.is_empty() {
        write::key(out, "n4");
        write_node_list(&r.nodes4, false, out);
    }
    if !r.nodes6.is_empty() {
        write::key(out, "n6");
        write_node_list(&r.nodes6, true, out);
    }
    if let Some(t) = &r.token {
        write::key(out, "token");
        write::bin(out, t);
    }
    if let Some(values) = &r.values {
        write_values(out, values);
    }
    if let Some(fields) = &r.fields {
        write::key(out, "fileds");
        write::map(out, 2);
        write::key(out, "f");
        write::array(out, fields.fields.len() as u32);
        for f in &fields.fields {
            write::uint(out, *f as u64);
        }
        write::key(out, "v");
        write::array(out, (fields.rows.len() * fields.fields.len()) as u32);
        for row in &fields.rows {
            for v in &row.values {
                v.write_selected(out);
            }
        }
    }
}

/// Writes a node list as one bin, sized for the nodes of the right family only.
/// A compact node list as one `bin`, written straight into `out` (its length is known from the
/// entries of the family: no intermediate buffer).
fn write_node_list(nodes: &[NodeInfo], v6: bool, out: &mut Vec<u8>) {
    let entries = nodes.iter().filter(|n| n.addr.is_ipv6() == v6).count();
    let len = entries * if v6 { super::NODE6_LEN } else { super::NODE4_LEN };
    write::bin_len(out, len as u32);
    NodeInfo::write_list(nodes, v6, out);
}
