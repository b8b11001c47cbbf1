//! A trusted load balancer's first bytes (PROXY protocol v1 text or v2 binary header),
//! read as a trusted connection's are before the swarm sees it: any bytes must give a
//! client address, the balancer's own, or a refusal, never reading past the header cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dusk_relay::fuzzing::proxy_header(data));
