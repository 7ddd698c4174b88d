//! Values as JSON, the way OpenDHT's proxy writes and reads them (spec §3), and the error bodies.
//!
//! Output is compact, with object keys in alphabetical order (jsoncpp's sorted maps) and every
//! non-ASCII character escaped as `\uXXXX`, as jsoncpp does. Input is read by name with unknown
//! keys ignored; unlike OpenDHT 2.4.12, bad base64 or a malformed `owner`/`to` is an error (400)
//! instead of silently becoming zero bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dht_proto::InfoHash;
use dht_proto::value::Value;
use serde_json::Value as Json;

/// A JSON object with keys in sorted order, whatever serde_json's features.
pub(crate) type Object = BTreeMap<&'static str, Json>;

/// Why a JSON value could not become a DHT value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueJsonError {
    /// The body is JSON but not an object.
    #[error("value must be a JSON object")]
    NotObject,
    /// A base64 field (`data`, `sig`, `cypher`, `owner`) does not decode.
    #[error("invalid base64 in \"{0}\"")]
    Base64(&'static str),
    /// An integer field is out of its range or not an integer.
    #[error("invalid \"{0}\"")]
    Field(&'static str),
}

const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// The owner's public key (SubjectPublicKeyInfo DER) as PEM, 64 base64 characters a line.
/// OpenDHT 2.4.12 appends a NUL (`\u0000`) to it; we do not (and accept it on input).
pub fn owner_to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 64);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    let bytes = b64.as_bytes();
    for line in bytes.chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

fn pem_to_owner(pem: &str) -> Option<Vec<u8>> {
    let pem = pem.trim_end_matches(['\0', '\n', '\r', ' ']);
    let inner = pem.trim_start().strip_prefix(PEM_BEGIN)?.strip_suffix(PEM_END)?;
    let b64: String = inner.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

/// The value's JSON object (`Value::toJson`), before serialization.
pub(crate) fn value_object(v: &Value) -> Object {
    let mut o = Object::new();
    o.insert("id", Json::String(v.id.to_string()));
    if v.is_encrypted() {
        o.insert("cypher", Json::String(STANDARD.encode(&v.cypher)));
    } else {
        o.insert("data", Json::String(STANDARD.encode(&v.data)));
        o.insert("type", Json::from(v.value_type));
        if !v.user_type.is_empty() {
            o.insert("utype", Json::String(v.user_type.clone()));
        }
        if let Some(owner) = &v.owner {
            o.insert("owner", Json::String(owner_to_pem(owner)));
            o.insert("seq", Json::from(v.seq));
            o.insert("sig", Json::String(STANDARD.encode(&v.signature)));
            if let Some(to) = v.recipient {
                o.insert("to", Json::String(to.to_string()));
            }
        }
    }
    if v.priority != 0 {
        o.insert("prio", Json::from(v.priority));
    }
    if !v.push_type.is_empty() {
        o.insert("pt", Json::String(v.push_type.clone()));
    }
    o
}

/// Serializes compactly and escapes non-ASCII as jsoncpp does (`é` → `\u00e9`). Non-ASCII
/// characters can only appear inside JSON strings, so escaping them in the output text is exact.
pub(crate) fn to_ascii_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| String::from("{}"));
    if s.is_ascii() {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// One value as a line of JSON (`value-json\n`); `expired` adds `"expired":true` (listen streams).
pub fn value_line(v: &Value, expired: bool) -> String {
    let mut o = value_object(v);
    if expired {
        o.insert("expired", Json::Bool(true));
    }
    let mut s = to_ascii_json(&o);
    s.push('\n');
    s
}

fn b64_field(
    o: &serde_json::Map<String, Json>,
    name: &'static str,
) -> Result<Option<Vec<u8>>, ValueJsonError> {
    match o.get(name) {
        Some(Json::String(s)) => STANDARD
            .decode(s.as_bytes())
            .map(Some)
            .map_err(|_| ValueJsonError::Base64(name)),
        _ => Ok(None),
    }
}

fn int_field<T: TryFrom<u64>>(
    o: &serde_json::Map<String, Json>,
    name: &'static str,
) -> Result<Option<T>, ValueJsonError> {
    match o.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(j) => j
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or(ValueJsonError::Field(name)),
    }
}

/// Reads a value from JSON (`Value(const Json::Value&)`, spec §3.2): fields by name, unknown keys
/// ignored, a missing key leaves the default; `id` as a decimal string or an integer (anything
/// else is 0, "no id yet").
pub fn value_from_json(j: &Json) -> Result<Value, ValueJsonError> {
    let o = j.as_object().ok_or(ValueJsonError::NotObject)?;
    let mut v = Value {
        id: match o.get("id") {
            Some(Json::String(s)) => s.trim().parse().unwrap_or(0),
            Some(n) => n.as_u64().unwrap_or(0),
            None => 0,
        },
        ..Value::default()
    };
    if let Some(d) = b64_field(o, "data")? {
        v.data = d;
    }
    if let Some(d) = b64_field(o, "sig")? {
        v.signature = d;
    }
    if let Some(d) = b64_field(o, "cypher")? {
        v.cypher = d;
    }
    if let Some(t) = int_field(o, "type")? {
        v.value_type = t;
    }
    if let Some(s) = int_field(o, "seq")? {
        v.seq = s;
    }
    if let Some(Json::String(p)) = o.get("owner") {
        v.owner = Some(pem_to_owner(p).ok_or(ValueJsonError::Base64("owner"))?);
    }
    if let Some(Json::String(t)) = o.get("to") {
        v.recipient = Some(InfoHash::from_hex(t).map_err(|_| ValueJsonError::Field("to"))?);
    }
    if let Some(Json::String(u)) = o.get("utype") {
        v.user_type = u.clone();
    }
    // OpenDHT reads `prio` only when it is an integer and ignores it otherwise.
    if let Some(p) = o.get("prio").and_then(Json::as_u64) {
        v.priority = u32::try_from(p).map_err(|_| ValueJsonError::Field("prio"))?;
    }
    if let Some(Json::String(pt)) = o.get("pt") {
        v.push_type = pt.clone();
    }
    Ok(v)
}

/// An error body: `{"err":"..."}` with no trailing newline, as OpenDHT writes them.
pub(crate) fn error_body(msg: &str) -> String {
    let mut o = Object::new();
    o.insert("err", Json::String(msg.to_owned()));
    to_ascii_json(&o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Value, ValueJsonError> {
        let j: Json = serde_json::from_str(s).map_err(|_| ValueJsonError::NotObject)?;
        value_from_json(&j)
    }

    #[test]
    fn output_matches_the_spec_transcripts() {
        let v = Value::new(10038640691906095, b"hello".to_vec());
        assert_eq!(
            value_line(&v, false),
            "{\"data\":\"aGVsbG8=\",\"id\":\"10038640691906095\",\"type\":0}\n"
        );
        assert_eq!(
            value_line(&v, true),
            "{\"data\":\"aGVsbG8=\",\"expired\":true,\"id\":\"10038640691906095\",\"type\":0}\n"
        );
        let mut v = Value::new(4153190505880925241, b"fromC".to_vec());
        v.user_type = "text/plain".into();
        assert_eq!(
            value_line(&v, false),
            "{\"data\":\"ZnJvbUM=\",\"id\":\"4153190505880925241\",\"type\":0,\"utype\":\"text/plain\"}\n"
        );
        let mut v = Value::new(12352868333375043886, b"hi2".to_vec());
        v.priority = 1;
        assert_eq!(
            value_line(&v, false),
            "{\"data\":\"aGky\",\"id\":\"12352868333375043886\",\"prio\":1,\"type\":0}\n"
        );
        let v = Value {
            id: 548916976173265319,
            cypher: vec![1, 2, 3],
            ..Value::default()
        };
        assert_eq!(
            value_line(&v, false),
            "{\"cypher\":\"AQID\",\"id\":\"548916976173265319\"}\n"
        );
        assert_eq!(
            value_line(&Value::new(13854814926013721975, vec![]), false),
            "{\"data\":\"\",\"id\":\"13854814926013721975\",\"type\":0}\n"
        );
    }

    #[test]
    fn non_ascii_is_escaped_like_jsoncpp() {
        let mut v = Value::new(1, vec![]);
        v.user_type = "caf\u{e9}/\u{1}\u{1F600}".into();
        assert_eq!(
            value_line(&v, false),
            "{\"data\":\"\",\"id\":\"1\",\"type\":0,\"utype\":\"caf\\u00e9/\\u0001\\ud83d\\ude00\"}\n"
        );
    }

    #[test]
    fn signed_values_round_trip_with_pem_owner() {
        let id = dht_proto::crypto::Identity::from_seed(&[7; 32]);
        let mut v = Value::new(5, b"signed1".to_vec());
        v.user_type = "text/plain".into();
        dht_proto::crypto::sign_value(&mut v, &id);
        let line = value_line(&v, false);
        assert!(
            line.contains("\"owner\":\"-----BEGIN PUBLIC KEY-----\\n"),
            "{line}"
        );
        assert!(line.contains("\"seq\":0"), "{line}");
        let back = parse(line.trim_end()).unwrap_or_default();
        assert_eq!(back, v);
        assert!(dht_proto::crypto::verify_value(&back).is_ok());
        // 2.4.12's trailing NUL is accepted.
        let nul = line.replace(
            "-----END PUBLIC KEY-----\\n",
            "-----END PUBLIC KEY-----\\n\\u0000",
        );
        assert_eq!(parse(nul.trim_end()).unwrap_or_default(), v);
    }

    #[test]
    fn input_rules() {
        assert_eq!(parse("{}"), Ok(Value::default()));
        assert_eq!(parse("{\"id\":18446744073709551615}").map(|v| v.id), Ok(u64::MAX));
        assert_eq!(parse("{\"id\":\"42\"}").map(|v| v.id), Ok(42));
        assert_eq!(parse("{\"id\":\"x\"}").map(|v| v.id), Ok(0));
        assert_eq!(parse("{\"prio\":\"x\"}").map(|v| v.priority), Ok(0));
        assert_eq!(parse("{\"data\":\"\"}").map(|v| v.data), Ok(vec![]));
        assert_eq!(
            parse("{\"data\":\"aGVsbG8=\",\"permanent\":true,\"expired\":true}").map(|v| v.data),
            Ok(b"hello".to_vec())
        );
        assert_eq!(parse("{\"data\":\"a\"}"), Err(ValueJsonError::Base64("data")));
        assert_eq!(parse("{\"data\":\"!!!!\"}"), Err(ValueJsonError::Base64("data")));
        assert_eq!(parse("{\"type\":70000}"), Err(ValueJsonError::Field("type")));
        assert_eq!(parse("{\"type\":-1}"), Err(ValueJsonError::Field("type")));
        assert_eq!(parse("{\"to\":\"zz\"}"), Err(ValueJsonError::Field("to")));
        assert_eq!(
            parse("{\"owner\":\"nope\"}"),
            Err(ValueJsonError::Base64("owner"))
        );
        assert_eq!(parse("[1,2]"), Err(ValueJsonError::NotObject));
        assert_eq!(
            error_body("Missing parameters"),
            "{\"err\":\"Missing parameters\"}"
        );
    }
}
