//! The dusk client as it ships (libp2p 0.54.1), `interop/dusk-client-0.54`, driven from
//! tests: built once into `<target dir>/interop`, its milestones read as JSON lines from
//! its stdout, commands written to its stdin; and the relay binary it talks to.
//! `DUSK_INTEROP_RUST_LOG` sets the clients' `RUST_LOG` (their logs go to stderr).

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::process::*;

/// Bound on each milestone; a hang becomes a failure, nothing waits this long on success.
pub const MILESTONE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on building the client (libp2p 0.54 from scratch takes minutes on 2 cores).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Bytes pushed through the circuit in each direction.
pub const BULK_BYTES: u64 = 4 * 1024 * 1024;
/// The client's first redial delay after losing the relay; it doubles on each failure.
pub const FIRST_RETRY_MS: u64 = 500;

/// Builds the 0.54 client (once per test process; cargo's lock serialises the tests'
/// builds and the later ones find it fresh). Output goes to this test's stderr.
pub async fn client_binary() -> PathBuf {
    let main_target = Path::new(env!("CARGO_BIN_EXE_dusk-relay"))
        .parent()
        .and_then(Path::parent)
        .expect("the relay binary sits in <target dir>/<profile>/");
    let target_dir = main_target.join("interop");
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/interop/dusk-client-0.54/Cargo.toml"
    );
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let stderr = || {
        use std::os::fd::AsFd;
        Stdio::from(
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .expect("dup stderr"),
        )
    };
    eprintln!("building the dusk 0.54 client: {cargo} build --release --locked --manifest-path {manifest} --target-dir {}", target_dir.display());
    let mut command = Command::new(cargo);
    // The test harness sets this crate's CARGO_PKG_*, CARGO_MANIFEST_DIR, …; some build
    // scripts (ring's) rerun when those change, so left in they would rebuild part of
    // the client whenever it was last built from a shell. Build as a shell would.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name)
        {
            command.env_remove(&*name);
        }
    }
    let status = tokio::time::timeout(
        BUILD_TIMEOUT,
        command
            .args([
                "build",
                "--release",
                "--locked",
                "--manifest-path",
                manifest,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .stdin(Stdio::null())
            .stdout(stderr())
            .stderr(stderr())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .unwrap_or_else(|_| panic!("building the dusk 0.54 client took over {BUILD_TIMEOUT:?}"))
    .expect("run cargo");
    assert!(
        status.success(),
        "building the dusk 0.54 client ({manifest}) failed: {status}; its output is above"
    );
    target_dir.join("release").join("dusk-client-054")
}

/// A free port on 127.0.0.1 for both TCP and UDP (the relay's QUIC shares the number).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The relay binary on loopback (TCP + QUIC only); `port` 0 lets the OS choose.
pub struct Relay {
    pub process: RelayProcess,
    pub peer_id: PeerId,
    pub tcp_port: u16,
    /// The one IP it listens on.
    pub ip: std::net::Ipv4Addr,
}

impl Relay {
    pub async fn start(dir: &Path, port: u16) -> Relay {
        Self::start_with(dir, port, std::net::Ipv4Addr::LOCALHOST, &[]).await
    }

    /// On `ip` only, with `env` added (fleet mode, a shared keypair).
    pub async fn start_with(
        dir: &Path,
        port: u16,
        ip: std::net::Ipv4Addr,
        env: &[(&str, String)],
    ) -> Relay {
        let mut command = relay_command(dir);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command
            .env("DUSK_RELAY_LISTEN_IPS", ip.to_string())
            .env("DUSK_RELAY_PORT", port.to_string())
            .env("DUSK_RELAY_WS_PORT", "off")
            .env("DUSK_RELAY_WSS_PORT", "off")
            .env("DUSK_RELAY_METRICS_ADDR", "off");
        let mut process = RelayProcess::spawn(command);
        let peer_id: PeerId = after(&process.line_containing("peer id: ").await, "peer id: ")
            .parse()
            .expect("a peer id");
        process.line_containing("dusk relay ready").await;
        let tcp_port = process
            .seen
            .iter()
            .filter(|l| l.contains("relay address: "))
            .filter_map(|l| {
                let addr: Multiaddr = after(l, "relay address: ")
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                addr.iter().find_map(|p| match p {
                    Protocol::Tcp(port) => Some(port),
                    _ => None,
                })
            })
            .next()
            .unwrap_or_else(|| panic!("no TCP relay address in:\n{}", process.seen.join("\n")));
        if port != 0 {
            assert_eq!(tcp_port, port, "the relay listens on the port it was given");
        }
        Relay {
            process,
            peer_id,
            tcp_port,
            ip,
        }
    }

    pub fn ip4_addr(&self) -> Multiaddr {
        format!(
            "/ip4/{}/tcp/{}/p2p/{}",
            self.ip, self.tcp_port, self.peer_id
        )
        .parse()
        .unwrap()
    }

    pub fn dns4_addr(&self) -> Multiaddr {
        format!("/dns4/localhost/tcp/{}/p2p/{}", self.tcp_port, self.peer_id)
            .parse()
            .unwrap()
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(mut self) {
        self.process.signal(libc::SIGTERM);
        let status = self.process.exit_status().await;
        assert!(status.success(), "SIGTERM exits 0, got {status}");
    }
}

/// Events that never happen in a passing run.
pub const FATAL: [&str; 6] = [
    "register_failed",
    "discover_failed",
    "send_failed",
    "receive_failed",
    "stream_failed",
    "error",
];

/// One running 0.54 client: its JSON lines, consumed in any order by [`Self::expect`].
pub struct DuskClient {
    pub name: &'static str,
    pub peer_id: PeerId,
    pub relay_addr: Multiaddr,
    pub _child: Child,
    pub stdin: ChildStdin,
    pub lines: mpsc::UnboundedReceiver<Value>,
    /// Received but not yet matched by an `expect`.
    pub pending: VecDeque<Value>,
    /// Every line, for failure messages.
    pub seen: Vec<String>,
}

impl DuskClient {
    pub async fn start(
        binary: &Path,
        name: &'static str,
        relay_addr: Multiaddr,
        community: &str,
    ) -> DuskClient {
        Self::start_under(binary, name, relay_addr, community, &[]).await
    }

    /// Run by `wrapper` (a program and its first arguments, the client's path after
    /// them), e.g. in a mount namespace with its own hosts file.
    pub async fn start_under(
        binary: &Path,
        name: &'static str,
        relay_addr: Multiaddr,
        community: &str,
        wrapper: &[&str],
    ) -> DuskClient {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let mut child = command
            .env_clear()
            .env(
                "RUST_LOG",
                std::env::var("DUSK_INTEROP_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("DUSK_RELAY_ADDR", relay_addr.to_string())
            .env("DUSK_COMMUNITY", community)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the dusk 0.54 client");
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                let _ = tx.send(value);
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("[{name} stderr] {line}");
            }
        });
        let mut client = DuskClient {
            name,
            peer_id: PeerId::random(),
            relay_addr,
            _child: child,
            stdin,
            lines,
            pending: VecDeque::new(),
            seen: Vec::new(),
        };
        let started = client.expect("started", |e| event(e) == "started").await;
        client.peer_id = str_field(&started, "peer").parse().expect("a peer id");
        client
    }

    pub async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: write command {line:?}: {e}", self.name));
        self.stdin.flush().await.unwrap();
    }

    /// The first event, unmatched so far, for which `f` holds.
    pub async fn expect(&mut self, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&mut f) {
            return self.pending.remove(i).unwrap();
        }
        let name = self.name;
        let found = tokio::time::timeout(MILESTONE_TIMEOUT, async {
            loop {
                let Some(value) = self.lines.recv().await else {
                    return Err("the client exited");
                };
                eprintln!("[{name}] {value}");
                self.seen.push(value.to_string());
                if FATAL.contains(&event(&value)) {
                    return Err("the client reported a failure");
                }
                if f(&value) {
                    return Ok(value);
                }
                self.pending.push_back(value);
            }
        })
        .await;
        match found {
            Ok(Ok(value)) => value,
            Ok(Err(why)) => panic!(
                "{name}: {why} while waiting for {what}; its lines:\n{}",
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "{name}: no {what} within {MILESTONE_TIMEOUT:?}; its lines:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Drops every event received so far and not matched.
    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }

    /// This client's address through its relay, as relay client 0.18 confirms it.
    pub fn circuit_addr(&self) -> String {
        format!("{}/p2p-circuit/p2p/{}", self.relay_addr, self.peer_id)
    }

    pub fn known(&self) -> Known {
        Known {
            name: self.name,
            peer_id: self.peer_id,
            circuit_addr: self.circuit_addr(),
        }
    }

    pub fn namespaces(&self, community: &str) -> BTreeSet<String> {
        [
            format!("dusk/community/{community}"),
            format!("dusk/peer/{}", self.peer_id),
            "dusk/peers".to_owned(),
        ]
        .into()
    }

    /// Reservation accepted, the circuit address confirmed as the only external address
    /// and registered under all three dusk namespaces with the relay's default TTL.
    pub async fn expect_reserved_and_registered(&mut self, community: &str) {
        let reserved = self.expect("reservation", |e| event(e) == "reserved").await;
        assert_eq!(
            reserved["renewal"], false,
            "{}: a new reservation",
            self.name
        );
        let external = self
            .expect("external address", |e| event(e) == "external_addr")
            .await;
        assert_eq!(str_field(&external, "addr"), self.circuit_addr());
        let mut missing = self.namespaces(community);
        while !missing.is_empty() {
            let registered = self
                .expect("registration", |e| event(e) == "registered")
                .await;
            missing.remove(str_field(&registered, "namespace"));
            assert_eq!(
                registered["ttl"], 7200,
                "{}: TTL unset gets the relay's 2 h",
                self.name
            );
        }
    }

    /// `discover` until `other` shows up under `namespace` with exactly its circuit
    /// address (the relay only stores records of circuit addresses).
    pub async fn expect_discovered(&mut self, other: &Known, namespace: &str) {
        let peer = other.peer_id.to_string();
        let found = self
            .expect(
                &format!("discovery of {} in {namespace}", other.name),
                |e| event(e) == "discovered" && e["peer"] == peer && e["namespace"] == namespace,
            )
            .await;
        assert_eq!(
            found["addrs"],
            serde_json::json!([other.circuit_addr]),
            "{} discovers {}'s circuit address and nothing else",
            self.name,
            other.name
        );
    }

    pub async fn expect_connected(&mut self, other: PeerId) {
        let peer = other.to_string();
        let connected = self
            .expect("connection to the other client", |e| {
                event(e) == "connected" && e["peer"] == peer
            })
            .await;
        assert_eq!(
            connected["relayed"], true,
            "{}: the clients only meet through the relay",
            self.name
        );
    }
}

/// What a client needs to know of another to check its discovery.
pub struct Known {
    pub name: &'static str,
    pub peer_id: PeerId,
    pub circuit_addr: String,
}

pub fn event(value: &Value) -> &str {
    value["event"].as_str().unwrap_or_default()
}

pub fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {value}"))
}

/// Both clients registered: each discovers the other in the community, in
/// `dusk/peers` and under `dusk/peer/<other>`, and they end up connected through the relay.
pub async fn find_each_other(a: &mut DuskClient, b: &mut DuskClient, community: &str) {
    let (known_a, known_b) = (a.known(), b.known());
    discover(a, &known_b, community).await;
    discover(b, &known_a, community).await;
    a.expect_connected(known_b.peer_id).await;
    b.expect_connected(known_a.peer_id).await;
}

pub async fn discover(x: &mut DuskClient, y: &Known, community: &str) {
    x.command("discover").await;
    x.expect_discovered(y, &format!("dusk/community/{community}"))
        .await;
    x.expect_discovered(y, "dusk/peers").await;
    x.command(&format!("find {}", y.peer_id)).await;
    x.expect_discovered(y, &format!("dusk/peer/{}", y.peer_id))
        .await;
}

/// A chat message each way, checked word for word on both ends.
pub async fn chat(a: &mut DuskClient, b: &mut DuskClient, round: &str) {
    chat_one_way(a, b, round).await;
    chat_one_way(b, a, round).await;
}

/// `x` runs `command`, which sends something to `y`; returns the event `y` reports on
/// receiving it from `x` (named `received`) and the one `x` reports on having sent it
/// to `y` (named `sent`).
pub async fn delivered(
    x: &mut DuskClient,
    y: &mut DuskClient,
    command: &str,
    [received, sent]: [&str; 2],
) -> (Value, Value) {
    x.command(command).await;
    let (from, to) = (x.peer_id.to_string(), y.peer_id.to_string());
    let arrived = y
        .expect(&format!("{received} from {}", x.name), |e| {
            event(e) == received && e["from"] == from
        })
        .await;
    let confirmed = x
        .expect(&format!("{sent} to {}", y.name), |e| {
            event(e) == sent && e["to"] == to
        })
        .await;
    (arrived, confirmed)
}

pub async fn chat_one_way(x: &mut DuskClient, y: &mut DuskClient, round: &str) {
    let text = format!("{round}: hello {} from {} ✓", y.name, x.name);
    let say = format!("say {} {text}", y.peer_id);
    let (message, sent) = delivered(x, y, &say, ["message", "sent"]).await;
    assert_eq!(str_field(&message, "text"), text);
    assert_eq!(str_field(&sent, "text"), text);
}

/// `BULK_BYTES` pattern bytes each way, verified byte for byte by the receiver.
pub async fn bulk(a: &mut DuskClient, b: &mut DuskClient) {
    bulk_one_way(a, b).await;
    bulk_one_way(b, a).await;
}

pub async fn bulk_one_way(x: &mut DuskClient, y: &mut DuskClient) {
    let send = format!("send {} {BULK_BYTES}", y.peer_id);
    let (received, ok) = delivered(x, y, &send, ["stream_received", "stream_ok"]).await;
    assert_eq!(received["bytes"], BULK_BYTES);
    assert_eq!(ok["bytes"], BULK_BYTES);
    eprintln!(
        "bulk {} -> {} through the relay: {BULK_BYTES} bytes at {:.1} MiB/s",
        x.name,
        y.name,
        ok["mib_per_s"].as_f64().unwrap_or_default()
    );
}

/// Waits, after the relay stopped, for `x` to see it: relay connection and the
/// relayed connection to `other` closed, circuit address expired, a redial at the
/// start of its backoff that fails (the relay is down) and the next one scheduled
/// twice as late. Then drops what is left from before the restart.
pub async fn expect_relay_lost(x: &mut DuskClient, relay: PeerId, other: PeerId) {
    x.expect("relay connection closed", |e| {
        event(e) == "relay_disconnected"
    })
    .await;
    let peer = other.to_string();
    x.expect("relayed connection closed", |e| {
        event(e) == "disconnected" && e["peer"] == peer
    })
    .await;
    x.expect("circuit address expired", |e| {
        event(e) == "external_addr_expired"
    })
    .await;
    let relay = relay.to_string();
    for delay_ms in [FIRST_RETRY_MS, 2 * FIRST_RETRY_MS] {
        let retry = x
            .expect("a redial scheduled", |e| event(e) == "retry")
            .await;
        assert_eq!(retry["in_ms"], delay_ms, "{}: its backoff", x.name);
        x.expect("a failed redial", |e| {
            event(e) == "dial_failed" && e["peer"] == relay
        })
        .await;
    }
    x.forget_pending();
}

/// The relay binary in `dir` (on `port`, 0: any) and two 0.54 clients of `community`,
/// A given the relay's address by `a_addr` and B by IP, once both have reserved and
/// registered and they have found each other and connected through the relay.
pub async fn relay_and_two_clients(
    dir: &Path,
    port: u16,
    community: &str,
    a_addr: fn(&Relay) -> Multiaddr,
) -> (Relay, DuskClient, DuskClient) {
    let binary = client_binary().await;
    let relay = Relay::start(dir, port).await;
    let mut a = DuskClient::start(&binary, "A", a_addr(&relay), community).await;
    let mut b = DuskClient::start(&binary, "B", relay.ip4_addr(), community).await;
    register_and_meet(&mut a, &mut b, community).await;
    (relay, a, b)
}

/// Both clients reserve and register (with the relay they are connected to), then find
/// each other and connect through it.
pub async fn register_and_meet(a: &mut DuskClient, b: &mut DuskClient, community: &str) {
    a.expect_reserved_and_registered(community).await;
    b.expect_reserved_and_registered(community).await;
    find_each_other(a, b, community).await;
}
