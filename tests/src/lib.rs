//! Helpers shared by the cross-crate tests: loading golden vectors and running a real OpenDHT
//! `dhtnode` on loopback.

pub mod counting;
pub mod opendht;
pub mod udp_node;
pub mod vectors;
