//! Connectivity: status per family, bootstrap, maintenance of the routing tables (§4.3–§4.6).

use super::*;

impl Node {
    /// Starts bootstrapping from `addr` (port 0 means 4222): pings it now and, while no family
    /// is connected, again after 10 s, 20 s, … up to once a day.
    pub fn bootstrap(&mut self, now: Instant, addr: SocketAddr) {
        self.last_input = self.last_input.max(now);
        let mut addr = rpc::unmap(addr);
        if addr.port() == 0 {
            addr.set_port(crate::DEFAULT_PORT);
        }
        if !self.bootstrap.contains(&addr) {
            if self.bootstrap.len() >= self.config.max_bootstrap && !self.bootstrap.is_empty() {
                self.bootstrap.remove(0);
            }
            self.bootstrap.push(addr);
        }
        self.send_request(
            now,
            addr,
            InfoHash::ZERO,
            RequestKind::Ping,
            Purpose::Bootstrap,
            &[],
        );
        self.bootstrap_period = BOOTSTRAP_PERIOD;
        self.timers.set(Timer::Bootstrap, now + BOOTSTRAP_PERIOD);
        self.after_input(now);
    }

    /// The network of `family` changed (new interface, address, …): every node becomes dubious,
    /// searches start over and bootstrap resumes if needed.
    pub fn connectivity_changed(&mut self, now: Instant, family: Family) {
        self.last_input = self.last_input.max(now);
        self.tables[family].reset_times();
        self.public_addrs[family].clear();
        let mut all = Vec::new();
        self.searches.for_family(family, |k, s| {
            all.push((k.1, s.reset(now)));
            true
        });
        for (key, changes) in all {
            self.apply_listen_changes(key, changes);
        }
        if !self.bootstrap.is_empty() {
            self.bootstrap_period = BOOTSTRAP_PERIOD;
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
            if st == self.status[fam] {
                continue;
            }
            self.status[fam] = st;
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
        if self.status.iter().any(|s| *s == Status::Connected) {
            self.timers.stop(Timer::Bootstrap);
            return;
        }
        for addr in self.bootstrap.clone() {
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
        self.bootstrap_period = (self.bootstrap_period * 2).min(BOOTSTRAP_MAX);
        self.timers.set(Timer::Bootstrap, now + self.bootstrap_period);
    }

    /// `confirmNodes`: bucket maintenance, else neighbourhood maintenance (§4.3).
    pub(super) fn maintenance(&mut self, now: Instant) {
        let mut sent = false;
        let dual = self.config.dual_stack;
        for fam in Family::ALL {
            if self.status[fam] == Status::Connected {
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
        self.storage.expire_listeners(now);
        // Socket ids of nodes that left their search.
        self.searches.forget_unused_sockets();
        self.timers.set(
            Timer::ExpirePass,
            now + Duration::from_secs(120 + self.rng.next_u64() % 240),
        );
    }
}
