//! Running Debian's OpenDHT `dhtnode` for interop tests.
