//! Signed and encrypted values from any bytes: verification and decryption never panic, and
//! reject what they cannot check.
#![no_main]
use dht_proto::crypto::{self, Identity};
use dht_proto::value::Value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let me = Identity::from_seed(&[42; 32]);
    if let Ok(v) = Value::decode(data) {
        if let Ok(owner) = crypto::verify_value(&v) {
            // Only a real signature by that key passes: the fuzzer cannot forge one, so a pass
            // means the input carried a genuine signed body.
            assert!(owner.verify(&v.body_to_sign(), &v.signature).is_ok());
        }
        let _ = crypto::decrypt_value(&v, &me);
    }
    // The bytes as a cypher addressed to us.
    let (id, cypher) = data.split_at(data.len().min(8));
    let mut idb = [0u8; 8];
    idb[..id.len()].copy_from_slice(id);
    let v = Value {
        id: u64::from_le_bytes(idb),
        cypher: cypher.to_vec(),
        ..Value::default()
    };
    assert!(crypto::decrypt_value(&v, &me).is_err() || !cypher.is_empty());
    let _ = crypto::open(&me, data, b"");
    let _ = crypto::PublicKey::from_spki_der(data);
});
