//! Reservations and circuits over relayed connections are refused (circuit relay v2
//! spec): a relay never offers HOP on a connection that itself runs through a relay.
//!
//! The dusk relay has no relay *client*, so nothing can even reach it through a
//! circuit. To test the behaviour itself, this test gives a second relay (the dusk
//! relay's own `Behaviour`) a relay client, reachable both directly and through the
//! first relay, and asks it for HOP both ways.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use dusk_relay::behaviour::Behaviour as RelayBehaviour;
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{relay, yamux, Multiaddr, StreamProtocol};
use support::*;

#[derive(NetworkBehaviour)]
struct RelayWithClient {
    relay_client: relay::client::Behaviour,
    dusk: RelayBehaviour,
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_is_refused_over_a_relayed_connection() {
    let first = TestRelay::start().await;
    let first_addr = first.addr(Transport::Tcp);

    // The second relay: dusk's behaviour plus a relay client, on its own TCP port.
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let mut second = tcp_relay_client_swarm(yamux::Config::default, |key, relay_client| {
        RelayWithClient {
            relay_client,
            dusk: RelayBehaviour::new(key, &config),
        }
    });
    let second_id = *second.local_peer_id();
    second
        .listen_on(Multiaddr::from(IpAddr::V4(Ipv4Addr::LOCALHOST)).with(Protocol::Tcp(0)))
        .unwrap();
    second
        .listen_on(first_addr.clone().with(Protocol::P2pCircuit))
        .unwrap();
    let mut second_direct = None;
    let mut reserved = false;
    within(EVENT_TIMEOUT, "second relay listening", async {
        while second_direct.is_none() || !reserved {
            if let SwarmEvent::NewListenAddr { address, .. } = second.select_next_some().await {
                if dusk_relay::multiaddr_ext::is_relayed(&address) {
                    reserved = true;
                } else {
                    second_direct = Some(address.clone());
                }
                // An external address turns HOP on (see LIBP2P-NOTES).
                second.add_external_address(address);
            }
        }
    })
    .await;
    let second_direct = second_direct.unwrap().with(Protocol::P2p(second_id));
    tokio::spawn(async move {
        loop {
            second.select_next_some().await;
        }
    });

    let hop: StreamProtocol = relay::HOP_PROTOCOL_NAME;

    // Through the first relay: no HOP on the relayed connection.
    let mut through = first.client().await;
    through.connect(&first_addr).await;
    through.dial_through(&first_addr, second_id).await;
    match within(
        EVENT_TIMEOUT,
        "HOP stream",
        through.control.open_stream(second_id, hop.clone()),
    )
    .await
    {
        Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => {}
        Ok(_) => panic!("HOP offered over a relayed connection"),
        Err(other) => panic!("unexpected error: {other}"),
    }

    // Directly: the same relay offers HOP, so the refusal above is about the relaying.
    let mut direct = first.client().await;
    direct.connect(&second_direct).await;
    within(
        EVENT_TIMEOUT,
        "HOP stream",
        direct.control.open_stream(second_id, hop),
    )
    .await
    .expect("HOP offered over a direct connection");
}
