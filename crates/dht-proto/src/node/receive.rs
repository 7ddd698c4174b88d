//! The receive pipeline (§2.12): admission, reassembly, learning senders.

use super::*;

impl Node {
    /// Feeds one datagram received from `from`. Bad input is dropped and counted, never an error.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_input = self.last_input.max(now);
        self.receive(now, from, data);
        self.after_input(now);
        self.guard.end_datagram();
    }

    pub(super) fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let from = rpc::unmap(from);
        if rpc::is_martian(&from) {
            return self.drop_datagram(from, DropReason::Martian);
        }
        if self.blacklist.contains(&from) {
            return self.drop_datagram(from, DropReason::Blacklisted);
        }
        if data.len() > wire::MAX_DATAGRAM {
            return self.drop_datagram(from, DropReason::TooLarge);
        }
        let msg = match wire::decode(data) {
            Ok(m) => m,
            Err(_) => return self.drop_datagram(from, DropReason::Malformed),
        };
        if msg.network != self.config.network {
            return self.drop_datagram(from, DropReason::WrongNetwork);
        }
        self.note_received(now, from, data.len(), &msg);
        self.stats.count_in(message_kind(&msg));
        if let Body::ValueData(parts) = msg.body {
            // The first packet of a session is charged like a request.
            if !self.reassembler.has_session(from, msg.tid) && !self.admit(now, &from) {
                return;
            }
            self.reply_progress(now, from, msg.tid);
            match self.reassembler.on_parts(now, from, msg.tid, parts) {
                Ok(Progress::Complete(m)) => self.process(now, from, m),
                Ok(Progress::Pending { .. }) => {}
                Err(_) => self.drop_datagram(from, DropReason::Reassembly),
            }
            return;
        }
        match msg.sender_id() {
            Some(id) if *id != self.id && !id.is_zero() => {}
            _ => return self.drop_datagram(from, DropReason::BadSenderId),
        }
        let is_request = matches!(msg.body, Body::Request(_));
        if fragment::is_fragmented(&msg) {
            if is_request {
                if !self.reassembler.has_session(from, msg.tid) && !self.admit(now, &from) {
                    return;
                }
            } else if self.rpc.get(from, msg.tid).is_none() {
                return self.drop_datagram(from, DropReason::Unexpected);
            } else {
                self.reply_progress(now, from, msg.tid);
            }
            let tid = msg.tid;
            let reply = !is_request;
            match self.reassembler.on_header(now, from, msg) {
                Ok(Progress::Pending { .. }) if reply => self.reassembler.await_reply(from, tid),
                Ok(Progress::Complete(m)) => self.process(now, from, m),
                Ok(Progress::Pending { .. }) => {}
                Err(_) => self.drop_datagram(from, DropReason::Reassembly),
            }
            return;
        }
        if is_request && !self.admit(now, &from) {
            return;
        }
        self.process(now, from, msg);
    }

    pub(super) fn admit(&mut self, now: Instant, from: &SocketAddr) -> bool {
        match self.limiter.admit(now, &from.ip()) {
            Ok(()) => true,
            Err(rpc::Refusal::Peer) => {
                self.drop_datagram(*from, DropReason::RateLimitedPeer);
                false
            }
            Err(rpc::Refusal::Global) => {
                self.drop_datagram(*from, DropReason::RateLimitedGlobal);
                false
            }
        }
    }

    pub(super) fn process(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        let tid = msg.tid;
        match msg.body {
            Body::Request(req) => {
                if !msg.is_client {
                    self.learn_sender(now, req.id, from, Confirm::Requested);
                }
                self.on_request(now, from, tid, req);
            }
            Body::Reply(reply) => {
                let pending = self.rpc.complete(now, from, tid);
                if !msg.is_client {
                    let confirm = if pending.is_some() {
                        Confirm::Replied
                    } else {
                        Confirm::Requested
                    };
                    self.learn_sender(now, reply.id, from, confirm);
                }
                if let Some(p) = pending {
                    // Our transaction id came back: a round trip.
                    self.proven_as(now, from, Some(reply.id));
                    if let Some(ip) = reply.addr {
                        self.tally_public_address(ip);
                    }
                    self.on_reply(now, from, tid, p, reply);
                }
            }
            Body::Error(err) => {
                if let Some(p) = self.rpc.complete(now, from, tid) {
                    self.on_error(now, from, p, err.code);
                }
            }
            // Protocol v0 notices: we never open v0 listens, so nothing can expect them.
            Body::LegacyUpdate(_) | Body::ValueData(_) => {}
        }
    }

    pub(super) fn learn_sender(&mut self, now: Instant, id: InfoHash, from: SocketAddr, confirm: Confirm) {
        let mut pings = Vec::new();
        let rpc = &self.rpc;
        let t = &mut self.tables[Family::of(&from)];
        let added = t.on_new_node(now, id, from, confirm, &|a| rpc.has_pending_to(*a), &mut pings);
        if added {
            t.revive(&id);
            self.offer_to_searches(now, NodeInfo { id, addr: from });
        }
        self.ping_all(now, pings);
    }

    /// Nodes from a reply's `n4`/`n6` (§2.8): into the routing table at confirm level 0.
    /// Returns those it took, addresses as learned, in the vector it was given (no copy).
    pub(super) fn learn(&mut self, now: Instant, sender: SocketAddr, mut nodes: NodeList) -> NodeList {
        let mut pings = Vec::new();
        nodes.retain(|n| {
            if n.addr.ip().is_loopback() && Family::of(&n.addr) == Family::of(&sender) {
                n.addr = SocketAddr::new(sender.ip(), n.addr.port());
            }
            if n.id == self.id || rpc::is_martian(&n.addr) || self.blacklist.contains(&n.addr) {
                return false;
            }
            let rpc = &self.rpc;
            let t = &mut self.tables[Family::of(&n.addr)];
            t.on_new_node(
                now,
                n.id,
                n.addr,
                Confirm::Learned,
                &|a| rpc.has_pending_to(*a),
                &mut pings,
            );
            true
        });
        self.ping_all(now, pings);
        nodes
    }

    /// A newly known node joins the searches it is close to (`trySearchInsert`).
    pub(super) fn offer_to_searches(&mut self, now: Instant, info: NodeInfo) {
        let fam = Family::of(&info.addr);
        let mut all_changes = Vec::new();
        self.searches.for_family(fam, |k, s| {
            let mut changes = Vec::new();
            let inserted = s.insert_node(now, info, false, &mut changes);
            if !changes.is_empty() {
                all_changes.push((k.1, changes));
            }
            inserted
        });
        for (key, changes) in all_changes {
            self.apply_listen_changes(key, changes);
        }
    }

    pub(super) fn ping_all(&mut self, now: Instant, pings: Vec<NodeInfo>) {
        for p in pings {
            if !self.rpc.has_pending_to(p.addr) {
                self.send_request(now, p.addr, p.id, RequestKind::Ping, Purpose::Ping, &[]);
            }
        }
    }

    pub(super) fn tally_public_address(&mut self, ip: IpAddr) {
        if let Some((family, addr)) = self.connectivity.tally_public_address(ip) {
            self.emit(Event::PublicAddressChanged { family, addr });
        }
    }

    /// Drops a datagram from `from`: counted by reason, and traced.
    fn drop_datagram(&mut self, from: SocketAddr, reason: DropReason) {
        tracing::debug!(%from, ?reason, "datagram dropped");
        self.stats.drop(reason);
    }
}
