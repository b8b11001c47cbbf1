//! Scenarios 6 (capacity: many reservations held, then idle circuits, and the relay's
//! resident memory for them) and 7 (churn: new connections + reservations per second
//! until saturation). Both use the lightweight reservers of [`crate::reserver`] over
//! TCP, against dusk-relay and the baseline relay in turn, each a fresh child process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use libp2p::Multiaddr;
use serde_json::{json, Value};

use crate::peers::{within, BenchEnv, Transport, Via};
use crate::relay_child::{cpu_seconds, status_kib};
use crate::report::{measure_row, measure_table, percentile, ratio, Table};
use crate::reserver::{Fleet, Reserver, Tally};
use crate::scenarios::{progress, Opts};

/// Time for the relay to finish what a step started (identify and ping attempts on new
/// connections, freed buffers) before its RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

/// The figures of one relay in the capacity scenario (RSS in KiB).
struct Held {
    rss_idle: u64,
    rss_reserved: u64,
    rss_circuits: u64,
    rss_peak: u64,
    reserved: Tally,
    circuits: Tally,
    fill: Duration,
}

impl Held {
    fn per_reservation_kib(&self) -> f64 {
        ratio(
            self.rss_reserved as f64 - self.rss_idle as f64,
            self.reserved.ok as f64,
        )
    }

    fn per_circuit_kib(&self) -> f64 {
        ratio(
            self.rss_circuits as f64 - self.rss_reserved as f64,
            self.circuits.ok as f64,
        )
    }

    fn json(&self) -> Value {
        json!({
            "reservations_held": self.reserved.ok,
            "reservations_failed": self.reserved.failed,
            "first_reservation_error": self.reserved.first_error,
            "circuits_open": self.circuits.ok,
            "circuits_failed": self.circuits.failed,
            "first_circuit_error": self.circuits.first_error,
            "rss_idle_mib": mib(self.rss_idle),
            "rss_reserved_mib": mib(self.rss_reserved),
            "rss_total_mib": mib(self.rss_circuits),
            "rss_peak_mib": mib(self.rss_peak),
            "kib_per_reservation": self.per_reservation_kib(),
            "kib_per_circuit": self.per_circuit_kib(),
            "fill_seconds": self.fill.as_secs_f64(),
            "reservations_per_s_while_filling": self.reserved.ok as f64 / self.fill.as_secs_f64(),
        })
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One relay: its RSS idle, with `opts.reservations` reservations held, and with
/// `opts.idle_circuits` idle circuits between them too.
async fn hold(env: &BenchEnv, opts: &Opts, via: Via) -> anyhow::Result<Held> {
    let name = via.name();
    let relay = env.spawn_relay_sized(via, opts.reservations, opts.idle_circuits)?;
    let pid = relay.pid().to_string();
    let addr = relay.addr(Transport::Tcp)?;
    tokio::time::sleep(SETTLE).await;
    let rss_idle = status_kib(&pid, "VmRSS")?;
    progress(
        "capacity",
        format!("{name} (pid {pid}): RSS idle {:.1} MiB", mib(rss_idle)),
    );
    let start = Instant::now();
    let mut fleet = Fleet::spawn(&addr, opts.reservations, opts.client_processes)?;
    progress(
        "capacity",
        format!(
            "{name}: {} reservers in child processes {:?}",
            opts.reservations,
            fleet.pids()
        ),
    );
    let total = opts.reservations;
    let fill_limit = Duration::from_secs(60 + total as u64 / 100);
    let reserved = within(
        fill_limit,
        "the reservations",
        fleet.reserved((total / 10).max(1), |n| {
            progress("capacity", format!("{name}: {n}/{total} reserved"))
        }),
    )
    .await??;
    let fill = start.elapsed();
    tokio::time::sleep(SETTLE).await;
    let rss_reserved = status_kib(&pid, "VmRSS")?;
    progress(
        "capacity",
        format!(
            "{name}: {} reserved ({} failed{}) in {:.1} s; RSS {:.1} MiB",
            reserved.ok,
            reserved.failed,
            reserved
                .first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            fill.as_secs_f64(),
            mib(rss_reserved)
        ),
    );
    let circuit_limit = Duration::from_secs(60 + opts.idle_circuits as u64 / 50);
    let circuits = within(
        circuit_limit,
        "the idle circuits",
        fleet.circuits(opts.idle_circuits),
    )
    .await??;
    tokio::time::sleep(SETTLE).await;
    let rss_circuits = status_kib(&pid, "VmRSS")?;
    let rss_peak = status_kib(&pid, "VmHWM")?;
    progress(
        "capacity",
        format!(
            "{name}: {} idle circuits ({} failed{}); RSS {:.1} MiB, peak {:.1} MiB",
            circuits.ok,
            circuits.failed,
            circuits
                .first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            mib(rss_circuits),
            mib(rss_peak)
        ),
    );
    drop(fleet);
    drop(relay);
    Ok(Held {
        rss_idle,
        rss_reserved,
        rss_circuits,
        rss_peak,
        reserved,
        circuits,
        fill,
    })
}

/// Scenario 6: `--reservations` reservations held, then `--idle-circuits` idle circuits
/// between reserved peers; the relay's RSS in total and per reservation and circuit.
pub async fn capacity(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let dusk = hold(env, opts, Via::Dusk).await.context("dusk-relay")?;
    let base = hold(env, opts, Via::Baseline).await.context("baseline")?;
    let (n, c) = (opts.reservations, opts.idle_circuits);
    let met = |ok: bool| if ok { "met" } else { "missed" };
    // Every figure here (MiB, KiB, per second) to one decimal.
    let row = |label: &str, d: f64, b: f64, goal: &str| measure_row(label, d, b, 1, goal);
    let count_row = |label: String, d: &Tally, b: &Tally| {
        vec![
            label,
            format!("{} ({} failed)", d.ok, d.failed),
            format!("{} ({} failed)", b.ok, b.failed),
            String::new(),
            String::new(),
        ]
    };
    let total = mib(dusk.rss_circuits);
    let per_reservation = dusk.per_reservation_kib();
    let rows = vec![
        count_row(
            format!("reservations held (of {n})"),
            &dusk.reserved,
            &base.reserved,
        ),
        count_row(
            format!("idle circuits open (of {c})"),
            &dusk.circuits,
            &base.circuits,
        ),
        row("RSS idle (MiB)", mib(dusk.rss_idle), mib(base.rss_idle), ""),
        row(
            "RSS with the reservations (MiB)",
            mib(dusk.rss_reserved),
            mib(base.rss_reserved),
            "",
        ),
        row(
            "RSS with reservations and circuits (MiB)",
            total,
            mib(base.rss_circuits),
            &format!("≤ 256: {}", met(total <= 256.0)),
        ),
        row(
            "peak RSS (VmHWM, MiB)",
            mib(dusk.rss_peak),
            mib(base.rss_peak),
            "",
        ),
        row(
            "per reservation (KiB)",
            per_reservation,
            base.per_reservation_kib(),
            &format!("≤ 20: {}", met(per_reservation <= 20.0)),
        ),
        row(
            "per idle circuit (KiB)",
            dusk.per_circuit_kib(),
            base.per_circuit_kib(),
            "",
        ),
        row(
            "reservations/s while filling",
            dusk.reserved.ok as f64 / dusk.fill.as_secs_f64(),
            base.reserved.ok as f64 / base.fill.as_secs_f64(),
            "",
        ),
    ];
    let mut md = format!(
        "Capacity: {n} reservations held, then {c} idle circuits between reserved peers, \
         over TCP; a fresh relay child each; lightweight reservers (one identity and one \
         TCP + noise + yamux connection each, no Swarm; they answer STOP) in {} child \
         processes; RSS (VmRSS) read {} s after each step; per reservation = (RSS with \
         the reservations − RSS idle) ÷ reservations held, per circuit likewise. \
         dusk-relay runs the bench config (defaults, per-IP caps and per-IP rate limits \
         lifted); the baseline's max_reservations (libp2p default 128) is set to {} and \
         its max_circuits (default 16) to {}, its rate limiters cleared\n\n",
        opts.client_processes.min(n),
        SETTLE.as_secs(),
        n.max(128).max(2 * c),
        c.max(16)
    );
    md += &measure_table(rows);
    let value = json!({
        "transport": "tcp",
        "reservations": n,
        "idle_circuits": c,
        "client_processes": opts.client_processes.min(n),
        "dusk": dusk.json(),
        "baseline": base.json(),
        "kib_per_reservation_dusk_over_baseline": ratio(per_reservation, base.per_reservation_kib()),
        "rss_total_dusk_over_baseline": ratio(total, mib(base.rss_circuits)),
    });
    Ok((md, value))
}

/// Churn attempts in flight at most; beyond, an attempt is counted as shed (open loop:
/// the bench does not slow down for the relay).
const MAX_IN_FLIGHT: usize = 4096;
/// One connect + reserve may take this long before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One step of the churn ramp.
struct Step {
    offered: f64,
    seconds: f64,
    launched: usize,
    ok: usize,
    failed: usize,
    shed: usize,
    first_error: Option<String>,
    accepted_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    relay_cores: f64,
    bench_cores: f64,
}

impl Step {
    /// The relay did not keep up: under 90 % of the offered rate, or over 1 % failed.
    fn saturated(&self) -> bool {
        self.accepted_per_s < 0.9 * self.offered || (self.failed + self.shed) * 100 > self.launched
    }

    fn json(&self) -> Value {
        json!({
            "offered_per_s": self.offered,
            "seconds": self.seconds,
            "launched": self.launched,
            "accepted": self.ok,
            "failed": self.failed,
            "shed": self.shed,
            "first_error": self.first_error,
            "accepted_per_s": self.accepted_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "relay_cpu_cores": self.relay_cores,
            "bench_cpu_cores": self.bench_cores,
            "saturated": self.saturated(),
        })
    }
}

/// Offers `rate` new identities per second for `seconds` (open loop: each starts on
/// schedule whatever the others are doing), each connecting, reserving and
/// disconnecting once accepted; latency runs from its scheduled start to the accept.
async fn step(addr: &Multiaddr, pid: &str, rate: f64, seconds: f64) -> anyhow::Result<Step> {
    let own = std::process::id().to_string();
    let (relay_cpu, bench_cpu) = (cpu_seconds(pid)?, cpu_seconds(&own)?);
    let total = (rate * seconds).round().max(1.0) as usize;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let (mut launched, mut shed) = (0usize, 0usize);
    while launched < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
        while launched < due {
            let scheduled = start + Duration::from_secs_f64(launched as f64 / rate);
            launched += 1;
            if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                shed += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (addr, in_flight) = (addr.clone(), in_flight.clone());
            tasks.spawn(async move {
                let result = tokio::time::timeout(ATTEMPT_TIMEOUT, Reserver::reserve(&addr)).await;
                let latency = scheduled.elapsed();
                let done = Instant::now();
                // Accepted: now leave (the connection closes with the Reserver).
                let result = match result {
                    Ok(Ok(reserver)) => {
                        drop(reserver);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(_) => Err(format!("no reservation within {ATTEMPT_TIMEOUT:?}")),
                };
                in_flight.fetch_sub(1, Ordering::Relaxed);
                (result, latency, done)
            });
        }
    }
    let (mut ok, mut failed, mut first_error) = (0usize, 0usize, None);
    let mut latencies = Vec::with_capacity(total);
    let mut last_ok = start;
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            let (result, latency, done) = joined.map_err(|e| anyhow!("churn attempt: {e}"))?;
            match result {
                Ok(()) => {
                    ok += 1;
                    latencies.push(latency.as_secs_f64() * 1e3);
                    last_ok = last_ok.max(done);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        anyhow::Ok(())
    };
    within(ATTEMPT_TIMEOUT * 2, "the churn attempts", drain).await??;
    let wall = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let span = (last_ok - start).as_secs_f64().max(seconds);
    Ok(Step {
        offered: rate,
        seconds,
        launched,
        ok,
        failed,
        shed,
        first_error,
        accepted_per_s: ok as f64 / span,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        relay_cores: (cpu_seconds(pid)? - relay_cpu) / wall,
        bench_cores: (cpu_seconds(&own)? - bench_cpu) / wall,
    })
}

fn describe(name: &str, s: &Step) -> String {
    format!(
        "{name} at {:.0}/s: {:.0} accepted/s, p50 {:.1} ms, p99 {:.1} ms, {} failed, {} shed, \
         relay {:.2} cores, bench {:.2} cores{}",
        s.offered,
        s.accepted_per_s,
        s.p50_ms,
        s.p99_ms,
        s.failed,
        s.shed,
        s.relay_cores,
        s.bench_cores,
        s.first_error
            .as_deref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    )
}

/// Scenario 7: the churn ramp against each relay until it saturates, then both at half
/// dusk-relay's saturation rate for the latency.
pub async fn churn(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    // Up to MAX_IN_FLIGHT client sockets in this process.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        progress("churn", format!("cannot raise the open-file limit: {e}"));
    }
    let seconds = opts.churn_seconds as f64;
    // Every churn identity's reservation ends when it leaves; lift the baseline's count
    // and rate limiters all the same (a reservation outlives its connection briefly).
    let lift = 1_000_000;
    let mut relays = Vec::new();
    for via in [Via::Dusk, Via::Baseline] {
        let relay = env.spawn_relay_sized(via, lift, 1)?;
        let addr = relay.addr(Transport::Tcp)?;
        relays.push((via, relay, addr));
    }
    let mut ramps: Vec<Vec<Step>> = Vec::new();
    for (via, relay, addr) in &relays {
        let pid = relay.pid().to_string();
        let mut steps = Vec::new();
        for &rate in &opts.churn_rates {
            let s = step(addr, &pid, rate, seconds).await?;
            progress("churn", describe(via.name(), &s));
            let saturated = s.saturated();
            steps.push(s);
            tokio::time::sleep(Duration::from_secs(1)).await;
            if saturated {
                break;
            }
        }
        ramps.push(steps);
    }
    let saturation = |steps: &[Step]| {
        steps
            .iter()
            .map(|s| s.accepted_per_s)
            .fold(0.0f64, f64::max)
    };
    let reached = |steps: &[Step]| steps.iter().any(Step::saturated);
    let (dusk_sat, base_sat) = (saturation(&ramps[0]), saturation(&ramps[1]));
    let half = (dusk_sat / 2.0).max(1.0);
    let mut at_half = Vec::new();
    for (via, relay, addr) in &relays {
        let s = step(addr, &relay.pid().to_string(), half, 2.0 * seconds).await?;
        progress("churn", format!("half rate: {}", describe(via.name(), &s)));
        at_half.push(s);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(relays);

    let cell = |s: Option<&Step>| match s {
        Some(s) => [
            format!("{:.0}", s.accepted_per_s),
            format!("{:.1} / {:.1}", s.p50_ms, s.p99_ms),
            format!("{}", s.failed + s.shed),
            format!("{:.2}", s.relay_cores),
        ],
        None => ["—".into(), "—".into(), "—".into(), "—".into()],
    };
    let ramp_rows = opts
        .churn_rates
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < ramps[0].len().max(ramps[1].len()))
        .map(|(i, rate)| {
            let mut row = vec![format!("{rate:.0}")];
            row.extend(cell(ramps[0].get(i)));
            row.extend(cell(ramps[1].get(i)));
            row
        })
        .collect();
    let sat_label = |v: f64, steps: &[Step]| {
        if reached(steps) {
            format!("{v:.0}")
        } else {
            format!("≥ {v:.0} (not saturated)")
        }
    };
    let (hd, hb) = (&at_half[0], &at_half[1]);
    let at = format!("at {half:.0}/s");
    let latency_row = |quantile: &str, d: f64, b: f64| {
        measure_row(
            format!("{quantile} connect + reserve {at} (ms)"),
            d,
            b,
            1,
            "",
        )
    };
    let summary = vec![
        vec![
            "saturation (most accepted/s in the ramp)".to_string(),
            sat_label(dusk_sat, &ramps[0]),
            sat_label(base_sat, &ramps[1]),
            format!("{:.2}", ratio(dusk_sat, base_sat)),
            format!(
                "≥ 1000/s: {}",
                if dusk_sat >= 1000.0 { "met" } else { "missed" }
            ),
        ],
        latency_row("p50", hd.p50_ms, hb.p50_ms),
        latency_row("p99", hd.p99_ms, hb.p99_ms),
        vec![
            format!("accepted/s {at} (failed)"),
            format!("{:.0} ({})", hd.accepted_per_s, hd.failed + hd.shed),
            format!("{:.0} ({})", hb.accepted_per_s, hb.failed + hb.shed),
            String::new(),
            String::new(),
        ],
        measure_row(
            format!("relay CPU {at} (cores)"),
            hd.relay_cores,
            hb.relay_cores,
            2,
            "",
        ),
    ];
    let mut md = format!(
        "Churn: new connections + reservations per second over TCP, fresh identities \
         (lightweight reservers in the bench process: one TCP + noise + yamux connection, \
         HOP RESERVE, disconnect once accepted), open loop: each attempt starts on schedule \
         and its latency runs from its scheduled start to the accept; {seconds:.0} s per \
         step, the ramp stops at the first step under 90 % of the offered rate or with \
         over 1 % failed (timeout {ATTEMPT_TIMEOUT:?}, at most {MAX_IN_FLIGHT} in flight); \
         then both relays at half dusk-relay's saturation for {:.0} s. dusk-relay runs the \
         bench config (per-IP caps and per-IP rate limits lifted); the baseline's \
         max_reservations is lifted and its rate limiters cleared. Relay CPU in cores \
         (of this machine's); the bench's clients share the same cores\n\n",
        2.0 * seconds
    );
    md += &Table::new(&[
        "offered (/s)",
        "dusk-relay accepted/s",
        "dusk-relay p50 / p99 (ms)",
        "dusk-relay failed",
        "dusk-relay CPU (cores)",
        "baseline accepted/s",
        "baseline p50 / p99 (ms)",
        "baseline failed",
        "baseline CPU (cores)",
    ])
    .rows(ramp_rows)
    .render();
    md += "\n";
    md += &measure_table(summary);
    let value = json!({
        "transport": "tcp",
        "seconds_per_step": seconds,
        "saturation_per_s": {"dusk": dusk_sat, "baseline": base_sat},
        "saturated": {"dusk": reached(&ramps[0]), "baseline": reached(&ramps[1])},
        "dusk_over_baseline": ratio(dusk_sat, base_sat),
        "half_rate_per_s": half,
        "at_half_rate": {"dusk": hd.json(), "baseline": hb.json()},
        "p99_ms_at_half_rate": {"dusk": hd.p99_ms, "baseline": hb.p99_ms},
        "p50_ms_at_half_rate": {"dusk": hd.p50_ms, "baseline": hb.p50_ms},
        "ramp": {
            "dusk": ramps[0].iter().map(Step::json).collect::<Vec<_>>(),
            "baseline": ramps[1].iter().map(Step::json).collect::<Vec<_>>(),
        },
    });
    Ok((md, value))
}
