//! Memory: the relays' resident memory idle, with reservations and with circuits open.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::peers::{within, BenchEnv, Via};
use crate::relay_child::status_kib;
use crate::report::{ratio, Table};
use crate::scenarios::*;

/// Scenario 3: a fast sender and a slow reader through a fresh relay child; the relay's
/// resident memory growth (sampled every 10 ms) over its RSS before the transfer.
pub async fn memory(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let rate = opts.slow_read_mib * MIB;
    for &transport in &opts.transports {
        let mut growth = Vec::new();
        for via in [Via::Dusk, Via::Baseline] {
            let relay = env.spawn_relay(via)?;
            let pid = relay.pid().to_string();
            let mut p = pairs(env, via, Some(&relay), transport, 1).await?;
            let (mut a, mut b) = p[0].stream().await?;
            let before = status_kib(&pid, "VmRSS")?;
            let len = opts.bytes;
            let send = async move {
                let block = vec![0x3cu8; CHUNK];
                write_repeated(&mut a, &block, len).await
            };
            let slow_read = async move {
                let start = Instant::now();
                read_expecting(&mut b, len, async |_, got| {
                    let due = Duration::from_secs_f64(got as f64 / rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                })
                .await
            };
            let sample_pid = pid.clone();
            let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
            let sampler = tokio::spawn(async move {
                let mut peak = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Ok(rss) = status_kib(&sample_pid, "VmRSS") {
                                peak = peak.max(rss);
                            }
                        }
                        _ = &mut stop_rx => break peak,
                    }
                }
            });
            let limit = transfer_limit(len) + Duration::from_secs_f64(len as f64 / rate);
            within(limit, "the slow transfer", async {
                futures::try_join!(send, slow_read)
            })
            .await??;
            let _ = stop_tx.send(());
            let peak = sampler.await.map_err(|e| anyhow!("sampler: {e}"))?;
            let peak = peak.max(status_kib(&pid, "VmRSS")?);
            let grew = peak.saturating_sub(before) as f64 / 1024.0;
            progress(
                "memory",
                format!(
                    "{} {}: RSS {:.1} MiB before, peak {:.1} MiB, growth {grew:.1} MiB",
                    transport.name(),
                    via.name(),
                    before as f64 / 1024.0,
                    peak as f64 / 1024.0
                ),
            );
            growth.push((before as f64 / 1024.0, grew));
            drop(p);
        }
        let [(dusk_before, dusk), (base_before, base)] = [growth[0], growth[1]];
        rows.push(vec![
            transport.name().to_string(),
            format!("{dusk:.1}"),
            format!("{base:.1}"),
            format!("{:.2}", ratio(dusk, base)),
            if dusk <= 32.0 { "met" } else { "missed" }.to_string(),
        ]);
        json_rows.push(json!({
            "transport": transport.name(),
            "rss_growth_mib": {"dusk": dusk, "baseline": base},
            "rss_before_mib": {"dusk": dusk_before, "baseline": base_before},
            "dusk_over_baseline": ratio(dusk, base),
        }));
    }
    let mut md = format!(
        "Memory under load: {} sent as fast as possible to a reader taking {} MiB/s, \
         peak relay RSS growth (MiB)\n\n",
        size(opts.bytes),
        opts.slow_read_mib
    );
    md += &Table::new(&[
        "transport",
        "dusk-relay",
        "baseline",
        "dusk ÷ baseline",
        "dusk ≤ 32 MiB",
    ])
    .rows(rows)
    .render();
    Ok((
        md,
        json!({"bytes": opts.bytes, "slow_read_mib_per_s": opts.slow_read_mib, "transports": json_rows}),
    ))
}
