//! Write tokens (`opendht-wire.md` §2.9). A token proves that the requester received our reply
//! at the address it claims, so a put, listen or refresh cannot come from a forged source.
//!
//! Ours is `SHA-1(secret ‖ IP ‖ port)`, 20 bytes (OpenDHT uses SHA-256 and 32 bytes; any
//! length up to 64 is accepted by its requesters). Two 16-byte secrets are kept, current and
//! previous; the current one is replaced every 15–45 minutes, drawn from the node's seeded RNG.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use sha1::{Digest, Sha1};

use crate::Instant;

/// A ChaCha20 stream parked as its seed, stream number and word position (56 bytes) instead
/// of a live generator (320 bytes, most of them its 256-byte block buffer): for randomness
/// drawn a few times an hour (token secrets, sealing values), in every node of a process that
/// runs thousands. Each draw rebuilds the generator at its position, so the words drawn are
/// exactly those the live generator would give.
#[derive(Clone)]
pub(crate) struct ParkedRng {
    seed: [u8; 32],
    stream: u64,
    word_pos: u128,
}

impl core::fmt::Debug for ParkedRng {
    /// The position only: the seed is secret.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParkedRng")
            .field("word_pos", &self.word_pos)
            .finish_non_exhaustive()
    }
}

impl ParkedRng {
    /// The stream `stream` of the generator seeded with `seed`, at its start.
    pub(crate) fn new(seed: [u8; 32], stream: u64) -> ParkedRng {
        ParkedRng {
            seed,
            stream,
            word_pos: 0,
        }
    }

    fn draw<R>(&mut self, f: impl FnOnce(&mut ChaCha20Rng) -> R) -> R {
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        let out = f(&mut rng);
        self.word_pos = rng.get_word_pos();
        out
    }
}

impl RngCore for ParkedRng {
    fn next_u32(&mut self) -> u32 {
        self.draw(|r| r.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        self.draw(|r| r.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.draw(|r| r.fill_bytes(dest));
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.draw(|r| r.try_fill_bytes(dest))
    }
}

impl CryptoRng for ParkedRng {}

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

    /// A parked generator gives the very words of the live one, whatever mix of draws.
    #[test]
    fn parked_rng_draws_what_the_live_generator_draws() {
        let seed = [9u8; 32];
        let mut live = ChaCha20Rng::from_seed(seed);
        live.set_stream(2);
        let mut parked = ParkedRng::new(seed, 2);
        for i in 0..200usize {
            match i % 4 {
                0 => assert_eq!(parked.next_u32(), live.next_u32()),
                1 => assert_eq!(parked.next_u64(), live.next_u64()),
                _ => {
                    let (mut a, mut b) = ([0u8; 37], [0u8; 37]);
                    let n = i % 37;
                    parked.fill_bytes(&mut a[..n]);
                    live.fill_bytes(&mut b[..n]);
                    assert_eq!(a, b);
                }
            }
        }
        assert!(size_of::<ParkedRng>() < size_of::<ChaCha20Rng>() / 4);
    }

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
