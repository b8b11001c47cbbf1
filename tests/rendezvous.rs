//! Rendezvous: a dusk peer registers under the client's namespaces, another finds it by
//! peer id and community, and after unregistering it is gone.

mod support;

use dusk_relay::RelayEvent;
use libp2p::multiaddr::Protocol;
use libp2p::rendezvous::{self, Namespace, Registration};
use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;
use support::*;

async fn discover(client: &mut Client, relay: PeerId, namespace: &str) -> Vec<Registration> {
    let ns = Namespace::new(namespace.to_owned()).unwrap();
    client
        .call(move |s| {
            s.behaviour_mut()
                .rendezvous
                .discover(Some(ns), None, None, relay)
        })
        .await;
    client
        .next("discover response", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Discovered { registrations, .. },
            )) => Some(registrations),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::DiscoverFailed { error, .. },
            )) => panic!("discover failed: {error:?}"),
            _ => None,
        })
        .await
}

async fn register_discover_unregister(transport: Transport) {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();
    let mut events = relay.subscribe();
    let mut a = relay.client().await;
    let mut b = relay.client().await;

    a.reserve(&relay.addr(transport)).await;
    let peer_namespace = format!("dusk/peer/{}", a.peer_id);
    let namespaces = [
        "dusk/peers".to_owned(),
        "dusk/community/3f2a9c".to_owned(),
        peer_namespace.clone(),
    ];
    for namespace in &namespaces {
        let ns = Namespace::new(namespace.clone()).unwrap();
        a.call(move |s| s.behaviour_mut().rendezvous.register(ns, relay_id, None))
            .await
            .expect("register");
        let (registered, ttl) = a
            .next("registration", |e| match e {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                    rendezvous::client::Event::Registered { namespace, ttl, .. },
                )) => Some((namespace.to_string(), ttl)),
                SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                    rendezvous::client::Event::RegisterFailed { error, .. },
                )) => panic!("register failed: {error:?}"),
                _ => None,
            })
            .await;
        assert_eq!(&registered, namespace);
        assert_eq!(
            ttl,
            rendezvous::DEFAULT_TTL,
            "the dusk client leaves the TTL unset"
        );
    }

    b.connect(&relay.addr(transport)).await;
    for namespace in &namespaces {
        let found = discover(&mut b, relay_id, namespace).await;
        let registration = found
            .iter()
            .find(|r| r.record.peer_id() == a.peer_id)
            .unwrap_or_else(|| panic!("{} not found under {namespace}", a.peer_id));
        // A's record holds only its circuit address: discovery reveals no IP of A's.
        assert!(!registration.record.addresses().is_empty());
        for addr in registration.record.addresses() {
            assert!(
                addr.iter().any(|p| p == Protocol::P2pCircuit),
                "non-circuit address {addr}"
            );
        }
    }

    let ns = Namespace::new(peer_namespace.clone()).unwrap();
    a.call(move |s| s.behaviour_mut().rendezvous.unregister(ns, relay_id))
        .await;
    let a_id = a.peer_id;
    relay_event(&mut events, |e| match e {
        RelayEvent::Unregistered { peer, namespace }
            if *peer == a_id && *namespace == peer_namespace =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    let found = discover(&mut b, relay_id, &peer_namespace).await;
    assert!(
        found.iter().all(|r| r.record.peer_id() != a.peer_id),
        "still registered: {found:?}"
    );
    // The other registrations are untouched.
    let found = discover(&mut b, relay_id, "dusk/peers").await;
    assert!(found.iter().any(|r| r.record.peer_id() == a.peer_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn rendezvous_register_discover_unregister_over_tcp() {
    register_discover_unregister(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rendezvous_register_discover_unregister_over_wss() {
    register_discover_unregister(Transport::Wss).await;
}
