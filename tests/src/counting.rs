//! A global allocator that counts live heap bytes, for the memory figures of the benches and
//! `tests/tests/memory.rs`. A binary installs it with
//! `#[global_allocator] static A: Counting = Counting;`.
//!
//! It forwards to the system allocator. Counting can be stopped ([`stop`]): a shared counter
//! bumped on every allocation from several threads costs a few per cent, which timed phases
//! should not pay.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// The counting allocator.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ON: AtomicBool = AtomicBool::new(true);

/// Live heap bytes counted so far (allocations minus frees, while counting was on).
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Stops counting for good: [`live`] keeps its last value.
pub fn stop() {
    ON.store(false, Ordering::Relaxed);
}

fn add(n: isize) {
    if ON.load(Ordering::Relaxed) {
        LIVE.fetch_add(n, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to the system allocator with the caller's arguments; the only
// addition is a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        add(new as isize - l.size() as isize);
        unsafe { System.realloc(p, l, new) }
    }
}
