//! identify: the relay announces `/dusk/relay/1.0.0`, agent `dusk-relay/<version>`, and
//! the same relay and rendezvous protocols over every transport.

mod support;

use libp2p::swarm::SwarmEvent;
use libp2p::{identify, relay, rendezvous};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_transport_reaches_relay_and_rendezvous_with_dusk_identify() {
    let relay = TestRelay::start().await;
    for transport in ALL_TRANSPORTS {
        let mut client = relay.client().await;
        client.connect(&relay.addr(transport)).await;
        let relay_id = relay.peer_id();
        let info = client
            .next("identify from the relay", |e| match e {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(
                    identify::Event::Received { peer_id, info, .. },
                )) if peer_id == relay_id => Some(info),
                _ => None,
            })
            .await;
        assert_eq!(info.protocol_version, "/dusk/relay/1.0.0", "{transport:?}");
        assert_eq!(
            info.agent_version,
            format!("dusk-relay/{}", env!("CARGO_PKG_VERSION"))
        );
        assert!(
            info.protocols.contains(&relay::HOP_PROTOCOL_NAME),
            "{transport:?}: {:?}",
            info.protocols
        );
        assert!(
            info.protocols.contains(&rendezvous::PROTOCOL_NAME),
            "{transport:?}: {:?}",
            info.protocols
        );
        // Only external addresses are announced, never a wildcard.
        for addr in &info.listen_addrs {
            assert!(!addr.to_string().contains("0.0.0.0"), "{addr}");
        }
    }
}
