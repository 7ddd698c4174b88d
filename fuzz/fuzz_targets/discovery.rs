//! Any discovery datagram: decode never panics; whatever decodes as an announcement re-encodes to
//! bytes that decode to the same announcement; the state machine, fed the datagram from a few
//! sources, never panics and never bootstraps more than its rate limit allows.
#![no_main]
use dht_proto::discovery::{self, Discovery, DiscoveryConfig, Message, Output};
use dht_proto::{InfoHash, Instant, PerFamily};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Message::Announce(Some(a))) = discovery::decode(data) {
        let again = discovery::decode(&discovery::encode_announce(&a)).expect("our own encoding decodes");
        assert_eq!(again, Message::Announce(Some(a)));
    }
    let cfg = DiscoveryConfig::default();
    let burst = u64::from(cfg.bootstrap_burst);
    let mut d = Discovery::new(cfg, InfoHash::get("fuzz"), 0);
    d.start(Instant::ZERO, PerFamily::new(Some(4222), Some(4222)));
    while d.poll_output().is_some() {}
    let froms = ["127.0.0.1:8888", "[::1]:8888", "[fe80::1%2]:8888", "0.0.0.0:1", "[::ffff:10.0.0.1]:8888"];
    let mut bootstraps = 0u64;
    for (i, from) in froms.iter().enumerate() {
        let from = from.parse().expect("address");
        // Split the input in two datagrams as well, so that pairs are exercised.
        let cut = data.len() / (i + 2);
        for part in [data, data.get(..cut).unwrap_or_default(), data.get(cut..).unwrap_or_default()] {
            d.handle_datagram(Instant::ZERO, from, part);
            while let Some(o) = d.poll_output() {
                if matches!(o, Output::Bootstrap { .. }) {
                    bootstraps += 1;
                }
            }
        }
    }
    assert!(bootstraps <= burst);
    assert_eq!(d.stats().received, 15);
});
