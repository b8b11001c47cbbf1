//! The two relays under test, each a child process of this binary (`--serve dusk` or
//! `--serve baseline`) so its CPU time and memory can be read from `/proc/<pid>`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::peers::{Transport, EVENT_TIMEOUT};

/// A relay running as a child process of this binary. Killed (by its pid) when dropped;
/// it also exits by itself when its stdin closes, so it never outlives the bench.
pub struct RelayChild {
    child: Child,
    pub peer_id: PeerId,
    pub addrs: Vec<Multiaddr>,
    /// Where dusk-relay serves `/metrics`; none for the baseline.
    pub metrics_addr: Option<SocketAddr>,
    /// From spawn to the child's `ready` line.
    pub startup: Duration,
}

/// The relay child's command line: the bench binary itself, or run under the profiler
/// named by `DUSK_BENCH_RELAY_WRAPPER` (e.g. `heaptrack -o /tmp/relay`), split at
/// whitespace. Under a wrapper the pid the bench reads is the wrapper's, so its CPU and
/// memory columns are not the relay's: a profiling run, not a measuring one.
fn relay_command(exe: std::path::PathBuf) -> Command {
    let wrapper = std::env::var("DUSK_BENCH_RELAY_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    }
}

impl RelayChild {
    /// `reservations` 0: the baseline's default reservation count (or twice `circuits`).
    pub fn spawn(
        kind: &str,
        dir: &Path,
        circuits: usize,
        reservations: usize,
    ) -> anyhow::Result<RelayChild> {
        Self::spawn_with(kind, dir, circuits, reservations, &[])
    }

    /// [`spawn`](Self::spawn) with more flags for the child (`--fleet <redis URL>`).
    pub fn spawn_with(
        kind: &str,
        dir: &Path,
        circuits: usize,
        reservations: usize,
        extra: &[&str],
    ) -> anyhow::Result<RelayChild> {
        let exe = std::env::current_exe().context("cannot find the bench binary")?;
        let start = Instant::now();
        let mut child = relay_command(exe)
            .args([
                "--serve",
                kind,
                "--circuits",
                &circuits.to_string(),
                "--reservations",
                &reservations.max(1).to_string(),
                "--dir",
            ])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start the {kind} relay"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let ready = match read_ready(stdout) {
            Ok(found) => found,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.context(format!("the {kind} relay did not start")));
            }
        };
        Ok(RelayChild {
            child,
            peer_id: ready.peer_id,
            addrs: ready.addrs,
            metrics_addr: ready.metrics_addr,
            startup: start.elapsed(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a node dies: no goodbye to its peers, its Redis or its mesh; waits
    /// until the process is gone (the kernel has closed its sockets).
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("kill the relay child")?;
        self.child
            .wait()
            .context("wait for the killed relay child")?;
        Ok(())
    }

    /// The relay's address for `transport`, with `/p2p/<relay>`.
    pub fn addr(&self, transport: Transport) -> anyhow::Result<Multiaddr> {
        let addr = self
            .addrs
            .iter()
            .find(|a| transport.matches(a))
            .ok_or_else(|| anyhow!("the relay has no {} listener", transport.name()))?;
        Ok(addr.clone().with(Protocol::P2p(self.peer_id)))
    }
}

impl Drop for RelayChild {
    fn drop(&mut self) {
        // Under a profiler, let the relay exit by itself (it does when its stdin
        // closes) so the profiler can write its data; otherwise no need to wait.
        if std::env::var_os("DUSK_BENCH_RELAY_WRAPPER").is_none() {
            let _ = self.child.kill();
        }
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// What a relay child announced before `ready`.
struct Ready {
    peer_id: PeerId,
    addrs: Vec<Multiaddr>,
    metrics_addr: Option<SocketAddr>,
}

/// Reads `peer <id>`, `addr <multiaddr>` and `metrics <ip:port>` lines up to `ready`;
/// keeps draining the rest on a thread so the child never blocks on a full pipe.
fn read_ready(stdout: std::process::ChildStdout) -> anyhow::Result<Ready> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut peer = None;
        let mut addrs = Vec::new();
        let mut metrics_addr = None;
        let result = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => break Err(anyhow!("exited before it was ready")),
            };
            if let Some(id) = line.strip_prefix("peer ") {
                peer = id.parse::<PeerId>().ok();
            } else if let Some(addr) = line.strip_prefix("addr ") {
                match addr.parse::<Multiaddr>() {
                    Ok(addr) => addrs.push(addr),
                    Err(e) => break Err(anyhow!("bad address line {line:?}: {e}")),
                }
            } else if let Some(addr) = line.strip_prefix("metrics ") {
                match addr.parse::<SocketAddr>() {
                    Ok(addr) => metrics_addr = Some(addr),
                    Err(e) => break Err(anyhow!("bad metrics line {line:?}: {e}")),
                }
            } else if line == "ready" {
                break peer
                    .map(|peer_id| Ready {
                        peer_id,
                        addrs: std::mem::take(&mut addrs),
                        metrics_addr,
                    })
                    .ok_or_else(|| anyhow!("no peer line before ready"));
            }
        };
        let _ = tx.send(result);
        for _ in lines {}
    });
    rx.recv_timeout(EVENT_TIMEOUT)
        .map_err(|_| anyhow!("no ready line within {EVENT_TIMEOUT:?}"))?
}

/// A relay's CPU time so far (user + system, all threads), from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unexpected {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("unexpected {path}"))
    };
    // utime is field 14 and stime 15 (1-based); here index 11 and 12.
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux the bench targets (USER_HZ is fixed by
/// the kernel ABI), read from `getconf` when available.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: &str, field: &str) -> anyhow::Result<u64> {
    status_number(pid, field)
}

/// The number a `/proc/<pid>/status` field starts with (`Threads`, or a size in KiB).
pub fn status_number(pid: &str, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in {path}"))
}

/// The sibling `dusk-relay` binary (built by the same cargo profile).
pub fn relay_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench binary")?;
    let binary = exe.with_file_name("dusk-relay");
    if !binary.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --workspace)",
            binary.display()
        );
    }
    Ok(binary)
}
