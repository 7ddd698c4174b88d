//! Codec benchmarks (see issue notes for figures).
fn main() {}
