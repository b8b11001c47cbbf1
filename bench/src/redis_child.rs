//! The fleet scenario's redis-server: a child process of the bench on a free loopback
//! port, persisting nothing, killed when dropped; and the few things the bench asks it
//! (INFO fields, the reservation directory's entries).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use libp2p::PeerId;
use redis::aio::MultiplexedConnection;

/// A fresh redis-server answers PING within milliseconds; this only turns a hang into
/// an error.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Fresh ports to try when another process grabs the one picked.
const PORT_ATTEMPTS: usize = 5;

pub struct RedisChild {
    child: Child,
    port: u16,
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisChild {
    /// A running redis-server (`--save "" --appendonly no`) with its files and log in
    /// `dir`, or `None` if redis-server is not installed.
    pub async fn start(dir: &Path) -> anyhow::Result<Option<RedisChild>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .context("no free loopback port")?
                .port();
            let log = std::fs::File::create(dir.join("redis.log"))
                .context("cannot create the redis-server log")?;
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("redis-server log")?)
                .stderr(log)
                .spawn();
            let child = match spawned {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).context("cannot run redis-server"),
                Ok(child) => child,
            };
            let mut redis = RedisChild { child, port };
            match redis.wait_ready().await {
                Ok(()) => return Ok(Some(redis)),
                // Most likely the port was taken between picking and binding it.
                Err(e) => failures.push(format!("port {port}: {e:#}")),
            }
        }
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        bail!("redis-server did not start: {}\n{log}", failures.join("; "))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited with {status}");
            }
            if let Ok(mut c) = self.connect().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok_and(|pong| pong == "PONG")
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("no PONG within {READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn connect(&self) -> anyhow::Result<MultiplexedConnection> {
        redis::Client::open(self.url())
            .context("redis URL")?
            .get_multiplexed_async_connection()
            .await
            .context("cannot connect to the bench's redis-server")
    }
}

/// A numeric field of `INFO <section>` (`used_memory`, `total_commands_processed`).
pub async fn info_number(
    c: &mut MultiplexedConnection,
    section: &str,
    field: &str,
) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(c)
        .await
        .with_context(|| format!("INFO {section}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no {field} in INFO {section}"))
}

pub async fn dbsize(c: &mut MultiplexedConnection) -> anyhow::Result<u64> {
    redis::cmd("DBSIZE").query_async(c).await.context("DBSIZE")
}

/// The node (mesh multiaddr) the directory names for `peer`, if any.
pub async fn listed(c: &mut MultiplexedConnection, peer: PeerId) -> anyhow::Result<Option<String>> {
    let key = format!(
        "{}{}",
        dusk_relay::fleet::directory::PREFIX,
        peer.to_base58()
    );
    redis::cmd("GET")
        .arg(key)
        .query_async(c)
        .await
        .context("GET a directory entry")
}

/// Polls every 5 ms until `check` holds for the directory's entry for `peer`, within
/// `limit`; returns the entry.
pub async fn wait_listed(
    c: &mut MultiplexedConnection,
    peer: PeerId,
    limit: Duration,
    check: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(node) = listed(c, peer).await? {
            if check(&node) {
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            bail!("{peer} not listed as expected within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
