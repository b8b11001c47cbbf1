//! Headless Chromium (Debian's `chromium`) running js-libp2p in a page
//! (interop/js/src/page.js, bundled by esbuild) as a [`JsPeer`], for
//! `tests/interop_browser.rs` and the ACME browser test in `tests/acme.rs`.
//!
//! The page is served by a loopback HTTP server of the test's own and talks to it over
//! HTTP: it reads `/config`, long-polls commands from `/command` and posts replies and
//! events to `/report` (the same JSON as the Node peer's, `js.rs`). A missing Chromium
//! (or, for a trusted root, certutil) fails the test, never skips it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use libp2p::Multiaddr;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, Mutex};

use super::js::{base64, js_dir, pem, JsPeer, LogTail};

/// How long `/command` holds a request open before answering "nothing yet".
const LONG_POLL: Duration = Duration::from_secs(10);

/// What the browser trusts for the relay's WSS certificate.
pub enum BrowserTrust {
    /// This one certificate's public key (a DER certificate: the relay's self-signed
    /// one), through `--ignore-certificate-errors-spki-list`. Needs no certutil
    /// (libnss3-tools) and no state outside the profile, and trusts exactly this key,
    /// for this one browser process.
    PublicKeyOf(Vec<u8>),
    /// A CA root, added to the browser's own NSS database (a throwaway `$HOME`) as a
    /// user-trusted root, as an operator's users' browsers trust a public CA: the chain
    /// and the name are verified. `names` resolve to 127.0.0.1 in this browser only.
    Root {
        root: CertificateDer<'static>,
        names: Vec<String>,
    },
}

/// Debian's Chromium, or the test fails saying how to install it.
pub fn chromium() -> PathBuf {
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
/// relay's WSS certificate as `trust` says; returns the page's peer once it has
/// reserved on `relay_wss`.
pub async fn open_browser_peer(
    chromium: &Path,
    trust: BrowserTrust,
    relay_wss: &Multiaddr,
) -> JsPeer {
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
    let mut command = tokio::process::Command::new(chromium);
    command
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
        // A throwaway profile; Chromium also honours the SPKI list only when the user
        // data dir is given.
        .arg(format!("--user-data-dir={}", profile.path().display()));
    match trust {
        BrowserTrust::PublicKeyOf(certificate) => {
            command.arg(format!(
                "--ignore-certificate-errors-spki-list={}",
                spki_sha256_base64(&certificate)
            ));
        }
        BrowserTrust::Root { root, names } => {
            // Chromium on Linux reads user-trusted roots from $HOME/.pki/nssdb.
            let home = profile.path().join("home");
            add_trusted_root(&home.join(".pki/nssdb"), &root);
            command.env("HOME", &home);
            let rules: Vec<String> = names.iter().map(|n| format!("MAP {n} 127.0.0.1")).collect();
            command.arg(format!("--host-resolver-rules={}", rules.join(", ")));
        }
    }
    let mut child = command
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

/// A new NSS database in `nssdb` trusting `root` to identify servers (certutil, from
/// libnss3-tools).
fn add_trusted_root(nssdb: &Path, root: &CertificateDer<'static>) {
    std::fs::create_dir_all(nssdb).expect("nssdb dir");
    let db = format!("sql:{}", nssdb.display());
    let root_pem = nssdb.join("root.pem");
    std::fs::write(&root_pem, pem(root)).expect("write root");
    let root_pem = root_pem.display().to_string();
    for args in [
        vec!["-N", "-d", &db, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db,
            "-n",
            "test ACME root",
            "-t",
            "C,,",
            "-i",
            &root_pem,
        ],
    ] {
        let output = std::process::Command::new("certutil")
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run certutil ({e}), which adds a trusted root to the browser's \
                     NSS database: install it with `apt-get install -y libnss3-tools`"
                )
            });
        assert!(
            output.status.success(),
            "certutil {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
