//! Start-up: how long the relay binary takes to become ready.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use crate::peers::{BenchEnv, Via};
use crate::report::{median, ratio, Table};
use crate::scenarios::*;

/// Scenario 8: the `dusk-relay` binary from process start to `dusk relay ready` with
/// an existing keypair and certificate, next to the bench's baseline relay child
/// (spawn to its `ready` line).
pub async fn startup(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let binary = crate::relay_child::relay_binary()?;
    let dir = env.dir.path().join("startup");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let runs = opts.repeats.max(5);
    let mut dusk = Vec::new();
    let mut baseline = Vec::new();
    // The first run creates the keypair and certificate; it is not counted.
    for i in 0..=runs {
        let t = tokio::task::spawn_blocking({
            let binary = binary.clone();
            let dir = dir.clone();
            move || time_to_ready(&binary, &dir)
        })
        .await
        .map_err(|e| anyhow!("start-up run: {e}"))??;
        let b = env.spawn_relay(Via::Baseline)?.startup;
        if i > 0 {
            progress(
                "startup",
                format!(
                    "run {i}/{runs}: dusk-relay {:.1} ms, baseline {:.1} ms",
                    t.as_secs_f64() * 1e3,
                    b.as_secs_f64() * 1e3
                ),
            );
            dusk.push(t.as_secs_f64() * 1e3);
            baseline.push(b.as_secs_f64() * 1e3);
        }
    }
    let (d, b) = (median(&dusk), median(&baseline));
    let mut md = format!(
        "Start-up: process start to every listener up (TCP, QUIC, WS, WSS on loopback), \
         existing keypair and certificate, median of {runs} runs (ms)\n\n"
    );
    md += &Table::new(&[
        "dusk-relay binary (to `dusk relay ready`)",
        "baseline relay child (to `ready`)",
        "dusk ÷ baseline",
        "goal ≤ 200 ms",
    ])
    .rows(vec![vec![
        format!("{d:.1}"),
        format!("{b:.1}"),
        format!("{:.2}", ratio(d, b)),
        if d <= 200.0 { "met" } else { "missed" }.to_string(),
    ]])
    .render();
    Ok((
        md,
        json!({"runs": runs, "ms": {"dusk": d, "baseline": b}, "samples_ms": {"dusk": dusk, "baseline": baseline}}),
    ))
}

fn time_to_ready(binary: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<Duration> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let start = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(dusk_relay::testing::relay_child_env(dir))
        .env("DUSK_RELAY_METRICS_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut seen = Vec::new();
    let mut ready = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.contains("dusk relay ready") {
            ready = Some(start.elapsed());
            break;
        }
        seen.push(line);
    }
    // Our own child, by its handle.
    let _ = child.kill();
    let _ = child.wait();
    ready.ok_or_else(|| {
        anyhow!(
            "{} exited before `dusk relay ready`; output:\n{}",
            binary.display(),
            seen.join("\n")
        )
    })
}
