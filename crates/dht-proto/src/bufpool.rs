//! Byte buffers for outgoing datagrams, reused within a thread.
//!
//! A datagram the node queues is encoded straight into a buffer taken from here, and the
//! buffer comes back when the driver has copied the datagram out ([`crate::Node::poll_transmit`]).
//! In a busy node, sending then costs no allocation: the same few buffers go round. The pool is
//! per thread, not per node (a thread may carry thousands of nodes, and an idle node must hold
//! nothing), and bounded: at most [`KEEP`] buffers of at most [`MAX_CAPACITY`] bytes each.
//! Without `std` there are no threads to keep one in, and buffers are plain allocations.

use crate::prelude::*;

/// Buffers kept per thread: drivers take a node's datagrams out after each input, so only a
/// few are queued at once; more would only hold memory (the pool's share of a node's memory
/// in a process of 100 nodes on 2 threads is about 0.1 KiB at 16).
#[cfg(feature = "std")]
const KEEP: usize = 16;

/// A buffer larger than this (a message carrying big values passed through it) is freed, not
/// kept.
#[cfg(feature = "std")]
const MAX_CAPACITY: usize = 2048;

#[cfg(feature = "std")]
std::thread_local! {
    static FREE: core::cell::RefCell<Vec<Vec<u8>>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer, from the pool when it has one.
pub(crate) fn take() -> Vec<u8> {
    #[cfg(feature = "std")]
    {
        FREE.try_with(|f| f.try_borrow_mut().ok().and_then(|mut f| f.pop()))
            .ok()
            .flatten()
            .unwrap_or_default()
    }
    #[cfg(not(feature = "std"))]
    {
        Vec::new()
    }
}

/// Gives `buf` back to the pool (or frees it: too big, or the pool is full).
#[cfg_attr(not(feature = "std"), allow(unused_mut))]
pub(crate) fn give(mut buf: Vec<u8>) {
    #[cfg(feature = "std")]
    {
        if buf.capacity() == 0 || buf.capacity() > MAX_CAPACITY {
            return;
        }
        buf.clear();
        let _ = FREE.try_with(|f| {
            if let Ok(mut f) = f.try_borrow_mut()
                && f.len() < KEEP
            {
                if f.capacity() == 0 {
                    f.reserve_exact(KEEP);
                }
                f.push(buf);
            }
        });
    }
    #[cfg(not(feature = "std"))]
    drop(buf);
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_with_its_capacity() {
        let mut b = take();
        b.extend_from_slice(&[1; 300]);
        let cap = b.capacity();
        let ptr = b.as_ptr();
        give(b);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
        assert_eq!(again.as_ptr(), ptr);
    }

    #[test]
    fn big_buffers_and_a_full_pool_are_freed_not_kept() {
        // Drain what other tests of this thread left.
        while take().capacity() > 0 {}
        give(Vec::with_capacity(MAX_CAPACITY + 1));
        assert_eq!(take().capacity(), 0, "a big buffer is not kept");
        for _ in 0..KEEP + 10 {
            give(Vec::with_capacity(16));
        }
        let mut kept = 0;
        while take().capacity() > 0 {
            kept += 1;
        }
        assert_eq!(kept, KEEP);
    }
}
