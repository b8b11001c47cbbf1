//! Rendezvous: a dusk peer registers under the client's namespaces, another finds it by
//! peer id and community, and after unregistering it is gone.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use dusk_relay::rendezvous::store::{Caps, NewRegistration, RegisterOutcome};
use dusk_relay::rendezvous::{
    is_circuit_via, proto, MemoryStore, OwnAddresses, ResponseStatus, Store,
};
use dusk_relay::{Relay, RelayEvent};
use libp2p::core::PeerRecord;
use libp2p::multiaddr::Protocol;
use libp2p::rendezvous::{self, Cookie, ErrorCode, Namespace, Registration};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use support::*;

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
    let own: OwnAddresses = relay.handle.listen_addrs.iter().cloned().collect();
    for namespace in &namespaces {
        let found = discover(&mut b, relay_id, namespace).await;
        let registration = found
            .iter()
            .find(|r| r.record.peer_id() == a.peer_id)
            .unwrap_or_else(|| panic!("{} not found under {namespace}", a.peer_id));
        // A's record holds only circuit addresses through this relay (the server's own
        // rule): discovery reveals no IP of A's and sends no dialer anywhere else.
        assert!(!registration.record.addresses().is_empty());
        for addr in registration.record.addresses() {
            assert!(
                is_circuit_via(addr, relay_id, &own, a.peer_id),
                "not a circuit through this relay: {addr}"
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

transport_tests! {
    register_discover_unregister;
    rendezvous_register_discover_unregister_over_tcp => (Transport::Tcp),
    rendezvous_register_discover_unregister_over_wss => (Transport::Wss),
}

fn raw_register(namespace: &str, record: Vec<u8>) -> proto::Message {
    proto::Message {
        r#type: Some(proto::MessageType::Register as i32),
        register: Some(proto::Register {
            ns: Some(namespace.to_owned()),
            signed_peer_record: Some(record),
            // Within every test relay's bounds, so only what is under test can fail.
            ttl: Some(120),
        }),
        ..Default::default()
    }
}

fn signed_record(key: &libp2p::identity::Keypair, addrs: Vec<Multiaddr>) -> Vec<u8> {
    PeerRecord::new(key, addrs)
        .unwrap()
        .into_signed_envelope()
        .into_protobuf_encoding()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_with_a_direct_address_is_refused_so_no_ip_leaks() {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();

    // A client that announces its own IP address, as a peer without a relay would.
    let mut direct = relay.client().await;
    let own_addr: Multiaddr = "/ip4/127.0.0.1/tcp/31337".parse().unwrap();
    let addr = own_addr.clone();
    direct.call(move |s| s.add_external_address(addr)).await;
    direct.connect(&relay.addr(Transport::Tcp)).await;
    assert_eq!(
        register(&mut direct, relay_id, "dusk/peers", None).await,
        Err(ErrorCode::InvalidSignedPeerRecord)
    );
    // The status text says why.
    let mut raw = relay.client().await;
    raw.connect(&relay.addr(Transport::Tcp)).await;
    let (status, text) = register_status(
        &raw_request(
            &raw,
            relay_id,
            raw_register("dusk/peers", raw.signed_record(vec![own_addr])),
        )
        .await,
    );
    assert_eq!(status, ResponseStatus::EInvalidSignedPeerRecord);
    assert!(text.contains("/p2p-circuit"), "{text}");

    // A circuit-only client registers, and nobody discovering sees the direct one.
    let mut relayed = relay.client().await;
    relayed.reserve(&relay.addr(Transport::Tcp)).await;
    assert!(register(&mut relayed, relay_id, "dusk/peers", None)
        .await
        .is_ok());
    let found = discover(&mut raw, relay_id, "dusk/peers").await;
    assert_eq!(
        found.iter().map(|r| r.record.peer_id()).collect::<Vec<_>>(),
        vec![relayed.peer_id]
    );

    // An operator who allows direct addresses gets them registered.
    let open = TestRelay::start_with(|c| c.rendezvous.allow_direct_addresses = true).await;
    let mut direct = open.client().await;
    let addr = "/ip4/127.0.0.1/tcp/31337".parse::<Multiaddr>().unwrap();
    direct.call(move |s| s.add_external_address(addr)).await;
    direct.connect(&open.addr(Transport::Tcp)).await;
    assert!(register(&mut direct, open.peer_id(), "dusk/peers", None)
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_invalid_request_gets_its_status_code() {
    let relay = TestRelay::start_with(|c| {
        c.rendezvous.max_registrations_per_peer = 2;
        c.rendezvous.min_ttl_secs = 60;
        c.rendezvous.max_ttl_secs = 3600;
    })
    .await;
    let relay_id = relay.peer_id();
    let mut a = relay.client().await;
    a.reserve(&relay.addr(Transport::Tcp)).await;

    // With the crate's client.
    assert_eq!(
        register(&mut a, relay_id, "ns", Some(59)).await,
        Err(ErrorCode::InvalidTtl)
    );
    assert_eq!(
        register(&mut a, relay_id, "ns", Some(3601)).await,
        Err(ErrorCode::InvalidTtl)
    );
    assert_eq!(
        register(&mut a, relay_id, "ns", None).await,
        Err(ErrorCode::InvalidTtl),
        "the 2 h default is above this relay's maximum"
    );
    assert_eq!(
        register(&mut a, relay_id, "", Some(60)).await,
        Err(ErrorCode::InvalidNamespace)
    );
    assert_eq!(register(&mut a, relay_id, "one", Some(60)).await, Ok(60));
    assert_eq!(register(&mut a, relay_id, "two", Some(60)).await, Ok(60));
    assert_eq!(
        register(&mut a, relay_id, "three", Some(60)).await,
        Err(ErrorCode::Unavailable),
        "over the per-peer cap"
    );
    assert_eq!(
        register(&mut a, relay_id, "one", Some(120)).await,
        Ok(120),
        "a re-registration replaces and fits at the cap"
    );
    let cookie = discover_page(&mut a, relay_id, Some("one"), None, None)
        .await
        .unwrap()
        .1;
    assert_eq!(
        discover_page(&mut a, relay_id, Some("two"), Some(cookie), None)
            .await
            .unwrap_err(),
        ErrorCode::InvalidCookie
    );

    // Raw, for what the crate's client never sends.
    let circuit = relay
        .addr(Transport::Tcp)
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(a.peer_id));
    let someone_else = libp2p::identity::Keypair::generate_ed25519();
    let (status, _) = register_status(
        &raw_request(
            &a,
            relay_id,
            raw_register("ns", signed_record(&someone_else, vec![circuit.clone()])),
        )
        .await,
    );
    assert_eq!(status, ResponseStatus::ENotAuthorized);
    let (status, _) =
        register_status(&raw_request(&a, relay_id, raw_register("ns", b"garbage".to_vec())).await);
    assert_eq!(status, ResponseStatus::EInvalidSignedPeerRecord);
    let long = "x".repeat(256);
    let (status, _) = register_status(
        &raw_request(
            &a,
            relay_id,
            raw_register(&long, a.signed_record(vec![circuit])),
        )
        .await,
    );
    assert_eq!(status, ResponseStatus::EInvalidNamespace);
}

/// One DISCOVER with the crate's client: the registrations and the cookie, or the error.
async fn discover_page(
    client: &mut Client,
    relay: PeerId,
    namespace: Option<&str>,
    cookie: Option<Cookie>,
    limit: Option<u64>,
) -> Result<(Vec<Registration>, Cookie), ErrorCode> {
    let ns = namespace.map(|n| Namespace::new(n.to_owned()).unwrap());
    client
        .call(move |s| {
            s.behaviour_mut()
                .rendezvous
                .discover(ns, cookie, limit, relay)
        })
        .await;
    client
        .next("discover response", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Discovered {
                    registrations,
                    cookie,
                    ..
                },
            )) => Some(Ok((registrations, cookie))),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::DiscoverFailed { error, .. },
            )) => Some(Err(error)),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_pages_2500_registrations_at_most_1000_at_a_time() {
    // 2,500 peers with real signed records, stored before the relay starts (2,500 client
    // swarms would test the machine, not the pagination).
    let store = Arc::new(MemoryStore::new());
    let relay_peer = PeerId::random();
    let caps = Caps {
        per_peer: 1,
        total: 10_000,
        per_peer_bytes: usize::MAX,
        total_bytes: usize::MAX,
    };
    let mut expected = HashSet::new();
    for _ in 0..2500 {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let circuit: Multiaddr =
            format!("/ip4/127.0.0.1/tcp/1/p2p/{relay_peer}/p2p-circuit/p2p/{peer}")
                .parse()
                .unwrap();
        let outcome = store
            .register(
                NewRegistration {
                    namespace: "dusk/community/big".into(),
                    peer,
                    record: signed_record(&key, vec![circuit]),
                    ttl: Duration::from_secs(3600),
                },
                caps,
            )
            .await
            .unwrap();
        assert_eq!(outcome, RegisterOutcome::Registered);
        expected.insert(peer);
    }
    let dir = tempfile::tempdir().unwrap();
    let handle = Relay::bind_with_store(test_config(dir.path()), store)
        .await
        .unwrap()
        .spawn();
    let relay_addr = relay_addr(&handle, Transport::Tcp);
    let mut client = Client::new(None).await;
    client.connect(&relay_addr).await;

    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    let mut cookie = None;
    loop {
        // No limit asked: the server's cap applies.
        let (page, next) = discover_page(
            &mut client,
            handle.peer_id,
            Some("dusk/community/big"),
            cookie,
            None,
        )
        .await
        .unwrap();
        pages.push(page.len());
        if page.is_empty() {
            break;
        }
        for registration in page {
            assert!(seen.insert(registration.record.peer_id()), "returned twice");
        }
        cookie = Some(next);
    }
    assert_eq!(pages, vec![1000, 1000, 500, 0]);
    assert_eq!(seen, expected);

    // A smaller limit is honoured.
    let (page, _) = discover_page(
        &mut client,
        handle.peer_id,
        Some("dusk/community/big"),
        None,
        Some(7),
    )
    .await
    .unwrap();
    assert_eq!(page.len(), 7);
}
