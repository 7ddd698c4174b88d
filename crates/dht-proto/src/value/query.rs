//! Queries: `Select` (which fields a get returns) and `Where` (which values it matches), with
//! their text form (`SELECT id WHERE user_type=text/plain`) and their wire form.
//!
//! Wire form (OpenDHT `Query::msgpack_pack`):
//!
//! ```text
//! Query      := map{ "s": [field id…], "w": [FieldValue…] }
//! FieldValue := map{ "f": field id, "v": uint64 (id, value_type) | bin20 (owner_pk) | bin (user_type) }
//! ```

use crate::prelude::*;
use core::fmt;

use super::Value;
use crate::InfoHash;
use crate::msgpack::{Reader, Seen, write};
use crate::wire::DecodeError;

/// A value field that a query can select or match (OpenDHT's `Value::Field` ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Field {
    /// The value id.
    Id = 1,
    /// The value type id.
    ValueType = 2,
    /// The owner's public key (matched by its short id).
    OwnerPk = 3,
    /// The sequence number of a signed value.
    SeqNum = 4,
    /// The user type string.
    UserType = 5,
}

impl Field {
    /// The field for a wire id, if it names one.
    pub fn from_id(id: u64) -> Option<Field> {
        Some(match id {
            1 => Field::Id,
            2 => Field::ValueType,
            3 => Field::OwnerPk,
            4 => Field::SeqNum,
            5 => Field::UserType,
            _ => return None,
        })
    }

    /// The name used in the text form.
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::ValueType => "value_type",
            Field::OwnerPk => "owner_pk",
            Field::SeqNum => "seq",
            Field::UserType => "user_type",
        }
    }

    fn from_name(s: &str) -> Option<Field> {
        Some(match s {
            "id" => Field::Id,
            "value_type" => Field::ValueType,
            "owner_pk" => Field::OwnerPk,
            "seq" => Field::SeqNum,
            "user_type" => Field::UserType,
            _ => return None,
        })
    }
}

/// A field and the value it must have (in a `Where`) or has (in a selected row).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldValue {
    /// Value id.
    Id(u64),
    /// Value type id.
    ValueType(u64),
    /// Short id (SHA-1) of the owner's public key; zero for "no owner".
    OwnerPk(InfoHash),
    /// Sequence number.
    SeqNum(u64),
    /// User type, as bytes.
    UserType(Vec<u8>),
}

impl FieldValue {
    /// The field this value belongs to.
    pub fn field(&self) -> Field {
        match self {
            FieldValue::Id(_) => Field::Id,
            FieldValue::ValueType(_) => Field::ValueType,
            FieldValue::OwnerPk(_) => Field::OwnerPk,
            FieldValue::SeqNum(_) => Field::SeqNum,
            FieldValue::UserType(_) => Field::UserType,
        }
    }

    /// This field's value in `v`.
    pub fn of(field: Field, v: &Value) -> FieldValue {
        match field {
            Field::Id => FieldValue::Id(v.id),
            Field::ValueType => FieldValue::ValueType(u64::from(v.value_type)),
            Field::OwnerPk => FieldValue::OwnerPk(v.owner_id().unwrap_or(InfoHash::ZERO)),
            Field::SeqNum => FieldValue::SeqNum(u64::from(v.seq)),
            Field::UserType => FieldValue::UserType(v.user_type.as_bytes().to_vec()),
        }
    }

    /// True when `v` has this field value.
    pub fn matches(&self, v: &Value) -> bool {
        match self {
            FieldValue::Id(id) => v.id == *id,
            FieldValue::ValueType(t) => u64::from(v.value_type) == *t,
            FieldValue::OwnerPk(pk) => v.owner_id().is_some_and(|o| o == *pk),
            FieldValue::SeqNum(s) => u64::from(v.seq) == *s,
            FieldValue::UserType(u) => v.user_type.as_bytes() == u.as_slice(),
        }
    }

    fn read_condition(r: &mut Reader<'_>) -> Result<FieldValue, DecodeError> {
        let n = r.map_len("query.w")?;
        let mut field = None;
        let mut value: Option<Reader<'_>> = None;
        let mut seen = Seen::default();
        for _ in 0..n {
            match seen.first(r.key()?, &[b"f", b"v"]) {
                Some(b"f") => field = Some(r.uint("query.w.f")?),
                Some(b"v") => {
                    value = Some(r.clone());
                    r.skip()?;
                }
                _ => r.skip()?,
            }
        }
        let field = field.ok_or(DecodeError::MissingField("query.w.f"))?;
        let mut v = value.ok_or(DecodeError::MissingField("query.w.v"))?;
        match Field::from_id(field) {
            Some(Field::Id) => Ok(FieldValue::Id(v.uint("query.w.v")?)),
            Some(Field::ValueType) => Ok(FieldValue::ValueType(v.uint("query.w.v")?)),
            Some(Field::OwnerPk) => {
                let b = v.bin("query.w.v")?;
                InfoHash::from_slice(b)
                    .map(FieldValue::OwnerPk)
                    .ok_or(DecodeError::BadIdLength {
                        field: "query.w.v",
                        len: b.len(),
                    })
            }
            Some(Field::UserType) => Ok(FieldValue::UserType(v.blob("query.w.v")?.into_vec())),
            // OpenDHT cannot decode a seq condition, and neither id 0 nor unknown ids mean anything.
            Some(Field::SeqNum) | None => Err(DecodeError::BadQuery("unsupported where field")),
        }
    }

    /// Writes a where condition. Callers never pass `SeqNum` (see [`Where::encode`]).
    fn write_condition(&self, out: &mut Vec<u8>) {
        write::map(out, 2);
        write::key(out, "f");
        write::uint(out, self.field() as u64);
        write::key(out, "v");
        match self {
            FieldValue::Id(x) | FieldValue::ValueType(x) | FieldValue::SeqNum(x) => write::uint(out, *x),
            FieldValue::OwnerPk(h) => write::bin(out, h.as_bytes()),
            FieldValue::UserType(u) => write::bin(out, u),
        }
    }

    /// Writes a selected field in a `fileds` reply. The owner is sent as its 20-byte short id,
    /// which OpenDHT requesters can decode (they cannot decode the full key OpenDHT itself sends).
    pub(crate) fn write_selected(&self, out: &mut Vec<u8>) {
        match self {
            FieldValue::Id(x) | FieldValue::ValueType(x) | FieldValue::SeqNum(x) => write::uint(out, *x),
            FieldValue::OwnerPk(h) => write::bin(out, h.as_bytes()),
            FieldValue::UserType(u) => match core::str::from_utf8(u) {
                Ok(s) => write::str(out, s),
                Err(_) => write::bin(out, u),
            },
        }
    }

    /// Reads a selected field from a `fileds` reply. An owner sent as a full public key (as
    /// OpenDHT does) is reduced to its short id.
    pub(crate) fn read_selected(field: Field, r: &mut Reader<'_>) -> Result<FieldValue, DecodeError> {
        Ok(match field {
            Field::Id => FieldValue::Id(r.uint("fileds.v")?),
            Field::ValueType => FieldValue::ValueType(r.uint("fileds.v")?),
            Field::SeqNum => FieldValue::SeqNum(r.uint("fileds.v")?),
            Field::UserType => FieldValue::UserType(r.blob("fileds.v")?.into_vec()),
            Field::OwnerPk => {
                let b = r.bin("fileds.v")?;
                FieldValue::OwnerPk(InfoHash::from_slice(b).unwrap_or_else(|| InfoHash::get(b)))
            }
        })
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Id(x) | FieldValue::ValueType(x) | FieldValue::SeqNum(x) => {
                write!(f, "{}={x}", self.field().name())
            }
            FieldValue::OwnerPk(h) => write!(f, "owner_pk={h}"),
            FieldValue::UserType(u) => write!(f, "user_type=\"{}\"", String::from_utf8_lossy(u)),
        }
    }
}

/// Which fields a get returns; empty means whole values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Select {
    fields: Vec<Field>,
}

impl Select {
    /// Selects whole values.
    pub fn all() -> Select {
        Select::default()
    }

    /// Adds a field (once).
    pub fn field(mut self, f: Field) -> Select {
        if !self.fields.contains(&f) {
            self.fields.push(f);
        }
        self
    }

    /// The selected fields in the order given.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// True when whole values are selected.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The selected fields, sorted and without repeats: the order of a `fileds` reply.
    pub fn sorted(&self) -> Vec<Field> {
        let mut f = self.fields.clone();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// The selected fields of `v`, in [`Select::sorted`] order.
    pub fn project(&self, v: &Value) -> FieldRow {
        FieldRow {
            values: self.sorted().into_iter().map(|f| FieldValue::of(f, v)).collect(),
        }
    }

    /// OpenDHT's `Select::isSatisfiedBy`: whole values satisfy everything; otherwise every field
    /// selected here must be selected by `other` too.
    pub fn is_satisfied_by(&self, other: &Select) -> bool {
        (self.is_empty() && other.is_empty())
            || (!other.is_empty() && self.fields.iter().all(|f| other.fields.contains(f)))
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if self.fields.is_empty() {
            return f.write_str("*");
        }
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(field.name())?;
        }
        Ok(())
    }
}

/// Conditions a value must all meet (ANDed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Where {
    conditions: Vec<FieldValue>,
}

impl Where {
    /// Matches every value.
    pub fn any() -> Where {
        Where::default()
    }

    /// Adds a condition (once).
    pub fn and(mut self, c: FieldValue) -> Where {
        if !self.conditions.contains(&c) {
            self.conditions.push(c);
        }
        self
    }

    /// Requires `id`.
    pub fn id(self, id: u64) -> Where {
        self.and(FieldValue::Id(id))
    }

    /// Requires a value type.
    pub fn value_type(self, t: u16) -> Where {
        self.and(FieldValue::ValueType(u64::from(t)))
    }

    /// Requires an owner by short id.
    pub fn owner(self, pk: InfoHash) -> Where {
        self.and(FieldValue::OwnerPk(pk))
    }

    /// Requires a sequence number (checked locally; never sent to peers).
    pub fn seq(self, seq: u16) -> Where {
        self.and(FieldValue::SeqNum(u64::from(seq)))
    }

    /// Requires a user type.
    pub fn user_type(self, ut: impl Into<Vec<u8>>) -> Where {
        self.and(FieldValue::UserType(ut.into()))
    }

    /// The conditions.
    pub fn conditions(&self) -> &[FieldValue] {
        &self.conditions
    }

    /// True when there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// True when `v` meets every condition.
    pub fn matches(&self, v: &Value) -> bool {
        self.conditions.iter().all(|c| c.matches(v))
    }

    /// True when every condition of `other` is also a condition here.
    pub fn is_satisfied_by(&self, other: &Where) -> bool {
        other.conditions.iter().all(|c| self.conditions.contains(c))
    }

    /// The conditions that can travel on the wire: all but `seq`, which OpenDHT nodes cannot
    /// decode. Dropping one only widens what a peer returns; the requester filters locally.
    fn wire_conditions(&self) -> impl Iterator<Item = &FieldValue> {
        self.conditions.iter().filter(|c| c.field() != Field::SeqNum)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        write::array(out, self.wire_conditions().count() as u32);
        for c in self.wire_conditions() {
            c.write_condition(out);
        }
    }
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conditions.is_empty() {
            return Ok(());
        }
        f.write_str("WHERE ")?;
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// A get or listen query: which values (`where`) and which of their fields (`select`).
///
/// ```
/// use dht_proto::value::{Query, Value};
/// let q: Query = "SELECT id WHERE user_type=text/plain".parse().unwrap();
/// let mut v = Value::new(7, b"hello".to_vec());
/// v.user_type = "text/plain".into();
/// assert!(q.where_.matches(&v));
/// assert_eq!(q.to_string(), "SELECT id WHERE user_type=\"text/plain\"");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Query {
    /// Fields to return.
    pub select: Select,
    /// Conditions values must meet.
    pub where_: Where,
    /// When set, any query satisfies this one (OpenDHT's `none`); never sent.
    pub none: bool,
}

/// Why a text query did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryParseError {
    /// A field name that is not one of id, value_type, owner_pk, seq, user_type.
    #[error("unknown field {0:?}")]
    UnknownField(String),
    /// A condition without `=`.
    #[error("condition {0:?} is not field=value")]
    NotACondition(String),
    /// A value that does not fit its field.
    #[error("bad value {value:?} for {field}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The text given.
        value: String,
    },
    /// Text before the query or without a SELECT/WHERE keyword.
    #[error("expected SELECT or WHERE, found {0:?}")]
    Syntax(String),
}

impl Query {
    /// A query with the given parts.
    pub fn new(select: Select, where_: Where) -> Query {
        Query {
            select,
            where_,
            none: false,
        }
    }

    /// True when it selects whole values and matches everything: a plain get.
    pub fn is_empty(&self) -> bool {
        self.select.is_empty() && self.where_.is_empty()
    }

    /// OpenDHT's `Query::isSatisfiedBy`: the results of a query for `other` can answer `self`.
    pub fn is_satisfied_by(&self, other: &Query) -> bool {
        self.none
            || (self.where_.is_satisfied_by(&other.where_) && self.select.is_satisfied_by(&other.select))
    }

    /// Parses the text form `[SELECT f1,f2|*] [WHERE f=v[,f=v…]]` (keywords in upper or lower case).
    pub fn parse(s: &str) -> Result<Query, QueryParseError> {
        let pos = [s.find("WHERE"), s.find("where")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(s.len());
        let (sel, whr) = s.split_at(pos);
        Ok(Query::new(parse_select(sel)?, parse_where(whr)?))
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        write::map(out, 2);
        write::key(out, "s");
        write::array(out, self.select.fields.len() as u32);
        for f in &self.select.fields {
            write::uint(out, *f as u64);
        }
        write::key(out, "w");
        self.where_.encode(out);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Query, DecodeError> {
        let n = r.map_len("query")?;
        let mut select = None;
        let mut where_ = None;
        let mut seen = Seen::default();
        for _ in 0..n {
            match seen.first(r.key()?, &[b"s", b"w"]) {
                Some(b"s") => {
                    let len = r.array_len("query.s")?;
                    let mut s = Select::default();
                    for _ in 0..len {
                        let id = r.uint("query.s")?;
                        let f = Field::from_id(id).ok_or(DecodeError::BadQuery("unknown select field"))?;
                        s = s.field(f);
                    }
                    select = Some(s);
                }
                Some(b"w") => {
                    let len = r.array_len("query.w")?;
                    let mut w = Where::default();
                    for _ in 0..len {
                        w = w.and(FieldValue::read_condition(r)?);
                    }
                    where_ = Some(w);
                }
                _ => r.skip()?,
            }
        }
        Ok(Query::new(
            select.ok_or(DecodeError::MissingField("query.s"))?,
            where_.ok_or(DecodeError::MissingField("query.w"))?,
        ))
    }

    /// Whether this query is worth sending: OpenDHT sends `q` only when some part is non-empty.
    pub(crate) fn is_wire_empty(&self) -> bool {
        self.select.is_empty() && self.where_.wire_conditions().next().is_none()
    }
}

impl core::str::FromStr for Query {
    type Err = QueryParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Query::parse(s)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.select)?;
        if !self.where_.is_empty() {
            write!(f, " {}", self.where_)?;
        }
        Ok(())
    }
}

fn strip_keyword<'a>(s: &'a str, upper: &str, lower: &str) -> Option<&'a str> {
    s.strip_prefix(upper).or_else(|| s.strip_prefix(lower))
}

fn parse_select(s: &str) -> Result<Select, QueryParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Select::all());
    }
    let rest = strip_keyword(s, "SELECT", "select").ok_or_else(|| QueryParseError::Syntax(s.to_owned()))?;
    let mut sel = Select::all();
    for name in rest.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "*" {
            return Ok(Select::all());
        }
        sel =
            sel.field(Field::from_name(name).ok_or_else(|| QueryParseError::UnknownField(name.to_owned()))?);
    }
    Ok(sel)
}

fn parse_where(s: &str) -> Result<Where, QueryParseError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Where::any());
    }
    let rest = strip_keyword(s, "WHERE", "where").ok_or_else(|| QueryParseError::Syntax(s.to_owned()))?;
    let mut w = Where::any();
    for cond in rest.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (name, value) = cond
            .split_once('=')
            .ok_or_else(|| QueryParseError::NotACondition(cond.to_owned()))?;
        let name = name.trim();
        let value = value.trim();
        let field = Field::from_name(name).ok_or_else(|| QueryParseError::UnknownField(name.to_owned()))?;
        let bad = || QueryParseError::BadValue {
            field: field.name(),
            value: value.to_owned(),
        };
        let fv = match field {
            Field::Id => FieldValue::Id(value.parse().map_err(|_| bad())?),
            Field::ValueType => FieldValue::ValueType(value.parse().map_err(|_| bad())?),
            Field::SeqNum => FieldValue::SeqNum(value.parse().map_err(|_| bad())?),
            Field::OwnerPk => FieldValue::OwnerPk(InfoHash::from_hex(value).map_err(|_| bad())?),
            Field::UserType => {
                let v = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                FieldValue::UserType(v.as_bytes().to_vec())
            }
        };
        w = w.and(fv);
    }
    Ok(w)
}

/// One value's selected fields, in sorted field order: an entry of a `fileds` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldRow {
    /// The field values.
    pub values: Vec<FieldValue>,
}

impl FieldRow {
    /// The value of `field` in this row, if selected.
    pub fn get(&self, field: Field) -> Option<&FieldValue> {
        self.values.iter().find(|v| v.field() == field)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    pub(crate) fn arb_field() -> impl Strategy<Value = Field> {
        (1u64..=5).prop_map(|i| Field::from_id(i).unwrap())
    }

    pub(crate) fn arb_wire_condition() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<u64>().prop_map(FieldValue::Id),
            any::<u64>().prop_map(FieldValue::ValueType),
            any::<[u8; 20]>().prop_map(|b| FieldValue::OwnerPk(InfoHash(b))),
            "[a-z/]{0,10}".prop_map(|s| FieldValue::UserType(s.into_bytes())),
        ]
    }

    pub(crate) fn arb_query() -> impl Strategy<Value = Query> {
        (
            proptest::collection::vec(arb_field(), 0..5),
            proptest::collection::vec(arb_wire_condition(), 0..4),
        )
            .prop_map(|(fs, cs)| {
                let select = fs.into_iter().fold(Select::all(), Select::field);
                let where_ = cs.into_iter().fold(Where::any(), Where::and);
                Query::new(select, where_)
            })
    }

    #[test]
    fn text_form() {
        let q = Query::parse("SELECT id,seq WHERE id=5,user_type=\"text/plain\",value_type=3").unwrap();
        assert_eq!(q.select.fields(), &[Field::Id, Field::SeqNum]);
        assert_eq!(
            q.where_.conditions(),
            &[
                FieldValue::Id(5),
                FieldValue::UserType(b"text/plain".to_vec()),
                FieldValue::ValueType(3)
            ]
        );
        assert_eq!(Query::parse(&q.to_string()).unwrap(), q);
        assert_eq!(Query::parse("").unwrap(), Query::default());
        assert_eq!(Query::parse("SELECT *").unwrap(), Query::default());
        assert_eq!(Query::parse("where id=1").unwrap().where_, Where::any().id(1));
        assert_eq!(
            Query::parse("WHERE foo=1"),
            Err(QueryParseError::UnknownField("foo".into()))
        );
        assert!(matches!(
            Query::parse("WHERE id=x"),
            Err(QueryParseError::BadValue { .. })
        ));
        assert!(matches!(
            Query::parse("WHERE id"),
            Err(QueryParseError::NotACondition(_))
        ));
        assert!(matches!(Query::parse("garbage"), Err(QueryParseError::Syntax(_))));
        let pk = InfoHash::get("k");
        assert_eq!(
            Query::parse(&format!("WHERE owner_pk={pk}")).unwrap().where_,
            Where::any().owner(pk)
        );
    }

    #[test]
    fn filtering() {
        let mut v = Value::new(9, vec![1]);
        v.value_type = 3;
        v.owner = Some(b"key".to_vec());
        v.seq = 4;
        v.user_type = "a".into();
        assert!(Where::any().matches(&v));
        assert!(
            Where::any()
                .id(9)
                .value_type(3)
                .seq(4)
                .user_type("a")
                .owner(InfoHash::get("key"))
                .matches(&v)
        );
        assert!(!Where::any().id(8).matches(&v));
        assert!(!Where::any().owner(InfoHash::get("other")).matches(&v));
        let row = Select::all().field(Field::UserType).field(Field::Id).project(&v);
        assert_eq!(
            row.values,
            vec![FieldValue::Id(9), FieldValue::UserType(b"a".to_vec())]
        );
        assert_eq!(row.get(Field::Id), Some(&FieldValue::Id(9)));
    }

    #[test]
    fn satisfaction() {
        let all = Query::default();
        let by_id = Query::new(Select::all(), Where::any().id(1));
        // A get for id=1 can be answered from a plain get's results, not the reverse.
        assert!(by_id.is_satisfied_by(&all));
        assert!(!all.is_satisfied_by(&by_id));
        assert!(all.is_satisfied_by(&all));
        let sel_id = Query::new(Select::all().field(Field::Id), Where::any());
        let sel_id_seq = Query::new(Select::all().field(Field::Id).field(Field::SeqNum), Where::any());
        assert!(sel_id.is_satisfied_by(&sel_id_seq));
        assert!(!sel_id_seq.is_satisfied_by(&sel_id));
        assert!(
            Query {
                none: true,
                ..Query::default()
            }
            .is_satisfied_by(&sel_id)
        );
    }

    #[test]
    fn seq_conditions_are_not_sent() {
        let q = Query::new(Select::all(), Where::any().seq(3).id(1));
        let mut out = Vec::new();
        q.encode(&mut out);
        let back = Query::read(&mut Reader::new(&out)).unwrap();
        assert_eq!(back.where_, Where::any().id(1));
        // A received seq condition rejects the query, as in OpenDHT.
        let mut bad = Vec::new();
        write::map(&mut bad, 2);
        write::key(&mut bad, "s");
        write::array(&mut bad, 0);
        write::key(&mut bad, "w");
        write::array(&mut bad, 1);
        FieldValue::SeqNum(1).write_condition(&mut bad);
        assert!(Query::read(&mut Reader::new(&bad)).is_err());
    }

    proptest! {
        #[test]
        fn wire_round_trip(q in arb_query()) {
            let mut out = Vec::new();
            q.encode(&mut out);
            prop_assert_eq!(Query::read(&mut Reader::new(&out)).unwrap(), q);
        }

        #[test]
        fn text_round_trip(q in arb_query()) {
            prop_assert_eq!(Query::parse(&q.to_string()).unwrap(), q);
        }

        #[test]
        fn text_parse_never_panics(s in "\\PC{0,60}") {
            let _ = Query::parse(&s);
        }
    }
}
