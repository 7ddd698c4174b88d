//! Giving back memory that emptied containers keep.
//!
//! An emptied `BTreeMap` keeps its last leaf (about 11 entries' worth, up to 2 KiB here) and an
//! emptied `VecDeque` or `Vec` keeps its capacity. A node has a score of such tables that fill
//! for a moment (a search, a request in flight) and then sit empty for minutes; together they
//! would be most of an idle node's heap. [`Compact::compact`] drops what an empty one holds.

use crate::prelude::*;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};

/// A container that can let go of the memory it holds while empty.
pub(crate) trait Compact {
    /// Frees the allocation if the container is empty.
    fn compact(&mut self);
}

impl<K, V> Compact for BTreeMap<K, V> {
    fn compact(&mut self) {
        if self.is_empty() {
            *self = BTreeMap::new();
        }
    }
}

impl<T> Compact for BTreeSet<T> {
    fn compact(&mut self) {
        if self.is_empty() {
            *self = BTreeSet::new();
        }
    }
}

impl<T> Compact for VecDeque<T> {
    fn compact(&mut self) {
        if self.is_empty() && self.capacity() > 0 {
            *self = VecDeque::new();
        }
    }
}

impl<T> Compact for Vec<T> {
    fn compact(&mut self) {
        if self.is_empty() && self.capacity() > 0 {
            *self = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Compact;
    use alloc::collections::{BTreeMap, VecDeque};

    #[test]
    fn empty_containers_are_reset_and_full_ones_kept() {
        let mut m: BTreeMap<u32, u32> = (0..3).map(|i| (i, i)).collect();
        m.compact();
        assert_eq!(m.len(), 3);
        m.clear();
        m.compact();
        assert!(m.is_empty());
        let mut q: VecDeque<u8> = VecDeque::with_capacity(64);
        q.push_back(1);
        q.compact();
        assert!(q.capacity() >= 64);
        q.clear();
        q.compact();
        assert_eq!(q.capacity(), 0);
    }
}
