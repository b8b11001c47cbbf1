//! The gauges `/metrics` reads at each scrape instead of keeping them up to date.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::http::Health;

/// Gauges read when `/metrics` is scraped: resident memory and open descriptors with
/// their ceilings, and whether the relay is ready or draining. Counting descriptors
/// walks `/proc/self/fd`, too costly for every tick of the event loop at a hundred
/// thousand connections, and a scrape sees the value of that moment, not of the last
/// tick.
#[derive(Debug)]
pub struct Sampled {
    pub health: Arc<Health>,
    pub draining: Arc<AtomicBool>,
    /// `connections.max_memory_mib`; `None` (off) exports no limit.
    pub max_memory_bytes: Option<usize>,
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ready = self.health.is_ready();
        constant(
            &mut encoder,
            "ready",
            "1 while /readyz answers 200 (listeners up, not stopping)",
            i64::from(ready),
        )?;
        constant(
            &mut encoder,
            "draining",
            "1 from the first stop signal until the relay exits: no new reservations, open circuits finishing",
            i64::from(self.draining.load(Ordering::Relaxed)),
        )?;
        // The measure libp2p's memory ceiling compares against.
        if let Some(stats) = memory_stats::memory_stats() {
            constant(
                &mut encoder,
                "memory_resident_bytes",
                "Resident memory of the relay process (what the memory ceiling measures)",
                saturating_i64(stats.physical_mem as u64),
            )?;
        }
        if let Some(max) = self.max_memory_bytes {
            constant(
                &mut encoder,
                "memory_limit_bytes",
                "The memory ceiling (DUSK_RELAY_MAX_MEMORY_MIB): new connections are refused above it",
                saturating_i64(max as u64),
            )?;
        }
        // Linux only; elsewhere the series is absent rather than wrong.
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            constant(
                &mut encoder,
                "file_descriptors_open",
                "File descriptors the relay process holds open (each TCP, WS and WSS connection is one)",
                saturating_i64(entries.count() as u64),
            )?;
        }
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            constant(
                &mut encoder,
                "file_descriptors_limit",
                "The open-file limit (soft RLIMIT_NOFILE, raised to the hard limit at start); connections are refused above 80 % of it",
                saturating_i64(soft),
            )?;
        }
        Ok(())
    }
}

fn constant(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

/// `RLIM_INFINITY` is `u64::MAX`.
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
