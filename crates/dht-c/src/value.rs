//! `dht_value` (reference-counted, one handle per reference), `dht_blob` and `dht_data_view`.

use std::ffi::{CString, c_char};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dht_proto::value::Value;

use crate::crypto::{dht_publickey, new_publickey};
use crate::hash::dht_infohash;
use crate::registry::{self, Kind, Tracked};
use crate::{bytes, c_str};

/// A non-owning view of bytes, valid while its owner lives unchanged.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dht_data_view {
    /// First byte (a static byte, not NULL, when empty).
    pub data: *const u8,
    /// Number of bytes.
    pub size: usize,
}

/// What an empty view points to: never NULL, so that `memcpy(dst, v.data, v.size)` is valid C.
static NO_BYTES: u8 = 0;

impl dht_data_view {
    fn of(b: &[u8]) -> dht_data_view {
        if b.is_empty() {
            return dht_data_view::EMPTY;
        }
        dht_data_view {
            data: b.as_ptr(),
            size: b.len(),
        }
    }
    const EMPTY: dht_data_view = dht_data_view {
        data: &raw const NO_BYTES,
        size: 0,
    };
}

/// A byte vector owned by the caller (`dht_blob_delete`).
#[derive(Debug)]
pub struct dht_blob(pub(crate) Vec<u8>);

impl Tracked for dht_blob {
    const KIND: Kind = Kind::Blob;
}

/// The blob's bytes; an empty view for a NULL or freed blob.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_blob_get_data(data: *const dht_blob) -> dht_data_view {
    ffi!(dht_data_view::EMPTY, {
        registry::with(data, |b| dht_data_view::of(&b.0)).unwrap_or(dht_data_view::EMPTY)
    })
}

/// Frees a blob (NULL or already freed: nothing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_blob_delete(data: *mut dht_blob) {
    ffi!((), {
        drop(registry::take(data));
    })
}

/// A value shared by every handle to it.
#[derive(Debug)]
pub(crate) struct ValueObj {
    /// Everything but the id and the user type.
    value: Value,
    /// The id: 0 until a put assigns one.
    pub(crate) id: AtomicU64,
    user_type: Mutex<CString>,
}

impl ValueObj {
    pub(crate) fn new(mut value: Value) -> ValueObj {
        let ut = std::mem::take(&mut value.user_type);
        let ut = ut.split('\0').next().unwrap_or_default().to_string();
        ValueObj {
            id: AtomicU64::new(value.id),
            user_type: Mutex::new(CString::new(ut).unwrap_or_default()),
            value,
        }
    }

    /// The value as it is now (id and user type included).
    pub(crate) fn snapshot(&self) -> Value {
        let mut v = self.value.clone();
        v.id = self.id.load(Ordering::Acquire);
        v.user_type = self
            .user_type
            .lock()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        v
    }
}

/// One handle to a shared value: `dht_value_ref` makes another, `dht_value_unref` frees one.
#[derive(Debug)]
pub struct dht_value(pub(crate) Arc<ValueObj>);

impl Tracked for dht_value {
    const KIND: Kind = Kind::Value;
}

/// A new handle on a value received from the network (for a callback).
pub(crate) fn new_value_handle(obj: Arc<ValueObj>) -> *mut dht_value {
    registry::into_raw(dht_value(obj))
}

fn new_value(data: *const u8, size: usize, id: u64) -> *mut dht_value {
    // SAFETY: NULL or `size` readable bytes (header contract).
    match unsafe { bytes(data, size) } {
        Some(b) => new_value_handle(Arc::new(ValueObj::new(Value::new(id, b.to_vec())))),
        None => std::ptr::null_mut(),
    }
}

/// A value of `size` bytes copied from `data` (type 0, id 0, no user type). NULL `data` with a
/// non-zero size: NULL. Sizes over 64 KiB are accepted here; their put fails (`done(false)`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_new(data: *const u8, size: usize) -> *mut dht_value {
    ffi!(std::ptr::null_mut(), { new_value(data, size, 0) })
}

/// As [`dht_value_new`] with a chosen id (0: assigned at put). Absent from OpenDHT 2.4.12.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_with_id_new(
    data: *const u8,
    size: usize,
    value_id: u64,
) -> *mut dht_value {
    ffi!(std::ptr::null_mut(), { new_value(data, size, value_id) })
}

/// A value holding the bytes of the NUL-terminated `str`, user type `"text/plain"`. NULL: NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_new_from_string(str: *const c_char) -> *mut dht_value {
    ffi!(std::ptr::null_mut(), {
        if str.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: non-NULL and NUL-terminated (header contract).
        let s = unsafe { std::ffi::CStr::from_ptr(str) };
        let mut v = Value::new(0, s.to_bytes().to_vec());
        v.user_type = "text/plain".into();
        new_value_handle(Arc::new(ValueObj::new(v)))
    })
}

/// A new handle to the same value (unref each handle once). NULL or freed: NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_ref(v: *const dht_value) -> *mut dht_value {
    ffi!(std::ptr::null_mut(), {
        registry::with(v, |h| new_value_handle(h.0.clone())).unwrap_or(std::ptr::null_mut())
    })
}

/// Releases one handle (NULL, freed or borrowed-from-a-callback handles: nothing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_unref(v: *mut dht_value) {
    ffi!((), {
        drop(registry::take(v));
    })
}

/// A view of the value's data, valid while the value lives. NULL or freed: an empty view.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_get_data(data: *const dht_value) -> dht_data_view {
    ffi!(dht_data_view::EMPTY, {
        registry::with(data, |h| dht_data_view::of(&h.0.value.data)).unwrap_or(dht_data_view::EMPTY)
    })
}

/// The value's id (0 until a put assigns one; ours assigns it during the put call). NULL: 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_get_id(data: *const dht_value) -> u64 {
    ffi!(0, {
        registry::with(data, |h| h.0.id.load(Ordering::Acquire)).unwrap_or(0)
    })
}

/// A new handle to the owner's ed25519 key (`dht_publickey_delete`); NULL when the value is not
/// signed or its owner's key is not ed25519 (OpenDHT's RSA owners).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_get_owner(data: *const dht_value) -> *mut dht_publickey {
    ffi!(std::ptr::null_mut(), {
        registry::with(data, |h| {
            h.0.value
                .owner
                .as_deref()
                .and_then(|o| dht_proto::crypto::PublicKey::from_spki_der(o).ok())
                .map_or(std::ptr::null_mut(), new_publickey)
        })
        .unwrap_or(std::ptr::null_mut())
    })
}

/// The recipient's short id, zero when none (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_get_recipient(data: *const dht_value) -> dht_infohash {
    ffi!(dht_infohash::default(), {
        registry::with(data, |h| h.0.value.recipient.map(Into::into).unwrap_or_default()).unwrap_or_default()
    })
}

/// The user type, borrowed: valid while the value lives and its user type is unchanged.
/// NULL or freed value: NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_get_user_type(data: *const dht_value) -> *const c_char {
    ffi!(std::ptr::null(), {
        // The CString's buffer stays where it is until `set_user_type` replaces it.
        registry::with(data, |h| {
            h.0.user_type
                .lock()
                .map(|s| s.as_ptr())
                .unwrap_or(std::ptr::null())
        })
        .unwrap_or(std::ptr::null())
    })
}

/// Copies `user_type` into the value (NULL: the empty string).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_value_set_user_type(data: *mut dht_value, user_type: *const c_char) {
    ffi!((), {
        // SAFETY: NULL or NUL-terminated (header contract).
        let s = unsafe { c_str(user_type) }.unwrap_or_default();
        registry::with(data, |h| {
            if let Ok(mut u) = h.0.user_type.lock() {
                *u = CString::new(s).unwrap_or_default();
            }
        });
    })
}
