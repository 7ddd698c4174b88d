//! Write tokens (`opendht-wire.md` §2.9). A token proves that the requester received our reply
//! at the address it claims, so a put, listen or refresh cannot come from a forged source.
//!
//! Ours is `SHA-1(secret ‖ IP ‖ port)`, 20 bytes (OpenDHT uses SHA-256 and 32 bytes; any
//! length up to 64 is accepted by its requesters). Two 16-byte secrets are kept, current and
//! previous; the current one is replaced every 15–45 minutes, drawn from the node's seeded RNG.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use rand_core::RngCore;
use sha1::{Digest, Sha1};

use crate::Instant;

/// Length of our tokens.
pub(crate) const TOKEN_LEN: usize = 20;

#[derive(Debug)]
pub(crate) struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotate_at: Instant,
}

impl Tokens {
    pub(crate) fn new(now: Instant, rng: &mut impl RngCore) -> Tokens {
        let mut t = Tokens {
            current: [0; 16],
            previous: [0; 16],
            rotate_at: now,
        };
        rng.fill_bytes(&mut t.current);
        rng.fill_bytes(&mut t.previous);
        t.rotate_at = now + rotation_period(rng);
        t
    }

    pub(crate) fn next_rotation(&self) -> Instant {
        self.rotate_at
    }

    /// Rotates the secrets if their time has come.
    pub(crate) fn maybe_rotate(&mut self, now: Instant, rng: &mut impl RngCore) {
        if now >= self.rotate_at {
            self.previous = self.current;
            rng.fill_bytes(&mut self.current);
            self.rotate_at = now + rotation_period(rng);
        }
    }

    pub(crate) fn make(&self, addr: &SocketAddr) -> crate::wire::Token {
        crate::wire::Token::from_slice(&make(&self.current, addr))
    }

    pub(crate) fn check(&self, addr: &SocketAddr, token: &[u8]) -> bool {
        token.len() == TOKEN_LEN
            && (make(&self.current, addr).as_slice() == token
                || make(&self.previous, addr).as_slice() == token)
    }
}

fn rotation_period(rng: &mut impl RngCore) -> Duration {
    Duration::from_secs(15 * 60 + rng.next_u64() % (30 * 60))
}

fn make(secret: &[u8; 16], addr: &SocketAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match addr.ip() {
        IpAddr::V4(ip) => h.update(ip.octets()),
        IpAddr::V6(ip) => h.update(ip.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn tokens_bind_the_address_and_survive_one_rotation() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut t = Tokens::new(Instant::ZERO, &mut rng);
        let a: SocketAddr = "10.0.0.1:4222".parse().unwrap();
        let tok = t.make(&a);
        assert!(t.check(&a, &tok));
        assert!(!t.check(&"10.0.0.1:4223".parse().unwrap(), &tok));
        assert!(!t.check(&"10.0.0.2:4222".parse().unwrap(), &tok));
        assert!(!t.check(&a, &tok[..19]));
        let first = t.next_rotation();
        assert!(first >= Instant::from_secs(15 * 60) && first < Instant::from_secs(45 * 60));
        t.maybe_rotate(first, &mut rng);
        assert!(t.check(&a, &tok), "previous secret still accepted");
        let second = t.next_rotation();
        t.maybe_rotate(second, &mut rng);
        assert!(!t.check(&a, &tok), "two rotations later the token is stale");
    }
}
