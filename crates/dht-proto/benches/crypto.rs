//! Sign, verify, seal and open of a 1 KiB value (`cargo bench -p dht-proto --bench crypto`).

use criterion::{Criterion, criterion_main};
use dht_proto::crypto::{self, Identity};
use dht_proto::value::Value;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let alice = Identity::generate(&mut rng);
    let bob = Identity::generate(&mut rng);
    let value = Value::new(1, (0..1024).map(|i| i as u8).collect());
    let mut signed = value.clone();
    crypto::sign_value(&mut signed, &alice);
    let sealed = crypto::encrypt_value(&value, &alice, &bob.public(), &mut rng);
    c.bench_function("sign 1 KiB value", |b| {
        b.iter(|| {
            let mut v = value.clone();
            crypto::sign_value(&mut v, black_box(&alice));
            v
        })
    });
    c.bench_function("verify 1 KiB value", |b| {
        b.iter(|| crypto::verify_value(black_box(&signed)))
    });
    c.bench_function("seal 1 KiB value (sign + encrypt)", |b| {
        b.iter(|| crypto::encrypt_value(black_box(&value), &alice, &bob.public(), &mut rng))
    });
    c.bench_function("open 1 KiB value (decrypt + verify)", |b| {
        b.iter(|| crypto::decrypt_value(black_box(&sealed), &bob))
    });
}

// criterion_group! generates an undocumented public function.
mod groups {
    #![allow(missing_docs)]
    criterion::criterion_group!(crypto, super::bench);
}
criterion_main!(groups::crypto);
