//! The requester role: sending requests, and the replies, errors and timeouts they meet (§2.4, §2.7).

use super::*;

/// The value data of one get reply, waiting for the uplink (see
/// [`Config::uplink_bytes_per_sec`]).
#[derive(Debug)]
pub(super) struct PacedReply {
    pub(super) to: SocketAddr,
    tid: Tid,
    pub(super) parts: VecDeque<Vec<u8>>,
    /// While it waits for its address's proof (in `Node::awaiting`): when it is given up.
    pub(super) until: Instant,
}

impl Node {
    pub(super) fn emit(&mut self, mut e: Event) {
        if let Some(me) = &self.config.identity {
            if let Event::Values { values, .. }
            | Event::ListenAdded { values, .. }
            | Event::ListenExpired { values, .. } = &mut e
                && values.iter().any(Value::is_encrypted)
            {
                let before = values.len();
                let opened: Vec<Value> = core::mem::take(values)
                    .into_iter()
                    .filter_map(|v| {
                        if v.is_encrypted() {
                            crate::crypto::decrypt_value(&v, me).ok()
                        } else {
                            Some(v)
                        }
                    })
                    .collect();
                self.stats.unreadable += (before - opened.len()) as u64;
                *values = opened;
            }
            if let Event::Values { values, .. }
            | Event::ListenAdded { values, .. }
            | Event::ListenExpired { values, .. } = &e
                && values.is_empty()
            {
                return;
            }
        }
        let Some(e) = self.ops.hold_internal(e) else {
            return;
        };
        if self.events.len() >= self.config.max_event_queue {
            tracing::debug!("event dropped: the event queue is full");
            self.stats.event_overflow += 1;
            return;
        }
        self.events.push_back(e);
    }

    pub(super) fn queue(&mut self, to: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() >= self.config.max_transmit_queue {
            tracing::debug!(%to, "transmit dropped: the transmit queue is full");
            self.stats.transmit_overflow += 1;
            return;
        }
        if !self.amplification_allows(to, &data) {
            return;
        }
        self.transmits.push_back((to, data));
    }

    /// Queues a request of ours (or its value data, or a retransmission): charged to the
    /// anti-amplification credit of `to` but never held, so a search or a probe is not
    /// delayed by the bound that protects others from our replies.
    pub(super) fn queue_request(&mut self, to: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() >= self.config.max_transmit_queue {
            tracing::debug!(%to, "transmit dropped: the transmit queue is full");
            self.stats.transmit_overflow += 1;
            return;
        }
        self.guard.charge_request(&to, data.len());
        self.transmits.push_back((to, data));
    }

    pub(super) fn stamp(&self, mut msg: Message) -> Message {
        msg.network = self.config.network;
        msg.is_client = self.config.is_client;
        msg
    }

    /// Encodes `msg` (stamped) into a buffer from the thread's pool ([`crate::bufpool`]): it
    /// goes back to the pool when the driver has copied the datagram out, so a busy node sends
    /// without allocating. What is kept longer (a request waiting for retransmission) is
    /// copied into an exact-size buffer by the caller.
    pub(super) fn encode(&self, msg: Message) -> Vec<u8> {
        let mut buf = crate::bufpool::take();
        crate::wire::encode(&self.stamp(msg), &mut buf);
        buf
    }

    /// The size of `msg` encoded (stamped), through a pooled buffer.
    pub(super) fn encoded_len(&self, msg: Message) -> usize {
        let buf = self.encode(msg);
        let len = buf.len();
        crate::bufpool::give(buf);
        len
    }

    pub(super) fn send_message(&mut self, to: SocketAddr, msg: Message, kind: MessageKind) {
        let data = self.encode(msg);
        self.stats.count_out(kind);
        self.queue(to, data);
    }

    /// Value-data datagrams carrying `data` for the message `tid`.
    pub(super) fn value_parts(&self, tid: Tid, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        fragment::slices(data)
            .map(|parts| {
                self.stamp(Message {
                    tid,
                    network: 0,
                    is_client: false,
                    body: Body::ValueData(parts),
                })
                .encode_to_vec()
            })
            .collect()
    }

    /// Sends a request and records it; `None` when the pending table is full.
    pub(super) fn send_request(
        &mut self,
        now: Instant,
        to: SocketAddr,
        node: InfoHash,
        kind: RequestKind,
        purpose: Purpose,
        data: &[Vec<u8>],
    ) -> Option<Tid> {
        if self.rpc.is_full() {
            tracing::debug!(%to, "request not sent: the pending table is full");
            self.stats.pending_overflow += 1;
            return None;
        }
        let tid = self.rpc.next_tid(to, &mut self.rng);
        let mk = request_kind(&kind);
        let pad = pad_room(&kind);
        let resend = rpc::Resend::of(&kind);
        let mut first = self.encode(Message::request(tid, self.id, kind));
        // Only the first sending is padded. A find or plain get is encoded again if it has to
        // be re-sent; any other request keeps its bytes, in a buffer of their size.
        let packet = resend.unwrap_or_else(|| rpc::Resend::Bytes(first.clone()));
        self.pad_request(&to, pad, &mut first);
        let parts = self.value_parts(tid, data);
        self.stats.count_out(mk);
        self.queue_request(to, first);
        for p in &parts {
            self.stats.count_out(MessageKind::ValueData);
            self.queue_request(to, p.clone());
        }
        self.rpc.start(
            now,
            &mut self.rng,
            rpc::Outgoing {
                to,
                tid,
                node,
                purpose,
                packet,
                parts,
            },
        );
        Some(tid)
    }

    pub(super) fn send_reply(&mut self, to: SocketAddr, tid: Tid, reply: Reply, data: &[Vec<u8>]) {
        self.send_message(to, Message::reply(tid, reply), MessageKind::Reply);
        let parts = self.value_parts(tid, data);
        if parts.is_empty() {
            return;
        }
        // Value data owed to an address that has not proven a round trip waits for its proof
        // (anti-amplification: the address is pinged), then goes out paced like any other.
        let unproven = self.guard.budget(&to).is_some();
        if unproven || self.config.uplink_bytes_per_sec.is_some() {
            if self.transmits.len() + self.paced_len + parts.len() > self.config.max_transmit_queue {
                tracing::debug!(%to, "reply data dropped: the transmit queue is full");
                self.stats.transmit_overflow += parts.len() as u64;
                return;
            }
            for _ in &parts {
                self.stats.count_out(MessageKind::ValueData);
            }
            self.paced_len += parts.len();
            let r = PacedReply {
                to,
                tid,
                until: self.last_input + crate::amplify::HOLD_TIME,
                parts: parts.into(),
            };
            if unproven {
                self.stats.amplification_held += r.parts.len() as u64;
                self.guard.want_probe(self.last_input, &to);
                self.awaiting.push_back(r);
            } else {
                self.paced.push_back(r);
            }
            return;
        }
        for p in parts {
            self.stats.count_out(MessageKind::ValueData);
            self.queue(to, p);
        }
    }

    /// Whether value data of our reply to (`to`, `tid`) is still waiting for the uplink: a
    /// retransmission of that request is not answered again.
    pub(super) fn reply_queued(&self, to: SocketAddr, tid: Tid) -> bool {
        self.paced
            .iter()
            .chain(&self.awaiting)
            .any(|r| r.to == to && r.tid == tid)
    }

    /// The next paced datagram, if the uplink is free at `now`: one datagram of the reply at
    /// the head, which then goes to the back (round robin between replies).
    pub(super) fn next_paced(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.uplink_free > now {
            return None;
        }
        let mut r = self.paced.pop_front()?;
        let data = r.parts.pop_front();
        let to = r.to;
        if !r.parts.is_empty() {
            self.paced.push_back(r);
        }
        let data = data?;
        self.paced_len = self.paced_len.saturating_sub(1);
        Some((to, data))
    }

    /// A datagram of `len` bytes goes out at `now`: it holds the uplink for `len / rate`.
    pub(super) fn charge_uplink(&mut self, now: Instant, len: usize) {
        if let Some(rate) = self.config.uplink_bytes_per_sec.filter(|r| *r > 0) {
            let tx = Duration::from_micros((len as u64 * 1_000_000).div_ceil(rate));
            self.uplink_free = self.uplink_free.max(now) + tx;
        }
    }

    /// A datagram of the reply to our request (`from`, `tid`) arrived, before the whole reply:
    /// the peer is alive and answering. The request stops being retransmitted, and a search
    /// that had given the peer up as slow takes it back (it must now finish its answer).
    pub(super) fn reply_progress(&mut self, now: Instant, from: SocketAddr, tid: Tid) {
        let Some(p) = self.rpc.progress(now, from, tid) else {
            return;
        };
        if let Purpose::SearchGet { key, family } = p.purpose {
            let node = p.node;
            if let Some(s) = self.searches.get_mut(&(family, key))
                && s.on_get_progress(&node, tid)
            {
                self.searches.mark((family, key));
            }
        }
    }

    pub(super) fn send_error(&mut self, to: SocketAddr, tid: Tid, code: u16, text: &str) {
        self.stats.errors_sent += 1;
        self.send_message(to, Message::error(tid, self.id, code, text), MessageKind::Error);
    }

    pub(super) fn plain_reply(&self, to: &SocketAddr) -> Reply {
        Reply {
            id: self.id,
            addr: Some(to.ip()),
            ..Reply::default()
        }
    }
}

pub(super) fn request_kind(k: &RequestKind) -> MessageKind {
    match k {
        RequestKind::Ping => MessageKind::Ping,
        RequestKind::Find { .. } => MessageKind::Find,
        RequestKind::Get { .. } => MessageKind::Get,
        RequestKind::Listen(_) => MessageKind::Listen,
        RequestKind::Put(_) => MessageKind::Put,
        RequestKind::Refresh { .. } => MessageKind::Refresh,
        RequestKind::Update(_) => MessageKind::Update,
    }
}

pub(super) fn message_kind(m: &Message) -> MessageKind {
    match &m.body {
        Body::Request(r) => request_kind(&r.kind),
        Body::Reply(_) | Body::LegacyUpdate(_) => MessageKind::Reply,
        Body::Error(_) => MessageKind::Error,
        Body::ValueData(_) => MessageKind::ValueData,
    }
}

impl Node {
    pub(super) fn on_reply(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        p: Pending,
        mut reply: Reply,
    ) {
        match p.purpose {
            Purpose::Ping | Purpose::Bootstrap | Purpose::Update => {}
            Purpose::Maintenance => {
                let mut nodes = reply.nodes4;
                nodes.extend(reply.nodes6);
                let learned = self.learn(now, from, nodes);
                for n in learned {
                    self.offer_to_searches(now, n);
                }
            }
            Purpose::SearchGet { key, family } => {
                let skey = (family, key);
                let ok = match self.searches.get_mut(&skey) {
                    Some(s) => s.on_get_reply(now, &reply.id, tid, reply.token.as_ref()),
                    None => true,
                };
                if !ok {
                    // A find or get reply without a token: OpenDHT blacklists the replier.
                    self.blacklist.insert(from);
                    self.tables[family].mark_expired(&reply.id);
                }
                let mut nodes = core::mem::take(&mut reply.nodes4);
                nodes.append(&mut reply.nodes6);
                let learned = self.learn(now, from, nodes);
                let mut changes = Vec::new();
                if let Some(s) = self.searches.get_mut(&skey) {
                    let wide = s.asked_wide(&reply.id);
                    for n in learned {
                        s.insert_node(now, n, wide, &mut changes);
                    }
                }
                self.apply_listen_changes(key, changes);
                let mut values = match reply.values {
                    Some(Values::Inline(v)) => v,
                    _ => ValueList::new(),
                };
                self.drop_forged(&mut values);
                if let Some(rows) = reply.fields {
                    values.extend(rows.rows.iter().map(value_of_row));
                }
                if !values.is_empty()
                    && let Some(s) = self.searches.get_mut(&skey)
                {
                    s.on_values(&values);
                    let ops: smallvec::SmallVec<[OpId; 4]> = s.gets.iter().map(|g| g.op).collect();
                    for op in ops {
                        self.deliver(op, &values);
                    }
                }
                self.searches.mark(skey);
            }
            Purpose::Put { key, family, vid } | Purpose::Refresh { key, family, vid } => {
                if let Some(s) = self.searches.get_mut(&(family, key)) {
                    s.on_ack(now, &reply.id, vid);
                    self.searches.mark((family, key));
                }
            }
            Purpose::Listen { key, family } => {
                let public_stable = self.config.public_stable;
                if let Some(s) = self.searches.get_mut(&(family, key)) {
                    s.on_listen_reply(now, &reply.id, reply.token.as_ref(), public_stable);
                    self.searches.mark((family, key));
                }
            }
        }
    }

    pub(super) fn on_error(&mut self, now: Instant, from: SocketAddr, p: Pending, code: u16) {
        let _ = now;
        match (&p.purpose, code) {
            (Purpose::Refresh { key, family, vid }, ErrorCode::NOT_FOUND) => {
                // The storer lost it: a full put follows on the next step.
                if let Some(s) = self.searches.get_mut(&(*family, *key)) {
                    s.on_put_failed(&p.node, *vid);
                    self.searches.mark((*family, *key));
                }
            }
            (
                Purpose::Put { family, .. }
                | Purpose::Refresh { family, .. }
                | Purpose::Listen { family, .. },
                ErrorCode::UNAUTHORIZED,
            ) => {
                let fam = *family;
                self.tables[fam].on_auth_error(&p.node);
                if let Purpose::Put { vid, key, .. } | Purpose::Refresh { vid, key, .. } = p.purpose
                    && let Some(s) = self.searches.get_mut(&(fam, key))
                {
                    s.on_put_failed(&p.node, vid);
                }
                self.searches.for_family(fam, |_, s| {
                    s.on_unauthorized(&p.node);
                    true
                });
            }
            _ => {
                let _ = from;
            }
        }
    }

    pub(super) fn on_timeout(&mut self, now: Instant, t: Timeout) {
        match t {
            Timeout::Retransmit {
                node,
                purpose,
                second,
                tid,
                ..
            } => {
                self.stats.retransmits += 1;
                if second
                    && let Purpose::SearchGet { key, family } = purpose
                    && let Some(s) = self.searches.get_mut(&(family, key))
                {
                    s.on_get_slow(&node, tid);
                    self.searches.mark((family, key));
                }
            }
            Timeout::Expired { to, pending } => {
                self.stats.timeouts += 1;
                self.node_expired(now, to, pending.node);
            }
        }
    }

    /// A request to `id` at `to` went unanswered: the node is expired everywhere, and every
    /// other request to it is dropped (§2.4).
    pub(super) fn node_expired(&mut self, now: Instant, to: SocketAddr, id: InfoHash) {
        let _ = self.rpc.take_all_to(to);
        if id.is_zero() {
            return;
        }
        let fam = Family::of(&to);
        self.tables[fam].mark_expired(&id);
        self.searches.for_family(fam, |_, s| s.on_node_expired(now, &id));
    }
}

/// A `fileds` row as a value carrying just the selected fields.
pub(super) fn value_of_row(row: &FieldRow) -> Value {
    let mut v = Value::default();
    for f in &row.values {
        match f {
            FieldValue::Id(id) => v.id = *id,
            FieldValue::ValueType(t) => v.value_type = u16::try_from(*t).unwrap_or(u16::MAX),
            FieldValue::SeqNum(s) => v.seq = u16::try_from(*s).unwrap_or(u16::MAX),
            FieldValue::UserType(u) => v.user_type = String::from_utf8_lossy(u).into_owned(),
            FieldValue::OwnerPk(_) => {}
        }
    }
    v
}
