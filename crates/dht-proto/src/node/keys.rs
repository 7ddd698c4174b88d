//! The public-key book: our key announced once we are connected, keys of others looked up
//! where their owners announced them, and the encrypted puts waiting for them.

use super::*;

/// An encrypted put waiting for its recipient's public key.
#[derive(Debug)]
struct KeyWait {
    id: InfoHash,
    found: Option<crate::crypto::PublicKey>,
    puts: Vec<WaitingPut>,
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

/// The public-key book: keys found by lookups (bounded), the lookups in progress with the puts
/// waiting for them, and whether our own key has been announced.
#[derive(Debug, Default)]
pub(super) struct KeyBook {
    /// Public key lookups in progress, by their get.
    waits: BTreeMap<OpId, KeyWait>,
    /// Public keys found, by short id (bounded).
    known: BTreeMap<InfoHash, crate::crypto::PublicKey>,
    /// Our public key has been announced.
    announced: bool,
}

type WaitingPut = (OpId, InfoHash, Value, PutOptions);

impl KeyBook {
    /// The key with short id `id`, if a lookup found it.
    fn known(&self, id: &InfoHash) -> Option<crate::crypto::PublicKey> {
        self.known.get(id).copied()
    }

    /// Adds `put` to the lookup of `id` in progress; gives it back when there is none.
    fn join_lookup(&mut self, id: InfoHash, put: WaitingPut) -> Option<WaitingPut> {
        match self.waits.values_mut().find(|w| w.id == id) {
            Some(w) => {
                w.puts.push(put);
                None
            }
            None => Some(put),
        }
    }

    /// A lookup of `id` by the get `op`, with its first waiting put.
    fn start_lookup(&mut self, op: OpId, id: InfoHash, put: WaitingPut) {
        let wait = KeyWait {
            id,
            found: None,
            puts: vec![put],
        };
        self.waits.insert(op, wait);
    }

    /// Values found by the get `op`: the key it looks for, if one of them announces it.
    fn found(&mut self, op: OpId, values: &[Value]) {
        let Some(w) = self.waits.get_mut(&op) else { return };
        for v in values {
            if let Ok(pk) = crate::crypto::verify_value(v)
                && pk.id() == w.id
                && v.data == pk.to_spki_der()
            {
                w.found = Some(pk);
            }
        }
    }

    /// The get `op` is done: its lookup ends, and a key it found is remembered.
    fn finish_lookup(&mut self, op: OpId) -> Option<KeyWait> {
        let w = self.waits.remove(&op)?;
        if let Some(pk) = w.found {
            if self.known.len() >= MAX_KNOWN_KEYS
                && let Some(first) = self.known.keys().next().copied()
            {
                self.known.remove(&first);
            }
            self.known.insert(w.id, pk);
        }
        Some(w)
    }

    pub(super) fn compact(&mut self) {
        use crate::compact::Compact;
        self.waits.compact();
    }
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
        if let Some(pk) = self.keys.known(&to) {
            return self.put_encrypted(now, key, &pk, value, opts);
        }
        self.accept_command(now, &key)?;
        self.fill_id(&mut value);
        let vid = value.id;
        let op = OpId(self.new_op());
        // One lookup per id, however many puts wait for it.
        let Some(put) = self.keys.join_lookup(to, (op, key, value, opts)) else {
            return Ok(PutHandle { op, vid });
        };
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
        self.keys.start_lookup(get, to, put);
        self.start_get_with_op(now, location, query, true, get)?;
        Ok(PutHandle { op, vid })
    }

    /// Announces our public key once we are connected (a permanent, signed value).
    pub(super) fn announce_key(&mut self, now: Instant) {
        let Some(me) = self.config.identity.clone() else {
            return;
        };
        if self.keys.announced || self.shutting_down {
            return;
        }
        self.keys.announced = true;
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
                        self.keys.found(op, &values);
                    }
                    Event::GetDone { op, .. } => {
                        self.ops.unmark_internal(op);
                        let Some(w) = self.keys.finish_lookup(op) else {
                            continue;
                        };
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
