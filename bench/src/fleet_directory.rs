//! The fleet scenario's directory cost: what `--fleet-reservations` reservations (and
//! their ends) cost the fleet's Redis, in memory and in commands.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};

use crate::peers::Transport;
use crate::redis_child::{dbsize, info_number, RedisChild};
use crate::relay_child::RelayChild;
use crate::reserver::Fleet as Reservers;
use crate::scenarios::{progress, Opts};

/// How long the nodes' idle Redis traffic is sampled (their markers: one command a
/// second each).
const IDLE_SAMPLE: Duration = Duration::from_secs(3);
/// How long the directory may take to list (or unlist) every reservation.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
/// Between the bench's DBSIZE polls.
const POLL_EVERY: Duration = Duration::from_millis(20);

pub struct DirectoryCost {
    pub reservations: usize,
    pub bytes_per_reservation: f64,
    pub commands_per_claim: f64,
    pub commands_per_release: f64,
    /// Which commands, per reservation: `SET ×1.00`.
    pub claim_mix: String,
    pub release_mix: String,
    /// Commands a second with no reservation coming or going.
    pub idle_per_s: f64,
}

impl DirectoryCost {
    pub fn json(&self) -> Value {
        json!({
            "reservations": self.reservations,
            "bytes_per_reservation": self.bytes_per_reservation,
            "commands_per_reservation": self.commands_per_claim,
            "commands_per_release": self.commands_per_release,
            "commands_per_reservation_by_name": self.claim_mix,
            "commands_per_release_by_name": self.release_mix,
            "idle_commands_per_s": self.idle_per_s,
        })
    }
}

/// Redis's counters at one moment.
struct Snapshot {
    at: Instant,
    used_memory: f64,
    commands: f64,
    /// `INFO commandstats` calls by command name.
    calls: BTreeMap<String, f64>,
}

/// Reads the counters with three commands (two read before `total_commands_processed`
/// is, one after).
async fn snapshot(c: &mut MultiplexedConnection) -> anyhow::Result<Snapshot> {
    let used_memory = info_number(c, "memory", "used_memory").await?;
    let commands = info_number(c, "stats", "total_commands_processed").await?;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .context("INFO commandstats")?;
    // cmdstat_set:calls=12,usec=…
    let calls = stats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_ascii_uppercase(), calls))
        })
        .collect();
    Ok(Snapshot {
        at: Instant::now(),
        used_memory,
        commands,
        calls,
    })
}

/// Commands per reservation between two snapshots, less the bench's own (`own`, and
/// its INFO and DBSIZE calls in the mix) and the idle rate; and the mix of the
/// relays' commands, e.g. `SET ×1.00, EVAL ×1.00`.
fn per_reservation(
    from: &Snapshot,
    to: &Snapshot,
    own: f64,
    idle_per_s: f64,
    n: usize,
) -> (f64, String) {
    let idle = idle_per_s * to.at.duration_since(from.at).as_secs_f64();
    let total = (to.commands - from.commands - own - idle) / n as f64;
    let mix: Vec<String> = to
        .calls
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "INFO" | "DBSIZE"))
        .filter_map(|(name, calls)| {
            let per = (calls - from.calls.get(name).copied().unwrap_or(0.0)) / n as f64;
            (per >= 0.05).then(|| format!("{name} ×{per:.2}"))
        })
        .collect();
    (total, mix.join(", "))
}

/// Directory entries of peers (not the nodes' markers).
async fn listed_peers(c: &mut MultiplexedConnection) -> anyhow::Result<usize> {
    let pattern = format!("{}*", dusk_relay::fleet::directory::PREFIX);
    let marker = format!("{}node:", dusk_relay::fleet::directory::PREFIX);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(c)
        .await
        .context("KEYS")?;
    Ok(keys.iter().filter(|k| !k.starts_with(&marker)).count())
}

/// Polls DBSIZE until `done` holds for it; counts the polls in `polls`.
async fn wait_keys(
    c: &mut MultiplexedConnection,
    polls: &mut f64,
    what: &str,
    done: impl Fn(u64) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        let keys = dbsize(c).await?;
        *polls += 1.0;
        if done(keys) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: {keys} keys in Redis after {SETTLE_WITHIN:?}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `opts.fleet_reservations` lightweight reservers on `node1`: Redis's memory and
/// commands per reservation, then per reservation's end once they all disconnect.
pub async fn directory_cost(
    redis: &RedisChild,
    node1: &RelayChild,
    opts: &Opts,
) -> anyhow::Result<DirectoryCost> {
    let n = opts.fleet_reservations;
    let mut c = redis.connect().await?;
    // The scenario's earlier clients are gone; their reservations' ends are written
    // as they come: wait until the directory lists no peer.
    let deadline = Instant::now() + SETTLE_WITHIN;
    while listed_peers(&mut c).await? > 0 {
        if Instant::now() > deadline {
            bail!("the directory still lists peers {SETTLE_WITHIN:?} after they left");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let keys = dbsize(&mut c).await?;
    // Between two snapshots the bench itself sends its DBSIZE polls and a snapshot's
    // three commands.
    let idle_from = snapshot(&mut c).await?;
    tokio::time::sleep(IDLE_SAMPLE).await;
    let before = snapshot(&mut c).await?;
    let idle_per_s = (before.commands - idle_from.commands - 3.0)
        / before.at.duration_since(idle_from.at).as_secs_f64();
    let addr = node1.addr(Transport::Tcp)?;
    progress("fleet", format!("directory: {n} reservations on node 1"));
    let mut reservers = Reservers::spawn(&addr, n, opts.client_processes)?;
    let tally = reservers
        .reserved(n.div_ceil(4).max(1), |k| {
            progress("fleet", format!("directory: {k} reserved"))
        })
        .await?;
    ensure!(
        tally.failed == 0 && tally.ok == n,
        "{} of {n} reservations failed: {}",
        tally.failed,
        tally.first_error.unwrap_or_default()
    );
    let mut polls = 0.0;
    wait_keys(&mut c, &mut polls, "listing the reservations", |k| {
        k >= keys + n as u64
    })
    .await?;
    let listed = snapshot(&mut c).await?;
    let (per_claim, claim_mix) = per_reservation(&before, &listed, polls + 3.0, idle_per_s, n);
    let bytes = (listed.used_memory - before.used_memory) / n as f64;
    drop(reservers); // their connections close: every reservation ends
    let mut polls = 0.0;
    wait_keys(&mut c, &mut polls, "unlisting the reservations", |k| {
        k <= keys
    })
    .await?;
    let released = snapshot(&mut c).await?;
    let (per_release, release_mix) =
        per_reservation(&listed, &released, polls + 3.0, idle_per_s, n);
    progress(
        "fleet",
        format!(
            "directory: {bytes:.0} bytes, {per_claim:.2} commands per reservation \
             ({claim_mix}); {per_release:.2} per end ({release_mix})"
        ),
    );
    Ok(DirectoryCost {
        reservations: n,
        bytes_per_reservation: bytes,
        commands_per_claim: per_claim,
        commands_per_release: per_release,
        claim_mix,
        release_mix,
        idle_per_s,
    })
}
