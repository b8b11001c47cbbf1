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
    let Ok(text) = std::fs::read_to_string(RMEM_DEFAULT) else {
        return;
    };
    match advice(&text) {
        Some(Advice::TooSmall(bytes)) => warn!(
            "QUIC: the kernel's default UDP receive buffer is {} KiB (net.core.rmem_default); \
             under load it drops QUIC packets and circuits over QUIC slow down or time out: \
             set it to at least {} on the host (deploy/99-dusk-relay.conf, deploy/README.md)",
            bytes / 1024,
            RECOMMENDED_BYTES
        ),
        Some(Advice::Enough(bytes)) => {
            info!("QUIC: default UDP receive buffer {} KiB", bytes / 1024)
        }
        None => {}
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Advice {
    TooSmall(u64),
    Enough(u64),
}

fn advice(rmem_default: &str) -> Option<Advice> {
    let bytes: u64 = rmem_default.trim().parse().ok()?;
    Some(if bytes < RECOMMENDED_BYTES {
        Advice::TooSmall(bytes)
    } else {
        Advice::Enough(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_linux_default_is_too_small_and_the_recommended_value_is_enough() {
        assert_eq!(advice("212992\n"), Some(Advice::TooSmall(212_992)));
        assert_eq!(advice("4194304\n"), Some(Advice::Enough(4_194_304)));
        assert_eq!(advice("garbage"), None);
    }
}
