//! A DISCOVER cookie as a peer sends it back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::rendezvous_cookie(data));
