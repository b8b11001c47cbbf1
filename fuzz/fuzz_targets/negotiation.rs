//! The multistream-select messages the relay writes on a stream, split as reads and
//! writes split them: the parser that tells circuit streams from others.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::negotiation(data));
