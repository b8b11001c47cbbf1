//! A forwarded-circuit request as another node of the fleet writes it on a mesh stream
//! (length prefix and protobuf: two peer ids), read as the destination node reads it:
//! any bytes must give a request or nothing, reading at most one capped message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::mesh_request(data));
