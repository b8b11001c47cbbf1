//! Every ceiling that keeps one source from exhausting the relay.

pub mod bandwidth;
pub mod connections;
pub mod file_descriptors;
pub mod ip_tally;
pub mod relay_per_ip;
