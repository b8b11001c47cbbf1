//! Graceful drain on the first stop signal: `/readyz` goes 503 at once, new
//! reservations are refused, open circuits keep carrying bytes until they end or the
//! drain deadline passes; a second signal stops at once.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use dusk_relay::RelayEvent;
use support::*;

async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    http(addr, "GET", path).await.0
}

/// A relay with a reservation (A) and an open circuit B -> A.
async fn relay_with_circuit(drain: Duration) -> (TestRelay, Client, Client) {
    let relay = TestRelay::start_with(|c| c.drain_timeout = drain).await;
    let (a, b) = open_circuit(&relay, Transport::Tcp).await;
    (relay, a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_keeps_circuits_flowing_refuses_reservations_and_stops_at_the_deadline() {
    let (mut relay, mut a, mut b) = relay_with_circuit(Duration::from_secs(3)).await;
    let http = relay.handle.http_addr.unwrap();
    assert_eq!(http_status(http, "/readyz").await, 200);

    let mut events = relay.start_draining().await;
    assert_eq!(
        http_status(http, "/readyz").await,
        503,
        "not ready while draining"
    );
    assert_eq!(
        http_status(http, "/healthz").await,
        200,
        "still alive while draining"
    );

    // The open circuit still carries data both ways.
    exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;

    // A new reservation is refused.
    let mut late = relay.client().await;
    let refused = late.try_reserve(&relay.addr(Transport::Tcp)).await;
    assert!(refused.is_err(), "reservation accepted while draining");

    // So is a new rendezvous registration (A holds a reservation, so it has a circuit
    // address to register), with E_UNAVAILABLE.
    let registered = register(&mut a, relay.peer_id(), "dusk/peers", None).await;
    assert_eq!(
        registered,
        Err(libp2p::rendezvous::ErrorCode::Unavailable),
        "registration accepted while draining"
    );

    // The circuit is still open, so the relay stops when the deadline passes.
    let circuits = relay_event(&mut events, |e| match e {
        RelayEvent::DrainDeadline { circuits } => Some(*circuits),
        _ => None,
    })
    .await;
    assert_eq!(circuits, 1);
    relay.stopped("relay stop").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_signal_stops_at_once() {
    // A drain deadline longer than the test's own timeout: only the second signal can end it.
    let (mut relay, _a, _b) = relay_with_circuit(Duration::from_secs(3600)).await;
    relay.start_draining().await;
    relay.handle.signal();
    relay.stopped("relay stop after the second signal").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_ends_when_the_last_circuit_closes() {
    let (mut relay, a, b) = relay_with_circuit(Duration::from_secs(3600)).await;
    relay.start_draining().await;
    // The clients leave: their circuit closes, and with it the drain.
    drop((a, b));
    relay.stopped("relay stop once drained").await;
}
