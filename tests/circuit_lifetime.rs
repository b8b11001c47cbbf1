//! A circuit outlives libp2p's default 2-minute circuit limit and keeps carrying data.
//! This test takes a little over two minutes by design: what it checks is time itself.

mod support;

use std::time::{Duration, Instant};

use libp2p::swarm::SwarmEvent;
use support::*;

/// libp2p's default `max_circuit_duration`.
const LIBP2P_DEFAULT_CIRCUIT_DURATION: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn circuit_outlives_two_minutes_with_traffic() {
    let relay = TestRelay::start().await;
    let (mut a, mut b) = open_circuit(&relay, Transport::Tcp).await;
    let opened = Instant::now();
    // From here on, the relay must report nothing: no circuit closed or opened.
    let mut events = relay.subscribe();
    // More than libp2p's default 128 KiB circuit byte limit, straight away.
    exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;

    // Wait past the default limit; any circuit or connection closing meanwhile fails.
    let deadline = tokio::time::Instant::from_std(
        opened + LIBP2P_DEFAULT_CIRCUIT_DURATION + Duration::from_secs(10),
    );
    let a_id = a.peer_id;
    // Ping and identify traffic of both clients flows meanwhile; the relay must not
    // report the circuit or any connection as closed.
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => {}
        event = events.recv() => panic!("relay event during the wait: {event:?}"),
        _ = b.next_unbounded(|e| match e {
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => Some((peer_id, cause)),
            _ => None,
        }) => panic!("client B lost a connection during the wait"),
        _ = a.next_unbounded(|e| match e {
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => Some((peer_id, cause)),
            _ => None,
        }) => panic!("client A lost a connection during the wait"),
    }
    assert!(opened.elapsed() > LIBP2P_DEFAULT_CIRCUIT_DURATION);

    // The same relayed connection (no new circuit) still carries data.
    let connected = b.call(move |s| s.is_connected(&a_id)).await;
    assert!(connected, "B is no longer connected to A");
    exchange_both_ways(&mut b, &mut a, 8 * 1024 * 1024).await;
    assert!(
        events.try_recv().is_err(),
        "no circuit opened or closed since the first"
    );
}
