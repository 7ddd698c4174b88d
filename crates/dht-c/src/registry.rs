//! Live handles: every pointer the library hands to C is recorded here until its `*_delete` /
//! `*_unref`, so a NULL, freed or foreign pointer is refused instead of dereferenced.
//!
//! A freed address that a later allocation of the same type reuses cannot be told apart from
//! the new handle: the detection covers double frees and stale pointers until then.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// The kinds of handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `dht_value`
    Value,
    /// `dht_blob`
    Blob,
    /// `dht_publickey`
    PublicKey,
    /// `dht_privatekey`
    PrivateKey,
    /// `dht_certificate`
    Certificate,
    /// `dht_op_token`
    Token,
    /// `dht_runner`
    Runner,
}

/// A type handed to C as a handle.
pub trait Tracked: Sized {
    /// Its kind.
    const KIND: Kind;
}

static LIVE: Mutex<BTreeMap<usize, Kind>> = Mutex::new(BTreeMap::new());

fn live() -> MutexGuard<'static, BTreeMap<usize, Kind>> {
    // The map stays consistent whatever panicked while it was held (inserts and removes only).
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Boxes `v` and records the handle.
pub(crate) fn into_raw<T: Tracked>(v: T) -> *mut T {
    let p = Box::into_raw(Box::new(v));
    live().insert(p as usize, T::KIND);
    p
}

/// Whether `p` is a live handle of type `T`.
pub fn is_live<T: Tracked>(p: *const T) -> bool {
    !p.is_null() && live().get(&(p as usize)) == Some(&T::KIND)
}

/// Runs `f` on the handle if it is live, else returns `None`.
pub(crate) fn with<T: Tracked, R>(p: *const T, f: impl FnOnce(&T) -> R) -> Option<R> {
    if !is_live(p) {
        return None;
    }
    // SAFETY: `p` is recorded with T's kind, so `into_raw` made it from a `Box<T>` and `take` has
    // not freed it yet. The header's contract is that C does not free a handle while another
    // thread uses it, so it stays valid during `f`.
    Some(f(unsafe { &*p }))
}

/// Forgets the handle and gives its box back; `None` if it was not live (a double free).
pub(crate) fn take<T: Tracked>(p: *mut T) -> Option<Box<T>> {
    if p.is_null() {
        return None;
    }
    {
        let mut l = live();
        if l.get(&(p as usize)) != Some(&T::KIND) {
            return None;
        }
        l.remove(&(p as usize));
    }
    // SAFETY: `p` was recorded by `into_raw` (from `Box::into_raw` of a `Box<T>`) and was still
    // recorded; removing it under the lock makes this the only `take` that frees it.
    Some(unsafe { Box::from_raw(p) })
}
