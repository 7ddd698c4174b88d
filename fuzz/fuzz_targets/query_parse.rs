//! Any text: query parsing never panics, and neither does printing a parsed query and parsing
//! the printed form again.
#![no_main]
use dht_proto::value::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = core::str::from_utf8(data) else { return };
    if let Ok(q) = Query::parse(s) {
        let _ = Query::parse(&q.to_string());
        let mut wire = Vec::new();
        q.encode(&mut wire);
    }
});
