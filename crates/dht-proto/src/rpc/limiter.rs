//! Request rate limits (`opendht-wire.md` §8.1): a global limit and one per IPv4 address or
//! IPv6 /64, over a one-second sliding window.
//!
//! OpenDHT keeps every request time of the window (up to 1024 per address); we keep two counters
//! per address (this second and the last) and weigh the last by how much of it is still inside
//! the window. The estimate is within one request of the exact count for a steady stream and
//! takes 32 bytes per address instead of up to 8 KiB.

use alloc::collections::BTreeMap;
use core::net::IpAddr;
use core::time::Duration;

use super::ip_key;
use crate::Instant;

const WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    previous: u32,
    current: u32,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            previous: 0,
            current: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now - self.start;
        if elapsed >= 2 * WINDOW {
            *self = Window::new(now);
        } else if elapsed >= WINDOW {
            self.previous = self.current;
            self.current = 0;
            self.start += WINDOW;
        }
    }

    /// Records one event unless `quota` is reached.
    fn admit(&mut self, now: Instant, quota: u32) -> bool {
        self.roll(now);
        let into = (now - self.start).as_micros() as u64;
        let left = WINDOW.as_micros() as u64 - into.min(WINDOW.as_micros() as u64);
        let weighted = u64::from(self.previous) * left / WINDOW.as_micros() as u64;
        if weighted + u64::from(self.current) >= u64::from(quota) {
            return false;
        }
        self.current += 1;
        true
    }
}

/// Why the limiter refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Peer,
    Global,
}

/// The global and per-IP limiters.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    global: Option<(u32, Window)>,
    per_ip: Option<u32>,
    peers: BTreeMap<u128, Window>,
    max_peers: usize,
    /// When addresses idle for a whole window were last forgotten (see [`RateLimiter::admit`]).
    pruned: Option<Instant>,
}

impl RateLimiter {
    /// Frees what the emptied table holds (see [`crate::compact`]).
    pub(crate) fn compact(&mut self) {
        crate::compact::Compact::compact(&mut self.peers);
    }

    pub(crate) fn new(
        now: Instant,
        global: Option<u32>,
        per_ip: Option<u32>,
        max_peers: usize,
    ) -> RateLimiter {
        RateLimiter {
            global: global.map(|q| (q, Window::new(now))),
            per_ip,
            peers: BTreeMap::new(),
            max_peers,
            pruned: None,
        }
    }

    /// Charges one request from `ip`: the per-IP limit first, then the global one.
    pub(crate) fn admit(&mut self, now: Instant, ip: &IpAddr) -> Result<(), Refusal> {
        if let Some(quota) = self.per_ip {
            let key = ip_key(ip);
            // Every two windows, forget the addresses idle for that long: their windows would
            // start afresh anyway (see `Window::roll`), so this changes no verdict, and an idle
            // node does not keep a window for every address it ever heard from.
            if self.pruned.is_none_or(|t| now - t >= 2 * WINDOW) {
                self.pruned = Some(now);
                self.peers.retain(|_, w| now - w.start < 2 * WINDOW);
            }
            if !self.peers.contains_key(&key) && self.peers.len() >= self.max_peers {
                // Forget addresses idle for a whole window; if none is, the newcomer is held
                // to the global limit alone.
                self.peers.retain(|_, w| now - w.start < 2 * WINDOW);
            }
            if self.peers.len() < self.max_peers || self.peers.contains_key(&key) {
                let w = self.peers.entry(key).or_insert_with(|| Window::new(now));
                if !w.admit(now, quota) {
                    return Err(Refusal::Peer);
                }
            }
        }
        if let Some((quota, w)) = &mut self.global
            && !w.admit(now, *quota)
        {
            return Err(Refusal::Global);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn tracked_peers(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_holds_over_a_sliding_window() {
        let mut l = RateLimiter::new(Instant::ZERO, Some(100), Some(10), 16);
        let a = ip("10.0.0.1");
        let admitted = (0..50).filter(|_| l.admit(Instant::ZERO, &a).is_ok()).count();
        assert_eq!(admitted, 10);
        assert_eq!(l.admit(Instant::ZERO, &ip("10.0.0.2")), Ok(()));
        // Half a window later the old burst still counts for half.
        let half = Instant::from_millis(1500);
        let admitted = (0..50).filter(|_| l.admit(half, &a).is_ok()).count();
        assert_eq!(admitted, 5);
        // Two windows later it is forgotten.
        let later = Instant::from_millis(3000);
        let admitted = (0..50).filter(|_| l.admit(later, &a).is_ok()).count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix() {
        let mut l = RateLimiter::new(Instant::ZERO, None, Some(4), 16);
        for i in 0..4 {
            assert!(l.admit(Instant::ZERO, &ip(&format!("2001:db8::{i}"))).is_ok());
        }
        assert_eq!(l.admit(Instant::ZERO, &ip("2001:db8::ffff")), Err(Refusal::Peer));
        assert!(l.admit(Instant::ZERO, &ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn global_limit_holds_across_addresses() {
        let mut l = RateLimiter::new(Instant::ZERO, Some(20), Some(10), 1000);
        let admitted = (0..100u8)
            .filter(|i| l.admit(Instant::ZERO, &IpAddr::from([10, 0, 0, *i])).is_ok())
            .count();
        assert_eq!(admitted, 20);
    }

    #[test]
    fn addresses_idle_for_two_windows_are_forgotten_without_changing_verdicts() {
        let mut l = RateLimiter::new(Instant::ZERO, None, Some(3), 1000);
        for i in 0..100u8 {
            assert!(l.admit(Instant::ZERO, &IpAddr::from([10, 0, 0, i])).is_ok());
        }
        assert_eq!(l.tracked_peers(), 100);
        // A busy address keeps its window across the prune.
        let busy = ip("192.0.2.1");
        let t = Instant::from_millis(1900);
        assert_eq!((0..5).filter(|_| l.admit(t, &busy).is_ok()).count(), 3);
        let later = Instant::from_millis(2100);
        assert_eq!(
            l.admit(later, &busy),
            Err(Refusal::Peer),
            "its burst still counts"
        );
        assert_eq!(l.tracked_peers(), 1, "the 100 idle addresses are gone");
        // A forgotten address starts afresh, as its stale window would have.
        let back = IpAddr::from([10, 0, 0, 7]);
        assert_eq!((0..5).filter(|_| l.admit(later, &back).is_ok()).count(), 3);
    }

    #[test]
    fn peer_table_is_bounded() {
        let mut l = RateLimiter::new(Instant::ZERO, None, Some(10), 64);
        for i in 0..10_000u32 {
            let _ = l.admit(Instant::ZERO, &IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(l.tracked_peers(), 64);
        // Once the window passes, old entries make room again.
        let _ = l.admit(Instant::from_secs(5), &ip("192.0.2.1"));
        assert!(l.tracked_peers() <= 64);
    }
}
