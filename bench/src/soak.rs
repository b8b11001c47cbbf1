//! Scenario 9, soak: dusk-relay alone under a steady mixed load (reservations churning,
//! circuits carrying data and closing, rendezvous registering and discovering) for
//! `--soak-minutes`, sampled from outside every `--soak-sample-secs`. A leak check, not a
//! comparison: after warm-up its memory and descriptors should stay flat, its gauges
//! should return to zero once the load stops, and nothing within the caps should be
//! refused. Our own circuit path is new code; this is where a leak shows before users
//! see it.

mod growth;
mod load;
mod rendezvous;
mod report;
mod sample;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::Value;
use tokio::sync::watch;

use crate::peers::{BenchEnv, Via};
use crate::relay_child::RelayChild;
use crate::scenarios::{progress, Opts};
use load::Done;
use report::Run;
use sample::{Phase, Probe, Sample};

/// Time for the fresh relay to finish starting before the idle sample.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the rounds under way at the stop may take to finish; the rest are dropped
/// (their connections close) and counted as a failure.
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// How long the gauges may take to return to zero once the load stopped.
const ZERO_LIMIT: Duration = Duration::from_secs(30);
const ZERO_POLL: Duration = Duration::from_millis(250);

pub async fn soak(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let relay = env.spawn_relay(Via::Dusk)?;
    let metrics = relay
        .metrics_addr
        .ok_or_else(|| anyhow!("the dusk-relay child announced no metrics endpoint"))?;
    let probe = Probe::new(relay.pid(), metrics);
    progress(
        "soak",
        format!(
            "dusk-relay (pid {}, metrics at {metrics}) for {}, a sample every {} s: a leak \
             check of dusk-relay alone, no baseline",
            relay.pid(),
            report::clock(opts.soak),
            opts.soak_sample.as_secs()
        ),
    );
    tokio::time::sleep(SETTLE).await;
    let done = Arc::new(Done::default());
    let idle = probe
        .sample(Phase::Idle, Duration::ZERO, done.snapshot())
        .await?;
    progress("soak", report::describe(&idle));
    let mut samples = vec![idle];

    let start = Instant::now();
    samples.extend(load_and_sample(env, &relay, &probe, &done, start, opts).await?);

    let stopped_at = start.elapsed();
    let waited = Instant::now();
    let mut back_to_zero = None;
    let idle_tasks = samples.first().and_then(|s| s.gauges.tasks);
    while waited.elapsed() < ZERO_LIMIT {
        let gauges = probe.gauges().await?;
        // The relay samples its task count once a second: without waiting for it too,
        // the last row would show the load's tasks, not what was left.
        let tasks_settled = match (gauges.tasks, idle_tasks) {
            (Some(now), Some(idle)) => now <= idle,
            _ => true,
        };
        if gauges.idle() && tasks_settled {
            back_to_zero = Some(waited.elapsed());
            break;
        }
        tokio::time::sleep(ZERO_POLL).await;
    }
    let after = probe
        .sample(Phase::After, start.elapsed(), done.snapshot())
        .await?;
    progress(
        "soak",
        match back_to_zero {
            Some(t) => format!(
                "gauges back to zero {:.1} s after the load",
                t.as_secs_f64()
            ),
            None => format!(
                "gauges not back to zero {} s after the load: {}",
                ZERO_LIMIT.as_secs(),
                after.gauges.left().join(", ")
            ),
        },
    );
    progress("soak", report::describe(&after));
    samples.push(after);
    drop(relay);

    let run = Run {
        load: opts.soak,
        every: opts.soak_sample,
        samples,
        stopped_at,
        back_to_zero,
        zero_limit: ZERO_LIMIT,
        failures: done.failures(),
    };
    Ok((run.markdown(), run.json()))
}

/// Runs the load for `opts.soak`, sampling as it goes, then stops it: the loaded samples.
async fn load_and_sample(
    env: &BenchEnv,
    relay: &RelayChild,
    probe: &Probe,
    done: &Arc<Done>,
    start: Instant,
    opts: &Opts,
) -> anyhow::Result<Vec<Sample>> {
    let (stop, stopped) = watch::channel(false);
    let mut load = std::pin::pin!(load::run(env, relay, done, stopped));
    let sampled = tokio::select! {
        sampled = sample_until(probe, done, start, opts) => sampled,
        ended = &mut load => Err(match ended {
            Ok(()) => anyhow!("the load stopped before it was told to"),
            Err(e) => e.context("the load"),
        }),
    };
    let _ = stop.send(true);
    progress("soak", "load stopping: rounds under way finish");
    match tokio::time::timeout(STOP_LIMIT, load).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => done.fail("load", e),
        Err(_) => done.fail(
            "stop",
            anyhow!("rounds still running {STOP_LIMIT:?} after the stop were dropped"),
        ),
    }
    sampled
}

/// A sample every `opts.soak_sample` from `start`, and one at the end of the load.
async fn sample_until(
    probe: &Probe,
    done: &Done,
    start: Instant,
    opts: &Opts,
) -> anyhow::Result<Vec<Sample>> {
    let end = start + opts.soak;
    let mut samples = Vec::new();
    for k in 1u32.. {
        let at = start + opts.soak_sample * k;
        let last = at >= end;
        tokio::time::sleep_until(at.min(end).into()).await;
        let sample = probe
            .sample(Phase::Load, start.elapsed(), done.snapshot())
            .await?;
        progress("soak", report::describe(&sample));
        samples.push(sample);
        if last {
            break;
        }
    }
    Ok(samples)
}
