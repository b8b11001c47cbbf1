//! The Rust side of the js peers' JSON protocol (`interop/js/src/peer.js`), shared by
//! `tests/interop_js.rs` and `tests/interop_browser.rs`. A [`JsPeer`] sends commands (`{"id", "cmd", ...}`) and waits for their
//! replies (`{"id", "ok", ...}`) or for events (`{"event", ...}`), whether the peer is a
//! Node process (stdin/stdout) or a page in Chromium (HTTP, see interop_browser.rs).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use dusk_relay::RelayEvent;
use tokio::sync::broadcast;

use super::{exchange_unequal, relay_event, within, Client, EVENT_TIMEOUT};

/// Bound for a command that moves MiBs through the relay on a shared 2-core machine.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for anything else (reserve, dial): loopback, well under a second.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for a peer to start and reserve: Chromium's start and a 5 MB page on a busy
/// machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `interop/js` in this checkout.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/js")
}

/// Runs `interop/js/setup` (npm ci from package-lock.json and the browser bundle; a
/// no-op when both are up to date, safe to run from parallel tests) and checks what it
/// made. Panics with what to do if node, npm or the registry is missing: these tests
/// never skip.
pub fn ensure_js_setup() {
    let dir = js_dir();
    let fix = format!(
        "the js interop tests need Node.js >= 20 and npm (and the npm registry for the \
         first run); fix, then run `{}/setup` by hand to see the problem",
        dir.display()
    );
    let output = std::process::Command::new(dir.join("setup"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}/setup: {e}; {fix}", dir.display()));
    assert!(
        output.status.success(),
        "{}/setup failed ({}):\n{}{}\n{fix}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    for made in ["node_modules/libp2p/package.json", "dist/page.js"] {
        assert!(
            dir.join(made).is_file(),
            "{}/setup ran but {made} is missing; {fix}",
            dir.display()
        );
    }
}

/// The last lines a peer wrote outside the protocol (Node's stderr, the browser's
/// console), for failure messages.
#[derive(Clone, Default)]
pub struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    const KEEP: usize = 60;

    pub fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap();
        if lines.len() == Self::KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub fn dump(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A js-libp2p peer under test.
pub struct JsPeer {
    pub name: String,
    pub peer_id: PeerId,
    /// Its listen addresses when it started: with a reservation, its circuit addresses.
    pub addrs: Vec<Multiaddr>,
    commands: mpsc::UnboundedSender<Value>,
    messages: mpsc::UnboundedReceiver<Value>,
    /// Messages received but not yet waited for.
    unclaimed: VecDeque<Value>,
    /// Every message received, for checks after the fact and failure messages.
    pub history: Vec<Value>,
    log: LogTail,
    next_id: u64,
    /// The Node process (killed on drop), or whatever keeps a browser peer alive.
    _keep: Box<dyn Send>,
}

impl JsPeer {
    /// A peer on the other end of `commands`/`messages`; waits for its `started` event
    /// (after which it holds its reservation, if it was asked to make one).
    pub async fn connect(
        name: &str,
        commands: mpsc::UnboundedSender<Value>,
        messages: mpsc::UnboundedReceiver<Value>,
        log: LogTail,
        keep: Box<dyn Send>,
    ) -> JsPeer {
        let mut peer = JsPeer {
            name: name.to_owned(),
            peer_id: PeerId::random(),
            addrs: Vec::new(),
            commands,
            messages,
            unclaimed: VecDeque::new(),
            history: Vec::new(),
            log,
            next_id: 0,
            _keep: keep,
        };
        let started = peer
            .wait("started", START_TIMEOUT, |m| {
                matches!(
                    m["event"].as_str(),
                    Some("started" | "start-failed" | "page-error")
                )
            })
            .await;
        if started["event"] != "started" {
            panic!(
                "{name} did not start: {}\n{}",
                started["error"],
                peer.diagnostics()
            );
        }
        peer.peer_id = started["peerId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}: bad peer id in {started}"));
        peer.addrs = strings(&started["addrs"])
            .iter()
            .map(|a| a.parse().expect("multiaddr"))
            .collect();
        peer
    }

    /// A Node peer (`node-peer.mjs`), reserving on `reserve` if given. It trusts
    /// `wss_cert_pem` (a file) for WSS, through NODE_EXTRA_CA_CERTS as `ws` reads it.
    pub async fn spawn_node(
        name: &str,
        reserve: Option<&Multiaddr>,
        wss_cert_pem: &Path,
    ) -> JsPeer {
        let mut command = Command::new("node");
        command
            .arg(js_dir().join("node-peer.mjs"))
            .env("NODE_EXTRA_CA_CERTS", wss_cert_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(relay) = reserve {
            command.arg("--reserve").arg(relay.to_string());
        }
        let mut child: Child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (Node.js >= 20 is required): {e}"));
        let log = LogTail::default();
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let mut stdin = child.stdin.take().expect("stdin");
        let bad_lines = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(message) => {
                        let _ = messages_tx.send(message);
                    }
                    Err(_) => bad_lines.push(format!("(stdout) {line}")),
                }
            }
        });
        let stderr_tail = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                stderr_tail.push(line);
            }
        });
        let (commands, mut command_rx) = mpsc::unbounded_channel::<Value>();
        tokio::spawn(async move {
            while let Some(command) = command_rx.recv().await {
                let line = format!("{command}\n");
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        JsPeer::connect(name, commands, messages, log, Box::new(child)).await
    }

    /// Sends `command` (an object with `cmd`) and returns its reply; panics if it
    /// failed.
    pub async fn request(&mut self, command: Value, limit: Duration) -> Value {
        let what = command["cmd"].to_string();
        self.try_request(command, limit)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{}: command {what} failed: {error}\n{}",
                    self.name,
                    self.diagnostics()
                )
            })
    }

    /// Sends `command` and returns its reply, or the error the peer answered.
    pub async fn try_request(
        &mut self,
        mut command: Value,
        limit: Duration,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        command["id"] = json!(id);
        let what = format!("reply to {command}");
        self.commands
            .send(command)
            .unwrap_or_else(|_| panic!("{} is gone\n{}", self.name, self.diagnostics()));
        let reply = self.wait(&what, limit, |m| m["id"] == json!(id)).await;
        if reply["ok"] == json!(true) {
            Ok(reply)
        } else {
            Err(reply["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    /// The next event named `name` (or a failure event the peer sent instead).
    pub async fn event(&mut self, name: &str, limit: Duration) -> Value {
        let event = self
            .wait(&format!("event {name}"), limit, |m| {
                let e = m["event"].as_str().unwrap_or("");
                e == name || e == "exchange-failed" || e == "page-error"
            })
            .await;
        if event["event"] != name {
            panic!(
                "{}: waiting for {name}, got {event}\n{}",
                self.name,
                self.diagnostics()
            );
        }
        event
    }

    /// The first message, received or still to come, that `f` accepts.
    async fn wait(&mut self, what: &str, limit: Duration, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.unclaimed.iter().position(&f) {
            return self.unclaimed.remove(at).expect("position is in range");
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(message)) => {
                    self.history.push(message.clone());
                    if f(&message) {
                        return message;
                    }
                    self.unclaimed.push_back(message);
                }
                Ok(None) => panic!(
                    "{} exited while waiting for {what}\n{}",
                    self.name,
                    self.diagnostics()
                ),
                Err(_) => panic!(
                    "{}: timed out after {limit:?} waiting for {what}\n{}",
                    self.name,
                    self.diagnostics()
                ),
            }
        }
    }

    /// Waits for the relay (its `events`) to accept this peer's reservation, then checks
    /// that the peer lists a circuit address.
    pub async fn reserved_on(&self, events: &mut broadcast::Receiver<RelayEvent>) {
        let peer_id = self.peer_id;
        relay_event(events, |e| {
            matches!(e, RelayEvent::ReservationAccepted { peer, .. } if *peer == peer_id)
                .then_some(())
        })
        .await;
        assert!(
            self.addrs.iter().any(dusk_relay::multiaddr_ext::is_relayed),
            "{} has no circuit address after reserving: {:?}",
            self.name,
            self.addrs
        );
    }

    /// Registers in `namespace` at `relay` (a relay address with its peer id) for `ttl`
    /// seconds, with a signed record of its circuit addresses through that relay in
    /// rust-libp2p's format. Returns the reply: the granted `ttl` and the record's
    /// `addrs`.
    pub async fn register(&mut self, relay: &Multiaddr, namespace: &str, ttl: u64) -> Value {
        self.try_register(relay, namespace, ttl, "rust-libp2p")
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{}: register failed: {error}\n{}",
                    self.name,
                    self.diagnostics()
                )
            })
    }

    /// [`JsPeer::register`] with the record signed in `format`: `"rust-libp2p"` or
    /// `"spec"` (see `RECORD_FORMATS` in interop/js/src/rendezvous.js); the error is
    /// `RendezvousError: E_NAME (code): status text` when the relay refuses.
    pub async fn try_register(
        &mut self,
        relay: &Multiaddr,
        namespace: &str,
        ttl: u64,
        format: &str,
    ) -> Result<Value, String> {
        self.try_request(
            json!({
                "cmd": "register", "relay": relay.to_string(),
                "namespace": namespace, "ttl": ttl, "format": format,
            }),
            COMMAND_TIMEOUT,
        )
        .await
    }

    /// The registrations in `namespace` at `relay`, each `{peerId, addrs, format,
    /// namespace, ttl}` from a record whose signature the peer checked.
    pub async fn discover(&mut self, relay: &Multiaddr, namespace: &str) -> Vec<Value> {
        let reply = self
            .request(
                json!({"cmd": "discover", "relay": relay.to_string(), "namespace": namespace}),
                COMMAND_TIMEOUT,
            )
            .await;
        reply["registrations"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{}: no registrations in {reply}", self.name))
    }

    /// The peer's connections as it sees them now.
    pub async fn connections(&mut self) -> Vec<Value> {
        let reply = self
            .request(json!({"cmd": "connections"}), COMMAND_TIMEOUT)
            .await;
        reply["connections"].as_array().cloned().unwrap_or_default()
    }

    /// Connections to `peer` that the peer reported closed so far.
    pub fn closed_connections_to(&self, peer: PeerId) -> Vec<Value> {
        let peer = peer.to_string();
        self.history
            .iter()
            .filter(|m| m["event"] == "connection-closed")
            .filter(|m| m["connection"]["remotePeer"] == json!(peer))
            .cloned()
            .collect()
    }

    /// What the peer said lately, for failure messages.
    pub fn diagnostics(&self) -> String {
        let recent: Vec<String> = self
            .history
            .iter()
            .rev()
            .take(12)
            .rev()
            .map(|m| {
                let mut s = m.to_string();
                s.truncate(400);
                s
            })
            .collect();
        format!(
            "--- {} messages (latest last) ---\n{}\n--- {} log ---\n{}",
            self.name,
            recent.join("\n"),
            self.name,
            self.log.dump()
        )
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// MiB/s for `len` bytes in `ms` milliseconds.
pub fn mib_per_s(len: usize, ms: f64) -> f64 {
    len as f64 / (1024.0 * 1024.0) / (ms / 1000.0)
}

/// The milliseconds a js `exchanged` reply or event reports, checking that the js peer
/// sent `sent` bytes and received `received`.
pub fn exchanged_ms(message: &Value, sent: usize, received: usize) -> f64 {
    assert_eq!(
        (&message["sendLen"], &message["recvLen"]),
        (&json!(sent), &json!(received)),
        "{message}"
    );
    message["ms"].as_f64().expect("ms")
}

/// The slower side's time of a transfer, in milliseconds: js's report (checked, as
/// [`exchanged_ms`] does, to have sent `js_sent` bytes and received `js_received`) or
/// the Rust side's `rust`.
pub fn transfer_ms(js_report: &Value, js_sent: usize, js_received: usize, rust: Duration) -> f64 {
    exchanged_ms(js_report, js_sent, js_received).max(rust.as_secs_f64() * 1000.0)
}

/// The Rust client `rust` dials `js` through the relay at `relay_addr`, and they
/// exchange verified bytes on one data stream: Rust sends `rust_sends` (seed 1), js
/// sends `js_sends` (seed 2), at once. Returns js's `exchanged` event and the Rust
/// side's time.
pub async fn rust_dials_js(
    rust: &mut Client,
    relay_addr: &Multiaddr,
    js: &mut JsPeer,
    rust_sends: usize,
    js_sends: usize,
) -> (Value, Duration) {
    rust.connect(relay_addr).await;
    rust.dial_through(relay_addr, js.peer_id).await;
    js.request(
        json!({
            "cmd": "serve", "sendLen": js_sends, "recvLen": rust_sends,
            "sendSeed": 2, "recvSeed": 1,
        }),
        COMMAND_TIMEOUT,
    )
    .await;
    let stream = rust.open_data_stream(js.peer_id).await;
    let rust_elapsed = exchange_unequal(stream, rust_sends, js_sends, 1, 2).await;
    let inbound = js.event("exchanged", TRANSFER_TIMEOUT).await;
    (inbound, rust_elapsed)
}

/// `js` dials `target`, a Rust peer's circuit address, and they exchange verified bytes
/// on one data stream, which the Rust side takes from `incoming`: js sends `js_sends`
/// seeded `seeds.0`, Rust sends `rust_sends` seeded `seeds.1`, at once. Returns js's
/// reply and the Rust side's time.
pub async fn js_dials_rust(
    js: &mut JsPeer,
    target: &Multiaddr,
    incoming: &mut libp2p_stream::IncomingStreams,
    js_sends: usize,
    rust_sends: usize,
    (js_seed, rust_seed): (u64, u64),
) -> (Value, Duration) {
    use futures::StreamExt;
    let command = json!({
        "cmd": "exchange", "addr": target.to_string(),
        "sendLen": js_sends, "recvLen": rust_sends, "sendSeed": js_seed, "recvSeed": rust_seed,
    });
    let js_peer = js.peer_id;
    let rust_side = async {
        let (from, stream) = within(EVENT_TIMEOUT, "incoming data stream", incoming.next())
            .await
            .expect("incoming streams open");
        assert_eq!(from, js_peer);
        exchange_unequal(stream, rust_sends, js_sends, rust_seed, js_seed).await
    };
    futures::future::join(js.request(command, TRANSFER_TIMEOUT), rust_side).await
}

/// `listener` serves one data stream and `dialer` opens it at `target`, the listener's
/// circuit address; they move `len` verified bytes each way at once. Returns the
/// dialer's reply and the listener's `exchanged` event.
pub async fn js_exchange(
    listener: &mut JsPeer,
    dialer: &mut JsPeer,
    target: &Multiaddr,
    len: usize,
) -> (Value, Value) {
    listener
        .request(
            json!({"cmd": "serve", "len": len, "sendSeed": 2, "recvSeed": 1}),
            COMMAND_TIMEOUT,
        )
        .await;
    let reply = dialer
        .request(
            json!({
                "cmd": "exchange", "addr": target.to_string(),
                "len": len, "sendSeed": 1, "recvSeed": 2,
            }),
            TRANSFER_TIMEOUT,
        )
        .await;
    let inbound = listener.event("exchanged", TRANSFER_TIMEOUT).await;
    (reply, inbound)
}

/// Standard base64 with padding (for PEM and Chromium's SPKI list).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A DER certificate as PEM.
pub fn pem(der: &[u8]) -> String {
    let body = base64(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).expect("base64 is ascii"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}
