//! Connection caps: `DUSK_MAX_CONNECTIONS` refuses connections above it, and the peers
//! already connected keep their service.

mod support;

use dusk_relay::RelayEvent;
use libp2p::swarm::SwarmEvent;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn connections_above_max_connections_are_refused() {
    let relay = TestRelay::start_with(|c| c.connection_limits.max_established = 1).await;
    let mut events = relay.subscribe();
    let mut a = relay.client().await;
    // A reservation, not only a connection: the client may see its connection
    // established before the relay does, and B's must come second at the relay.
    a.reserve(&relay.addr(Transport::Tcp)).await;

    let mut b = relay.client().await;
    let addr = relay.addr(Transport::Tcp);
    b.call(move |s| s.dial(addr)).await.expect("dial");
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::ConnectionRefused { .. }).then_some(())
    })
    .await;
    // B ends up without a connection to the relay.
    let relay_id = relay.peer_id();
    b.next("refused connection", |e| match e {
        SwarmEvent::OutgoingConnectionError { .. } => Some(()),
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } if peer_id == relay_id => Some(()),
        _ => None,
    })
    .await;

    // A, within the cap, keeps its connection.
    assert!(
        a.call(move |s| s.is_connected(&relay_id)).await,
        "A lost its connection"
    );
}
