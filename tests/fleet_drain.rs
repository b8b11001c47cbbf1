//! Drain across a fleet (issue 19): "a draining node takes no new reservations and
//! keeps forwarding its open circuits until they end or the deadline". Two nodes of one
//! identity and one real redis-server; A is reserved on node 1, B is a client of node 2
//! and its circuit to A crosses the mesh. Whichever end drains, the circuit keeps
//! carrying bytes, the draining node refuses RESERVE as a single relay does, the other
//! node serves as before, and a node that stops leaves the directory truthful.

mod support;

use std::time::Duration;

use dusk_relay::RelayEvent;
use libp2p::{Multiaddr, PeerId};
use support::fleet::{node, node_with, FleetFiles};
use support::hop::{self, Status};
use support::redis::RedisServer;
use support::*;
use tokio::sync::broadcast;

/// A drain deadline no test waits for: only the circuit's end stops such a node.
const NEVER: Duration = Duration::from_secs(3600);

/// A deadline that passes quickly, yet leaves a loaded machine time to check the
/// circuit and the other node before it does.
const SHORT: Duration = Duration::from_secs(5);

/// A node of the fleet `files` describe whose drain waits at most `deadline`.
async fn node_draining_within(
    redis: &RedisServer,
    files: &FleetFiles,
    deadline: Duration,
) -> TestRelay {
    node_with(redis, files, &files.secret(), |c| {
        c.drain_timeout = deadline
    })
    .await
}

/// A circuit across the fleet between its two ends.
struct Across {
    /// Reserved on node 1.
    a: Client,
    /// A client of node 2, with a circuit to A forwarded over the mesh.
    b: Client,
    /// Node 1's mesh address, which the directory names for A.
    node1_mesh: Multiaddr,
}

/// A reserves on `node1`; B, connected to `node2`, dials A through it. Returns once both
/// nodes count the circuit as open, so a drain that starts now waits for it.
async fn circuit_across(redis: &RedisServer, node1: &TestRelay, node2: &TestRelay) -> Across {
    let mut a = node1.client().await;
    a.reserve(&node1.addr(Transport::Tcp)).await;
    let node1_mesh = redis.directory_entry(a.peer_id).await;
    let mut b = node2.client().await;
    let node2_addr = node2.addr(Transport::Tcp);
    b.connect(&node2_addr).await;
    let (mut node1_events, mut node2_events) = (node1.subscribe(), node2.subscribe());
    b.dial_through(&node2_addr, a.peer_id).await;
    for events in [&mut node1_events, &mut node2_events] {
        circuit_event(events, b.peer_id, a.peer_id, Opened).await;
    }
    Across { a, b, node1_mesh }
}

#[derive(Clone, Copy)]
enum CircuitChange {
    Opened,
    Closed,
}
use CircuitChange::{Closed, Opened};

/// Waits until `events` report the circuit `src -> dst` opened or closed.
async fn circuit_event(
    events: &mut broadcast::Receiver<RelayEvent>,
    src: PeerId,
    dst: PeerId,
    change: CircuitChange,
) {
    relay_event(events, |e| match (change, e) {
        (Opened, RelayEvent::CircuitOpened { src: s, dst: d })
        | (Closed, RelayEvent::CircuitClosed { src: s, dst: d }) => {
            ((*s, *d) == (src, dst)).then_some(())
        }
        _ => None,
    })
    .await
}

/// The status `relay` answers a fresh client's RESERVE with.
async fn reserve_status(relay: &TestRelay) -> Option<i32> {
    let mut client = relay.client().await;
    client.connect(&relay.addr(Transport::Tcp)).await;
    hop::hop_request(&client, relay.peer_id(), hop::reserve()).await
}

fn status(code: Status) -> Option<i32> {
    Some(code as i32)
}

/// `relay` serves as if nothing were draining: a new reservation there, and a circuit
/// to it that carries bytes both ways.
async fn serves_new_reservations_and_circuits(relay: &TestRelay) {
    let (mut c, mut d) = open_circuit(relay, Transport::Tcp).await;
    exchange_both_ways(&mut d, &mut c, 256 * 1024).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_forwarding_node_keeps_its_circuit_refuses_reservations_and_stops_when_it_ends()
{
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let node1 = node(&redis, &files).await;
    let mut node2 = node_draining_within(&redis, &files, NEVER).await;
    let Across {
        mut a,
        mut b,
        node1_mesh,
    } = circuit_across(&redis, &node1, &node2).await;
    let mut node1_events = node1.subscribe();
    let mut node2_events = node2.start_draining().await;

    // The forwarded circuit still carries bytes both ways.
    exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;
    // A new RESERVE on node 2 gets what a draining single relay answers.
    assert_eq!(
        reserve_status(&node2).await,
        status(Status::ReservationRefused)
    );
    // Node 1 does not drain.
    serves_new_reservations_and_circuits(&node1).await;
    exchange_both_ways(&mut b, &mut a, 256 * 1024).await;

    // B leaves: the circuit ends on both nodes, and node 2, with nothing left to carry,
    // stops long before its deadline.
    let b_id = b.peer_id;
    drop(b);
    circuit_event(&mut node2_events, b_id, a.peer_id, Closed).await;
    node2.stopped("node 2 to stop once its circuit ended").await;
    circuit_event(&mut node1_events, b_id, a.peer_id, Closed).await;

    // A is still listed on node 1 (node 2 unlisted only what it held) and reachable there.
    assert_eq!(redis.directory_lookup(a.peer_id).await, Some(node1_mesh));
    let mut e = node1.client().await;
    e.dial_through(&node1.addr(Transport::Tcp), a.peer_id).await;
    exchange_both_ways(&mut e, &mut a, 256 * 1024).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarding_node_stops_at_its_drain_deadline_and_its_client_reaches_a_through_the_other_node(
) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let node1 = node(&redis, &files).await;
    let mut node2 = node_draining_within(&redis, &files, SHORT).await;
    let Across {
        mut a,
        mut b,
        node1_mesh,
    } = circuit_across(&redis, &node1, &node2).await;
    let mut node1_events = node1.subscribe();
    let mut node2_events = node2.start_draining().await;
    exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;

    // The circuit is still open when the deadline passes: node 2 stops with it, and
    // node 1's half of it closes.
    let circuits = relay_event(&mut node2_events, |e| match e {
        RelayEvent::DrainDeadline { circuits } => Some(*circuits),
        _ => None,
    })
    .await;
    assert_eq!(circuits, 1);
    node2.stopped("node 2 to stop at its drain deadline").await;
    circuit_event(&mut node1_events, b.peer_id, a.peer_id, Closed).await;

    // B comes back through the fleet's other node, as a client whose relay went away
    // redials the fleet's name, and reaches A there. (Both nodes have one peer id: B's
    // relay client would reuse a connection to node 2 it has not yet seen close, and
    // its streams a dead circuit to A.)
    b.disconnected_from_all(&[node1.peer_id(), a.peer_id]).await;
    assert_eq!(redis.directory_lookup(a.peer_id).await, Some(node1_mesh));
    b.dial_through(&node1.addr(Transport::Tcp), a.peer_id).await;
    exchange_both_ways(&mut b, &mut a, 256 * 1024).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_receiving_node_keeps_its_received_circuit_until_the_deadline_then_unlists_its_peers(
) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let files = FleetFiles::new();
    let mut node1 = node_draining_within(&redis, &files, SHORT).await;
    let node2 = node(&redis, &files).await;
    let Across { mut a, mut b, .. } = circuit_across(&redis, &node1, &node2).await;
    let mut node2_events = node2.subscribe();
    let mut node1_events = node1.start_draining().await;

    // The circuit node 1 received over the mesh still carries bytes both ways.
    exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;
    assert_eq!(
        reserve_status(&node1).await,
        status(Status::ReservationRefused)
    );
    // Node 2 does not drain.
    serves_new_reservations_and_circuits(&node2).await;
    exchange_both_ways(&mut b, &mut a, 256 * 1024).await;

    // The deadline passes with the circuit open: node 1 stops, node 2's half closes.
    let circuits = relay_event(&mut node1_events, |e| match e {
        RelayEvent::DrainDeadline { circuits } => Some(*circuits),
        _ => None,
    })
    .await;
    assert_eq!(circuits, 1);
    node1.stopped("node 1 to stop at its drain deadline").await;
    circuit_event(&mut node2_events, b.peer_id, a.peer_id, Closed).await;

    // Node 1 unlisted A as it stopped: node 2 answers B's CONNECT NO_RESERVATION (A is
    // reserved nowhere) instead of dialling a node that is gone.
    assert_eq!(redis.directory_lookup(a.peer_id).await, None);
    assert_eq!(
        hop::hop_request(&b, node2.peer_id(), hop::connect(a.peer_id)).await,
        status(Status::NoReservation)
    );
}
