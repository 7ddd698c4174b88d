//! Connectivity: status per family, the public addresses peers see us at (§4.7), the
//! bootstrap list and its back-off, and the node's maintenance of its routing tables
//! (§4.3–§4.6).

use super::*;

/// Public addresses tallied per family.
pub(super) const MAX_PUBLIC_ADDRS: usize = 32;
/// First bootstrap retry, doubling up to a day.
pub(super) const BOOTSTRAP_PERIOD: Duration = Duration::from_secs(10);
const BOOTSTRAP_MAX: Duration = Duration::from_secs(24 * 3600);

/// How the node is connected: per family, its status and the addresses peers report for us;
/// the nodes to bootstrap from and how long to wait before pinging them again.
#[derive(Debug)]
pub(super) struct Connectivity {
    status: PerFamily<Status>,
    /// Each address peers reported for us, and how many times.
    public_addrs: PerFamily<Vec<(IpAddr, u32)>>,
    bootstrap: Vec<SocketAddr>,
    bootstrap_period: Duration,
}

impl Connectivity {
    pub(super) fn new() -> Connectivity {
        Connectivity {
            status: PerFamily::new(Status::Disconnected, Status::Disconnected),
            public_addrs: PerFamily::default(),
            bootstrap: Vec::new(),
            bootstrap_period: BOOTSTRAP_PERIOD,
        }
    }

    pub(super) fn status(&self, family: Family) -> Status {
        self.status[family]
    }

    /// Records a new status; whether it changed.
    pub(super) fn set_status(&mut self, family: Family, status: Status) -> bool {
        let changed = self.status[family] != status;
        self.status[family] = status;
        changed
    }

    pub(super) fn any_connected(&self) -> bool {
        self.status.iter().any(|s| *s == Status::Connected)
    }

    /// Our public addresses as peers report them, most reported first.
    pub(super) fn public_addresses(&self, family: Family) -> Vec<IpAddr> {
        let mut v = self.public_addrs[family].clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|(ip, _)| ip).collect()
    }

    /// The first of [`Connectivity::public_addresses`], without building the list (this runs
    /// for every reply that reports our address).
    fn top_public_address(&self, family: Family) -> Option<IpAddr> {
        self.public_addrs[family]
            .iter()
            .min_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)))
            .map(|e| e.0)
    }

    /// A peer reported `ip` as our address; the family's new top address when it changed.
    pub(super) fn tally_public_address(&mut self, ip: IpAddr) -> Option<(Family, IpAddr)> {
        let fam = Family::of_ip(&ip);
        let before = self.top_public_address(fam);
        let list = &mut self.public_addrs[fam];
        if let Some(e) = list.iter_mut().find(|e| e.0 == ip) {
            e.1 = e.1.saturating_add(1);
        } else if list.len() < MAX_PUBLIC_ADDRS {
            list.push((ip, 1));
        }
        let after = self.top_public_address(fam);
        match after {
            Some(addr) if after != before => Some((fam, addr)),
            _ => None,
        }
    }

    pub(super) fn forget_public_addresses(&mut self, family: Family) {
        self.public_addrs[family].clear();
    }

    /// Adds a bootstrap node (forgetting the oldest past `max`); the back-off starts over.
    pub(super) fn add_bootstrap(&mut self, addr: SocketAddr, max: usize) {
        if !self.bootstrap.contains(&addr) {
            if self.bootstrap.len() >= max && !self.bootstrap.is_empty() {
                self.bootstrap.remove(0);
            }
            self.bootstrap.push(addr);
        }
        self.bootstrap_period = BOOTSTRAP_PERIOD;
    }

    pub(super) fn bootstrap_nodes(&self) -> &[SocketAddr] {
        &self.bootstrap
    }

    /// Whether there are bootstrap nodes; if so the back-off starts over.
    pub(super) fn restart_bootstrap(&mut self) -> bool {
        if self.bootstrap.is_empty() {
            return false;
        }
        self.bootstrap_period = BOOTSTRAP_PERIOD;
        true
    }

    /// The wait before the next bootstrap round, doubled each time up to a day.
    pub(super) fn next_bootstrap_wait(&mut self) -> Duration {
        self.bootstrap_period = (self.bootstrap_period * 2).min(BOOTSTRAP_MAX);
        self.bootstrap_period
    }
}

impl Node {
    /// Starts bootstrapping from `addr` (port 0 means 4222): pings it now and, while no family
    /// is connected, again after 10 s, 20 s, … up to once a day.
    pub fn bootstrap(&mut self, now: Instant, addr: SocketAddr) {
        tracing::debug!(%addr, "command: bootstrap");
        self.last_input = self.last_input.max(now);
        let mut addr = rpc::unmap(addr);
        if addr.port() == 0 {
            addr.set_port(crate::DEFAULT_PORT);
        }
        self.connectivity.add_bootstrap(addr, self.config.max_bootstrap);
        self.send_request(
            now,
            addr,
            InfoHash::ZERO,
            RequestKind::Ping,
            Purpose::Bootstrap,
            &[],
        );
        self.timers.set(Timer::Bootstrap, now + BOOTSTRAP_PERIOD);
        self.after_input(now);
    }

    /// The network of `family` changed (new interface, address, …): every node becomes dubious,
    /// searches start over and bootstrap resumes if needed.
    pub fn connectivity_changed(&mut self, now: Instant, family: Family) {
        tracing::debug!(?family, "command: connectivity_changed");
        self.last_input = self.last_input.max(now);
        self.tables[family].reset_times();
        self.connectivity.forget_public_addresses(family);
        let mut all = Vec::new();
        self.searches.for_family(family, |k, s| {
            all.push((k.1, s.reset(now)));
            true
        });
        for (key, changes) in all {
            self.apply_listen_changes(key, changes);
        }
        if self.connectivity.restart_bootstrap() {
            self.timers.set(Timer::Bootstrap, now);
        }
        self.after_input(now);
    }
}

impl Node {
    pub(super) fn update_status(&mut self, now: Instant) {
        for fam in Family::ALL {
            let mut st = self.tables[fam].status(now);
            if st == Status::Disconnected && self.rpc.is_bootstrapping() {
                st = Status::Connecting;
            }
            if !self.connectivity.set_status(fam, st) {
                continue;
            }
            self.emit(Event::StatusChanged {
                family: fam,
                status: st,
            });
            // Searches of this family may have been waiting for the outcome (connected, or
            // given up: a family that will not connect must not hold a put for 10 s).
            self.searches.for_family(fam, |_, _| true);
            if st == Status::Connected {
                self.timers.stop(Timer::Bootstrap);
                self.start_join(now, fam);
                self.announce_key(now);
            }
        }
        if self.searches.has_dirty() {
            let dirty = self.searches.take_dirty();
            for skey in dirty {
                self.step_search(now, skey);
            }
        }
    }

    /// A lookup of our own id: fills the buckets near us and tells our neighbours about us.
    pub(super) fn start_join(&mut self, now: Instant, fam: Family) {
        let id = self.id;
        if !self.searches.any_of(fam)
            && let Some(s) = self.searches.ensure(now, fam, id)
        {
            s.join = true;
        }
    }

    pub(super) fn bootstrap_job(&mut self, now: Instant) {
        if self.connectivity.any_connected() {
            self.timers.stop(Timer::Bootstrap);
            return;
        }
        for addr in self.connectivity.bootstrap_nodes().to_vec() {
            if !self.rpc.has_pending_to(addr) {
                self.send_request(
                    now,
                    addr,
                    InfoHash::ZERO,
                    RequestKind::Ping,
                    Purpose::Bootstrap,
                    &[],
                );
            }
        }
        let wait = self.connectivity.next_bootstrap_wait();
        self.timers.set(Timer::Bootstrap, now + wait);
    }

    /// `confirmNodes`: bucket maintenance, else neighbourhood maintenance (§4.3).
    pub(super) fn maintenance(&mut self, now: Instant) {
        let mut sent = false;
        let dual = self.config.dual_stack;
        for fam in Family::ALL {
            if self.connectivity.status(fam) == Status::Connected {
                self.start_join(now, fam);
            }
            let rpc = &self.rpc;
            let reqs = self.tables[fam].maintenance(now, &mut self.rng, &|a| rpc.has_pending_to(*a));
            let other = match fam {
                Family::V4 => Family::V6,
                Family::V6 => Family::V4,
            };
            let other_small = self.tables[other].len() < 8;
            for (node, target) in reqs {
                let want =
                    (dual && (other_small || self.rng.next_u32().is_multiple_of(38))).then_some(Want::BOTH);
                let kind = RequestKind::Find { target, want };
                sent |= self
                    .send_request(now, node.addr, node.id, kind, Purpose::Maintenance, &[])
                    .is_some();
            }
        }
        if !sent {
            for fam in Family::ALL {
                let t = &self.tables[fam];
                if t.grow_time.is_none_or(|g| now - g >= NEIGHBOURHOOD_WINDOW) {
                    continue;
                }
                let Some(node) = t.neighbourhood_node(&mut self.rng) else {
                    continue;
                };
                let mut target = self.id;
                target.0[19] = self.rng.next_u32() as u8;
                let want = dual.then_some(Want::BOTH);
                let kind = RequestKind::Find { target, want };
                sent |= self
                    .send_request(now, node.addr, node.id, kind, Purpose::Maintenance, &[])
                    .is_some();
            }
        }
        // Two removed nodes per family get another chance each round.
        for fam in Family::ALL {
            let graves = self.tables[fam].graves_due(now, 2);
            self.ping_all(now, graves);
        }
        let next = if sent {
            Duration::from_secs(5 + self.rng.next_u64() % 20)
        } else {
            Duration::from_secs(60 + self.rng.next_u64() % 120)
        };
        self.timers.set(Timer::Maintenance, now + next);
    }

    /// The periodic `expire()` pass: expired nodes out of the tables, stale remote listeners out
    /// of storage.
    pub(super) fn expire_job(&mut self, now: Instant) {
        for fam in Family::ALL {
            let pings = self.tables[fam].expire(now);
            self.ping_all(now, pings);
        }
        self.storer.storage.expire_listeners(now);
        // Socket ids of nodes that left their search.
        self.searches.forget_unused_sockets();
        self.timers.set(
            Timer::ExpirePass,
            now + Duration::from_secs(120 + self.rng.next_u64() % 240),
        );
    }
}
