//! `DUSK_RELAY_EXTERNAL_ADDR` is what reservations carry: a client's circuit listen
//! addresses are built from them, and the relay's own (private) listen addresses stay out.

mod support;

use libp2p::multiaddr::Protocol;
use libp2p::relay;
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn reservations_carry_the_configured_external_addresses_only() {
    let external: Multiaddr = "/dns4/relay.example.com/tcp/4001".parse().unwrap();
    let relay = TestRelay::start_with(|c| c.external_addrs = vec![external.clone()]).await;
    let mut client = relay.client().await;
    let circuit = relay.addr(Transport::Tcp).with(Protocol::P2pCircuit);
    client
        .call(move |s| s.listen_on(circuit))
        .await
        .expect("listen on the relay");

    // The relay client reports one circuit listen address per address in the
    // reservation; the reservation event and those reports come in either order.
    let mut accepted = false;
    let mut announced: Vec<Multiaddr> = Vec::new();
    while !accepted || announced.is_empty() {
        client
            .next("reservation and circuit addresses", |e| {
                match e {
                    SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(
                        relay::client::Event::ReservationReqAccepted { .. },
                    )) => accepted = true,
                    SwarmEvent::NewListenAddr { address, .. } => announced.push(address),
                    SwarmEvent::ListenerClosed { reason, .. } => {
                        panic!("reservation failed: {reason:?}")
                    }
                    _ => return None,
                }
                Some(())
            })
            .await;
    }
    let expected = external
        .with(Protocol::P2p(relay.peer_id()))
        .with(Protocol::P2pCircuit);
    for address in &announced {
        assert!(
            address.to_string().starts_with(&expected.to_string()),
            "{address}"
        );
        assert!(
            !address.to_string().contains("127.0.0.1"),
            "relay's listen address leaked: {address}"
        );
    }
}
