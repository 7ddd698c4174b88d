//! The storer role: answering requests (§2.5–§2.7, §7.3) and pushing to remote listeners (§2.10).

use super::*;

/// The storer role's state: the values and remote listeners we hold, and the write tokens we
/// hand out and check (§2.9). The requester role's state is [`Rpc`], the requests in flight.
#[derive(Debug)]
pub(super) struct Storer {
    pub(super) storage: Storage,
    pub(super) tokens: Tokens,
}

impl Storer {
    /// Values stored at `key` that match `query`, in order, while they fit in `budget` bytes.
    fn values_within(&self, key: &InfoHash, query: &Query, budget: usize) -> ValueList {
        let mut budget = budget;
        self.storage
            .matching(key, query)
            .take_while(|v| {
                let size = v.size();
                let fits = size <= budget;
                budget = budget.saturating_sub(size);
                fits
            })
            .cloned()
            .collect()
    }

    /// `values` cut into the batches of one `update` each, about 56 KiB of values per batch.
    fn batches(values: Vec<Value>) -> Vec<Vec<Value>> {
        let mut batch: Vec<Value> = Vec::new();
        let mut size = 0;
        let mut batches = Vec::new();
        for v in values {
            let s = v.size();
            if !batch.is_empty() && size + s > MAX_MESSAGE_VALUE_SIZE {
                batches.push(core::mem::take(&mut batch));
                size = 0;
            }
            size += s;
            batch.push(v);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        batches
    }
}

/// Who sent the request being answered.
#[derive(Clone, Copy, Debug)]
pub(super) struct Asker {
    /// Its address.
    from: SocketAddr,
    /// The request's transaction id.
    tid: Tid,
    /// Its node id.
    id: InfoHash,
}

impl Node {
    pub(super) fn on_request(&mut self, now: Instant, from: SocketAddr, tid: Tid, req: Request) {
        let asker = Asker {
            from,
            tid,
            id: req.id,
        };
        match req.kind {
            RequestKind::Ping => {
                let r = self.plain_reply(&from);
                self.send_reply(from, tid, r, &[]);
            }
            RequestKind::Find { target, want } => {
                let mut r = self.nodes_reply(now, &from, &target, want);
                self.fit_reply(&from, tid, &mut r, false);
                self.send_reply(from, tid, r, &[]);
            }
            RequestKind::Get { key, query, want } => self.on_get(now, from, tid, key, query, want),
            RequestKind::Put(put) => self.on_put(now, asker, put),
            RequestKind::Listen(listen) => self.on_listen(now, asker, listen),
            RequestKind::Refresh { key, vid, token } => self.on_refresh(now, from, tid, key, vid, &token),
            RequestKind::Update(update) => self.on_update(now, asker, update),
        }
    }

    /// A reply carrying the closest good nodes of the wanted families and a token.
    pub(super) fn nodes_reply(
        &self,
        now: Instant,
        from: &SocketAddr,
        target: &InfoHash,
        want: Option<Want>,
    ) -> Reply {
        let want = want.unwrap_or(match Family::of(from) {
            Family::V4 => Want {
                ipv4: true,
                ipv6: false,
            },
            Family::V6 => Want {
                ipv4: false,
                ipv6: true,
            },
        });
        let mut r = self.plain_reply(from);
        if want.ipv4 {
            self.tables[Family::V4]
                .closest_each(now, target, TARGET_NODES, true, |n| r.nodes4.push(n.info()));
        }
        if want.ipv6 {
            self.tables[Family::V6]
                .closest_each(now, target, TARGET_NODES, true, |n| r.nodes6.push(n.info()));
        }
        r.token = Some(self.storer.tokens.make(from));
        r
    }

    pub(super) fn on_get(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        key: InfoHash,
        query: Query,
        want: Option<Want>,
    ) {
        if key.is_zero() {
            return self.send_error(
                from,
                tid,
                ErrorCode::NON_AUTHORITATIVE_INFORMATION,
                "Get_values with no info_hash",
            );
        }
        if self.reply_queued(from, tid) {
            // A retransmission while our answer is still going out: not a second copy.
            self.stats.duplicate_gets += 1;
            return;
        }
        let mut r = self.nodes_reply(now, &from, &key, want);
        let values = self
            .storer
            .values_within(&key, &query, self.config.max_reply_values_bytes);
        let mut data = Vec::new();
        if !query.select.is_empty() {
            // A select is answered with the selected fields only (`fileds`).
            let fields = query.select.sorted();
            let rows = values
                .iter()
                .map(|v| FieldRow {
                    values: fields.iter().map(|f| FieldValue::of(*f, v)).collect(),
                })
                .collect();
            r.fields = Some(FieldRows { fields, rows });
        } else if !values.is_empty() {
            let out = fragment::prepare_owned(values);
            r.values = Some(out.values);
            data = out.data;
        }
        self.fit_reply(&from, tid, &mut r, !data.is_empty());
        self.send_reply(from, tid, r, &data);
    }

    /// The checks a put or listen passes first (§7.3): a key (else 203) and a token issued to
    /// this address (else 401). Sends the error and returns false when one fails.
    pub(super) fn write_allowed(
        &mut self,
        from: SocketAddr,
        tid: Tid,
        key: &InfoHash,
        token: &[u8],
        what: &str,
    ) -> bool {
        if key.is_zero() {
            let text = format!("{what} with no info_hash");
            self.send_error(from, tid, ErrorCode::NON_AUTHORITATIVE_INFORMATION, &text);
            return false;
        }
        if !self.storer.tokens.check(&from, token) {
            let text = format!("{what} with wrong token");
            self.send_error(from, tid, ErrorCode::UNAUTHORIZED, &text);
            return false;
        }
        // Only the address we gave the token to has it: a round trip.
        self.proven(self.last_input, from);
        true
    }

    pub(super) fn on_put(&mut self, now: Instant, asker: Asker, put: PutRequest) {
        let Asker { from, tid, .. } = asker;
        let PutRequest {
            key,
            values,
            created,
            token,
        } = put;
        if !self.write_allowed(from, tid, &key, &token, "Put") {
            return;
        }
        // Values arrive inline here: fragmented ones were reassembled first.
        let Values::Inline(values) = values else { return };
        // §7.3: we are not among the closest nodes we know for the key: drop silently.
        let too_far = !self.tables[Family::of(&from)].takes_store(now, &key, &self.id);
        let created = self.instant_of_unix(now, created);
        for v in values {
            if v.id == 0 {
                return self.send_error(
                    from,
                    tid,
                    ErrorCode::NON_AUTHORITATIVE_INFORMATION,
                    "Put with invalid id",
                );
            }
            let vid = v.id;
            if crate::crypto::check_signature(&v) == crate::crypto::SignatureCheck::Invalid {
                // Acknowledged all the same (OpenDHT's rule), but never stored.
                self.stats.bad_signatures += 1;
                self.stats.store_refused += 1;
            } else if too_far {
                self.stats.store_refused += 1;
            } else {
                self.store_value(now, key, v, created, Some(from));
            }
            let mut r = self.plain_reply(&from);
            r.vid = Some(vid);
            self.send_reply(from, tid, r, &[]);
        }
    }

    /// Stores a value (ours when `source` is `None`) and tells listeners.
    pub(super) fn store_value(
        &mut self,
        now: Instant,
        key: InfoHash,
        v: Value,
        created: Instant,
        source: Option<SocketAddr>,
    ) -> bool {
        let ty = self.config.value_type(v.value_type).clone();
        let Some(v) = ty.check_store(&key, v, source) else {
            self.stats.store_refused += 1;
            return false;
        };
        let expiration = Some(created + ty.expiration);
        let fresh = self.storer.storage.get_value(&key, v.id).is_none();
        // Most stored values have no one listening: no copies made for them.
        let vid = v.id;
        let heard = !self.storer.storage.listeners_of(&key).is_empty() || self.ops.listening_to(&key);
        let copy = heard.then(|| v.clone());
        let mut evicted = Vec::new();
        let outcome =
            self.storer
                .storage
                .store(now, key, v, Life { created, expiration }, source, &mut evicted);
        self.on_evicted(now, evicted);
        match outcome {
            StoreOutcome::Stored => {
                if fresh && self.config.replicate {
                    // The putter reaches the closest nodes itself; we re-announce only once
                    // that set changes.
                    let fp = self.closest_fingerprint(now, &key);
                    self.storer.storage.set_replicated(&key, fp);
                }
                if let Some(v) = copy {
                    self.tell_stored(now, key, v, fresh);
                }
                true
            }
            StoreOutcome::Refreshed => {
                self.notify_listeners(now, key, Notice::Refreshed(vec![vid]));
                true
            }
            StoreOutcome::Refused => {
                self.stats.store_refused += 1;
                false
            }
        }
    }

    /// A value newly stored at `key` (`fresh`: no copy of it was there before): remote
    /// listeners and our own listens hear of it.
    pub(super) fn tell_stored(&mut self, now: Instant, key: InfoHash, v: Value, fresh: bool) {
        // Most keys have no listener: nothing is built for them.
        if !self.storer.storage.listeners_of(&key).is_empty() {
            self.notify_listeners(now, key, Notice::Values(vec![v.clone()]));
        }
        if self.ops.listening_to(&key) {
            self.apply_listen_changes(
                key,
                vec![ListenChange::Added {
                    value: v,
                    first: fresh,
                }],
            );
        }
    }

    pub(super) fn on_evicted(&mut self, now: Instant, evicted: Evicted) {
        self.stats.store_evicted += evicted.len() as u64;
        self.report_removed(now, evicted);
    }

    /// Values gone from storage: remote listeners get `exp`, our listens lose a source.
    pub(super) fn report_removed(&mut self, now: Instant, removed: Evicted) {
        let mut by_key: BTreeMap<InfoHash, Vec<ValueId>> = BTreeMap::new();
        for (k, v) in removed {
            by_key.entry(k).or_default().push(v.id);
        }
        for (k, vids) in by_key {
            self.apply_listen_changes(k, vids.iter().map(|v| ListenChange::Removed(*v)).collect());
            self.notify_listeners(now, k, Notice::Expired(vids));
        }
    }

    pub(super) fn on_listen(&mut self, now: Instant, asker: Asker, listen: ListenRequest) {
        let Asker { from, tid, id: node } = asker;
        let ListenRequest {
            key,
            token,
            sid,
            query,
            ..
        } = listen;
        if !self.write_allowed(from, tid, &key, &token, "Listen") {
            return;
        }
        let l = RemoteListener {
            node,
            addr: from,
            sid,
            query: query.clone(),
            last: now,
        };
        let added = self.storer.storage.add_listener(now, key, l.clone());
        let mut r = self.plain_reply(&from);
        r.token = Some(self.storer.tokens.make(&from));
        self.send_reply(from, tid, r, &[]);
        match added {
            Some(true) => {
                let values: Vec<Value> = self
                    .storer
                    .storage
                    .get(&key, &query)
                    .into_iter()
                    .cloned()
                    .collect();
                if !values.is_empty() {
                    self.push_to(now, &l, key, Notice::Values(values));
                }
            }
            Some(false) => {}
            None => self.stats.store_refused += 1,
        }
    }

    pub(super) fn on_refresh(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        key: InfoHash,
        vid: ValueId,
        token: &[u8],
    ) {
        if !self.storer.tokens.check(&from, token) {
            return self.send_error(from, tid, ErrorCode::UNAUTHORIZED, "Refresh with wrong token");
        }
        self.proven(now, from);
        let life = self
            .storer
            .storage
            .get_value(&key, vid)
            .map(|s| self.config.value_type(s.value.value_type).expiration)
            .unwrap_or(Duration::ZERO);
        if self.storer.storage.refresh(now, &key, vid, life).is_none() {
            return self.send_error(
                from,
                tid,
                ErrorCode::NOT_FOUND,
                "Access operation for unknown storage",
            );
        }
        // OpenDHT tells listeners even when the value is not stored here; so do we.
        self.notify_listeners(now, key, Notice::Refreshed(vec![vid]));
        let mut r = self.plain_reply(&from);
        r.vid = Some(vid);
        self.send_reply(from, tid, r, &[]);
    }

    /// A push from a node we listen to (§2.10 step 4). Always answered, even for an unknown sid.
    pub(super) fn on_update(&mut self, now: Instant, asker: Asker, update: UpdateRequest) {
        let Asker { from, tid, id: node } = asker;
        let UpdateRequest {
            sid, token, payload, ..
        } = update;
        let r = self.plain_reply(&from);
        self.send_reply(from, tid, r, &[]);
        let Some(skey) = self.searches.socket(from, sid) else {
            return;
        };
        let (values, refreshed, expired) = match payload {
            UpdatePayload::Values {
                values: Values::Inline(mut v),
                ..
            } => {
                self.drop_forged(&mut v);
                (v.into_vec(), Vec::new(), Vec::new())
            }
            UpdatePayload::Values { .. } => return,
            UpdatePayload::Refreshed(r) => (Vec::new(), r, Vec::new()),
            UpdatePayload::Expired(e) => (Vec::new(), Vec::new(), e),
        };
        let update = ListenUpdate {
            token,
            values,
            refreshed,
            expired,
        };
        let max_cache = self.config.max_listen_cache;
        let types = &self.config;
        let Some(s) = self.searches.get_mut(&skey) else {
            return;
        };
        if !s.has_socket(&node, sid) {
            return;
        }
        let changes = s.on_update(now, &node, sid, update, max_cache, &|v| {
            types.value_type(v.value_type).expiration
        });
        let key = s.key;
        self.searches.mark(skey);
        self.apply_listen_changes(key, changes);
    }
}

/// What a storer tells its remote listeners.
#[derive(Debug)]
pub(super) enum Notice {
    Values(Vec<Value>),
    Refreshed(Vec<ValueId>),
    Expired(Vec<ValueId>),
}

impl Node {
    /// Tells every remote listener of `key` (§2.10 step 5).
    pub(super) fn notify_listeners(&mut self, now: Instant, key: InfoHash, notice: Notice) {
        let listeners: Vec<RemoteListener> = self.storer.storage.listeners_of(&key).to_vec();
        if listeners.is_empty() {
            return;
        }
        for l in &listeners {
            let n = match &notice {
                Notice::Values(v) => {
                    let v: Vec<Value> = v.iter().filter(|v| l.query.where_.matches(v)).cloned().collect();
                    if v.is_empty() {
                        continue;
                    }
                    Notice::Values(v)
                }
                Notice::Refreshed(v) => Notice::Refreshed(v.clone()),
                Notice::Expired(v) => Notice::Expired(v.clone()),
            };
            self.push_to(now, l, key, n);
        }
    }

    /// Sends `notice` to one listener as `update` requests, values split in ~56 KiB batches.
    pub(super) fn push_to(&mut self, now: Instant, l: &RemoteListener, key: InfoHash, notice: Notice) {
        let token = Some(self.storer.tokens.make(&l.addr));
        match notice {
            Notice::Values(values) => {
                for b in Storer::batches(values) {
                    let out = fragment::prepare_owned(ValueList::from_vec(b));
                    let kind = RequestKind::Update(UpdateRequest {
                        key,
                        sid: l.sid,
                        version: Some(1),
                        token: token.clone(),
                        payload: UpdatePayload::Values {
                            values: out.values,
                            created: None,
                        },
                    });
                    self.send_request(now, l.addr, l.node, kind, Purpose::Update, &out.data);
                }
            }
            Notice::Refreshed(ids) | Notice::Expired(ids) if ids.is_empty() => {}
            Notice::Refreshed(ids) => self.push_notice(now, l, token, UpdatePayload::Refreshed(ids)),
            Notice::Expired(ids) => self.push_notice(now, l, token, UpdatePayload::Expired(ids)),
        }
    }

    pub(super) fn push_notice(
        &mut self,
        now: Instant,
        l: &RemoteListener,
        token: Option<crate::wire::Token>,
        payload: UpdatePayload,
    ) {
        let kind = RequestKind::Update(UpdateRequest {
            key: InfoHash::ZERO,
            sid: l.sid,
            version: None,
            token,
            payload,
        });
        self.send_request(now, l.addr, l.node, kind, Purpose::Update, &[]);
    }
}
