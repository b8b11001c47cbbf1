//! A real browser against the relay: headless Chromium (Debian's `chromium`) loads a
//! page running js-libp2p with the WebSockets transport (interop/js/src/page.js,
//! bundled by esbuild), connects to the relay over WSS trusting the relay's
//! self-signed certificate, reserves, and moves verified bytes both ways through
//! circuits with Rust peers: one that dials the browser's circuit address, one whose
//! circuit address the browser dials. This is the dusk web client's path.
//!
//! The test serves the page from a loopback HTTP server of its own and talks to it
//! over HTTP: the page reads `/config`, long-polls commands from `/command` and posts
//! replies and events to `/report` (the same JSON as the Node peer's,
//! `tests/support/js.rs`). `interop/js/setup` (npm ci, bundle) runs first; a missing
//! Node or Chromium fails the test, never skips it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use libp2p::Multiaddr;
use serde_json::{json, Value};
use support::js::*;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, Mutex};

const MIB: usize = 1024 * 1024;
/// From the Rust peers to the browser.
const RUST_SENDS: usize = 8 * MIB;
/// From the browser to the Rust peers, whose yamux is libp2p's default: js-yamux would
/// send it frames over rust-yamux's 1 MiB limit on larger transfers (see
/// tests/interop_js.rs).
const BROWSER_SENDS: usize = MIB;
/// How long `/command` holds a request open before answering "nothing yet".
const LONG_POLL: Duration = Duration::from_secs(10);

/// Debian's Chromium, or the test fails saying how to install it.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "headless Chromium is required for the browser interop test and was not found \
             on PATH: install it with `apt-get install -y chromium` (Debian 12)"
        )
    })
}

/// Splits the DER element at the start of `input`: (the whole element, its contents,
/// what follows).
fn der_element(input: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let first = input[1];
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        let len = input[2..2 + n]
            .iter()
            .fold(0usize, |len, b| len << 8 | usize::from(*b));
        (2 + n, len)
    };
    (
        &input[..header + len],
        &input[header..header + len],
        &input[header + len..],
    )
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a DER certificate: what Chromium's
/// `--ignore-certificate-errors-spki-list` takes.
fn spki_sha256_base64(cert: &[u8]) -> String {
    // Certificate ::= SEQUENCE { tbsCertificate TBSCertificate, .. }
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
    //     issuer, validity, subject, subjectPublicKeyInfo, .. }   (RFC 5280)
    let (_, certificate, _) = der_element(cert);
    let (_, mut tbs, _) = der_element(certificate);
    if tbs[0] == 0xa0 {
        tbs = der_element(tbs).2;
    }
    for _ in 0..5 {
        tbs = der_element(tbs).2;
    }
    let (spki, _, _) = der_element(tbs);
    assert_eq!(spki[0], 0x30, "SubjectPublicKeyInfo is a SEQUENCE");
    // SHA-256 from the crate's own rustls/ring (no extra dependency for one hash).
    let sha256 = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite")
        .common
        .hash_provider;
    base64(sha256.hash(spki).as_ref())
}

/// What the page's HTTP server shares with its handlers.
struct Page {
    index: Vec<u8>,
    bundle: Vec<u8>,
    config: String,
    commands: Mutex<mpsc::UnboundedReceiver<Value>>,
    reports: mpsc::UnboundedSender<Value>,
}

async fn index(State(page): State<Arc<Page>>) -> Response {
    ([(header::CONTENT_TYPE, "text/html")], page.index.clone()).into_response()
}

async fn bundle(State(page): State<Arc<Page>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript")],
        page.bundle.clone(),
    )
        .into_response()
}

async fn config(State(page): State<Arc<Page>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        page.config.clone(),
    )
        .into_response()
}

/// The next command for the page, or 204 after `LONG_POLL` without one.
async fn command(State(page): State<Arc<Page>>) -> Response {
    let mut commands = page.commands.lock().await;
    match tokio::time::timeout(LONG_POLL, commands.recv()).await {
        Ok(Some(command)) => (
            [(header::CONTENT_TYPE, "application/json")],
            command.to_string(),
        )
            .into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn report(State(page): State<Arc<Page>>, body: String) -> StatusCode {
    match serde_json::from_str(&body) {
        Ok(message) => {
            let _ = page.reports.send(message);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// Headless Chromium and every process it started (its own process group), killed
/// when dropped. Also the HTTP server's task, aborted then.
struct Browser {
    pid: i32,
    _child: tokio::process::Child,
    server: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium's renderer, GPU and zygote processes are in the group it leads.
        // SAFETY: kill(2) on a process group this test created; no memory is touched.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        self.server.abort();
    }
}

/// Serves the page on 127.0.0.1 and opens it in headless Chromium, which trusts the
/// relay's WSS certificate; returns the page's peer once it has reserved on
/// `relay_wss`.
async fn open_browser_peer(chromium: &Path, relay: &TestRelay, relay_wss: &Multiaddr) -> JsPeer {
    let dist = js_dir().join("dist");
    let read = |name: &str| {
        std::fs::read(dist.join(name)).unwrap_or_else(|e| {
            panic!(
                "{}/{name}: {e}; run interop/js/setup to bundle the page",
                dist.display()
            )
        })
    };
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (reports, messages) = mpsc::unbounded_channel();
    let page = Arc::new(Page {
        index: read("index.html"),
        bundle: read("page.js"),
        config: json!({ "relay": relay_wss.to_string() }).to_string(),
        commands: Mutex::new(command_rx),
        reports,
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/page.js", get(bundle))
        .route("/config", get(config))
        .route("/command", get(command))
        .route("/report", post(report))
        .with_state(page);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the page server");
    let url = format!("http://{}/", listener.local_addr().expect("local addr"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("page server");
    });

    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            // The test may run as root (CI containers), where Chromium's sandbox
            // refuses to start; the page is our own.
            "--no-sandbox",
            "--disable-gpu",
            // Containers often have a tiny /dev/shm.
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Console messages and errors on stderr, for failure messages.
            "--enable-logging=stderr",
            "--v=0",
        ])
        // A throwaway profile; Chromium also honours the SPKI list below only when
        // the user data dir is given.
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Trust for the relay's self-signed certificate: the base64 SHA-256 of its
        // public key. Chosen over importing a CA into an NSS database because it needs
        // no certutil (libnss3-tools) and no state outside the profile, and it trusts
        // exactly this one key, for this one browser process. The relay's own
        // generated certificate is the one tested, as a dusk developer would run it.
        .arg(format!(
            "--ignore-certificate-errors-spki-list={}",
            spki_sha256_base64(&relay.certificate())
        ))
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; install Chromium with `apt-get install -y chromium`",
                chromium.display()
            )
        });
    let pid = child.id().expect("chromium is running") as i32;
    let log = LogTail::default();
    let console = log.clone();
    let stderr = child.stderr.take().expect("stderr");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // No D-Bus in a container: Chromium complains on every start.
            if !line.contains("dbus") {
                console.push(line);
            }
        }
    });
    let browser = Browser {
        pid,
        _child: child,
        server,
        _profile: profile,
    };
    JsPeer::connect("browser", commands, messages, log, Box::new(browser)).await
}

/// Checks the page's `exchanged` report or reply and prints the throughput.
fn print_throughput(what: &str, message: &Value, rust_elapsed: Duration) {
    let ms = transfer_ms(message, BROWSER_SENDS, RUST_SENDS, rust_elapsed);
    eprintln!(
        "throughput {what}: {:.1} MiB/s Rust -> browser ({} MiB, with {} MiB back at once, verified)",
        mib_per_s(RUST_SENDS, ms),
        RUST_SENDS / MIB,
        BROWSER_SENDS / MIB,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_reserves_over_wss_and_exchanges_with_rust_peers_through_circuits() {
    ensure_js_setup();
    let chromium = chromium();
    let relay = TestRelay::start().await;
    let mut events = relay.subscribe();
    let relay_wss = relay.addr(Transport::Wss);

    let mut browser = open_browser_peer(&chromium, &relay, &relay_wss).await;
    browser.reserved_on(&mut events).await;
    let started = browser
        .history
        .iter()
        .find(|m| m["event"] == "started")
        .cloned()
        .expect("started");
    eprintln!("browser: {}", started["userAgent"]);

    // A Rust peer (over TCP) dials the browser's circuit address.
    let mut dialer = relay.client().await;
    let (inbound, rust_elapsed) = rust_dials_js(
        &mut dialer,
        &relay.addr(Transport::Tcp),
        &mut browser,
        RUST_SENDS,
        BROWSER_SENDS,
    )
    .await;
    let limits = &inbound["connection"]["limits"];
    assert!(
        limits["bytes"].is_null() && limits["seconds"].as_i64().unwrap_or(0) >= 24 * 3600 - 60,
        "the browser's view of the circuit's limits: {limits}"
    );
    eprintln!("the browser sees the relayed connection as limited: {limits}");
    print_throughput("Rust (Tcp) dials browser (Wss)", &inbound, rust_elapsed);

    // The browser dials the circuit address of a Rust peer reserved over QUIC.
    let mut listener = relay.client().await;
    listener.reserve(&relay.addr(Transport::Quic)).await;
    let target = circuit_addr(&relay_wss, listener.peer_id);
    let (reply, rust_elapsed) = js_dials_rust(
        &mut browser,
        &target,
        &mut listener.incoming,
        BROWSER_SENDS,
        RUST_SENDS,
        (3, 4),
    )
    .await;
    print_throughput("browser (Wss) dials Rust (Quic)", &reply, rust_elapsed);

    // Nothing closed on the way: the browser's link to the relay and both circuits.
    assert!(
        browser.closed_connections_to(relay.peer_id()).is_empty(),
        "the browser's connection to the relay closed\n{}",
        browser.diagnostics()
    );
    let connections = browser.connections().await;
    for peer in [relay.peer_id(), dialer.peer_id, listener.peer_id] {
        assert!(
            connections
                .iter()
                .any(|c| c["remotePeer"] == json!(peer.to_string()) && c["status"] == "open"),
            "the browser has no open connection to {peer}: {connections:?}\n{}",
            browser.diagnostics()
        );
    }
}
