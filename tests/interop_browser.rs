//! A real browser against the relay: headless Chromium (Debian's `chromium`) loads a
//! page running js-libp2p with the WebSockets transport (interop/js/src/page.js,
//! bundled by esbuild), connects to the relay over WSS trusting the relay's
//! self-signed certificate, reserves, and moves verified bytes both ways through
//! circuits with Rust peers: one that dials the browser's circuit address, one whose
//! circuit address the browser dials. This is the dusk web client's path.
//!
//! The page, its HTTP link to the test and Chromium's start are in
//! `tests/support/browser.rs`; `interop/js/setup` (npm ci, bundle) runs first; a missing
//! Node or Chromium fails the test, never skips it.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::browser::{chromium, open_browser_peer, BrowserTrust};
use support::js::*;
use support::*;

const MIB: usize = 1024 * 1024;
/// From the Rust peers to the browser.
const RUST_SENDS: usize = 8 * MIB;
/// From the browser to the Rust peers, whose yamux is libp2p's default: js-yamux would
/// send it frames over rust-yamux's 1 MiB limit on larger transfers (see
/// tests/interop_js.rs).
const BROWSER_SENDS: usize = MIB;

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

    let mut browser = open_browser_peer(
        &chromium,
        BrowserTrust::PublicKeyOf(relay.certificate()),
        &relay_wss,
    )
    .await;
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
