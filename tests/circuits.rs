//! Circuit relay v2 over every transport: a client reserves, a second dials it through
//! `/p2p-circuit`, and they push verified bytes both ways.

mod support;

use std::time::Duration;

use dusk_relay::RelayEvent;
use support::*;

const EIGHT_MIB: usize = 8 * 1024 * 1024;

/// A reserves on the relay over `a_via`, B dials A through the relay over `b_via`, and
/// they exchange 8 MiB each way.
async fn relay_8_mib(a_via: Transport, b_via: Transport) {
    let relay = TestRelay::start().await;
    let mut events = relay.subscribe();
    let mut a = relay.client().await;
    let mut b = relay.client().await;

    let limit = a.reserve(&relay.addr(a_via)).await;
    // dusk's relay is the only path: no byte cap, a day or more per circuit.
    if let Some(limit) = limit {
        assert!(
            limit.data_in_bytes.unwrap_or(0) == 0,
            "byte limit {limit:?}"
        );
        assert!(
            limit.duration.unwrap_or(Duration::MAX) >= Duration::from_secs(24 * 3600),
            "{limit:?}"
        );
    }

    b.connect(&relay.addr(b_via)).await;
    b.dial_through(&relay.addr(b_via), a.peer_id).await;
    let (src, dst) = relay_event(&mut events, |e| match e {
        RelayEvent::CircuitOpened { src, dst } => Some((*src, *dst)),
        _ => None,
    })
    .await;
    assert_eq!((src, dst), (b.peer_id, a.peer_id));

    let mib_per_s = exchange_both_ways(&mut b, &mut a, EIGHT_MIB).await;
    eprintln!("throughput {a_via:?} <-> {b_via:?}: {mib_per_s:.1} MiB/s each way, 8 MiB each way");
}

transport_tests! {
    relay_8_mib;
    circuit_over_tcp_carries_8_mib_both_ways => (Transport::Tcp, Transport::Tcp),
    circuit_over_quic_carries_8_mib_both_ways => (Transport::Quic, Transport::Quic),
    circuit_over_ws_carries_8_mib_both_ways => (Transport::Ws, Transport::Ws),
    circuit_over_wss_carries_8_mib_both_ways => (Transport::Wss, Transport::Wss),
    circuit_between_quic_and_wss_clients_carries_8_mib_both_ways =>
        (Transport::Quic, Transport::Wss),
}
