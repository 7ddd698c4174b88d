//! # dht-c
//!
//! OpenDHT's C API (`opendht_c.h`) over [`dht_mio`]'s thread runner: a C program written for
//! OpenDHT's C binding compiles unchanged against `include/opendht_c.h` and links with
//! `-lopendht-c` (`pkg-config opendht-c`). The header mirrors OpenDHT 4.3 (HEAD); it says where
//! Debian's 2.4.12 differs, and where crypto is ed25519/x25519 instead of RSA/X.509.
//!
//! This crate is the workspace's only `unsafe` code: the C ABI. Its rules:
//! - every handle the library returns is a `Box` recorded in a registry of live handles
//!   ([`registry`]); a pointer that is not live (NULL, freed, of another type) is refused with the
//!   function's documented error return, so a double free through the API's own `*_delete` /
//!   `*_unref` is detected and ignored;
//! - no Rust panic crosses into C: every exported function runs inside `catch_unwind`, and a panic
//!   becomes the function's error return;
//! - callbacks run on one worker thread per runner (the "runner thread" of OpenDHT), never with a
//!   lock of ours held across the call.
//!
//! The C API uses raw pointers throughout; its safety contract is the header's: a pointer
//! argument is NULL, a live handle of the named type, or points to the memory the header
//! describes (a NUL-terminated string, `size` readable bytes, a writable struct).
//!
//! ## Example (from Rust, through the C ABI)
//!
//! ```
//! use opendht_c::*;
//! use std::ffi::{CStr, c_void};
//!
//! let mut key = dht_infohash { d: [0; 20] };
//! // SAFETY: `key` is a valid dht_infohash and the string is NUL-terminated.
//! unsafe { dht_infohash_get_from_string(&mut key, c"hello".as_ptr()) };
//! // SAFETY: as above; the returned string is the thread's print buffer.
//! let hex = unsafe { CStr::from_ptr(dht_infohash_print(&key)) };
//! assert_eq!(hex.to_str().unwrap(), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
//!
//! // SAFETY: a NUL-terminated string; the value is unreferenced once.
//! unsafe {
//!     let v = dht_value_new_from_string(c"world".as_ptr());
//!     assert_eq!(dht_value_get_data(v).size, 5);
//!     dht_value_unref(v);
//!     dht_value_unref(v); // a double unref is detected and ignored
//! }
//!
//! // A runner that is not running fails every operation at once, on the caller's thread.
//! extern "C" fn done(ok: bool, user_data: *mut c_void) {
//!     // SAFETY: user_data is the `bool` passed below.
//!     unsafe { *(user_data as *mut bool) = !ok };
//! }
//! let mut failed = false;
//! // SAFETY: `r` is a live runner until deleted; `failed` outlives the call.
//! unsafe {
//!     let r = dht_runner_new();
//!     dht_runner_get(r, &key, None, Some(done), (&raw mut failed).cast());
//!     dht_runner_delete(r);
//! }
//! assert!(failed);
//! ```

#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]
// The exported functions keep OpenDHT's C names and take raw pointers as C does; their safety
// contract is written once, in the crate docs and in `include/opendht_c.h`, not per function.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

use std::ffi::c_char;

/// Runs an exported function's body, turning a Rust panic into the function's error return.
macro_rules! ffi {
    ($err:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(_) => $err,
        }
    };
}

pub mod crypto;
pub mod hash;
pub mod registry;
pub mod runner;
pub mod value;

pub use crypto::*;
pub use hash::*;
pub use runner::*;
pub use value::*;

/// `HASH_LEN` of OpenDHT's `def.h`: bytes in a [`dht_infohash`].
pub const HASH_LEN: usize = 20;

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (rdht, OpenDHT C API 4.3)\0");

/// Our version: `"<crate version> (rdht, OpenDHT C API 4.3)"`, static, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn dht_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// Reads a NUL-terminated C string (NULL gives `None`; invalid UTF-8 is replaced).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn c_str(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(p) };
    Some(s.to_string_lossy().into_owned())
}

/// Views `size` bytes at `p`: NULL with size 0 is the empty slice, NULL with a size is `None`.
///
/// # Safety
/// `p` is NULL or points to `size` readable bytes that stay unchanged while the slice lives.
pub(crate) unsafe fn bytes<'a>(p: *const u8, size: usize) -> Option<&'a [u8]> {
    if size == 0 {
        return Some(&[]);
    }
    if p.is_null() || size > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, size within isize, and the caller promises `size` readable bytes.
    Some(unsafe { std::slice::from_raw_parts(p, size) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_becomes_the_error_return() {
        fn exported(fail: bool) -> i32 {
            ffi!(-1, {
                assert!(!fail, "a bug");
                0
            })
        }
        assert_eq!(exported(false), 0);
        assert_eq!(exported(true), -1);
    }
}
