//! Heap counters for the memory figures of the benches and `tests/tests/memory.rs`, on the
//! `stats_alloc` crate's instrumented system allocator (so this crate holds no `unsafe`).
//! A binary installs it with
//! `#[global_allocator] static A: Counting = &dht_tests::counting::INSTRUMENTED_SYSTEM;`.
//!
//! The counters are shared atomics bumped on every allocation: a few per cent of CPU in an
//! allocation-heavy timed phase, which the loopback bench states beside its figures.

use std::alloc::System;

pub use stats_alloc::INSTRUMENTED_SYSTEM;

/// The counting allocator, as installed with `#[global_allocator]`.
pub type Counting = &'static stats_alloc::StatsAlloc<System>;

/// Live heap bytes: allocated minus freed, since the process started. (`stats_alloc` already
/// counts a reallocation's growth as allocated and its shrinking as freed; its
/// `bytes_reallocated` is the same change again, so it is not added.)
pub fn live() -> isize {
    let s = INSTRUMENTED_SYSTEM.stats();
    (s.bytes_allocated as isize).wrapping_sub(s.bytes_deallocated as isize)
}

/// Allocations (and reallocations, each of which may move a block) since the process started.
pub fn allocations() -> u64 {
    let s = INSTRUMENTED_SYSTEM.stats();
    (s.allocations + s.reallocations) as u64
}

/// Live heap blocks: allocations minus frees, since the process started (each costs the
/// allocator a header and rounding beside its bytes).
pub fn live_allocations() -> isize {
    let s = INSTRUMENTED_SYSTEM.stats();
    (s.allocations as isize).wrapping_sub(s.deallocations as isize)
}
