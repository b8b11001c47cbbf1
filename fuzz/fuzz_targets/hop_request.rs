//! A HOP request body from a peer the access list denies (the access gate answers it
//! PERMISSION_DENIED): any bytes must parse to an answer or to nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::hop_request(data));
