//! The public-key book: our key announced once we are connected, keys of others looked up
//! where their owners announced them, and the encrypted puts waiting for them.

use super::*;

/// An encrypted put waiting for its recipient's public key.
#[derive(Debug)]
pub(super) struct KeyWait {
    id: InfoHash,
    found: Option<crate::crypto::PublicKey>,
    puts: Vec<(OpId, InfoHash, Value, PutOptions)>,
}

/// Public keys remembered from lookups.
const MAX_KNOWN_KEYS: usize = 1024;
/// The id of the value that announces a node's public key (as OpenDHT's certificate value).
const KEY_VALUE_ID: ValueId = 1;
/// The type of that value: OpenDHT's certificate type.
const KEY_VALUE_TYPE: u16 = 8;

/// Where the public key with short id `id` is announced: SHA-1 of the id (as OpenDHT puts its
/// certificates at SHA-1 of the key's long id).
pub fn public_key_location(id: &InfoHash) -> InfoHash {
    InfoHash::get(id.as_bytes())
}

impl Node {
    /// [`Node::put_encrypted`] to the node or user whose public key has short id `to`: the key is
    /// looked up where its owner announced it ([`public_key_location`]) and remembered. If no key
    /// is found, [`Event::PutDone`] reports no node targeted and none acknowledging.
    pub fn put_encrypted_to_id(
        &mut self,
        now: Instant,
        key: InfoHash,
        to: InfoHash,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        if self.config.identity.is_none() {
            return Err(CommandError::NoIdentity);
        }
        if let Some(pk) = self.known_keys.get(&to).copied() {
            return self.put_encrypted(now, key, &pk, value, opts);
        }
        self.accept_command(now, &key)?;
        self.fill_id(&mut value);
        let vid = value.id;
        let op = OpId(self.new_op());
        // One lookup per id, however many puts wait for it.
        let waiting = self.key_waits.iter_mut().find(|(_, w)| w.id == to);
        if let Some((_, w)) = waiting {
            w.puts.push((op, key, value, opts));
            return Ok(PutHandle { op, vid });
        }
        let query = Query::new(
            crate::value::Select::all(),
            crate::value::Where::any()
                .value_type(KEY_VALUE_TYPE)
                .id(KEY_VALUE_ID),
        );
        let location = public_key_location(&to);
        self.accept_command(now, &location)?;
        // The wait exists before the get starts: our own storage may answer at once.
        let get = OpId(self.new_op());
        self.key_waits.insert(
            get,
            KeyWait {
                id: to,
                found: None,
                puts: vec![(op, key, value, opts)],
            },
        );
        self.start_get_with_op(now, location, query, true, get)?;
        Ok(PutHandle { op, vid })
    }

    /// Announces our public key once we are connected (a permanent, signed value).
    pub(super) fn announce_key(&mut self, now: Instant) {
        let Some(me) = self.config.identity.clone() else {
            return;
        };
        if self.key_announced || self.shutting_down {
            return;
        }
        self.key_announced = true;
        let public = me.public();
        let mut v = Value::new(KEY_VALUE_ID, public.to_spki_der());
        v.value_type = KEY_VALUE_TYPE;
        crate::crypto::sign_value(&mut v, &me);
        let op = OpId(self.new_op());
        self.ops.mark_internal(op);
        if self
            .put_with_op(
                now,
                public_key_location(&public.id()),
                v,
                PutOptions::permanent(),
                op,
            )
            .is_err()
        {
            self.ops.unmark_internal(op);
        }
    }

    /// Handles the events of our internal operations.
    pub(super) fn internal(&mut self, now: Instant) {
        // Each round may start puts whose events come back here; a few rounds settle it.
        for _ in 0..4 {
            let events = self.ops.take_internal_events();
            if events.is_empty() {
                return;
            }
            for e in events {
                match e {
                    Event::Values { op, values, .. } => {
                        if let Some(w) = self.key_waits.get_mut(&op) {
                            for v in &values {
                                if let Ok(pk) = crate::crypto::verify_value(v)
                                    && pk.id() == w.id
                                    && v.data == pk.to_spki_der()
                                {
                                    w.found = Some(pk);
                                }
                            }
                        }
                    }
                    Event::GetDone { op, .. } => {
                        self.ops.unmark_internal(op);
                        let Some(w) = self.key_waits.remove(&op) else {
                            continue;
                        };
                        if let Some(pk) = w.found {
                            if self.known_keys.len() >= MAX_KNOWN_KEYS
                                && let Some(first) = self.known_keys.keys().next().copied()
                            {
                                self.known_keys.remove(&first);
                            }
                            self.known_keys.insert(w.id, pk);
                        }
                        for (pop, key, value, opts) in w.puts {
                            let sealed = match (w.found, self.config.identity.clone()) {
                                (Some(pk), Some(me)) => Some(crate::crypto::encrypt_value(
                                    &value,
                                    &me,
                                    &pk,
                                    &mut self.secret_rng,
                                )),
                                _ => None,
                            };
                            let started = sealed.and_then(|v| self.put_with_op(now, key, v, opts, pop).ok());
                            if started.is_none() {
                                self.emit(Event::PutDone {
                                    op: pop,
                                    key,
                                    vid: value.id,
                                    outcome: PutOutcome::default(),
                                });
                            }
                        }
                    }
                    Event::PutDone { op, .. } => {
                        self.ops.unmark_internal(op);
                    }
                    _ => {}
                }
            }
        }
    }
}
