//! The kernel's default UDP receive buffer. One UDP socket carries every QUIC
//! connection, and neither libp2p-quic nor quinn lets the relay set `SO_RCVBUF` on it, so
//! the socket gets `net.core.rmem_default` (208 KiB on stock Linux). Under load the
//! kernel drops the datagrams that do not fit (`RcvbufErrors` in `/proc/net/snmp`); QUIC
//! recovers, but slowly: in the 100-circuit benchmark (BENCHMARKS.md) 7 % of datagrams
//! were dropped, circuits got unequal shares and some QUIC connections hit their idle
//! timeout. The operator raises the sysctl (`deploy/99-dusk-relay.conf`); the relay
//! says so at start.

use tracing::{info, warn};

/// What `deploy/99-dusk-relay.conf` sets: enough that the 100-circuit benchmark's QUIC
/// runs pass with 2.6 % of datagrams dropped, where 208 KiB dropped 7 % and failed.
pub const RECOMMENDED_BYTES: u64 = 4 * 1024 * 1024;

const RMEM_DEFAULT: &str = "/proc/sys/net/core/rmem_default";

/// Logs the default UDP receive buffer once at start: a warning below
/// [`RECOMMENDED_BYTES`], nothing where it cannot be read (not Linux).
pub fn log_at_start() {
    let Some(bytes) = std::fs::read_to_string(RMEM_DEFAULT)
        .ok()
        .and_then(|text| parse_bytes(&text))
    else {
        return;
    };
    if bytes < RECOMMENDED_BYTES {
        warn!(
            "QUIC: the kernel's default UDP receive buffer is {} KiB (net.core.rmem_default); \
             under load it drops QUIC packets and circuits over QUIC slow down or time out: \
             set it to at least {RECOMMENDED_BYTES} on the host (deploy/99-dusk-relay.conf, \
             deploy/README.md)",
            bytes / 1024
        );
    } else {
        info!("QUIC: default UDP receive buffer {} KiB", bytes / 1024);
    }
}

fn parse_bytes(sysctl_value: &str) -> Option<u64> {
    sysctl_value.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sysctl_value_and_nothing_else() {
        assert_eq!(parse_bytes("212992\n"), Some(212_992));
        assert_eq!(parse_bytes("4194304\n"), Some(RECOMMENDED_BYTES));
        assert_eq!(parse_bytes("garbage"), None);
    }
}
