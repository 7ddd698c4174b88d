//! Golden vectors: real OpenDHT datagrams captured on loopback (see `tests/vectors/README.md`).
