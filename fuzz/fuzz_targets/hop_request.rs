//! A HOP request as a peer writes it (length prefix and protobuf), read and judged as
//! the circuit server's handler does: any bytes must give a request, a status to answer,
//! or a closed stream, with bounded reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::hop_request(data));
