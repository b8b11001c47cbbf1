//! js-libp2p in Node (libp2p 3.x with @libp2p/circuit-relay-v2, pinned by
//! interop/js/package-lock.json) against the relay, as a dusk web or Node client would
//! use it: a stock js peer reserves over TCP, WS and WSS (trusting the relay's
//! certificate); another js peer and a Rust peer each open a circuit to it and move
//! verified bytes both ways, 8 MiB each way between the js peers. That is the proof of
//! the relay's yamux cap (`YAMUX_MAX_STREAMS`): js-yamux sends frames as large as the
//! window it is granted and rust-yamux drops the whole connection on a frame over
//! 1 MiB, which used to kill js peers' relay connections. A js peer also dials Rust
//! peers' circuit addresses. And it pins down what js-libp2p makes of the relay's
//! circuit limit (no byte limit, a 24 h duration): the relayed connection is "limited",
//! so streams need `runOnLimitedConnection: true` on `handle` and on `dialProtocol`,
//! and it is not closed early.
//! js peers also register and discover through the relay's rendezvous (interop/js has
//! its own client), which takes their records only when signed the way rust-libp2p
//! signs them.
//!
//! The end-to-end yamux of a circuit runs between the two peers, not through the
//! relay's: a Rust peer with libp2p's default yamux (like `tests/support`'s client)
//! still drops the relayed connection when a js peer sends it more than about 1 MiB at
//! once, so js -> Rust moves 1 MiB to such a peer, and 8 MiB to one that caps its
//! streams as the relay does.
//!
//! The js peers are `interop/js/node-peer.mjs` processes, driven over stdin/stdout JSON
//! lines (`tests/support/js.rs`). `interop/js/setup` (npm ci) runs first; a missing
//! Node fails the tests, never skips them.

mod support;

use std::path::{Path, PathBuf};

use dusk_relay::RelayEvent;
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{relay, yamux, Multiaddr, PeerId};
use serde_json::{json, Value};
use support::js::*;
use support::*;

const MIB: usize = 1024 * 1024;
/// Each way between js peers, and from Rust to js.
const EIGHT_MIB: usize = 8 * MIB;
/// From js to a Rust peer with libp2p's default yamux: no frame can be larger.
const JS_TO_DEFAULT_RUST: usize = MIB;
/// The circuit duration the relay grants by default (24 h); js reports what is left.
const DAY_SECS: i64 = 24 * 3600;

/// The relay's WSS certificate as a PEM file, for NODE_EXTRA_CA_CERTS.
fn trust_file(relay: &TestRelay) -> PathBuf {
    let path = relay.dir.path().join("trusted-wss-cert.pem");
    std::fs::write(&path, pem(&relay.certificate())).expect("write the certificate");
    path
}

/// Starts a relay and a js peer reserved on it over `via`; checks the relay saw the
/// reservation.
async fn relay_and_reserved_js(via: Transport) -> (TestRelay, JsPeer, PathBuf) {
    relay_and_reserved_js_with(via, |_| {}).await
}

async fn relay_and_reserved_js_with(
    via: Transport,
    adjust: impl FnOnce(&mut dusk_relay::Config),
) -> (TestRelay, JsPeer, PathBuf) {
    ensure_js_setup();
    let relay = TestRelay::start_with(adjust).await;
    let trust = trust_file(&relay);
    let mut events = relay.subscribe();
    let listener = JsPeer::spawn_node("js listener", Some(&relay.addr(via)), &trust).await;
    listener.reserved_on(&mut events).await;
    (relay, listener, trust)
}

fn mib(len: usize) -> usize {
    len / MIB
}

/// The open connections `peer` has to `remote`.
async fn open_connections(peer: &mut JsPeer, remote: PeerId) -> usize {
    peer.connections()
        .await
        .into_iter()
        .filter(|c| c["remotePeer"] == json!(remote.to_string()) && c["status"] == "open")
        .count()
}

/// Fails with `what` unless `peer` has an open connection to `remote`.
async fn assert_open(peer: &mut JsPeer, remote: PeerId, what: &str) {
    assert!(
        open_connections(peer, remote).await >= 1,
        "{what}\n{}",
        peer.diagnostics()
    );
}

/// The relayed connection from `dialer` to `listener` (at `target`) carries 1 MiB each
/// way, and stays open.
async fn carries_data_and_stays_open(
    listener: &mut JsPeer,
    dialer: &mut JsPeer,
    target: &Multiaddr,
) {
    js_exchange(listener, dialer, target, MIB).await;
    assert_open(dialer, listener.peer_id, "the relayed connection closed").await;
}

/// A second js peer, connected to `listener` through the relay's TCP listener: the
/// peer, the circuit address it dialed, and what js reports of the connection.
async fn js_dialer_through_tcp(
    relay: &TestRelay,
    listener: &JsPeer,
    trust: &Path,
) -> (JsPeer, Multiaddr, Value) {
    let mut dialer = JsPeer::spawn_node("js dialer", None, trust).await;
    let target = circuit_addr(&relay.addr(Transport::Tcp), listener.peer_id);
    let connection = dialer
        .request(
            json!({"cmd": "dial", "addr": target.to_string()}),
            COMMAND_TIMEOUT,
        )
        .await;
    (dialer, target, connection)
}

/// A second js peer dials the listener through the relay over `via` and they move
/// 8 MiB each way; then checks the transfer closed no connection.
async fn js_and_js_exchange(
    relay: &TestRelay,
    listener: &mut JsPeer,
    via: Transport,
    trust: &Path,
) {
    let mut events = relay.subscribe();
    let mut dialer = JsPeer::spawn_node("js dialer", None, trust).await;
    let target = circuit_addr(&relay.addr(via), listener.peer_id);
    let (reply, inbound) = js_exchange(listener, &mut dialer, &target, EIGHT_MIB).await;
    let dialer_ms = exchanged_ms(&reply, EIGHT_MIB, EIGHT_MIB);
    let listener_ms = exchanged_ms(&inbound, EIGHT_MIB, EIGHT_MIB);
    let (src, dst) = (dialer.peer_id, listener.peer_id);
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitOpened { src: s, dst: d } if (*s, *d) == (src, dst))
            .then_some(())
    })
    .await;
    eprintln!(
        "throughput js <-> js, both over {via:?}: {:.1} MiB/s each way (8 MiB each way, verified)",
        mib_per_s(EIGHT_MIB, dialer_ms.max(listener_ms))
    );
    // Neither peer's link to the relay (what the frame-size clash used to close) nor
    // the circuit went down.
    for peer in [&*listener, &dialer] {
        assert!(
            peer.closed_connections_to(relay.peer_id()).is_empty(),
            "{}'s connection to the relay closed during the transfer\n{}",
            peer.name,
            peer.diagnostics()
        );
    }
    assert_open(
        &mut dialer,
        listener.peer_id,
        "the circuit closed after the transfer",
    )
    .await;
}

/// The Rust test client dials the js listener through the relay over `via`; it sends
/// 8 MiB and receives 1 MiB.
async fn rust_and_js_exchange(relay: &TestRelay, listener: &mut JsPeer, via: Transport) {
    let mut rust = relay.client().await;
    let (inbound, rust_elapsed) = rust_dials_js(
        &mut rust,
        &relay.addr(via),
        listener,
        EIGHT_MIB,
        JS_TO_DEFAULT_RUST,
    )
    .await;
    let ms = transfer_ms(&inbound, JS_TO_DEFAULT_RUST, EIGHT_MIB, rust_elapsed);
    eprintln!(
        "throughput Rust -> js listener, both over {via:?}: {:.1} MiB/s Rust -> js ({} MiB, \
         with {} MiB back at once, verified)",
        mib_per_s(EIGHT_MIB, ms),
        mib(EIGHT_MIB),
        mib(JS_TO_DEFAULT_RUST),
    );
    assert!(
        listener.closed_connections_to(relay.peer_id()).is_empty(),
        "js listener's connection to the relay closed\n{}",
        listener.diagnostics()
    );
    assert_open(
        listener,
        rust.peer_id,
        "the circuit from the Rust peer closed after the transfer",
    )
    .await;
}

async fn js_reserved_over(via: Transport) {
    let (relay, mut listener, trust) = relay_and_reserved_js(via).await;
    js_and_js_exchange(&relay, &mut listener, via, &trust).await;
    rust_and_js_exchange(&relay, &mut listener, via).await;
}

transport_tests! {
    js_reserved_over;
    js_peer_reserved_over_tcp_exchanges_8_mib_with_js_and_rust_peers => (Transport::Tcp),
    js_peer_reserved_over_ws_exchanges_8_mib_with_js_and_rust_peers => (Transport::Ws),
    js_peer_reserved_over_wss_exchanges_8_mib_with_js_and_rust_peers => (Transport::Wss),
}

/// A new js peer dials the circuit address on `relay_addr` of the Rust peer `rust`, whose
/// data streams arrive on `incoming`, and they move `js_sends` bytes one way and
/// `rust_sends` the other at once. Returns the milliseconds of the slower side.
async fn js_dialer_to_rust(
    relay_addr: &Multiaddr,
    trust: &Path,
    rust: PeerId,
    incoming: &mut libp2p_stream::IncomingStreams,
    js_sends: usize,
    rust_sends: usize,
) -> f64 {
    let mut js = JsPeer::spawn_node("js dialer", None, trust).await;
    let target = circuit_addr(relay_addr, rust);
    let (reply, rust_elapsed) =
        js_dials_rust(&mut js, &target, incoming, js_sends, rust_sends, (1, 2)).await;
    transfer_ms(&reply, js_sends, rust_sends, rust_elapsed)
}

#[tokio::test(flavor = "multi_thread")]
async fn js_peer_dials_a_rust_peers_circuit_address() {
    ensure_js_setup();
    let relay = TestRelay::start().await;
    let trust = trust_file(&relay);
    let mut rust = relay.client().await;
    rust.reserve(&relay.addr(Transport::Tcp)).await;
    let ms = js_dialer_to_rust(
        &relay.addr(Transport::Tcp),
        &trust,
        rust.peer_id,
        &mut rust.incoming,
        JS_TO_DEFAULT_RUST,
        EIGHT_MIB,
    )
    .await;
    eprintln!(
        "throughput js -> Rust listener (default yamux), both over Tcp: {:.1} MiB/s Rust -> js \
         ({} MiB, with {} MiB js -> Rust at once, verified)",
        mib_per_s(EIGHT_MIB, ms),
        mib(EIGHT_MIB),
        mib(JS_TO_DEFAULT_RUST),
    );
}

/// The js peers' rendezvous client (interop/js/src/rendezvous.js) against the relay and
/// rust-libp2p's client, the one the dusk client ships: a record signed in the spec's
/// format (js-libp2p's and go-libp2p's) is refused, because rust-libp2p reads only its
/// own and one record it cannot read fails a Rust client's whole DISCOVER; signed the
/// rust-libp2p way it is stored, and Rust and js discoverers each read both peers'.
#[tokio::test(flavor = "multi_thread")]
async fn js_rendezvous_registers_in_rust_libp2ps_record_format_and_discovers_rust_peers() {
    const NAMESPACE: &str = "dusk/community/js";
    let (relay, mut listener, trust) = relay_and_reserved_js(Transport::Tcp).await;
    let relay_addr = relay.addr(Transport::Tcp);
    let refused = listener
        .try_register(&relay_addr, NAMESPACE, 600, "spec")
        .await
        .expect_err("the relay stored a spec-format record");
    assert!(
        refused.starts_with("RendezvousError: E_INVALID_SIGNED_PEER_RECORD (101)"),
        "{refused}"
    );
    listener.register(&relay_addr, NAMESPACE, 600).await;

    let mut rust = relay.client().await;
    rust.reserve(&relay_addr).await;
    register(&mut rust, relay.peer_id(), NAMESPACE, None)
        .await
        .expect("the Rust peer registered");
    let mut both = vec![listener.peer_id, rust.peer_id];
    both.sort();

    let mut by_rust: Vec<PeerId> = discover(&mut rust, relay.peer_id(), NAMESPACE)
        .await
        .iter()
        .map(|r| r.record.peer_id())
        .collect();
    by_rust.sort();
    assert_eq!(by_rust, both);

    let mut js = JsPeer::spawn_node("js discoverer", None, &trust).await;
    let found = js.discover(&relay_addr, NAMESPACE).await;
    let mut by_js: Vec<PeerId> = found
        .iter()
        .map(|r| {
            r["peerId"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("peer id")
        })
        .collect();
    by_js.sort();
    assert_eq!(by_js, both, "{found:?}");
    assert!(
        found.iter().all(|r| r["format"] == "rust-libp2p"),
        "{found:?}"
    );
}

#[derive(NetworkBehaviour)]
struct CappedPeerBehaviour {
    relay_client: relay::client::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// yamux as the relay configures it (src/net/transport.rs): with at most 4096 streams no
/// stream's receive window grows past 256 KiB, so a js peer never sends a frame over
/// rust-yamux's 1 MiB limit.
fn capped_yamux() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(dusk_relay::config::defaults::YAMUX_MAX_STREAMS);
    config
}

/// A Rust peer reserved on `relay_addr` whose yamux (on relayed connections too) is
/// capped like the relay's; its swarm runs until the returned task is aborted.
async fn capped_rust_peer(
    relay_addr: &Multiaddr,
) -> (
    PeerId,
    libp2p_stream::IncomingStreams,
    tokio::task::JoinHandle<()>,
) {
    let mut swarm = tcp_relay_client_swarm(capped_yamux, |_, relay_client| CappedPeerBehaviour {
        relay_client,
        stream: libp2p_stream::Behaviour::new(),
    });
    let incoming = swarm
        .behaviour()
        .stream
        .new_control()
        .accept(DATA_PROTOCOL)
        .expect("accept data protocol");
    swarm
        .listen_on(relay_addr.clone().with(Protocol::P2pCircuit))
        .expect("listen through the relay");
    within(EVENT_TIMEOUT, "reservation", async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(CappedPeerBehaviourEvent::RelayClient(
                    relay::client::Event::ReservationReqAccepted { .. },
                )) => break,
                SwarmEvent::ListenerClosed { reason, .. } => {
                    panic!("reservation failed: {reason:?}")
                }
                _ => {}
            }
        }
    })
    .await;
    let peer_id = *swarm.local_peer_id();
    let task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (peer_id, incoming, task)
}

/// What a Rust dusk client needs for js peers to send it more than 1 MiB at once: the
/// relay's yamux cap on its own relayed connections. Then 8 MiB each way pass.
#[tokio::test(flavor = "multi_thread")]
async fn js_peer_sends_8_mib_to_a_rust_peer_with_capped_yamux_streams() {
    ensure_js_setup();
    let relay = TestRelay::start().await;
    let trust = trust_file(&relay);
    let relay_addr = relay.addr(Transport::Tcp);
    let (rust_peer, mut incoming, task) = capped_rust_peer(&relay_addr).await;
    let ms = js_dialer_to_rust(
        &relay_addr,
        &trust,
        rust_peer,
        &mut incoming,
        EIGHT_MIB,
        EIGHT_MIB,
    )
    .await;
    eprintln!(
        "throughput js -> Rust listener (capped yamux), both over Tcp: {:.1} MiB/s each way \
         (8 MiB each way, verified)",
        mib_per_s(EIGHT_MIB, ms)
    );
    task.abort();
}

/// js-libp2p reads the relay's limit (no data limit, a duration of a day) as "limited":
/// a stream needs `runOnLimitedConnection: true` when dialed and when handled, or it
/// fails. The connection itself is not cut short.
#[tokio::test(flavor = "multi_thread")]
async fn js_treats_relayed_connections_as_limited_but_keeps_them_open() {
    let (relay, mut listener, trust) = relay_and_reserved_js(Transport::Tcp).await;
    let (mut dialer, target, connection) = js_dialer_through_tcp(&relay, &listener, &trust).await;
    let limits = &connection["limits"];
    assert!(
        limits.is_object(),
        "a relayed connection without limits: {connection}"
    );
    assert!(
        limits["bytes"].is_null(),
        "js must read the relay's data limit 0 as unlimited: {connection}"
    );
    let seconds = limits["seconds"].as_i64().expect("a duration");
    assert!(
        seconds >= DAY_SECS - 60,
        "circuit duration left {seconds} s, expected a day or more"
    );
    eprintln!("js sees the relayed connection as limited: {limits}");

    // A stock dialProtocol refuses the limited connection.
    let refused = dialer
        .try_request(
            json!({
                "cmd": "open", "addr": target.to_string(),
                "protocol": DATA_PROTOCOL.as_ref(), "runOnLimitedConnection": false,
            }),
            COMMAND_TIMEOUT,
        )
        .await
        .expect_err("dialProtocol without runOnLimitedConnection on a relayed connection");
    assert!(refused.starts_with("LimitedConnectionError"), "{refused}");
    eprintln!("js dialProtocol without runOnLimitedConnection: {refused}");

    // A stock handler (the listener's /dusk-test/strict/1.0.0) lets the protocol be
    // negotiated, then resets the stream without running.
    let mut rust = relay.client().await;
    rust.connect(&relay.addr(Transport::Tcp)).await;
    rust.dial_through(&relay.addr(Transport::Tcp), listener.peer_id)
        .await;
    let strict = libp2p::StreamProtocol::new("/dusk-test/strict/1.0.0");
    let mut control = rust.control.clone();
    let outcome = within(EVENT_TIMEOUT, "strict stream", async {
        use futures::{AsyncReadExt, AsyncWriteExt};
        let mut stream = control.open_stream(listener.peer_id, strict).await?;
        stream.write_all(b"hello").await?;
        stream.close().await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(buf)
    })
    .await;
    eprintln!("stream to a js handler without runOnLimitedConnection: {outcome:?}");
    assert!(
        outcome.as_ref().map_or(true, |bytes| bytes.is_empty()),
        "{outcome:?}"
    );

    // With the flag on both ends, the same connection carries data and stays open.
    carries_data_and_stays_open(&mut listener, &mut dialer, &target).await;
    // The listener handles streams in order, so the strict one is long done: its
    // handler never ran.
    assert!(
        !listener
            .history
            .iter()
            .any(|m| m["event"] == "strict-stream"),
        "a handler without runOnLimitedConnection ran on a relayed connection"
    );
    // Resetting the stream left the Rust peer's circuit up.
    assert!(
        listener.closed_connections_to(rust.peer_id).is_empty(),
        "the js listener closed the Rust peer's circuit\n{}",
        listener.diagnostics()
    );
}

/// With no circuit time limit configured (`max_circuit_duration_secs = 0`) the relay
/// announces u32::MAX seconds. js still calls the connection limited (any duration
/// does), arms no timer from it (one would overflow setTimeout and fire at once) and
/// keeps it open.
#[tokio::test(flavor = "multi_thread")]
async fn js_keeps_circuits_of_a_relay_without_a_time_limit_open() {
    let (relay, mut listener, trust) = relay_and_reserved_js_with(Transport::Tcp, |c| {
        c.relay.max_circuit_duration = None;
    })
    .await;
    let (mut dialer, target, connection) = js_dialer_through_tcp(&relay, &listener, &trust).await;
    let limits = &connection["limits"];
    eprintln!("js's limits on a circuit without a time limit: {limits}");
    assert!(limits["bytes"].is_null(), "{connection}");
    assert!(
        limits["seconds"].as_i64().unwrap_or(0) >= i64::from(u32::MAX) - 3600,
        "{connection}"
    );
    carries_data_and_stays_open(&mut listener, &mut dialer, &target).await;
}
