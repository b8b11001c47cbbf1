//! Fleet (issue 19, "Speed"): two dusk-relay nodes of one identity sharing one
//! redis-server (a child of the bench) and one fleet secret. Side by side in one run:
//! a circuit within node 1 and a circuit across the nodes (the listener reserved on
//! node 1, the dialer on node 2, forwarded one hop over the mesh): throughput, relay
//! CPU per byte and 1 KiB round trips; then what the directory costs Redis per
//! reservation, and how long after a node's death (SIGKILL) its clients can be
//! reached again.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{relay, Multiaddr};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};

use crate::fleet_directory::{directory_cost, DirectoryCost};
use crate::peers::{within, BenchEnv, Client, ClientBehaviourEvent, Pair, Tls, Transport, Via};
use crate::redis_child::{self, RedisChild};
use crate::relay_child::{cpu_seconds, RelayChild};
use crate::report::{median, percentile, ratio, Table};
use crate::scenarios::{exchange, pairs, ping_pong, progress, size, Opts, GIB, MIB};
use crate::serve::FLEET_SECRET;

/// How long the directory may take to list a reservation (it is written at once).
pub(crate) const LISTED_WITHIN: Duration = Duration::from_secs(10);
/// How long a node's clients may take to be reachable again before the bench gives up.
const REACH_AGAIN_WITHIN: Duration = Duration::from_secs(60);
/// Between a dialer's attempts to reach a peer whose node died.
const REDIAL_EVERY: Duration = Duration::from_millis(10);

const THROUGHPUT_GOAL: f64 = 0.7;
const LATENCY_GOAL: f64 = 1.5;

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

/// A node of the bench's fleet: `--serve dusk --fleet <redis URL>`.
fn spawn_node(env: &BenchEnv, redis: &RedisChild) -> anyhow::Result<RelayChild> {
    let url = redis.url();
    RelayChild::spawn_with("dusk", env.dir.path(), env.circuits, 0, &["--fleet", &url])
}

/// The fleet secret: 32 random bytes as 64 hex characters.
fn write_secret(dir: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the fleet secret")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(FLEET_SECRET);
    std::fs::write(&path, format!("{hex}\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

pub async fn fleet(env: &BenchEnv, opts: &Opts) -> anyhow::Result<(String, Value)> {
    let Some(redis) = RedisChild::start(&env.dir.path().join("redis")).await? else {
        let why = "redis-server is not installed (apt-get install -y redis-server)";
        progress("fleet", format!("SKIPPED: {why}"));
        let md = format!("Fleet (issue 19): SKIPPED, {why}\n");
        return Ok((md, json!({"skipped": why})));
    };
    write_secret(env.dir.path())?;
    // One at a time: the first creates the shared keypair, the second loads it.
    let node1 = spawn_node(env, &redis)?;
    let node2 = spawn_node(env, &redis)?;
    ensure!(
        node1.peer_id == node2.peer_id,
        "the nodes have one identity"
    );
    progress(
        "fleet",
        format!(
            "pids (for perf/top): node 1 {}, node 2 {}, redis-server {}",
            node1.pid(),
            node2.pid(),
            redis.pid()
        ),
    );
    let mut c = redis.connect().await?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for &transport in &opts.transports {
        let (row, value) = speed(env, opts, &mut c, [&node1, &node2], transport).await?;
        rows.push(row);
        json_rows.push(value);
    }
    let cost = directory_cost(&redis, &node1, opts).await?;
    let recovery = reach_again(env, opts, &redis, &node2).await?;
    Ok(render(opts, rows, json_rows, &cost, &recovery))
}

/// A pair whose listener reserves on `home` and whose dialer reaches it through
/// `other` (once the directory lists the listener), over `transport`.
async fn across(
    env: &BenchEnv,
    c: &mut MultiplexedConnection,
    home: &RelayChild,
    other: &RelayChild,
    transport: Transport,
) -> anyhow::Result<Pair> {
    let mut listener = Client::new(Tls::Trust(env.cert_der.clone()))?;
    let mut dialer = Client::new(Tls::Trust(env.cert_der.clone()))?;
    listener.reserve(&home.addr(transport)?).await?;
    redis_child::wait_listed(c, listener.peer_id, LISTED_WITHIN, |_| true).await?;
    let via = other.addr(transport)?;
    dialer.connect(via.clone(), other.peer_id).await?;
    dialer.dial_through(&via, listener.peer_id).await?;
    Ok(Pair { dialer, listener })
}

/// Throughput, relay CPU per GiB and round trips within node 1 and across the nodes,
/// over one transport: a table row and its JSON.
async fn speed(
    env: &BenchEnv,
    opts: &Opts,
    c: &mut MultiplexedConnection,
    [node1, node2]: [&RelayChild; 2],
    transport: Transport,
) -> anyhow::Result<(Vec<String>, Value)> {
    let t = transport.name();
    let within_node = pairs(env, Via::Dusk, Some(node1), transport, opts.circuits).await?;
    let mut across_nodes = Vec::new();
    for _ in 0..opts.circuits {
        let pair = across(env, c, node1, node2, transport).await;
        across_nodes.push(pair.with_context(|| format!("a pair across the nodes over {t}"))?);
    }
    let pids = [node1.pid().to_string(), node2.pid().to_string()];
    // [path]: the pairs, and the relays whose CPU it spends.
    let mut paths = [(within_node, &pids[..1]), (across_nodes, &pids[..])];
    for (p, _) in &mut paths {
        exchange(p, (1 << 20).min(opts.bytes)).await?; // warm-up
    }
    let names = ["within node 1", "across nodes"];
    let moved = 2.0 * opts.circuits as f64 * opts.bytes as f64;
    let mut rates = [Vec::new(), Vec::new()];
    let mut cpus = [Vec::new(), Vec::new()];
    for repeat in 0..opts.repeats {
        for k in 0..2 {
            let i = (k + repeat) % 2;
            let (p, relay_pids) = &mut paths[i];
            let cpu = |pids: &[String]| -> anyhow::Result<f64> {
                pids.iter().map(|p| cpu_seconds(p)).sum()
            };
            let before = cpu(relay_pids)?;
            let times = exchange(p, opts.bytes).await?.times;
            let spent = cpu(relay_pids)? - before;
            let wall = times.iter().max().copied().unwrap_or_default();
            let rate = opts.circuits as f64 * opts.bytes as f64 / MIB / wall.as_secs_f64();
            rates[i].push(rate);
            cpus[i].push(spent / (moved / GIB));
            progress(
                "fleet",
                format!(
                    "{t} repeat {}/{} {}: {rate:.1} MiB/s each way, relays' CPU {:.2} s/GiB",
                    repeat + 1,
                    opts.repeats,
                    names[i],
                    spent / (moved / GIB)
                ),
            );
        }
    }
    let (rate_in, rate_across) = (median(&rates[0]), median(&rates[1]));
    let (cpu_in, cpu_across) = (median(&cpus[0]), median(&cpus[1]));
    let [(within_node, _), (across_nodes, _)] = paths;
    let [(in50, in99), (x50, x99)] = round_trips(opts, [within_node, across_nodes]).await?;
    progress(
        "fleet",
        format!("{t} round trips: within p50 {in50:.0} µs, across p50 {x50:.0} µs"),
    );
    let throughput_ratio = ratio(rate_across, rate_in);
    let latency_ratio = ratio(x50, in50);
    let row = vec![
        t.to_string(),
        format!("{rate_in:.1}"),
        format!("{rate_across:.1}"),
        format!(
            "{throughput_ratio:.2} ({})",
            met(throughput_ratio >= THROUGHPUT_GOAL)
        ),
        format!("{in50:.0} / {in99:.0}"),
        format!("{x50:.0} / {x99:.0}"),
        format!(
            "{latency_ratio:.2} ({})",
            met(latency_ratio <= LATENCY_GOAL)
        ),
        format!("{cpu_in:.2} / {cpu_across:.2}"),
    ];
    let value = json!({
        "transport": t,
        "mib_per_s": {"within": rate_in, "across": rate_across},
        "across_over_within": throughput_ratio,
        "throughput_goal_met": throughput_ratio >= THROUGHPUT_GOAL,
        "relays_cpu_s_per_gib": {"within": cpu_in, "across": cpu_across},
        "p50_us": {"within": in50, "across": x50},
        "p99_us": {"within": in99, "across": x99},
        "p50_across_over_within": latency_ratio,
        "latency_goal_met": latency_ratio <= LATENCY_GOAL,
        "samples_mib_per_s": {"within": rates[0], "across": rates[1]},
    });
    Ok((row, value))
}

/// 1 KiB round trips on one stream per path (the first pair of each), in rounds that
/// take turns between the paths as the latency scenario's do: (p50, p99) in µs each.
async fn round_trips(opts: &Opts, paths: [Vec<Pair>; 2]) -> anyhow::Result<[(f64, f64); 2]> {
    let warmup = (opts.pings / 10).max(1);
    let mut open = Vec::new();
    for mut p in paths {
        let first = p.first_mut().ok_or_else(|| anyhow!("no pair"))?;
        let (a, mut b) = first.stream().await?;
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while b.read_exact(&mut buf).await.is_ok() {
                b.write_all(&buf).await?;
                b.flush().await?;
            }
            std::io::Result::Ok(())
        });
        open.push((p, a, echo, Vec::with_capacity(warmup + opts.pings)));
    }
    let rounds = opts.repeats.max(1);
    let total = warmup + opts.pings;
    for round in 0..rounds {
        let this_round = total * (round + 1) / rounds - total * round / rounds;
        for k in 0..open.len() {
            let n = open.len();
            let (_, a, _, rtts) = &mut open[(k + round) % n];
            let limit = Duration::from_secs(60 + this_round as u64 / 10);
            within(limit, "ping-pong", ping_pong(a, this_round, rtts)).await??;
        }
    }
    let mut stats = [(0.0, 0.0); 2];
    for (i, (pairs, mut a, echo, rtts)) in open.into_iter().enumerate() {
        a.close().await.context("close the ping stream")?;
        echo.await
            .map_err(|e| anyhow!("echo task: {e}"))?
            .context("echo")?;
        drop(pairs);
        let mut rtts = rtts[warmup.min(rtts.len())..].to_vec();
        rtts.sort_by(f64::total_cmp);
        stats[i] = (percentile(&rtts, 0.50), percentile(&rtts, 0.99));
    }
    Ok(stats)
}

/// One node's death and its client's return, in ms from the SIGKILL.
struct Recovery {
    /// The client saw its relay connection close.
    noticed: f64,
    /// The client's reservation on the surviving node was accepted.
    reserved: f64,
    /// The directory named the surviving node.
    listed: f64,
    /// The dialer's circuit through the surviving node was up and a round trip done.
    reached: f64,
    /// The dialer's circuit attempts that failed in between.
    failed_attempts: usize,
}

/// `opts.repeats` times: a fresh node (the victim, of the fleet's identity) holds A's
/// reservation and B, pinned to `node2`, talks to A across the fleet; the victim is
/// killed with SIGKILL; A redials `node2` and reserves there as soon as its relay
/// connection drops, as a dusk client does; B redials A through `node2` every
/// [`REDIAL_EVERY`] from when its circuit drops until one gets through.
async fn reach_again(
    env: &BenchEnv,
    opts: &Opts,
    redis: &RedisChild,
    node2: &RelayChild,
) -> anyhow::Result<Vec<Recovery>> {
    let transport = opts.transports.first().copied().unwrap_or(Transport::Tcp);
    let mut c = redis.connect().await?;
    let mut out = Vec::new();
    for round in 0..opts.repeats.max(1) {
        let mut victim = spawn_node(env, redis)?;
        let Pair {
            dialer: mut b,
            listener: mut a,
        } = across(env, &mut c, &victim, node2, transport).await?;
        let before = redis_child::wait_listed(&mut c, a.peer_id, LISTED_WITHIN, |_| true).await?;
        round_trip(&mut b, &mut a).await?;
        let (relay, a_id) = (node2.peer_id, a.peer_id);
        let (survivor, via) = (node2.addr(transport)?, node2.addr(transport)?);
        victim.kill()?;
        let killed = Instant::now();
        let ms = move || killed.elapsed().as_secs_f64() * 1e3;
        let a_side = async {
            a.next("the relay connection closed", |e| match e {
                SwarmEvent::ConnectionClosed {
                    peer_id,
                    num_established: 0,
                    ..
                } if peer_id == relay => Some(()),
                _ => None,
            })
            .await?;
            let noticed = ms();
            reserve_again(&mut a, &survivor).await?;
            anyhow::Ok((noticed, ms()))
        };
        let listed_side = async {
            let moved = |node: &str| node != before;
            redis_child::wait_listed(&mut c, a_id, REACH_AGAIN_WITHIN, moved).await?;
            anyhow::Ok(ms())
        };
        let b_side = async {
            b.next("the circuit closed", |e| match e {
                SwarmEvent::ConnectionClosed {
                    peer_id,
                    num_established: 0,
                    ..
                } if peer_id == a_id => Some(()),
                _ => None,
            })
            .await?;
            let mut failed = 0;
            let deadline = killed + REACH_AGAIN_WITHIN;
            while let Err(e) = b.dial_through(&via, a_id).await {
                failed += 1;
                if Instant::now() > deadline {
                    return Err(e.context(format!("still unreachable after {failed} attempts")));
                }
                tokio::time::sleep(REDIAL_EVERY).await;
            }
            anyhow::Ok(failed)
        };
        let ((noticed, reserved), listed, failed_attempts) =
            futures::try_join!(a_side, listed_side, b_side)?;
        round_trip(&mut b, &mut a).await?;
        let reached = ms();
        progress(
            "fleet",
            format!(
                "node death {}/{}: A noticed at {noticed:.0} ms, reserved on node 2 at \
                 {reserved:.0} ms, listed at {listed:.0} ms; B reached A at {reached:.0} ms \
                 ({failed_attempts} failed attempts)",
                round + 1,
                opts.repeats.max(1)
            ),
        );
        out.push(Recovery {
            noticed,
            reserved,
            listed,
            reached,
            failed_attempts,
        });
    }
    Ok(out)
}

/// A reservation on the relay at `relay_addr`, told apart from the events of the
/// reservation that just ended by its listener id.
async fn reserve_again(client: &mut Client, relay_addr: &Multiaddr) -> anyhow::Result<()> {
    let circuit = relay_addr.clone().with(Protocol::P2pCircuit);
    let id = client.call(move |s| s.listen_on(circuit)).await??;
    client
        .next("the reservation on node 2", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { .. },
            )) => Some(Ok(())),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if listener_id == id => Some(Err(anyhow!("reservation refused: {reason:?}"))),
            SwarmEvent::ListenerError { listener_id, error } if listener_id == id => {
                Some(Err(anyhow!("reservation failed: {error}")))
            }
            _ => None,
        })
        .await?
}

/// A fresh stream from `b` to `a` and one 1 KiB round trip on it.
async fn round_trip(b: &mut Client, a: &mut Client) -> anyhow::Result<()> {
    let peer = a.peer_id;
    let (out, inbound) = futures::future::join(b.open_stream(peer), a.accept_stream()).await;
    let (mut out, mut inbound) = (out?, inbound?);
    let msg = [0x5au8; 1024];
    let ping = async {
        let mut buf = [0u8; 1024];
        out.write_all(&msg).await?;
        out.flush().await?;
        out.read_exact(&mut buf).await?;
        std::io::Result::Ok(())
    };
    let pong = async {
        let mut buf = [0u8; 1024];
        inbound.read_exact(&mut buf).await?;
        inbound.write_all(&buf).await?;
        inbound.flush().await
    };
    within(Duration::from_secs(30), "a round trip", async {
        futures::try_join!(ping, pong)
    })
    .await?
    .context("round trip")?;
    Ok(())
}

fn render(
    opts: &Opts,
    rows: Vec<Vec<String>>,
    json_rows: Vec<Value>,
    cost: &DirectoryCost,
    recovery: &[Recovery],
) -> (String, Value) {
    let med = |f: fn(&Recovery) -> f64| median(&recovery.iter().map(f).collect::<Vec<_>>());
    let reached: Vec<f64> = recovery.iter().map(|r| r.reached).collect();
    let worst = reached.iter().copied().fold(f64::NAN, f64::max);
    let circuits = if opts.circuits == 1 {
        "one circuit".to_string()
    } else {
        format!("{} circuits at once (aggregate)", opts.circuits)
    };
    let mut md = format!(
        "Fleet (issue 19): two dusk-relay nodes of one identity, one redis-server, one \
         fleet secret. Within: both clients on node 1. Across: the listener reserved on \
         node 1, the dialer on node 2, the circuit forwarded one hop over the mesh. \
         Throughput: {circuits}, {} each way at once, median of {} repeats (MiB/s each \
         way); 1 KiB ping-pong, {} round trips per path in {} rounds taking turns (µs, \
         p50 / p99); the relays' CPU (node 1; node 1 + node 2 across) per GiB relayed\n\n",
        size(opts.bytes),
        opts.repeats,
        opts.pings,
        opts.repeats
    );
    md += &Table::new(&[
        "transport",
        "within (MiB/s)",
        "across (MiB/s)",
        "across ÷ within (goal ≥ 0.7)",
        "within p50 / p99",
        "across p50 / p99",
        "across p50 ÷ within p50 (goal ≤ 1.5)",
        "relays' CPU s/GiB: within / across",
    ])
    .rows(rows)
    .render();
    md += &format!(
        "\nDirectory and a node's death: {} reservations (lightweight reservers on node 1 \
         over TCP) weighed in Redis (INFO used_memory; total_commands_processed less the \
         bench's own commands and the idle rate, {:.1}/s, of the nodes' markers); a node \
         killed (SIGKILL) {} times: its client redials node 2 and reserves there as soon \
         as its relay connection drops, and a client of node 2 redials it every {} ms from \
         when its circuit drops (ms from the kill, medians)\n\n",
        cost.reservations,
        cost.idle_per_s,
        recovery.len(),
        REDIAL_EVERY.as_millis()
    );
    md += &Table::new(&["measure", "value", "goal"])
        .rows(vec![
            vec![
                "Redis memory per reservation (bytes)".into(),
                format!("{:.0}", cost.bytes_per_reservation),
                String::new(),
            ],
            vec![
                "Redis commands per reservation".into(),
                format!("{:.2} ({})", cost.commands_per_claim, cost.claim_mix),
                String::new(),
            ],
            vec![
                "Redis commands per reservation's end".into(),
                format!("{:.2} ({})", cost.commands_per_release, cost.release_mix),
                String::new(),
            ],
            vec![
                "node killed → its client reserved on node 2 (ms)".into(),
                format!("{:.0}", med(|r| r.reserved)),
                String::new(),
            ],
            vec![
                "node killed → directory names node 2 (ms)".into(),
                format!("{:.0}", med(|r| r.listed)),
                String::new(),
            ],
            vec![
                "node killed → reachable again through node 2 (ms, median / max)".into(),
                format!("{:.0} / {worst:.0}", median(&reached)),
                String::new(),
            ],
        ])
        .render();
    let value = json!({
        "bytes_each_way": opts.bytes,
        "circuits": opts.circuits,
        "repeats": opts.repeats,
        "pings": opts.pings,
        "goals": {"throughput_across_over_within_min": THROUGHPUT_GOAL, "p50_across_over_within_max": LATENCY_GOAL},
        "transports": json_rows,
        "directory": cost.json(),
        "node_death": {
            "rounds": recovery.len(),
            "redial_every_ms": REDIAL_EVERY.as_millis() as u64,
            "reach_again_ms": {"median": median(&reached), "max": worst, "samples": reached},
            "noticed_ms": med(|r| r.noticed),
            "reserved_again_ms": med(|r| r.reserved),
            "listed_again_ms": med(|r| r.listed),
            "failed_attempts": recovery.iter().map(|r| r.failed_attempts).collect::<Vec<_>>(),
        },
    });
    (md, value)
}
