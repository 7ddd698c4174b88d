//! Commands: what the user asks of the node (gets, puts, listens, imports, shutdown).

use super::*;

/// What [`Node::put`] started: the operation, and the value's id (drawn at random when the value
/// had id 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutHandle {
    /// The operation, named again by [`Event::PutDone`].
    pub op: OpId,
    /// The value id, for [`Node::cancel_put`].
    pub vid: ValueId,
}

impl Node {
    /// Replaces a value id of 0 by a random one.
    pub(super) fn fill_id(&mut self, value: &mut Value) {
        while value.id == 0 {
            value.id = self.rng.next_u64();
        }
    }

    pub(super) fn new_op(&mut self) -> u64 {
        self.ops.next_id()
    }

    /// Adds a known node without contacting it (as learned from another node).
    pub fn insert_node(&mut self, now: Instant, node: NodeInfo) {
        self.last_input = self.last_input.max(now);
        let learned = self.learn(now, node.addr, NodeList::from_elem(node, 1));
        for n in learned {
            self.offer_to_searches(now, n);
        }
        self.after_input(now);
    }

    /// What every get, put and listen checks first: not shutting down, a real key, and room for
    /// its two searches.
    pub(super) fn accept_command(&mut self, now: Instant, key: &InfoHash) -> Result<(), CommandError> {
        self.last_input = self.last_input.max(now);
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        if key.is_zero() {
            return Err(CommandError::ZeroKey);
        }
        self.searches.check_room(key)
    }

    /// Looks `key` up: values stored here come at once, then values found on the network, each
    /// in [`Event::Values`]; [`Event::GetDone`] ends it.
    pub fn get(&mut self, now: Instant, key: InfoHash, query: Query) -> Result<OpId, CommandError> {
        tracing::debug!(%key, "command: get");
        self.start_get(now, key, query, false)
    }

    /// A get; `internal`: its events go to [`Node::internal`], not to the user (marked before
    /// anything, even our own stored values, is delivered).
    pub(super) fn start_get(
        &mut self,
        now: Instant,
        key: InfoHash,
        query: Query,
        internal: bool,
    ) -> Result<OpId, CommandError> {
        self.accept_command(now, &key)?;
        let op = OpId(self.new_op());
        self.start_get_with_op(now, key, query, internal, op)
    }

    pub(super) fn start_get_with_op(
        &mut self,
        now: Instant,
        key: InfoHash,
        query: Query,
        internal: bool,
        op: OpId,
    ) -> Result<OpId, CommandError> {
        if internal {
            self.ops.mark_internal(op);
        }
        self.ops.add_get(op, key, query.clone());
        let local: Vec<Value> = self
            .storer
            .storage
            .get(&key, &query)
            .into_iter()
            .cloned()
            .collect();
        self.deliver(op, &local);
        let wide = self.speculation.next_search();
        for fam in Family::ALL {
            match self.searches.ensure(now, fam, key) {
                Some(s) => {
                    s.wide = wide;
                    s.add_get(now, op, query.clone());
                }
                None => self.family_get_done(op, fam, false, 0, 0),
            }
        }
        self.after_input(now);
        Ok(op)
    }

    /// Stops a get: no more events for it.
    pub fn cancel_get(&mut self, now: Instant, op: OpId) -> Result<(), CommandError> {
        tracing::debug!(?op, "command: cancel_get");
        let key = self.ops.remove_get(op).ok_or(CommandError::UnknownOperation)?;
        for fam in Family::ALL {
            if let Some(s) = self.searches.get_mut(&(fam, key)) {
                s.remove_get(op);
                self.searches.mark((fam, key));
            }
        }
        self.after_input(now);
        Ok(())
    }

    /// Signs `value` with our identity and puts it ([`Node::put`]). A value id of 0 is replaced
    /// by a random one. If we hold our own signed copy of this value, `seq` is raised above it, so
    /// storers accept the edit (after a restart, set `seq` yourself, or get the value first).
    pub fn put_signed(
        &mut self,
        now: Instant,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        let me = self.config.identity.clone().ok_or(CommandError::NoIdentity)?;
        self.fill_id(&mut value);
        let owner = me.public().to_spki_der();
        if let Some(old) = self.storer.storage.get_value(&key, value.id)
            && old.value.owner.as_ref() == Some(&owner)
        {
            value.seq = value.seq.max(old.value.seq.saturating_add(1));
        }
        crate::crypto::sign_value(&mut value, &me);
        self.put(now, key, value, opts)
    }

    /// Encrypts `value` to `to` (signed by us inside, see [`crate::crypto::encrypt_value`]) and
    /// puts it. Storers see only its id and the ciphertext; only `to` can open it.
    pub fn put_encrypted(
        &mut self,
        now: Instant,
        key: InfoHash,
        to: &crate::crypto::PublicKey,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        let me = self.config.identity.clone().ok_or(CommandError::NoIdentity)?;
        self.fill_id(&mut value);
        let sealed = crate::crypto::encrypt_value(&value, &me, to, &mut self.secret_rng);
        self.put(now, key, sealed, opts)
    }

    /// Stores `value` here and announces it to the closest nodes of both families.
    /// [`Event::PutDone`] reports how many acknowledged it. A value id of 0 is replaced by a random
    /// one. A permanent put is refreshed before it expires until [`Node::cancel_put`].
    pub fn put(
        &mut self,
        now: Instant,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        tracing::debug!(%key, vid = value.id, permanent = opts.permanent, "command: put");
        self.accept_command(now, &key)?;
        let size = value.size();
        if size > crate::value::MAX_VALUE_SIZE {
            return Err(CommandError::ValueTooLarge {
                size,
                max: crate::value::MAX_VALUE_SIZE,
            });
        }
        self.fill_id(&mut value);
        let op = OpId(self.new_op());
        self.put_with_op(now, key, value, opts, op)
    }

    pub(super) fn put_with_op(
        &mut self,
        now: Instant,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        op: OpId,
    ) -> Result<PutHandle, CommandError> {
        let vid = value.id;
        let life = self.config.value_type(value.value_type).expiration;
        let created = self.instant_of_unix(now, opts.created);
        let expiration = if opts.permanent {
            None
        } else {
            Some(created + life)
        };
        self.store_local(now, key, value.clone(), created, expiration);
        self.ops.add_put(op, key, vid);
        let created_unix = if created < now {
            self.unix_at(created)
        } else {
            None
        };
        let wide = self.speculation.next_search();
        // One copy for each family's search; the last takes the value itself.
        for (fam, value) in Family::ALL.into_iter().zip([value.clone(), value]) {
            let announce = Announce {
                value,
                created_unix,
                permanent: opts.permanent,
                ops: vec![op],
                life,
            };
            match self.searches.ensure(now, fam, key) {
                Some(s) => {
                    s.wide = wide;
                    let replaced = s.add_announce(now, announce);
                    for old in replaced {
                        self.family_put_done(old, fam, 0, 0);
                    }
                }
                None => self.family_put_done(op, fam, 0, 0),
            }
        }
        self.after_input(now);
        Ok(PutHandle { op, vid })
    }

    pub(super) fn store_local(
        &mut self,
        now: Instant,
        key: InfoHash,
        v: Value,
        created: Instant,
        expiration: Option<Instant>,
    ) {
        let fresh = self.storer.storage.get_value(&key, v.id).is_none();
        let vid = v.id;
        // Most keys have no one listening: the value is then moved, not copied.
        let heard = !self.storer.storage.listeners_of(&key).is_empty() || self.ops.listening_to(&key);
        let copy = heard.then(|| v.clone());
        let mut evicted = Vec::new();
        let outcome =
            self.storer
                .storage
                .store(now, key, v, Life { created, expiration }, None, &mut evicted);
        self.on_evicted(now, evicted);
        match outcome {
            StoreOutcome::Stored => {
                if let Some(v) = copy {
                    self.tell_stored(now, key, v, fresh);
                }
            }
            StoreOutcome::Refreshed => self.notify_listeners(now, key, Notice::Refreshed(vec![vid])),
            // Over the local quota: not kept here, but still announced (as OpenDHT does).
            StoreOutcome::Refused => {}
        }
    }

    /// Stops announcing value `vid` at `key` and drops our copy. A put still in progress reports
    /// done with what was acknowledged so far.
    pub fn cancel_put(&mut self, now: Instant, key: InfoHash, vid: ValueId) -> Result<(), CommandError> {
        tracing::debug!(%key, vid, "command: cancel_put");
        self.last_input = self.last_input.max(now);
        let mut found = false;
        for fam in Family::ALL {
            if let Some(s) = self.searches.get_mut(&(fam, key))
                && let Some(ops) = s.cancel_announce(vid)
            {
                found = true;
                self.searches.mark((fam, key));
                for op in ops {
                    self.family_put_done(op, fam, 0, 0);
                }
            }
        }
        if self
            .storer
            .storage
            .get_value(&key, vid)
            .is_some_and(|s| s.source.is_none())
        {
            found = true;
            if let Some(v) = self.storer.storage.remove(&key, vid) {
                self.report_removed(now, vec![(key, v)]);
            }
        }
        // Ops whose searches were already gone.
        let stale = self.ops.puts_of(key, vid);
        for op in stale {
            for fam in Family::ALL {
                self.family_put_done(op, fam, 0, 0);
            }
        }
        self.after_input(now);
        if found {
            Ok(())
        } else {
            Err(CommandError::UnknownOperation)
        }
    }

    /// Listens to `key`: [`Event::ListenAdded`] for values present now and added later,
    /// [`Event::ListenExpired`] when they go.
    pub fn listen(&mut self, now: Instant, key: InfoHash, query: Query) -> Result<ListenToken, CommandError> {
        tracing::debug!(%key, "command: listen");
        self.accept_command(now, &key)?;
        let token = ListenToken(self.new_op());
        let local: Vec<Value> = self
            .storer
            .storage
            .get(&key, &query)
            .into_iter()
            .cloned()
            .collect();
        self.ops.add_listen(token, key, query.clone(), &local);
        if !local.is_empty() {
            self.emit(Event::ListenAdded {
                token,
                key,
                values: local,
            });
        }
        for fam in Family::ALL {
            if let Some(s) = self.searches.ensure(now, fam, key) {
                s.add_listen(now, token, query.clone());
            }
        }
        self.after_input(now);
        Ok(token)
    }

    /// Stops a listen. Remote nodes forget it on their own when it is no longer renewed.
    pub fn cancel_listen(&mut self, now: Instant, token: ListenToken) -> Result<(), CommandError> {
        tracing::debug!(?token, "command: cancel_listen");
        self.last_input = self.last_input.max(now);
        let key = self
            .ops
            .remove_listen(token)
            .ok_or(CommandError::UnknownOperation)?;
        for fam in Family::ALL {
            if let Some(s) = self.searches.get_mut(&(fam, key)) {
                let changes = s.cancel_listen(token);
                self.searches.mark((fam, key));
                self.apply_listen_changes(key, changes);
            }
        }
        self.after_input(now);
        Ok(())
    }

    /// Begins an orderly stop: gets end, listens are dropped, permanent puts stop being
    /// refreshed, and puts in progress go on; [`Event::ShutdownComplete`] follows once they are
    /// done. The driver decides how long to wait for it.
    pub fn shutdown(&mut self, now: Instant) {
        tracing::debug!("command: shutdown");
        self.last_input = self.last_input.max(now);
        self.shutting_down = true;
        let gets = self.ops.get_ids();
        for op in gets {
            let _ = self.cancel_get(now, op);
            self.emit(Event::GetDone {
                op,
                key: InfoHash::ZERO,
                ok: false,
                answered: 0,
                asked: 0,
            });
        }
        let listens = self.ops.listen_tokens();
        for t in listens {
            let _ = self.cancel_listen(now, t);
        }
        self.searches.for_all(|s| {
            for a in &mut s.announces {
                a.permanent = false;
            }
        });
        self.after_input(now);
    }

    /// Nodes worth remembering across restarts: every non-expired node of both tables.
    pub fn export_nodes(&self) -> Vec<NodeInfo> {
        self.tables
            .iter()
            .flat_map(|t| t.nodes().filter(|n| !n.expired).map(|n| n.info()))
            .collect()
    }

    /// Adds exported nodes (without contacting them).
    pub fn import_nodes(&mut self, now: Instant, nodes: &[NodeInfo]) {
        self.last_input = self.last_input.max(now);
        for n in nodes {
            let learned = self.learn(now, n.addr, NodeList::from_elem(*n, 1));
            for l in learned {
                self.offer_to_searches(now, l);
            }
        }
        self.after_input(now);
    }

    /// Every stored value with the life it has left.
    pub fn export_values(&self) -> Vec<ExportedValue> {
        let now = self.last_input;
        self.storer
            .storage
            .all()
            .flat_map(|(k, entries)| {
                entries.iter().map(move |s| ExportedValue {
                    key: *k,
                    value: s.value.clone(),
                    remaining: s.expiration.map(|e| e - now),
                })
            })
            .collect()
    }

    /// Stores exported values again; a value's life is capped by its type's expiration.
    /// Imported values are never permanent.
    pub fn import_values(&mut self, now: Instant, values: Vec<ExportedValue>) {
        self.last_input = self.last_input.max(now);
        for e in values {
            let life = self.config.value_type(e.value.value_type).expiration;
            let remaining = e.remaining.unwrap_or(life).min(life);
            let created = now.saturating_sub_duration(life - remaining);
            self.store_local(now, e.key, e.value, created, Some(now + remaining));
        }
        self.after_input(now);
    }
}
