//! The open-file limit. Every TCP, WebSocket and WSS connection is a file descriptor;
//! distributions start services with a soft limit of 1024, which a public relay passes
//! long before its connection cap. So the soft limit is raised to the hard limit at
//! start, and new connections are refused above [`BUDGET_PERCENT`] of it (counted by
//! [`crate::limits::connections`]) so the rest stays free for accepting, health checks and
//! files.

use tracing::{info, warn};

/// The share of the open-file limit connections may take.
pub const BUDGET_PERCENT: u64 = 80;

/// Descriptors the process holds besides connections: listeners, the metrics endpoint,
/// the runtime, the certificate watch, logs.
const RESERVED: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns how many connections
/// may hold a descriptor; `None` where the limit cannot be read (no budget enforced).
pub fn raise_and_budget() -> Option<usize> {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!("cannot read or raise the open-file limit ({e}); connections are capped by DUSK_MAX_CONNECTIONS only");
            return None;
        }
    };
    let budget = budget_for(limit);
    info!("open-file limit: {limit}; connections holding a descriptor are refused above {budget}");
    Some(budget)
}

fn budget_for(limit: u64) -> usize {
    let budget = (limit.saturating_mul(BUDGET_PERCENT) / 100).saturating_sub(RESERVED);
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_most_of_the_limit_minus_the_process_own() {
        assert_eq!(budget_for(1024), 755);
        assert_eq!(budget_for(1_048_576), 838_796);
        assert_eq!(budget_for(10), 1);
    }
}
