//! An address from a registrant's signed record, against the circuit-through-this-relay
//! rule, and the source-IP reading every per-IP cap uses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::circuit_address(data));
