//! A `/rendezvous/1.0.0` request as a peer writes it (length prefix and protobuf):
//! through the codec and every check the server makes before its store sees it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::rendezvous_request(data));
