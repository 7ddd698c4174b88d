//! The proxy bench (written in a later step).

fn main() {}
