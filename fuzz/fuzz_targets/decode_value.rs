//! Any value bytes: decode never panics; a decoded value round-trips.
#![no_main]
use dht_proto::value::Value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Value::decode(data) {
        let again = Value::decode(&v.encode_to_vec()).expect("our own encoding decodes");
        assert_eq!(again, v);
        let _ = v.body_to_sign();
    }
});
