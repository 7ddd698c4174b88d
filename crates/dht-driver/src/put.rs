//! How a put treats its value: plain, signed, or encrypted.

use dht_proto::value::Value;
use dht_proto::{CommandError, InfoHash, Instant, Node, PutHandle, PutOptions};

/// How a put treats its value.
#[derive(Clone, Debug)]
pub enum PutMode {
    /// As given.
    Plain,
    /// Signed with the node's identity (`Config::node.identity`).
    Signed,
    /// Encrypted to this key (and signed inside) with the node's identity.
    EncryptedTo(dht_proto::crypto::PublicKey),
    /// Encrypted to the key with this short id, looked up where its owner announced it.
    EncryptedToId(InfoHash),
}

impl PutMode {
    /// Hands the put to `node` the way this mode says: [`Node::put`], [`Node::put_signed`],
    /// [`Node::put_encrypted`] or [`Node::put_encrypted_to_id`].
    pub fn put(
        self,
        node: &mut Node,
        now: Instant,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        match self {
            PutMode::Plain => node.put(now, key, value, opts),
            PutMode::Signed => node.put_signed(now, key, value, opts),
            PutMode::EncryptedTo(to) => node.put_encrypted(now, key, &to, value, opts),
            PutMode::EncryptedToId(to) => node.put_encrypted_to_id(now, key, to, value, opts),
        }
    }
}
