//! The `dusk-relay` binary as a child process, its output read line by line.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{within, EVENT_TIMEOUT};

/// The binary with a clean environment: loopback only, OS-assigned ports, files in `dir`.
pub fn relay_command(dir: &Path) -> Command {
    relay_command_under(dir, &[])
}

/// The binary run by a wrapper command (`wrapper[0]` with `wrapper[1..]`, then the
/// binary), in the same clean environment as [`relay_command`].
pub fn relay_command_under(dir: &Path, wrapper: &[&str]) -> Command {
    let binary = env!("CARGO_BIN_EXE_dusk-relay");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .env_clear()
        .envs(dusk_relay::testing::relay_child_env(dir))
        // Open circuits hold a stop for at most this long (tests/drain.rs covers drains).
        .env("DUSK_RELAY_DRAIN_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The relay binary running, its output lines arriving on a channel.
pub struct RelayProcess {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
}

impl RelayProcess {
    /// `command` started, once it has said it is ready.
    pub async fn ready(command: Command) -> RelayProcess {
        let mut relay = RelayProcess::spawn(command);
        relay.line_containing("dusk relay ready").await;
        relay
    }

    /// [`Self::ready`] with the WebSocket listeners off (TCP and QUIC stay).
    pub async fn ready_without_websockets(mut command: Command) -> RelayProcess {
        command
            .env("DUSK_RELAY_WS_PORT", "off")
            .env("DUSK_RELAY_WSS_PORT", "off");
        RelayProcess::ready(command).await
    }

    /// The listen addresses (with `/p2p/<relay>`), one per listener, from the
    /// `relay address:` lines seen so far (wait for "dusk relay ready" first); announced
    /// external addresses are left out.
    pub fn listen_addrs(&self) -> Vec<libp2p::Multiaddr> {
        self.seen
            .iter()
            .filter_map(|l| l.split_once("relay address: ").map(|(_, a)| a.trim()))
            .filter(|a| !a.ends_with("(announced)"))
            .map(|a| {
                a.parse()
                    .unwrap_or_else(|e| panic!("relay address {a:?}: {e}"))
            })
            .collect()
    }

    /// The listen address for `transport`, from [`Self::listen_addrs`].
    pub fn listen_addr(&self, transport: super::Transport) -> libp2p::Multiaddr {
        self.listen_addrs()
            .into_iter()
            .find(|a| transport.matches(a))
            .unwrap_or_else(|| panic!("no {transport:?} address in {:?}", self.seen))
    }

    /// The metrics endpoint from the start-up lines seen so far.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.seen
            .iter()
            .find_map(|l| l.split_once("metrics and health endpoint: http://"))
            .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in {:?}", self.seen))
    }

    pub fn spawn(mut command: Command) -> RelayProcess {
        let mut child = command.spawn().expect("spawn dusk-relay");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for reader in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(reader).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        RelayProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it.
    pub async fn line_containing(&mut self, needle: &str) -> String {
        let seen = &mut self.seen;
        let lines = &mut self.lines;
        within(EVENT_TIMEOUT, needle, async {
            loop {
                let line = lines
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("relay exited; output:\n{}", seen.join("\n")));
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
    }

    /// Waits until every one of `needles` has appeared in a line, in any order (lines
    /// read earlier count too).
    pub async fn lines_containing_all(&mut self, needles: &[String]) {
        let (lines, seen) = (&mut self.lines, &mut self.seen);
        let missing = |seen: &[String]| {
            needles
                .iter()
                .filter(|n| !seen.iter().any(|l| l.contains(n.as_str())))
                .count()
        };
        within(EVENT_TIMEOUT, &needles.join(", "), async {
            while missing(seen) > 0 {
                let line = lines
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("relay exited; output:\n{}", seen.join("\n")));
                seen.push(line);
            }
        })
        .await
    }

    /// Reads the rest of the output into `seen`, until the relay has exited and both
    /// pipes are closed.
    pub async fn rest(&mut self) {
        let (lines, seen) = (&mut self.lines, &mut self.seen);
        within(EVENT_TIMEOUT, "the relay's output to end", async {
            while let Some(line) = lines.recv().await {
                seen.push(line);
            }
        })
        .await
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    pub async fn exit_status(&mut self) -> ExitStatus {
        within(EVENT_TIMEOUT, "relay exit", self.child.wait())
            .await
            .expect("wait")
    }
}

/// Runs the binary to its exit; returns the status and everything it printed.
pub async fn run_to_exit(command: &mut Command) -> (ExitStatus, String) {
    let output = within(EVENT_TIMEOUT, "relay exit", command.output())
        .await
        .expect("run dusk-relay");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, text)
}

pub fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    line.split_once(marker)
        .map(|(_, rest)| rest.trim())
        .unwrap_or_else(|| panic!("no {marker:?} in {line}"))
}
