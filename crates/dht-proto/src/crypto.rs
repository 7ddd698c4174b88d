//! Identities, signatures and sealed boxes (ed25519, x25519, ChaCha20-Poly1305): pure functions,
//! with randomness passed in.
//!
//! **One key, two uses.** An [`Identity`] is a 32-byte secret seed. Its ed25519 signing key comes
//! from the seed as RFC 8032 defines; its x25519 key is the same secret scalar on the Montgomery
//! form of the curve (as libsodium's `crypto_sign_ed25519_sk_to_curve25519`). So a peer's
//! [`PublicKey`] — the 32-byte ed25519 key that signed values already carry as their owner — is
//! all a sender needs to encrypt to it: no second key to announce, look up or keep in step. The
//! cost is that one secret serves two schemes; the two are used on separate inputs (signatures
//! over value bodies, Diffie–Hellman with fresh ephemeral keys) and no known attack combines them.
//!
//! **Sealed box** ([`seal`] / [`open`]): `0x01 ‖ ephemeral x25519 public (32) ‖ ciphertext ‖ tag
//! (16)`. The key and nonce come from HKDF-SHA256 over the x25519 shared secret, with the
//! ephemeral and the recipient public keys as salt, so each message has its own key; the caller's
//! associated data is authenticated but not sent.
//!
//! ```
//! use dht_proto::crypto::{Identity, open, seal};
//! use rand_core::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
//! let alice = Identity::generate(&mut rng);
//! let bob = Identity::generate(&mut rng);
//! let sig = alice.sign(b"body");
//! assert!(alice.public().verify(b"body", &sig).is_ok());
//! let boxed = seal(&bob.public(), b"secret", b"context", &mut rng);
//! assert_eq!(open(&bob, &boxed, b"context").unwrap(), b"secret");
//! assert!(open(&alice, &boxed, b"context").is_err());
//! ```

use crate::prelude::*;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha1::Digest;

use crate::InfoHash;

/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes a sealed box adds to its plaintext: version, ephemeral key, tag.
pub const SEAL_OVERHEAD: usize = 1 + 32 + 16;
/// The DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const SEAL_VERSION: u8 = 1;
const KDF_INFO: &[u8] = b"rdht sealed box v1";

/// Why a key, signature or box was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Not a valid public key (wrong length, prefix, or not a curve point).
    #[error("invalid public key")]
    BadKey,
    /// The signature does not verify (or is not 64 bytes).
    #[error("bad signature")]
    BadSignature,
    /// The box is too short or of an unknown version.
    #[error("malformed sealed box")]
    Malformed,
    /// The box does not open with this key and associated data (tampered, or for someone else).
    #[error("sealed box does not open")]
    Unsealed,
}

/// A peer's public key: ed25519, also its x25519 key for encryption (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// From the 32 key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| CryptoError::BadKey)
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The X.509 SubjectPublicKeyInfo DER form, as OpenDHT carries a value's owner (44 bytes).
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut v = SPKI_PREFIX.to_vec();
        v.extend_from_slice(self.0.as_bytes());
        v
    }

    /// Parses the SubjectPublicKeyInfo DER form (only ed25519 keys).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, CryptoError> {
        match der.split_at_checked(SPKI_PREFIX.len()) {
            Some((prefix, key)) if prefix == SPKI_PREFIX => PublicKey::from_bytes(key),
            _ => Err(CryptoError::BadKey),
        }
    }

    /// The short id: SHA-1 of the SPKI DER, as OpenDHT's `getId`.
    pub fn id(&self) -> InfoHash {
        InfoHash::get(self.to_spki_der())
    }

    /// Checks `sig` over `msg` (strict RFC 8032 verification: no malleable signatures).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| CryptoError::BadSignature)?;
        self.0
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| CryptoError::BadSignature)
    }

    fn x25519(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0.to_montgomery().to_bytes())
    }
}

/// A node's or user's secret: signs values and opens boxes sealed to its [`PublicKey`].
///
/// Shared, not copied, when cloned: the key (232 bytes with its public half) lives once behind a
/// pointer, so a [`Config`](crate::Config) without an identity carries 8 bytes for it, not 232.
#[derive(Clone)]
pub struct Identity {
    signing: alloc::sync::Arc<SigningKey>,
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("public", &self.public())
            .finish()
    }
}

impl Identity {
    /// From a 32-byte secret seed (RFC 8032's private key).
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity {
            signing: alloc::sync::Arc::new(SigningKey::from_bytes(seed)),
        }
    }

    /// A fresh identity from `rng`.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Identity {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Identity::from_seed(&seed)
    }

    /// The secret seed, for saving (keep it private).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Signs `msg` (64 bytes).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(msg).to_bytes()
    }

    fn x25519(&self) -> x25519_dalek::StaticSecret {
        x25519_dalek::StaticSecret::from(self.signing.to_scalar_bytes())
    }
}

fn box_key(shared: &[u8; 32], eph: &[u8; 32], to: &[u8; 32]) -> ([u8; 32], [u8; 12]) {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph);
    salt[32..].copy_from_slice(to);
    let hk = Hkdf::<sha2::Sha256>::new(Some(&salt), shared);
    let mut okm = [0u8; 44];
    // 44 bytes is far below HKDF-SHA256's limit of 8160: expand cannot fail.
    let _ = hk.expand(KDF_INFO, &mut okm);
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 12];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// Seals `plaintext` to `to`, binding `aad` (module docs for the layout).
pub fn seal(to: &PublicKey, plaintext: &[u8], aad: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Vec<u8> {
    let mut eph_secret = [0u8; 32];
    rng.fill_bytes(&mut eph_secret);
    let eph = x25519_dalek::StaticSecret::from(eph_secret);
    let eph_pub = x25519_dalek::PublicKey::from(&eph);
    let to_x = to.x25519();
    let shared = eph.diffie_hellman(&to_x);
    let (key, nonce) = box_key(shared.as_bytes(), eph_pub.as_bytes(), to_x.as_bytes());
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
    // Encryption with a 32-byte key and in-memory buffers does not fail.
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
    out.push(SEAL_VERSION);
    out.extend_from_slice(eph_pub.as_bytes());
    out.extend_from_slice(&ct);
    out
}

/// Opens a box sealed to `me` with the same `aad`.
pub fn open(me: &Identity, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Malformed);
    }
    let (version, rest) = sealed.split_at(1);
    if version != [SEAL_VERSION] {
        return Err(CryptoError::Malformed);
    }
    let (eph, ct) = rest.split_at(32);
    let eph: [u8; 32] = eph.try_into().map_err(|_| CryptoError::Malformed)?;
    let eph_pub = x25519_dalek::PublicKey::from(eph);
    let secret = me.x25519();
    let shared = secret.diffie_hellman(&eph_pub);
    if !shared.was_contributory() {
        // A low-order ephemeral key: the "shared" secret would be known to anyone.
        return Err(CryptoError::Unsealed);
    }
    let my_x = x25519_dalek::PublicKey::from(&secret);
    let (key, nonce) = box_key(shared.as_bytes(), &eph, my_x.as_bytes());
    ChaCha20Poly1305::new(Key::from_slice(&key))
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Unsealed)
}

/// Signs `value` as `id`: sets its owner (SPKI DER) and its signature over
/// [`Value::body_to_sign`](crate::value::Value::body_to_sign), which covers seq, owner, recipient,
/// type, data and user type. Set `seq` (and `recipient`) before signing.
pub fn sign_value(value: &mut crate::value::Value, id: &Identity) {
    value.cypher.clear();
    value.owner = Some(id.public().to_spki_der());
    value.signature = id.sign(&value.body_to_sign()).to_vec();
}

/// Checks a signed value: its owner parses as our key type and its signature covers the body
/// (re-encoded canonically, never the received bytes). Returns the owner's key.
pub fn verify_value(value: &crate::value::Value) -> Result<PublicKey, CryptoError> {
    let owner = value.owner.as_deref().ok_or(CryptoError::BadSignature)?;
    if value.is_encrypted() {
        return Err(CryptoError::BadSignature);
    }
    let key = PublicKey::from_spki_der(owner)?;
    key.verify(&value.body_to_sign(), &value.signature)?;
    Ok(key)
}

/// The associated data of an encrypted value: its id, so a storer cannot pass the cypher off
/// under another id.
fn value_aad(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Encrypts `value` from `from` to `to`, as OpenDHT's `Value::encrypt` does in shape: the value
/// is addressed (`recipient` = `to`'s short id) and signed, then the whole signed value is sealed
/// to `to`. The result keeps the id, priority and push type and hides everything else in `cypher`.
pub fn encrypt_value(
    value: &crate::value::Value,
    from: &Identity,
    to: &PublicKey,
    rng: &mut (impl RngCore + CryptoRng),
) -> crate::value::Value {
    let mut inner = value.clone();
    inner.recipient = Some(to.id());
    sign_value(&mut inner, from);
    let plain = inner.encode_to_vec();
    crate::value::Value {
        id: value.id,
        priority: value.priority,
        push_type: value.push_type.clone(),
        cypher: seal(to, &plain, &value_aad(value.id), rng),
        ..crate::value::Value::default()
    }
}

/// Opens an encrypted value addressed to `me`: decrypts, decodes, checks that it is addressed to
/// `me`, carries the outer id, and that its inner signature verifies. Returns the inner value.
pub fn decrypt_value(value: &crate::value::Value, me: &Identity) -> Result<crate::value::Value, CryptoError> {
    if !value.is_encrypted() {
        return Err(CryptoError::Malformed);
    }
    let plain = open(me, &value.cypher, &value_aad(value.id))?;
    let mut inner = crate::value::Value::decode(&plain).map_err(|_| CryptoError::Malformed)?;
    if inner.id != value.id || inner.recipient != Some(me.public().id()) || inner.is_encrypted() {
        return Err(CryptoError::Unsealed);
    }
    verify_value(&inner)?;
    inner.priority = value.priority;
    inner.push_type = value.push_type.clone();
    Ok(inner)
}

/// What can be said of a value's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// No owner (or encrypted: the signature is inside).
    NotSigned,
    /// An ed25519 owner whose signature covers the body.
    Valid,
    /// An ed25519 owner whose signature does not verify: a forgery or a corruption.
    Invalid,
    /// An owner key of another kind (OpenDHT's RSA): we cannot check it, so we treat the value
    /// as opaque data, as a storer of an unsecured type does.
    UnknownKeyType,
}

/// Checks a value's signature as far as we can (see [`SignatureCheck`]).
pub fn check_signature(value: &crate::value::Value) -> SignatureCheck {
    let Some(owner) = value.owner.as_deref() else {
        return SignatureCheck::NotSigned;
    };
    if value.is_encrypted() {
        return SignatureCheck::NotSigned;
    }
    match PublicKey::from_spki_der(owner) {
        Err(_) => SignatureCheck::UnknownKeyType,
        Ok(key) => match key.verify(&value.body_to_sign(), &value.signature) {
            Ok(()) => SignatureCheck::Valid,
            Err(_) => SignatureCheck::Invalid,
        },
    }
}

/// SHA-256, for long ids (OpenDHT's `getLongId`).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    // Produced by this implementation when the format was fixed (a regression vector; the
    // primitives under it are checked by their crates against RFC 7748 and RFC 8439).
    const KNOWN_BOX: &str = "01fdec14ea00ac6ab6c939620d6ad112fecb7c554ceb1ecd742eaf0f42f35000129208305f81769cabc022b80139c085a370c12deb7d7be569ebc6e756";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc8032_test_vectors_1_and_2() {
        // RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte).
        let cases = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (seed, public, msg, sig) in cases {
            let id = Identity::from_seed(&unhex(seed).try_into().unwrap());
            assert_eq!(id.public().to_bytes().to_vec(), unhex(public));
            assert_eq!(id.sign(&unhex(msg)).to_vec(), unhex(sig));
            assert!(id.public().verify(&unhex(msg), &unhex(sig)).is_ok());
        }
    }

    #[test]
    fn the_x25519_key_is_the_montgomery_form_of_the_signing_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let id = Identity::generate(&mut rng);
        let from_secret = x25519_dalek::PublicKey::from(&id.x25519());
        assert_eq!(from_secret.as_bytes(), id.public().x25519().as_bytes());
    }

    #[test]
    fn forged_changed_and_truncated_signatures_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let a = Identity::generate(&mut rng);
        let b = Identity::generate(&mut rng);
        let sig = a.sign(b"body");
        assert_eq!(b.public().verify(b"body", &sig), Err(CryptoError::BadSignature));
        assert_eq!(a.public().verify(b"bodY", &sig), Err(CryptoError::BadSignature));
        assert_eq!(
            a.public().verify(b"body", &sig[..63]),
            Err(CryptoError::BadSignature)
        );
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(
            a.public().verify(b"body", &flipped),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn spki_round_trip_and_id() {
        let id = Identity::from_seed(&[7; 32]);
        let der = id.public().to_spki_der();
        assert_eq!(der.len(), 44);
        assert_eq!(PublicKey::from_spki_der(&der).unwrap(), id.public());
        assert_eq!(id.public().id(), InfoHash::get(&der));
        assert!(PublicKey::from_spki_der(&der[..43]).is_err());
        let mut other = der.clone();
        other[5] ^= 1;
        assert!(PublicKey::from_spki_der(&other).is_err());
    }

    #[test]
    fn tampered_misaddressed_and_malformed_boxes_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let bob = Identity::generate(&mut rng);
        let eve = Identity::generate(&mut rng);
        let boxed = seal(&bob.public(), b"for bob", b"aad", &mut rng);
        assert_eq!(boxed.len(), SEAL_OVERHEAD + 7);
        assert_eq!(open(&bob, &boxed, b"aad").unwrap(), b"for bob");
        assert_eq!(open(&eve, &boxed, b"aad"), Err(CryptoError::Unsealed));
        assert_eq!(open(&bob, &boxed, b"other"), Err(CryptoError::Unsealed));
        for i in 0..boxed.len() {
            let mut t = boxed.clone();
            t[i] ^= 0x40;
            assert!(open(&bob, &t, b"aad").is_err(), "byte {i}");
        }
        for cut in 0..boxed.len() {
            assert!(open(&bob, &boxed[..cut], b"aad").is_err(), "cut {cut}");
        }
        // A low-order ephemeral key (all zeros) is refused.
        let mut zero = vec![SEAL_VERSION];
        zero.extend_from_slice(&[0; 32]);
        zero.extend_from_slice(&[0; 16]);
        assert_eq!(open(&bob, &zero, b""), Err(CryptoError::Unsealed));
    }

    #[test]
    fn sealed_box_known_answer() {
        // Pins the format: version, ephemeral key, HKDF inputs, AEAD. Any change to any of them
        // changes these bytes (and breaks every box already stored).
        let to = Identity::from_seed(&[9; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let boxed = seal(&to.public(), b"known answer", b"aad", &mut rng);
        let hex: String = boxed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, KNOWN_BOX);
        assert_eq!(open(&to, &unhex(KNOWN_BOX), b"aad").unwrap(), b"known answer");
    }

    #[test]
    fn sealing_twice_gives_different_boxes() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let bob = Identity::generate(&mut rng);
        let a = seal(&bob.public(), b"same", b"", &mut rng);
        let b = seal(&bob.public(), b"same", b"", &mut rng);
        assert_ne!(a, b);
    }

    #[test]
    fn signed_values_verify_and_every_change_breaks_them() {
        use crate::value::Value;
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let alice = Identity::generate(&mut rng);
        let mallory = Identity::generate(&mut rng);
        let mut v = Value::new(9, b"mine".to_vec());
        v.seq = 3;
        v.user_type = "text/plain".into();
        sign_value(&mut v, &alice);
        assert_eq!(verify_value(&v).unwrap(), alice.public());
        // Through the wire form.
        let back = Value::decode(&v.encode_to_vec()).unwrap();
        assert_eq!(verify_value(&back).unwrap(), alice.public());
        let changes: [fn(&mut Value); 5] = [
            |v| v.data.push(0),
            |v| v.seq += 1,
            |v| v.user_type.push('x'),
            |v| v.value_type = 1,
            |v| v.recipient = Some(InfoHash::get("someone")),
        ];
        for change in changes {
            let mut t = v.clone();
            change(&mut t);
            assert_eq!(verify_value(&t), Err(CryptoError::BadSignature));
        }
        // Another owner's key with the old signature, and an unsigned value.
        let mut t = v.clone();
        t.owner = Some(mallory.public().to_spki_der());
        assert!(verify_value(&t).is_err());
        assert!(verify_value(&Value::new(1, vec![])).is_err());
        // The id is not covered (as in OpenDHT).
        let mut t = v.clone();
        t.id = 10;
        assert!(verify_value(&t).is_ok());
        assert_eq!(check_signature(&v), SignatureCheck::Valid);
        let mut t = v.clone();
        t.data.push(1);
        assert_eq!(check_signature(&t), SignatureCheck::Invalid);
        t.owner = Some(b"an RSA key in DER, say".to_vec());
        assert_eq!(check_signature(&t), SignatureCheck::UnknownKeyType);
        assert_eq!(check_signature(&Value::new(1, vec![])), SignatureCheck::NotSigned);
    }

    #[test]
    fn encrypted_values_open_only_for_their_recipient_and_only_intact() {
        use crate::value::Value;
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let alice = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let eve = Identity::generate(&mut rng);
        let mut v = Value::new(77, b"for bob only".to_vec());
        v.priority = 2;
        let e = encrypt_value(&v, &alice, &bob.public(), &mut rng);
        assert!(e.is_encrypted() && e.data.is_empty() && e.owner.is_none());
        assert_eq!(e.id, 77);
        let wire = Value::decode(&e.encode_to_vec()).unwrap();
        let opened = decrypt_value(&wire, &bob).unwrap();
        assert_eq!(opened.data, b"for bob only");
        assert_eq!(opened.owner, Some(alice.public().to_spki_der()));
        assert_eq!(opened.recipient, Some(bob.public().id()));
        assert_eq!(opened.priority, 2);
        assert_eq!(decrypt_value(&wire, &eve), Err(CryptoError::Unsealed));
        let mut t = wire.clone();
        t.id = 78;
        assert_eq!(decrypt_value(&t, &bob), Err(CryptoError::Unsealed));
        let mut t = wire.clone();
        let last = t.cypher.len() - 1;
        t.cypher[last] ^= 1;
        assert_eq!(decrypt_value(&t, &bob), Err(CryptoError::Unsealed));
        assert_eq!(decrypt_value(&v, &bob), Err(CryptoError::Malformed));
        // Sealed to bob but addressed to eve inside: refused.
        let mut inner = Value::new(5, b"x".to_vec());
        inner.recipient = Some(eve.public().id());
        sign_value(&mut inner, &alice);
        let forged = Value {
            id: 5,
            cypher: seal(
                &bob.public(),
                &inner.encode_to_vec(),
                &5u64.to_be_bytes(),
                &mut rng,
            ),
            ..Value::default()
        };
        assert_eq!(decrypt_value(&forged, &bob), Err(CryptoError::Unsealed));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn sign_verify_and_seal_open_round_trip(
            seed in any::<[u8; 32]>(),
            msg in proptest::collection::vec(any::<u8>(), 0..2048),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            rng_seed in any::<u64>(),
        ) {
            let id = Identity::from_seed(&seed);
            let sig = id.sign(&msg);
            prop_assert!(id.public().verify(&msg, &sig).is_ok());
            let mut rng = ChaCha20Rng::seed_from_u64(rng_seed);
            let boxed = seal(&id.public(), &msg, &aad, &mut rng);
            prop_assert_eq!(open(&id, &boxed, &aad).unwrap(), msg);
        }
    }
}
