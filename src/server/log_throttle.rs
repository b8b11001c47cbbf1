//! One `info` line per kind of refusal per interval. A flood is thousands of refusals a
//! second; a line for each would fill the operator's disk and bury everything else
//! (the flood is also an attack on the logs). The first refusal of a kind is logged at
//! once, later ones at `debug`, and the next `info` line says how many were folded into
//! it. The metrics count every refusal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// At most one `info` line per kind this often.
pub const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct LogThrottle {
    kinds: HashMap<&'static str, Kind>,
}

struct Kind {
    last: Instant,
    folded: u64,
}

impl LogThrottle {
    /// `Some(folded)` when a refusal of `kind` should be logged at `info` now, with the
    /// number of refusals since the previous `info` line of that kind; `None` when it
    /// should go to `debug` only.
    pub fn admit(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(kind) {
            None => {
                self.kinds.insert(
                    kind,
                    Kind {
                        last: now,
                        folded: 0,
                    },
                );
                Some(0)
            }
            Some(k) if now.duration_since(k.last) >= INTERVAL => {
                let folded = std::mem::take(&mut k.folded);
                k.last = now;
                Some(folded)
            }
            Some(k) => {
                k.folded += 1;
                None
            }
        }
    }
}

/// `" (and 41 more since the last report)"`, or nothing.
pub fn folded_suffix(folded: u64) -> String {
    if folded == 0 {
        String::new()
    } else {
        format!(" (and {folded} more since the last report)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_counting_the_rest() {
        let mut log = LogThrottle::default();
        let start = Instant::now();
        assert_eq!(log.admit("per_ip", start), Some(0));
        assert_eq!(log.admit("per_ip", start), None);
        assert_eq!(log.admit("per_ip", start + Duration::from_secs(1)), None);
        assert_eq!(log.admit("memory", start), Some(0), "kinds are separate");
        assert_eq!(log.admit("per_ip", start + INTERVAL), Some(2));
        assert_eq!(log.admit("per_ip", start + INTERVAL), None);
        assert_eq!(folded_suffix(0), "");
        assert_eq!(folded_suffix(3), " (and 3 more since the last report)");
    }
}
