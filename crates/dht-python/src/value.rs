//! `Value`, `ValueType` and the query classes `Query`, `Select` and `Where`.

use std::time::Duration;

use dht_proto::value::{Field, MAX_VALUE_SIZE, Query, Select, Value, ValueType, Where};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDelta};

use crate::bytes_arg;
use crate::crypto::PyPublicKey;
use crate::hash::PyInfoHash;

/// A value stored on the DHT: data, a type id, and for signed or encrypted values their owner,
/// sequence number, recipient and signature. `Value(b'data')`; the second argument (named `id`
/// as upstream, a quirk kept on purpose) is the *value type* id, not the value id.
#[pyclass(module = "rdht._core", name = "Value")]
#[derive(Clone)]
pub(crate) struct PyValue {
    pub(crate) v: Value,
}

impl PyValue {
    /// Raises `ValueError` when the value is over the 64 KiB limit (upstream would refuse it
    /// only later, in the put's done callback).
    pub(crate) fn check_size(&self) -> PyResult<()> {
        let size = self.v.size();
        if size > MAX_VALUE_SIZE {
            return Err(PyValueError::new_err(format!(
                "value of {size} bytes is larger than the {MAX_VALUE_SIZE}-byte limit"
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl PyValue {
    #[new]
    #[pyo3(signature = (val = None, id = 0))]
    fn py_new(val: Option<&Bound<'_, PyAny>>, id: u16) -> PyResult<Self> {
        let data = match val {
            Some(v) if !v.is_none() => bytes_arg(v, "Value data")?,
            _ => Vec::new(),
        };
        let mut v = Value::new(0, data);
        v.value_type = id;
        Ok(PyValue { v })
    }

    /// The payload (bytes; empty for a value still encrypted).
    #[getter]
    fn get_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.v.data)
    }

    #[setter]
    fn set_data(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.v.data = bytes_arg(data, "Value.data")?;
        Ok(())
    }

    /// The value id (0 until a put assigns one).
    #[getter]
    fn get_id(&self) -> u64 {
        self.v.id
    }

    #[setter]
    fn set_id(&mut self, id: u64) {
        self.v.id = id;
    }

    /// The value type id (see `ValueType`).
    #[getter]
    fn get_value_type(&self) -> u16 {
        self.v.value_type
    }

    #[setter]
    fn set_value_type(&mut self, t: u16) {
        self.v.value_type = t;
    }

    /// A free-form type tag, e.g. `'text/plain'`.
    #[getter]
    fn get_user_type(&self) -> String {
        self.v.user_type.clone()
    }

    #[setter]
    fn set_user_type(&mut self, t: String) {
        self.v.user_type = t;
    }

    /// The sequence number of a signed value (an edit raises it).
    #[getter]
    fn get_seq(&self) -> u16 {
        self.v.seq
    }

    #[setter]
    fn set_seq(&mut self, seq: u16) {
        self.v.seq = seq;
    }

    /// The recipient's short key id (`InfoHash`); the zero id when there is none.
    #[getter]
    fn get_recipient(&self) -> PyInfoHash {
        self.v.recipient.unwrap_or_default().into()
    }

    #[setter]
    fn set_recipient(&mut self, to: Option<PyInfoHash>) {
        self.v.recipient = to.map(|h| h.core()).filter(|h| !h.is_zero());
    }

    /// The signer's public key (ed25519), or `None` for an unsigned value (upstream 2.4.12
    /// crashes here; 4.x gives an empty key).
    #[getter]
    fn get_owner(&self) -> Option<PyPublicKey> {
        self.v.owner.as_deref().map(PyPublicKey::from_owner)
    }

    /// The signature (bytes; empty when unsigned).
    #[getter]
    fn get_signature<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.v.signature)
    }

    /// The ciphertext of an encrypted value we could not open (bytes; usually empty).
    #[getter]
    fn get_cypher<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.v.cypher)
    }

    /// True when the value carries an owner and a signature.
    #[getter]
    fn get_is_signed(&self) -> bool {
        self.v.is_signed()
    }

    /// True when the value is still encrypted.
    #[getter]
    fn get_is_encrypted(&self) -> bool {
        self.v.is_encrypted()
    }

    /// Upstream's `Value::size()`: the bytes of data, cypher, signature and type tags together
    /// (what counts against the 64 KiB limit).
    #[getter]
    fn get_size(&self) -> usize {
        self.v.size()
    }

    fn __len__(&self) -> usize {
        self.v.size()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyValue>().is_ok_and(|o| o.borrow().v == self.v)
    }

    fn __str__(&self) -> String {
        let mut s = format!("Value[id:{:x}", self.v.id);
        if self.v.value_type != 0 {
            s.push_str(&format!(" type:{}", self.v.value_type));
        }
        if self.v.is_signed() {
            s.push_str(&format!(" signed seq:{}", self.v.seq));
        }
        match (self.v.user_type.is_empty(), std::str::from_utf8(&self.v.data)) {
            (false, Ok(text)) => s.push_str(&format!(" data({}):{text:?}]", self.v.user_type)),
            _ => {
                s.push_str(" data:");
                for b in self.v.data.iter().take(64) {
                    s.push_str(&format!("{b:02x}"));
                }
                if self.v.data.len() > 64 {
                    s.push_str("...");
                }
                s.push(']');
            }
        }
        s
    }

    fn __repr__(&self) -> String {
        format!("<Value {}>", self.__str__())
    }
}

/// A value type: id, name and lifetime (`datetime.timedelta`), registered with
/// `DhtRunner.registerType`.
#[pyclass(module = "rdht._core", name = "ValueType", from_py_object)]
#[derive(Clone)]
pub(crate) struct PyValueType {
    pub(crate) t: ValueType,
}

#[pymethods]
impl PyValueType {
    #[new]
    fn py_new(id: u16, name: String, expiration: &Bound<'_, PyAny>) -> PyResult<Self> {
        if expiration.cast::<PyDelta>().is_err() {
            return Err(PyTypeError::new_err(
                "ValueType expiration must be a datetime.timedelta",
            ));
        }
        let expiration: Duration = expiration.extract()?;
        let mut t = ValueType::default_for(id).clone();
        t.id = id;
        t.name = name.into();
        t.expiration = expiration;
        Ok(PyValueType { t })
    }

    /// The type id.
    #[getter]
    fn id(&self) -> u16 {
        self.t.id
    }

    /// The type's name.
    #[getter]
    fn name(&self) -> String {
        self.t.name.to_string()
    }

    /// How long a value of this type lives (`datetime.timedelta`).
    #[getter]
    fn expiration(&self) -> Duration {
        self.t.expiration
    }

    fn __repr__(&self) -> String {
        format!(
            "<ValueType {} '{}' {}s>",
            self.t.id,
            self.t.name,
            self.t.expiration.as_secs()
        )
    }
}

fn parse_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("bad query: {e}"))
}

/// Which fields a get returns: `Select('SELECT id,seq')` or `Select().field(1)`. Field numbers:
/// 1 id, 2 value type, 3 owner key, 4 sequence number, 5 user type.
#[pyclass(module = "rdht._core", name = "Select", from_py_object)]
#[derive(Clone, Default)]
pub(crate) struct PySelect {
    pub(crate) s: Select,
}

#[pymethods]
impl PySelect {
    #[new]
    #[pyo3(signature = (q_str = None))]
    fn py_new(q_str: Option<&str>) -> PyResult<Self> {
        let Some(q) = q_str.map(str::trim).filter(|q| !q.is_empty()) else {
            return Ok(PySelect::default());
        };
        let text = if q.starts_with("SELECT") || q.starts_with("select") {
            q.to_string()
        } else {
            format!("SELECT {q}")
        };
        Query::parse(&text)
            .map(|q| PySelect { s: q.select })
            .map_err(parse_error)
    }

    /// Adds field number `f` and returns self.
    fn field(mut slf: PyRefMut<'_, Self>, f: u64) -> PyResult<PyRefMut<'_, Self>> {
        let field = Field::from_id(f).ok_or_else(|| PyValueError::new_err(format!("no field number {f}")))?;
        slf.s = std::mem::take(&mut slf.s).field(field);
        Ok(slf)
    }

    /// True when a get selecting `other` also answers this one.
    #[pyo3(name = "isSatisfiedBy")]
    fn is_satisfied_by(&self, other: &PySelect) -> bool {
        self.s.is_satisfied_by(&other.s)
    }

    fn __str__(&self) -> String {
        self.s.to_string()
    }

    fn __repr__(&self) -> String {
        format!("<Select '{}'>", self.s)
    }
}

/// Conditions values must meet: `Where('WHERE id=3,user_type=text')`, or built with
/// `Where().id(3).userType('text')`.
#[pyclass(module = "rdht._core", name = "Where", from_py_object)]
#[derive(Clone, Default)]
pub(crate) struct PyWhere {
    pub(crate) w: Where,
}

#[pymethods]
impl PyWhere {
    #[new]
    #[pyo3(signature = (q_str = None))]
    fn py_new(q_str: Option<&str>) -> PyResult<Self> {
        let Some(q) = q_str.map(str::trim).filter(|q| !q.is_empty()) else {
            return Ok(PyWhere::default());
        };
        let text = if q.starts_with("WHERE") || q.starts_with("where") {
            q.to_string()
        } else {
            format!("WHERE {q}")
        };
        Query::parse(&text)
            .map(|q| PyWhere { w: q.where_ })
            .map_err(parse_error)
    }

    /// Requires value id `id`; returns self.
    fn id(mut slf: PyRefMut<'_, Self>, id: u64) -> PyRefMut<'_, Self> {
        slf.w = std::mem::take(&mut slf.w).id(id);
        slf
    }

    /// Requires value type `t`; returns self.
    #[pyo3(name = "valueType")]
    fn value_type(mut slf: PyRefMut<'_, Self>, t: u16) -> PyRefMut<'_, Self> {
        slf.w = std::mem::take(&mut slf.w).value_type(t);
        slf
    }

    /// Requires the owner with short key id `owner`; returns self.
    fn owner(mut slf: PyRefMut<'_, Self>, owner: PyInfoHash) -> PyRefMut<'_, Self> {
        slf.w = std::mem::take(&mut slf.w).owner(owner.core());
        slf
    }

    /// Requires sequence number `seq`; returns self.
    fn seq(mut slf: PyRefMut<'_, Self>, seq: u16) -> PyRefMut<'_, Self> {
        slf.w = std::mem::take(&mut slf.w).seq(seq);
        slf
    }

    /// Requires user type `user_type`; returns self.
    #[pyo3(name = "userType")]
    fn user_type(mut slf: PyRefMut<'_, Self>, user_type: String) -> PyRefMut<'_, Self> {
        slf.w = std::mem::take(&mut slf.w).user_type(user_type);
        slf
    }

    /// True when every condition of `other` is also a condition here.
    #[pyo3(name = "isSatisfiedBy")]
    fn is_satisfied_by(&self, other: &PyWhere) -> bool {
        self.w.is_satisfied_by(&other.w)
    }

    /// True when value `v` meets every condition.
    fn matches(&self, v: &PyValue) -> bool {
        self.w.matches(&v.v)
    }

    fn __str__(&self) -> String {
        self.w.to_string()
    }

    fn __repr__(&self) -> String {
        format!("<Where '{}'>", self.w)
    }
}

/// A get or listen query, `Query('SELECT id WHERE user_type=text')`: a `Select` and a `Where`.
#[pyclass(module = "rdht._core", name = "Query", from_py_object)]
#[derive(Clone, Default)]
pub(crate) struct PyQuery {
    pub(crate) q: Query,
}

#[pymethods]
impl PyQuery {
    #[new]
    #[pyo3(signature = (q_str = ""))]
    fn py_new(q_str: &str) -> PyResult<Self> {
        Query::parse(q_str.trim())
            .map(|q| PyQuery { q })
            .map_err(parse_error)
    }

    /// Sets both parts and returns self.
    #[pyo3(name = "buildFrom")]
    fn build_from<'a>(mut slf: PyRefMut<'a, Self>, s: &PySelect, w: &PyWhere) -> PyRefMut<'a, Self> {
        slf.q = Query::new(s.s.clone(), w.w.clone());
        slf
    }

    /// True when the results of a query for `q` answer this one.
    #[pyo3(name = "isSatisfiedBy")]
    fn is_satisfied_by(&self, q: &PyQuery) -> bool {
        self.q.is_satisfied_by(&q.q)
    }

    fn __str__(&self) -> String {
        format!("Query[{}]", self.q)
    }

    fn __repr__(&self) -> String {
        format!("<Query '{}'>", self.q)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyValue>()?;
    m.add_class::<PyValueType>()?;
    m.add_class::<PySelect>()?;
    m.add_class::<PyWhere>()?;
    m.add_class::<PyQuery>()?;
    Ok(())
}
