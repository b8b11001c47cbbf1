//! A fleet of relays sharing one Redis: a peer reserved on relay 1 and registered there
//! is discovered by a peer connected only to relay 2, which then reaches it through
//! relay 1. With Redis down, registrations get `E_UNAVAILABLE` while circuits keep
//! flowing; with Redis back, registrations work again.

mod support;

use std::time::Instant;

use dusk_relay::config::RendezvousStore;
use libp2p::multiaddr::Protocol;
use libp2p::rendezvous::ErrorCode;
use libp2p::Multiaddr;
use support::redis::RedisServer;
use support::*;

const COMMUNITY: &str = "dusk/community/fleet";

async fn fleet_relay(url: &str) -> TestRelay {
    let url = url.to_owned();
    TestRelay::start_with(move |c| c.rendezvous.store = RendezvousStore::Redis(url)).await
}

/// The relay part of a circuit address (`<relay>/p2p-circuit[/p2p/<peer>]`).
fn relay_of(circuit: &Multiaddr) -> Multiaddr {
    circuit
        .iter()
        .take_while(|p| *p != Protocol::P2pCircuit)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_on_one_relay_is_found_and_reached_through_another() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (relay1, relay2) = (
        fleet_relay(&redis.url()).await,
        fleet_relay(&redis.url()).await,
    );

    // A reserves on relay 1 and registers there.
    let mut a = relay1.client().await;
    a.reserve(&relay1.addr(Transport::Tcp)).await;
    register(&mut a, relay1.peer_id(), COMMUNITY, None)
        .await
        .expect("registered on relay 1");

    // B knows only relay 2, finds A there, and dials A through relay 1 as A's record says.
    let mut b = relay2.client().await;
    b.connect(&relay2.addr(Transport::Tcp)).await;
    let found = discover(&mut b, relay2.peer_id(), COMMUNITY).await;
    let record = &found
        .iter()
        .find(|r| r.record.peer_id() == a.peer_id)
        .expect("A is discoverable through relay 2")
        .record;
    // B trusts only relay 2's self-signed WSS certificate: take the TCP circuit address
    // (the record's order follows the order relay 1's listeners came up in).
    let via = relay_of(
        record
            .addresses()
            .iter()
            .find(|a| Transport::Tcp.matches(a))
            .expect("A's circuit address over TCP"),
    );
    assert!(
        via.iter().any(|p| p == Protocol::P2p(relay1.peer_id())),
        "A's record points at relay 1: {via}"
    );
    b.dial_through(&via, a.peer_id).await;
    exchange_both_ways(&mut b, &mut a, 512 * 1024).await;

    // Redis down: a registration is refused at once, and relaying goes on.
    redis.stop();
    let started = Instant::now();
    assert_eq!(
        register(&mut a, relay1.peer_id(), "dusk/peers", None).await,
        Err(ErrorCode::Unavailable)
    );
    let refused_after = started.elapsed();
    println!("E_UNAVAILABLE {refused_after:?} after Redis stopped");
    exchange_both_ways(&mut b, &mut a, 512 * 1024).await;
    let mut c = relay1.client().await;
    c.reserve(&relay1.addr(Transport::Tcp)).await;

    // Redis back: the next registration works on the same relays (the store reconnects
    // within the operation).
    redis.start_again();
    register(&mut c, relay1.peer_id(), "dusk/peers", None)
        .await
        .expect("registered after Redis came back");
    let found = discover(&mut b, relay2.peer_id(), "dusk/peers").await;
    assert!(found.iter().any(|r| r.record.peer_id() == c.peer_id));
}
