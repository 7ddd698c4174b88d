//! Any datagram: decode never panics, and whatever decodes re-encodes to something that decodes
//! to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = dht_proto::wire::decode(data) {
        let bytes = msg.encode_to_vec();
        let again = dht_proto::wire::decode(&bytes).expect("our own encoding decodes");
        assert_eq!(again, msg);
    }
});
