//! The network model, itself sans-IO: given a datagram's sender, receiver, size and the time, it
//! decides when (if ever, and how many times) the datagram arrives. Latency per link with
//! jitter, random and bursty (Gilbert–Elliott) loss, duplication, reordering, named partitions
//! and per-node bandwidth. All randomness comes from the RNG it is built with.

use std::collections::BTreeMap;
use std::time::Duration;

use dht_proto::Instant;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// How a link's base one-way latency is chosen (once per ordered pair of nodes, from the seed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinkLatency {
    /// Every link has this latency.
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
}

/// Packet loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// None.
    None,
    /// Each datagram is lost with this probability.
    Random(f64),
    /// Bursty loss, a two-state Markov chain per sending node (Gilbert–Elliott): the chance to go
    /// from good to bad and back per datagram, and the loss rate in each state.
    GilbertElliott {
        /// P(good → bad) per datagram.
        to_bad: f64,
        /// P(bad → good) per datagram.
        to_good: f64,
        /// Loss in the good state.
        loss_good: f64,
        /// Loss in the bad state.
        loss_bad: f64,
    },
}

/// The network's behaviour.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Base one-way latency per link.
    pub latency: LinkLatency,
    /// Extra delay per datagram, uniform in `[0, jitter]`.
    pub jitter: Duration,
    /// Loss.
    pub loss: Loss,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by up to `reorder_delay`, so later ones pass it.
    pub reorder: f64,
    /// Longest hold-back of a reordered datagram.
    pub reorder_delay: Duration,
    /// Upload bandwidth of every node in bytes per second; `None`: unlimited. Each simulated
    /// node is told it (`Config::uplink_bytes_per_sec`) unless its own configuration says
    /// otherwise.
    pub bandwidth: Option<u64>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: LinkLatency::Fixed(Duration::from_millis(50)),
            jitter: Duration::ZERO,
            loss: Loss::None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(100),
            bandwidth: None,
        }
    }
}

impl NetConfig {
    /// The mean round-trip time of a link, without jitter or queueing.
    pub fn mean_rtt(&self) -> Duration {
        match self.latency {
            LinkLatency::Fixed(d) => 2 * d,
            LinkLatency::Uniform(a, b) => a + b,
        }
    }
}

/// Why a datagram did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drop {
    /// Lost.
    Loss,
    /// Sender and receiver are on two sides of a partition.
    Partition,
}

/// Counters of the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams offered.
    pub sent: u64,
    /// Bytes offered.
    pub bytes: u64,
    /// Datagrams lost.
    pub lost: u64,
    /// Datagrams cut by a partition.
    pub partitioned: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Datagrams held back.
    pub reordered: u64,
}

/// The network state.
#[derive(Debug)]
pub struct Network {
    config: NetConfig,
    rng: ChaCha20Rng,
    link_seed: u64,
    /// Gilbert–Elliott state per sender: true when bad.
    burst: BTreeMap<usize, bool>,
    /// When each sender's uplink is free again.
    busy_until: BTreeMap<usize, Instant>,
    /// Group of each node while partitioned (absent: group 0).
    groups: BTreeMap<usize, u32>,
    group_names: Vec<String>,
    partitioned: bool,
    /// Counters.
    pub stats: NetStats,
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of a link, so per-link latencies need no table.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Network {
    /// A network with `config`, its randomness from `rng`.
    pub fn new(config: NetConfig, mut rng: ChaCha20Rng) -> Network {
        let link_seed = rng.next_u64();
        Network {
            config,
            rng,
            link_seed,
            burst: BTreeMap::new(),
            busy_until: BTreeMap::new(),
            groups: BTreeMap::new(),
            group_names: vec!["rest".into()],
            partitioned: false,
            stats: NetStats::default(),
        }
    }

    /// A network seeded from a number (for tests).
    pub fn seeded(config: NetConfig, seed: u64) -> Network {
        Network::new(config, ChaCha20Rng::seed_from_u64(seed))
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Changes the configuration (e.g. the loss rate) from now on.
    pub fn set_config(&mut self, config: NetConfig) {
        self.config = config;
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn uniform(&mut self, max: Duration) -> Duration {
        let m = max.as_micros() as u64;
        if m == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.next_u64() % (m + 1))
        }
    }

    /// The base one-way latency of the link `from → to`.
    pub fn link_latency(&self, from: usize, to: usize) -> Duration {
        match self.config.latency {
            LinkLatency::Fixed(d) => d,
            LinkLatency::Uniform(a, b) => {
                let h = mix(self.link_seed ^ mix((from as u64) << 32 | to as u64));
                let span = b.saturating_sub(a).as_micros() as u64;
                a + Duration::from_micros(if span == 0 { 0 } else { h % (span + 1) })
            }
        }
    }

    /// The shortest one-way latency any datagram can have under the current configuration:
    /// whatever is sent at `t` arrives at `t` plus this or later.
    pub fn min_latency(&self) -> Duration {
        match self.config.latency {
            LinkLatency::Fixed(d) => d,
            LinkLatency::Uniform(a, _) => a,
        }
    }

    /// Splits the network: each named group is cut off from every other (nodes not named form
    /// one more group).
    pub fn partition(&mut self, groups: &[(&str, &[usize])]) {
        self.groups.clear();
        self.group_names = vec!["rest".into()];
        for (name, nodes) in groups {
            self.group_names.push((*name).to_string());
            let g = (self.group_names.len() - 1) as u32;
            for n in *nodes {
                self.groups.insert(*n, g);
            }
        }
        self.partitioned = true;
    }

    /// Ends the partition.
    pub fn heal(&mut self) {
        self.partitioned = false;
        self.groups.clear();
    }

    /// The group a node is in, by name.
    pub fn group_of(&self, node: usize) -> &str {
        let g = self.groups.get(&node).copied().unwrap_or(0) as usize;
        self.group_names.get(g).map(String::as_str).unwrap_or("rest")
    }

    /// When a datagram of `len` bytes sent by `from` to `to` at `now` arrives: no time when it
    /// is dropped, two when it is duplicated.
    pub fn route(&mut self, now: Instant, from: usize, to: usize, len: usize) -> Result<Vec<Instant>, Drop> {
        self.route_times(now, from, to, len).map(|a| a.collect())
    }

    /// [`Network::route`] without an allocation: the arrival times as an iterator.
    pub fn route_times(
        &mut self,
        now: Instant,
        from: usize,
        to: usize,
        len: usize,
    ) -> Result<Arrivals, Drop> {
        self.stats.sent += 1;
        self.stats.bytes += len as u64;
        if self.partitioned
            && self.groups.get(&from).copied().unwrap_or(0) != self.groups.get(&to).copied().unwrap_or(0)
        {
            self.stats.partitioned += 1;
            return Err(Drop::Partition);
        }
        let lost = match self.config.loss {
            Loss::None => false,
            Loss::Random(p) => self.chance(p),
            Loss::GilbertElliott {
                to_bad,
                to_good,
                loss_good,
                loss_bad,
            } => {
                let bad = self.burst.get(&from).copied().unwrap_or(false);
                let bad = if bad {
                    !self.chance(to_good)
                } else {
                    self.chance(to_bad)
                };
                self.burst.insert(from, bad);
                self.chance(if bad { loss_bad } else { loss_good })
            }
        };
        if lost {
            self.stats.lost += 1;
            return Err(Drop::Loss);
        }
        // Serialisation on the sender's uplink.
        let mut depart = now;
        if let Some(bw) = self.config.bandwidth.filter(|b| *b > 0) {
            let busy = self.busy_until.get(&from).copied().unwrap_or(now).max(now);
            let tx = Duration::from_micros((len as u64 * 1_000_000).div_ceil(bw));
            depart = busy + tx;
            self.busy_until.insert(from, depart);
        }
        let base = depart + self.link_latency(from, to);
        let jitter = self.config.jitter;
        let mut at = base + self.uniform(jitter);
        if self.chance(self.config.reorder) {
            self.stats.reordered += 1;
            let d = self.config.reorder_delay;
            at += self.uniform(d);
        }
        let mut out = Arrivals {
            first: Some(at),
            second: None,
        };
        if self.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            out.second = Some(base + self.uniform(jitter));
        }
        Ok(out)
    }
}

/// When a routed datagram arrives: once, or twice when duplicated ([`Network::route_times`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrivals {
    first: Option<Instant>,
    second: Option<Instant>,
}

impl Iterator for Arrivals {
    type Item = Instant;

    fn next(&mut self) -> Option<Instant> {
        self.first.take().or_else(|| self.second.take())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const T0: Instant = Instant::ZERO;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fixed_latency_and_jitter() {
        let mut n = Network::seeded(NetConfig::default(), 1);
        assert_eq!(n.route(T0, 0, 1, 100).unwrap(), vec![T0 + ms(50)]);
        let mut n = Network::seeded(
            NetConfig {
                jitter: ms(10),
                ..NetConfig::default()
            },
            1,
        );
        for _ in 0..1000 {
            let at = n.route(T0, 0, 1, 100).unwrap()[0];
            assert!(at >= T0 + ms(50) && at <= T0 + ms(60));
        }
    }

    #[test]
    fn per_link_latency_is_stable_and_spread() {
        let cfg = NetConfig {
            latency: LinkLatency::Uniform(ms(10), ms(90)),
            ..NetConfig::default()
        };
        let n = Network::seeded(cfg.clone(), 2);
        let m = Network::seeded(cfg, 2);
        let lats: Vec<Duration> = (0..200).map(|i| n.link_latency(0, i)).collect();
        assert!(lats.iter().all(|l| *l >= ms(10) && *l <= ms(90)));
        assert_eq!(
            lats,
            (0..200).map(|i| m.link_latency(0, i)).collect::<Vec<_>>(),
            "same seed, same links"
        );
        let mean = lats.iter().sum::<Duration>() / 200;
        assert!(mean > ms(40) && mean < ms(60), "{mean:?}");
        assert_eq!(n.link_latency(3, 4), n.link_latency(3, 4));
    }

    #[test]
    fn random_loss_rate() {
        let mut n = Network::seeded(
            NetConfig {
                loss: Loss::Random(0.2),
                ..NetConfig::default()
            },
            3,
        );
        let lost = (0..100_000).filter(|_| n.route(T0, 0, 1, 10).is_err()).count();
        assert!((19_000..21_000).contains(&lost), "{lost}");
        assert_eq!(n.stats.lost as usize, lost);
    }

    #[test]
    fn gilbert_elliott_loss_comes_in_bursts() {
        let loss = Loss::GilbertElliott {
            to_bad: 0.01,
            to_good: 0.2,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        let mut n = Network::seeded(
            NetConfig {
                loss,
                ..NetConfig::default()
            },
            4,
        );
        let outcomes: Vec<bool> = (0..200_000).map(|_| n.route(T0, 0, 1, 10).is_err()).collect();
        let lost = outcomes.iter().filter(|l| **l).count();
        let bursts = outcomes.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_burst = lost as f64 / bursts as f64;
        // Stationary loss 0.01 / (0.01 + 0.2) ≈ 4.8 %, in bursts of 1 / 0.2 = 5 on average.
        assert!((0.04..0.056).contains(&(lost as f64 / 200_000.0)), "{lost}");
        assert!((4.0..6.0).contains(&mean_burst), "{mean_burst}");
    }

    #[test]
    fn duplication_and_reordering() {
        let cfg = NetConfig {
            duplicate: 0.5,
            reorder: 0.5,
            reorder_delay: ms(100),
            ..NetConfig::default()
        };
        let mut n = Network::seeded(cfg, 5);
        let mut dups = 0;
        let mut late = 0;
        for _ in 0..10_000 {
            let r = n.route(T0, 0, 1, 10).unwrap();
            dups += usize::from(r.len() == 2);
            late += usize::from(r[0] > T0 + ms(50));
        }
        assert!((4_500..5_500).contains(&dups), "{dups}");
        assert!((4_500..5_500).contains(&late), "{late}");
    }

    #[test]
    fn partitions_cut_and_heal() {
        let mut n = Network::seeded(NetConfig::default(), 6);
        n.partition(&[("left", &[0, 1]), ("right", &[2, 3])]);
        assert_eq!(n.group_of(1), "left");
        assert_eq!(n.group_of(9), "rest");
        assert!(n.route(T0, 0, 1, 10).is_ok());
        assert_eq!(n.route(T0, 0, 2, 10), Err(Drop::Partition));
        assert_eq!(n.route(T0, 3, 9, 10), Err(Drop::Partition));
        n.heal();
        assert!(n.route(T0, 0, 2, 10).is_ok());
        assert_eq!(n.stats.partitioned, 2);
    }

    #[test]
    fn bandwidth_queues_the_uplink() {
        let mut n = Network::seeded(
            NetConfig {
                bandwidth: Some(1_000_000),
                ..NetConfig::default()
            },
            7,
        );
        // 10 datagrams of 1000 bytes at 1 MB/s: 1 ms each on the wire, back to back.
        let arrivals: Vec<Instant> = (0..10).map(|_| n.route(T0, 0, 1, 1000).unwrap()[0]).collect();
        assert_eq!(arrivals[0], T0 + ms(51));
        assert_eq!(arrivals[9], T0 + ms(60));
        // Another sender's uplink is free.
        assert_eq!(n.route(T0, 1, 0, 1000).unwrap()[0], T0 + ms(51));
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let cfg = NetConfig {
            loss: Loss::Random(0.3),
            jitter: ms(20),
            duplicate: 0.1,
            ..NetConfig::default()
        };
        let run = |seed| {
            let mut n = Network::seeded(cfg.clone(), seed);
            (0..1000)
                .map(|i| n.route(T0, i % 7, i % 5, 100))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
