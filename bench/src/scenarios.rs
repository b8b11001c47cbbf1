//! The scenarios. Each measures dusk-relay, the baseline relay and (where it applies) a
//! direct connection side by side in one run, and returns a markdown table and JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use futures::{AsyncReadExt, AsyncWriteExt};
use serde_json::{json, Value};

use crate::peers::{cpu_seconds, status_kib, within, BenchEnv, Pair, RelayChild, Transport, Via};
use crate::report::{median, percentile, ratio, Table};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;
const CHUNK: usize = 64 * 1024;

pub struct Opts {
    pub transports: Vec<Transport>,
    pub bytes: u64,
    pub repeats: usize,
    pub circuits: usize,
    pub pings: usize,
    pub slow_read_mib: f64,
    pub reservations: usize,
    pub idle_circuits: usize,
    pub client_processes: usize,
    pub churn_rates: Vec<f64>,
    pub churn_seconds: usize,
}

pub fn progress(scenario: &str, msg: impl std::fmt::Display) {
    eprintln!("[{scenario}] {msg}");
}

/// How long moving `bytes` may take before the bench calls it a hang (1 MiB/s at worst).
fn transfer_limit(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / (1024 * 1024))
}

/// Sends `len` bytes and, at the same time, reads until EOF and checks `len` arrived;
/// adds what arrives to `received` as it arrives.
async fn send_and_receive(
    stream: libp2p::Stream,
    len: u64,
    received: &AtomicU64,
) -> anyhow::Result<()> {
    let (mut reader, mut writer) = stream.split();
    let send = async move {
        let block: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + 13) as u8).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            writer.write_all(&block[..n]).await.context("write")?;
            left -= n as u64;
        }
        writer.close().await.context("close")?;
        anyhow::Ok(())
    };
    let receive = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            let n = reader.read(&mut buf).await.context("read")?;
            if n == 0 {
                break;
            }
            got += n as u64;
            received.fetch_add(n as u64, Ordering::Relaxed);
        }
        ensure!(got == len, "received {got} bytes, expected {len}");
        anyhow::Ok(())
    };
    futures::try_join!(send, receive)?;
    Ok(())
}

/// What one exchange measured, per pair.
struct Exchanged {
    /// Each pair's time to move its bytes both ways.
    times: Vec<Duration>,
    /// When the first pair finished, and the bytes each pair had received by then
    /// (both ends): the window in which every pair was competing.
    first_done: (Duration, Vec<u64>),
}

impl Exchanged {
    /// Per-pair throughput while all pairs were moving data: min ÷ max (1.00 = equal
    /// shares), and the slowest and fastest pair's MiB/s each way.
    fn fairness(&self) -> (f64, f64, f64) {
        let (at, bytes) = &self.first_done;
        let min = bytes.iter().copied().min().unwrap_or(0) as f64;
        let max = bytes.iter().copied().max().unwrap_or(0) as f64;
        let each_way = |b: f64| b / 2.0 / MIB / at.as_secs_f64();
        (ratio(min, max), each_way(min), each_way(max))
    }
}

/// Every pair moves `len` bytes each way at once.
async fn exchange(pairs: &mut [Pair], len: u64) -> anyhow::Result<Exchanged> {
    let mut streams = Vec::new();
    for pair in pairs.iter_mut() {
        streams.push(pair.stream().await?);
    }
    let received: Vec<AtomicU64> = streams.iter().map(|_| AtomicU64::new(0)).collect();
    let first_done = OnceLock::new();
    let start = Instant::now();
    let transfers = streams.into_iter().enumerate().map(|(i, (a, b))| {
        let (received, first_done) = (&received, &first_done);
        async move {
            futures::try_join!(
                send_and_receive(a, len, &received[i]),
                send_and_receive(b, len, &received[i])
            )?;
            let done = start.elapsed();
            first_done.get_or_init(|| {
                let bytes = received.iter().map(|r| r.load(Ordering::Relaxed));
                (done, bytes.collect::<Vec<_>>())
            });
            anyhow::Ok(done)
        }
    });
    let times = within(
        transfer_limit(len),
        "the transfer",
        futures::future::try_join_all(transfers),
    )
    .await??;
    let first_done = first_done
        .into_inner()
        .ok_or_else(|| anyhow!("no pair to exchange bytes"))?;
    Ok(Exchanged { times, first_done })
}

async fn pairs(
    env: &BenchEnv,
    via: Via,
    relay: Option<&RelayChild>,
    transport: Transport,
    n: usize,
) -> anyhow::Result<Vec<Pair>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            match relay {
                Some(relay) => Pair::relayed(env, relay, transport).await,
                None => Pair::direct(env, transport).await,
            }
            .with_context(|| format!("{} pair over {}", via.name(), transport.name()))?,
        );
    }
    Ok(out)
}

const VIAS: [Via; 3] = [Via::Direct, Via::Dusk, Via::Baseline];

/// Scenarios 1 and 2: throughput per transport and CPU per byte.
pub async fn throughput(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let dusk = env.spawn_relay(Via::Dusk)?;
    let baseline = env.spawn_relay(Via::Baseline)?;
    let own_pid = std::process::id().to_string();
    progress(
        "throughput",
        format!(
            "relay pids (for perf/top): dusk-relay {}, baseline {}",
            dusk.pid(),
            baseline.pid()
        ),
    );
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    let mut fairness_rows = Vec::new();
    let mut json_rows = Vec::new();
    let moved = 2.0 * opts.circuits as f64 * opts.bytes as f64;
    for &transport in &opts.transports {
        let t = transport.name();
        let mut sets = Vec::new();
        for via in VIAS {
            let relay = match via {
                Via::Direct => None,
                Via::Dusk => Some(&dusk),
                Via::Baseline => Some(&baseline),
            };
            let mut p = pairs(env, via, relay, transport, opts.circuits).await?;
            // Warm-up: windows grown, code paged in.
            exchange(&mut p, (1 << 20).min(opts.bytes)).await?;
            sets.push((via, relay.map(|r| r.pid().to_string()), p));
        }
        // [via] -> (MiB/s each way, CPU s/GiB, fairness) per repeat
        let mut rates = vec![Vec::new(); VIAS.len()];
        let mut cpus = vec![Vec::new(); VIAS.len()];
        let mut fairness = vec![Vec::new(); VIAS.len()];
        // [via] -> (min ÷ max, slowest, fastest pair's MiB/s each way) per repeat
        let mut shares = vec![Vec::new(); VIAS.len()];
        let mut endpoint_cpus = vec![Vec::new(); VIAS.len()];
        for repeat in 0..opts.repeats {
            // Rotate the order so no path always runs first (or last) in a repeat.
            for k in 0..VIAS.len() {
                let i = (k + repeat) % VIAS.len();
                let (via, relay_pid, p) = &mut sets[i];
                // The relay's CPU for relayed paths; both endpoints' (this process,
                // nothing else busy) for the direct path.
                let pid = relay_pid.clone().unwrap_or_else(|| own_pid.clone());
                let cpu_before = cpu_seconds(&pid)?;
                let endpoints_before = cpu_seconds(&own_pid)?;
                let exchanged = exchange(p, opts.bytes).await?;
                shares[i].push(exchanged.fairness());
                let times = exchanged.times;
                let cpu = cpu_seconds(&pid)? - cpu_before;
                let endpoints = cpu_seconds(&own_pid)? - endpoints_before;
                endpoint_cpus[i].push(endpoints / (moved / GIB));
                let wall = times.iter().max().copied().unwrap_or_default();
                let fastest = times.iter().min().copied().unwrap_or_default();
                let rate = opts.circuits as f64 * opts.bytes as f64 / MIB / wall.as_secs_f64();
                rates[i].push(rate);
                cpus[i].push(cpu / (moved / GIB));
                fairness[i].push(fastest.as_secs_f64() / wall.as_secs_f64());
                progress(
                    "throughput",
                    format!(
                        "{t} repeat {}/{} {}: {rate:.1} MiB/s each way, {:.2} CPU s/GiB",
                        repeat + 1,
                        opts.repeats,
                        via.name(),
                        cpu / (moved / GIB)
                    ),
                );
            }
        }
        let m = |v: &Vec<f64>| median(v);
        let (direct, dusk_r, base_r) = (m(&rates[0]), m(&rates[1]), m(&rates[2]));
        let (cpu_direct, cpu_dusk, cpu_base) = (m(&cpus[0]), m(&cpus[1]), m(&cpus[2]));
        let (ends_dusk, ends_base) = (m(&endpoint_cpus[1]), m(&endpoint_cpus[2]));
        rows.push(vec![
            t.to_string(),
            format!("{dusk_r:.1}"),
            format!("{base_r:.1}"),
            format!("{direct:.1}"),
            format!("{:.2}", ratio(dusk_r, base_r)),
            format!("{:.2}", ratio(dusk_r, direct)),
            format!("{:.2}", ratio(base_r, direct)),
        ]);
        cpu_rows.push(vec![
            t.to_string(),
            format!("{cpu_dusk:.2}"),
            format!("{cpu_base:.2}"),
            format!("{cpu_direct:.2}"),
            format!("{:.2}", ratio(cpu_dusk, cpu_direct)),
            format!("{:.2}", ratio(cpu_base, cpu_direct)),
            format!("{ends_dusk:.2}"),
            format!("{ends_base:.2}"),
        ]);
        let mut entry = json!({
            "transport": t,
            "mib_per_s": {"dusk": dusk_r, "baseline": base_r, "direct": direct},
            "dusk_over_baseline": ratio(dusk_r, base_r),
            "dusk_over_direct": ratio(dusk_r, direct),
            "baseline_over_direct": ratio(base_r, direct),
            "cpu_s_per_gib": {"dusk": cpu_dusk, "baseline": cpu_base, "direct_endpoints": cpu_direct},
            "cpu_dusk_over_direct": ratio(cpu_dusk, cpu_direct),
            "cpu_baseline_over_direct": ratio(cpu_base, cpu_direct),
            "endpoints_cpu_s_per_gib": {"dusk": ends_dusk, "baseline": ends_base, "direct": cpu_direct},
            "samples_mib_per_s": {"direct": rates[0], "dusk": rates[1], "baseline": rates[2]},
        });
        if opts.circuits > 1 {
            let share = |i: usize, k: usize| {
                let v: Vec<f64> = shares[i]
                    .iter()
                    .map(|s: &(f64, f64, f64)| [s.0, s.1, s.2][k])
                    .collect();
                median(&v)
            };
            let (fair_dusk, fair_base, fair_direct) = (share(1, 0), share(2, 0), share(0, 0));
            fairness_rows.push(vec![
                t.to_string(),
                format!("{dusk_r:.1} / {base_r:.1} / {direct:.1}"),
                format!(
                    "{fair_dusk:.2} ({})",
                    if fair_dusk >= 0.5 { "met" } else { "missed" }
                ),
                format!("{fair_base:.2}"),
                format!("{fair_direct:.2}"),
                format!("{:.2} – {:.2}", share(1, 1), share(1, 2)),
                format!("{:.2} – {:.2}", share(2, 1), share(2, 2)),
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    m(&fairness[1]),
                    m(&fairness[2]),
                    m(&fairness[0])
                ),
            ]);
            entry["aggregate_mib_per_s"] =
                json!({"dusk": dusk_r, "baseline": base_r, "direct": direct});
            entry["fairness_min_over_max"] =
                json!({"dusk": fair_dusk, "baseline": fair_base, "direct": fair_direct});
            entry["per_circuit_mib_per_s"] = json!({
                "dusk": {"min": share(1, 1), "max": share(1, 2)},
                "baseline": {"min": share(2, 1), "max": share(2, 2)},
                "direct": {"min": share(0, 1), "max": share(0, 2)},
            });
            entry["fairness_fastest_over_slowest"] = json!({
                "direct": m(&fairness[0]), "dusk": m(&fairness[1]), "baseline": m(&fairness[2]),
            });
        }
        json_rows.push(entry);
    }
    let circuits = if opts.circuits == 1 {
        "one circuit".to_string()
    } else {
        format!("{} circuits at once (aggregate)", opts.circuits)
    };
    let mut md = format!(
        "Throughput: {circuits}, {} each way at once, median of {} repeats (MiB/s each way)\n\n",
        size(opts.bytes),
        opts.repeats
    );
    md += &Table::new(&[
        "transport",
        "dusk-relay",
        "baseline",
        "direct",
        "dusk ÷ baseline (goal ≥ 1.10)",
        "dusk ÷ direct (goal ≥ 0.65)",
        "baseline ÷ direct",
    ])
    .rows(rows)
    .render();
    md += "\nCPU per byte: relay CPU seconds (user+system) per GiB relayed (both directions), \
           and both endpoints of a direct connection together per GiB; the last two columns \
           are both endpoints' CPU per GiB when relayed (they also run the circuit's own \
           noise + yamux)\n\n";
    md += &Table::new(&[
        "transport",
        "dusk-relay (s/GiB)",
        "baseline (s/GiB)",
        "direct endpoints (s/GiB)",
        "dusk ÷ direct (goal ≤ 1.2)",
        "baseline ÷ direct",
        "endpoints via dusk-relay (s/GiB)",
        "endpoints via baseline (s/GiB)",
    ])
    .rows(cpu_rows)
    .render();
    if !fairness_rows.is_empty() {
        md += &format!(
            "\nFairness: {} circuits (pairs) at once; per-circuit throughput while all were \
             still moving data (what each had received when the first finished), slowest ÷ \
             fastest (1.00 = equal shares), and its range in MiB/s each way; the first \
             circuit done ÷ the last one's time; aggregate MiB/s each way; medians of the \
             repeats\n\n",
            opts.circuits
        );
        md += &Table::new(&[
            "transport",
            "aggregate MiB/s: dusk-relay / baseline / direct",
            "dusk-relay min ÷ max (goal ≥ 0.5)",
            "baseline min ÷ max",
            "direct min ÷ max",
            "dusk-relay per circuit (MiB/s)",
            "baseline per circuit (MiB/s)",
            "first done ÷ last done: dusk-relay / baseline / direct",
        ])
        .rows(fairness_rows)
        .render();
    }
    let value = json!({
        "bytes_each_way": opts.bytes,
        "circuits": opts.circuits,
        "repeats": opts.repeats,
        "transports": json_rows,
    });
    Ok((md, value))
}

/// Scenario 5: 1 KiB ping-pong over one stream, relayed and direct.
pub async fn latency(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    const MSG: usize = 1024;
    let warmup = (opts.pings / 10).max(1);
    let dusk = env.spawn_relay(Via::Dusk)?;
    let baseline = env.spawn_relay(Via::Baseline)?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for &transport in &opts.transports {
        // One echoing stream per path; the round trips then run in rounds that take
        // turns between the paths (rotating which goes first), so a burst of load from
        // elsewhere on the machine falls on all three alike.
        let mut paths = Vec::new();
        for via in VIAS {
            let relay = match via {
                Via::Direct => None,
                Via::Dusk => Some(&dusk),
                Via::Baseline => Some(&baseline),
            };
            let mut p = pairs(env, via, relay, transport, 1).await?;
            let (a, mut b) = p[0].stream().await?;
            let echo = tokio::spawn(async move {
                let mut buf = [0u8; MSG];
                loop {
                    if b.read_exact(&mut buf).await.is_err() {
                        break; // the pinging end closed
                    }
                    b.write_all(&buf).await?;
                    b.flush().await?;
                }
                std::io::Result::Ok(())
            });
            paths.push((p, a, echo, Vec::with_capacity(warmup + opts.pings)));
        }
        let rounds = opts.repeats.max(1);
        let total = warmup + opts.pings;
        for round in 0..rounds {
            let this_round = total * (round + 1) / rounds - total * round / rounds;
            for k in 0..paths.len() {
                let (_, a, _, rtts) = &mut paths[(k + round) % VIAS.len()];
                within(
                    Duration::from_secs(60 + this_round as u64 / 10),
                    "ping-pong",
                    ping_pong(a, this_round, rtts),
                )
                .await??;
            }
        }
        let mut stats = Vec::new();
        for (via, (pair, mut a, echo, rtts)) in VIAS.into_iter().zip(paths) {
            a.close().await.context("close the ping stream")?;
            echo.await
                .map_err(|e| anyhow!("echo task: {e}"))?
                .context("echo")?;
            drop(pair);
            // The first `warmup` of each path's round trips are not counted.
            let mut rtts = rtts[warmup.min(rtts.len())..].to_vec();
            rtts.sort_by(f64::total_cmp);
            let (p50, p99) = (percentile(&rtts, 0.50), percentile(&rtts, 0.99));
            progress(
                "latency",
                format!(
                    "{} {}: p50 {p50:.0} µs, p99 {p99:.0} µs",
                    transport.name(),
                    via.name()
                ),
            );
            stats.push((p50, p99));
        }
        let [(d50, d99), (u50, u99), (b50, b99)] = [stats[0], stats[1], stats[2]];
        rows.push(vec![
            transport.name().to_string(),
            format!("{u50:.0} / {u99:.0}"),
            format!("{b50:.0} / {b99:.0}"),
            format!("{d50:.0} / {d99:.0}"),
            format!("{:.2}", ratio(u50, d50)),
            format!("{:.2}", ratio(u50, b50)),
        ]);
        json_rows.push(json!({
            "transport": transport.name(),
            "p50_us": {"dusk": u50, "baseline": b50, "direct": d50},
            "p99_us": {"dusk": u99, "baseline": b99, "direct": d99},
            "dusk_p50_over_direct": ratio(u50, d50),
            "dusk_p50_over_baseline": ratio(u50, b50),
        }));
    }
    let mut md = format!(
        "Latency: 1 KiB ping-pong on one stream per path, {} round trips after {warmup} warm-up, \
         in {} rounds taking turns between the paths (µs, p50 / p99)\n\n",
        opts.pings, opts.repeats
    );
    md += &Table::new(&[
        "transport",
        "dusk-relay",
        "baseline",
        "direct",
        "dusk p50 ÷ direct p50 (goal ≤ 2)",
        "dusk p50 ÷ baseline p50",
    ])
    .rows(rows)
    .render();
    Ok((md, json!({"pings": opts.pings, "transports": json_rows})))
}

/// `n` 1 KiB round trips on `stream` (echoed by the other end); appends each in µs.
async fn ping_pong(
    stream: &mut libp2p::Stream,
    n: usize,
    rtts: &mut Vec<f64>,
) -> anyhow::Result<()> {
    let msg = [0xa5u8; 1024];
    let mut buf = [0u8; 1024];
    for _ in 0..n {
        let start = Instant::now();
        stream.write_all(&msg).await.context("ping write")?;
        stream.flush().await.context("ping flush")?;
        stream.read_exact(&mut buf).await.context("ping read")?;
        rtts.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(())
}

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
                let mut left = len;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    a.write_all(&block[..n]).await.context("write")?;
                    left -= n as u64;
                }
                a.close().await.context("close")?;
                anyhow::Ok(())
            };
            let slow_read = async move {
                let start = Instant::now();
                let mut buf = vec![0u8; CHUNK];
                let mut got = 0u64;
                loop {
                    let n = b.read(&mut buf).await.context("read")?;
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                    let due = Duration::from_secs_f64(got as f64 / rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                ensure!(got == len, "received {got} bytes, expected {len}");
                anyhow::Ok(())
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

/// Scenario 8: the `dusk-relay` binary from process start to `dusk relay ready` with
/// an existing keypair and certificate, next to the bench's baseline relay child
/// (spawn to its `ready` line).
pub async fn startup(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let binary = crate::peers::relay_binary()?;
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

/// `256 MiB`, `1 KiB`, `100 B`.
pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}
