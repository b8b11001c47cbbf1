//! A fleet with one identity (issue 19): relays sharing one keypair, a reservation
//! directory in one real redis-server, and circuits forwarded one hop over the
//! PSK-authenticated mesh. Clients here pin one node each, as the dusk client pins
//! its one relay address.

mod support;

use std::time::{Duration, Instant};

use dusk_relay::RelayEvent;
use libp2p::{Multiaddr, PeerId};
use support::fleet::{node, node_with, FleetFiles};
use support::hop::{self, Status};
use support::redis::RedisServer;
use support::*;

const COMMUNITY: &str = "dusk/community/mesh";

async fn redis_client(redis: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(redis.url())
        .expect("redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connected to redis-server")
}

/// The node the directory names for `peer`, once it names one.
async fn listed(redis: &RedisServer, peer: PeerId) -> Multiaddr {
    redis.directory_entry(peer).await
}

/// Lists `peer` as held by `node`, as a node that then died would have left it.
async fn list_by_hand(redis: &RedisServer, peer: PeerId, node: &str) {
    let mut connection = redis_client(redis).await;
    let key = format!(
        "{}{}",
        dusk_relay::fleet::directory::PREFIX,
        peer.to_base58()
    );
    let _: () = ::redis::cmd("SET")
        .arg(key)
        .arg(node)
        .arg("EX")
        .arg(600)
        .query_async(&mut connection)
        .await
        .expect("SET");
}

async fn connect_status(client: &Client, relay: PeerId, dst: PeerId) -> (Option<i32>, Duration) {
    let started = Instant::now();
    let status = hop::hop_request(client, relay, hop::connect(dst)).await;
    (status, started.elapsed())
}

fn status(code: Status) -> Option<i32> {
    Some(code as i32)
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_pinned_to_different_nodes_of_one_identity_chat_across_the_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let nodes = [
        node(&redis, &files).await,
        node(&redis, &files).await,
        node(&redis, &files).await,
    ];
    let id = nodes[0].peer_id();
    assert!(nodes.iter().all(|n| n.peer_id() == id), "one identity");

    // A reserves on node 1 and registers there.
    let mut a = nodes[0].client().await;
    a.reserve(&nodes[0].addr(Transport::Tcp)).await;
    register(&mut a, id, COMMUNITY, None)
        .await
        .expect("registered on node 1");
    listed(&redis, a.peer_id).await;

    // B knows only node 2, finds A there and dials it the way the dusk client does:
    // through its own relay, whatever A's record says.
    let mut b = nodes[1].client().await;
    let node2 = nodes[1].addr(Transport::Tcp);
    b.connect(&node2).await;
    let found = discover(&mut b, id, COMMUNITY).await;
    assert!(found.iter().any(|r| r.record.peer_id() == a.peer_id));
    let mut node1_events = nodes[0].subscribe();
    let mut node2_events = nodes[1].subscribe();
    b.dial_through(&node2, a.peer_id).await;
    exchange_both_ways(&mut b, &mut a, 3 * 1024 * 1024).await;
    for events in [&mut node1_events, &mut node2_events] {
        relay_event(events, |e| {
            matches!(e, RelayEvent::CircuitOpened { src, dst } if (*src, *dst) == (b.peer_id, a.peer_id))
                .then_some(())
        })
        .await;
    }

    // QUIC to node 3, secure WebSocket to node 1.
    let mut c = nodes[2].client().await;
    c.reserve(&nodes[2].addr(Transport::Quic)).await;
    listed(&redis, c.peer_id).await;
    let mut d = nodes[0].client().await;
    d.dial_through(&nodes[0].addr(Transport::Wss), c.peer_id)
        .await;
    exchange_both_ways(&mut d, &mut c, 1024 * 1024).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_toward_a_dead_or_silent_node_is_answered_within_two_seconds() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let node2 = node(&redis, &files).await;
    let b = {
        let mut b = node2.client().await;
        b.connect(&node2.addr(Transport::Tcp)).await;
        b
    };

    // Nobody holds the peer: NO_RESERVATION.
    let nobody = PeerId::random();
    let (answer, _) = connect_status(&b, node2.peer_id(), nobody).await;
    assert_eq!(answer, status(Status::NoReservation));

    // A node that died: its port refuses connections.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let on_dead = PeerId::random();
    let dead = format!("/ip4/127.0.0.1/tcp/{closed_port}/p2p/{}", PeerId::random());
    list_by_hand(&redis, on_dead, &dead).await;
    let (answer, took) = connect_status(&b, node2.peer_id(), on_dead).await;
    println!("CONNECT toward a dead node answered in {took:?}");
    assert_eq!(answer, status(Status::ConnectionFailed));

    // A node that hangs: it accepts the connection and never speaks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = silent.local_addr().expect("address").port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let on_silent = PeerId::random();
    let silent_node = format!("/ip4/127.0.0.1/tcp/{silent_port}/p2p/{}", PeerId::random());
    list_by_hand(&redis, on_silent, &silent_node).await;
    let (answer, took) = connect_status(&b, node2.peer_id(), on_silent).await;
    println!("CONNECT toward a silent node answered in {took:?}");
    assert_eq!(answer, status(Status::ConnectionFailed));
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mesh_refuses_a_node_with_another_secret_and_a_peer_without_one() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let node1 = node(&redis, &files).await;
    let other_secret = files.write_secret("other.key", &"a7".repeat(32));
    let node2 = node_with(&redis, &files, &other_secret, |_| {}).await;

    let mut a = node1.client().await;
    a.reserve(&node1.addr(Transport::Tcp)).await;
    let mesh_of_node1 = listed(&redis, a.peer_id).await;

    let mut b = node2.client().await;
    b.connect(&node2.addr(Transport::Tcp)).await;
    let (answer, took) = connect_status(&b, node2.peer_id(), a.peer_id).await;
    println!("CONNECT through a mesh with the wrong secret answered in {took:?}");
    assert_eq!(answer, status(Status::ConnectionFailed));

    // A libp2p peer without the fleet secret cannot even finish a handshake.
    let mut stranger = node1.client().await;
    assert!(
        stranger.try_connect(&mesh_of_node1).await.is_err(),
        "the mesh accepted a peer without the fleet secret"
    );

    // The same two nodes with one secret: the circuit goes through.
    let node3 = node(&redis, &files).await;
    let mut c = node3.client().await;
    c.dial_through(&node3.addr(Transport::Tcp), a.peer_id).await;
    exchange_both_ways(&mut c, &mut a, 64 * 1024).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_cross_node_connects_fail_at_once_and_local_circuits_carry_on() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let node1 = node(&redis, &files).await;
    let node2 = node(&redis, &files).await;
    let mut a = node1.client().await;
    a.reserve(&node1.addr(Transport::Tcp)).await;
    listed(&redis, a.peer_id).await;
    let mut b = node2.client().await;
    let node2_addr = node2.addr(Transport::Tcp);
    b.connect(&node2_addr).await;

    redis.stop();
    let (answer, took) = connect_status(&b, node2.peer_id(), a.peer_id).await;
    println!("CONNECT across the fleet with Redis down answered in {took:?}");
    assert_eq!(answer, status(Status::ConnectionFailed));
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    let mut c = node1.client().await;
    c.dial_through(&node1.addr(Transport::Tcp), a.peer_id).await;
    exchange_both_ways(&mut c, &mut a, 256 * 1024).await;

    // Redis back, empty: node 1 lists what it holds again, and B reaches A.
    redis.start_again();
    listed(&redis, a.peer_id).await;
    b.dial_through(&node2_addr, a.peer_id).await;
    exchange_both_ways(&mut b, &mut a, 256 * 1024).await;
}

/// Issue 19's "the same with js-libp2p", as the dusk 0.54 client does it: each js peer
/// knows one node; the listener reserves on node 1 and registers there, the dialer
/// finds it by DISCOVER at node 2 (one store: the fleet's Redis) and dials it through
/// node 2 by the peer id the registration names, never by the record's addresses.
#[tokio::test(flavor = "multi_thread")]
async fn js_peers_pinned_to_different_nodes_find_each_other_by_rendezvous_and_talk() {
    use support::js::*;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    ensure_js_setup();
    let files = FleetFiles::new();
    let node1 = node(&redis, &files).await;
    let node2 = node(&redis, &files).await;
    let trust = node1.dir.path().join("trusted-wss-cert.pem");
    std::fs::write(&trust, pem(&node1.certificate())).expect("write the certificate");

    // The listener reserves on node 1 over WebSocket and registers there.
    let mut node1_events = node1.subscribe();
    let node1_ws = node1.addr(Transport::Ws);
    let mut listener = JsPeer::spawn_node("js listener", Some(&node1_ws), &trust).await;
    listener.reserved_on(&mut node1_events).await;
    let ttl = 600;
    let registered = listener.register(&node1_ws, COMMUNITY, ttl).await;
    assert_eq!(registered["ttl"], ttl, "{registered}");
    let listener_id = listener.peer_id;
    relay_event(&mut node1_events, |e| {
        matches!(e, RelayEvent::Registered { peer, namespace }
            if *peer == listener_id && namespace == COMMUNITY)
        .then_some(())
    })
    .await;
    // Node 2 forwards a circuit only to a peer the directory lists.
    listed(&redis, listener_id).await;

    // The dialer knows only node 2.
    let mut dialer = JsPeer::spawn_node("js dialer", None, &trust).await;
    let node2_tcp = node2.addr(Transport::Tcp);
    let found = dialer.discover(&node2_tcp, COMMUNITY).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let discovered: PeerId = found[0]["peerId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no peer id in {found:?}"));
    assert_eq!(discovered, listener_id, "{found:?}");
    // What node 1 accepted is what node 2 hands out: the listener's circuit addresses
    // through node 1, which the dialer has no use for.
    assert_eq!(found[0]["addrs"], registered["addrs"], "{found:?}");

    let mut node2_events = node2.subscribe();
    let target = circuit_addr(&node2_tcp, discovered);
    let (reply, inbound) = js_exchange(&mut listener, &mut dialer, &target, 3 * 1024 * 1024).await;
    println!("js across the fleet: dialer {reply}, listener {inbound}");
    let dialer_id = dialer.peer_id;
    for events in [&mut node1_events, &mut node2_events] {
        relay_event(events, |e| {
            matches!(e, RelayEvent::CircuitOpened { src, dst } if (*src, *dst) == (dialer_id, listener_id))
                .then_some(())
        })
        .await;
    }
}
