//! The scenarios. Each measures dusk-relay, the baseline relay and (where it applies) a
//! direct connection side by side in one run, and returns a markdown table and JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde_json::{json, Value};

use crate::peers::{within, BenchEnv, Pair, Transport, Via};
use crate::relay_child::RelayChild;
use crate::report::{percentile, ratio, Table};

pub(crate) const MIB: f64 = 1024.0 * 1024.0;
pub(crate) const GIB: f64 = 1024.0 * MIB;
pub(crate) const CHUNK: usize = 64 * 1024;

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
    /// How long the soak's load runs, and how often it samples the relay.
    pub soak: Duration,
    pub soak_sample: Duration,
    /// Reservations the fleet scenario weighs the directory with.
    pub fleet_reservations: usize,
}

pub fn progress(scenario: &str, msg: impl std::fmt::Display) {
    eprintln!("[{scenario}] {msg}");
}

/// How long moving `bytes` may take before the bench calls it a hang (1 MiB/s at worst).
pub(crate) fn transfer_limit(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / (1024 * 1024))
}

/// Sends `len` bytes and, at the same time, reads until EOF and checks `len` arrived;
/// adds what arrives to `received` as it arrives.
pub(crate) async fn send_and_receive(
    stream: libp2p::Stream,
    len: u64,
    received: &AtomicU64,
) -> anyhow::Result<()> {
    let (mut reader, mut writer) = stream.split();
    let block: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + 13) as u8).collect();
    futures::try_join!(
        write_repeated(&mut writer, &block, len),
        read_expecting(&mut reader, len, async |n, _| {
            received.fetch_add(n, Ordering::Relaxed);
        })
    )?;
    Ok(())
}

/// Writes `len` bytes to `writer`, `block` after `block` (the last one cut short), then
/// closes it.
pub(crate) async fn write_repeated(
    writer: &mut (impl AsyncWrite + Unpin),
    block: &[u8],
    len: u64,
) -> anyhow::Result<()> {
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        writer.write_all(&block[..n]).await.context("write")?;
        left -= n as u64;
    }
    writer.close().await.context("close")
}

/// Reads `reader` until EOF, [`CHUNK`] bytes at most at a time, and checks `len` bytes
/// arrived; after each read awaits `on_read(n, total)`: the bytes just read, and all
/// read so far.
pub(crate) async fn read_expecting(
    reader: &mut (impl AsyncRead + Unpin),
    len: u64,
    mut on_read: impl AsyncFnMut(u64, u64),
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = reader.read(&mut buf).await.context("read")? as u64;
        if n == 0 {
            break;
        }
        got += n;
        on_read(n, got).await;
    }
    ensure!(got == len, "received {got} bytes, expected {len}");
    Ok(())
}

/// What one exchange measured, per pair.
pub(crate) struct Exchanged {
    /// Each pair's time to move its bytes both ways.
    pub(crate) times: Vec<Duration>,
    /// When the first pair finished, and the bytes each pair had received by then
    /// (both ends): the window in which every pair was competing.
    first_done: (Duration, Vec<u64>),
}

impl Exchanged {
    /// Per-pair throughput while all pairs were moving data: min ÷ max (1.00 = equal
    /// shares), and the slowest and fastest pair's MiB/s each way.
    pub(crate) fn fairness(&self) -> (f64, f64, f64) {
        let (at, bytes) = &self.first_done;
        let min = bytes.iter().copied().min().unwrap_or(0) as f64;
        let max = bytes.iter().copied().max().unwrap_or(0) as f64;
        let each_way = |b: f64| b / 2.0 / MIB / at.as_secs_f64();
        (ratio(min, max), each_way(min), each_way(max))
    }
}

/// Every pair moves `len` bytes each way at once.
pub(crate) async fn exchange(pairs: &mut [Pair], len: u64) -> anyhow::Result<Exchanged> {
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

pub(crate) async fn pairs(
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

pub(crate) const VIAS: [Via; 3] = [Via::Direct, Via::Dusk, Via::Baseline];

/// dusk-relay and the baseline relay, one child process each, shared by every path of a
/// scenario that measures all of [`VIAS`].
pub(crate) struct Relays {
    pub(crate) dusk: RelayChild,
    pub(crate) baseline: RelayChild,
}

impl Relays {
    pub(crate) fn spawn(env: &BenchEnv) -> anyhow::Result<Relays> {
        let dusk = env.spawn_relay(Via::Dusk)?;
        let baseline = env.spawn_relay(Via::Baseline)?;
        Ok(Relays { dusk, baseline })
    }

    /// The relay a pair over `via` goes through; none for a direct pair.
    pub(crate) fn get(&self, via: Via) -> Option<&RelayChild> {
        match via {
            Via::Direct => None,
            Via::Dusk => Some(&self.dusk),
            Via::Baseline => Some(&self.baseline),
        }
    }
}

/// Scenario 5: 1 KiB ping-pong over one stream, relayed and direct.
pub async fn latency(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    const MSG: usize = 1024;
    let warmup = (opts.pings / 10).max(1);
    let relays = Relays::spawn(env)?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for &transport in &opts.transports {
        // One echoing stream per path; the round trips then run in rounds that take
        // turns between the paths (rotating which goes first), so a burst of load from
        // elsewhere on the machine falls on all three alike.
        let mut paths = Vec::new();
        for via in VIAS {
            let mut p = pairs(env, via, relays.get(via), transport, 1).await?;
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
pub(crate) async fn ping_pong(
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
