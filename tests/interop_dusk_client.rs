//! The dusk client as it ships, libp2p 0.54.1 (relay client 0.18, rendezvous client
//! 0.15, TCP + DNS + noise + yamux), works against the relay binary: two such clients
//! reserve, register their circuit address (and nothing else) under the dusk
//! namespaces, discover each other, connect through the relay and exchange chat
//! messages and verified bulk bytes; after a relay restart (same keypair, same port)
//! they reconnect on their own backoff and do it all again; and a client given the
//! relay by name (`/dns4/localhost/…`) works the same.
//!
//! The client is `interop/dusk-client-0.54`, a separate cargo package: it is built here
//! into `<target dir>/interop` (its own lock, so never waiting on this build), its
//! milestones are JSON lines on its stdout and it takes commands on its stdin.
//! `DUSK_INTEROP_RUST_LOG` sets the clients' `RUST_LOG` (their logs go to stderr).

mod support;

use support::dusk_client::*;

#[tokio::test(flavor = "multi_thread")]
async fn dusk_054_clients_reserve_register_discover_and_talk_through_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, mut a, mut b) =
        relay_and_two_clients(dir.path(), 0, "interop-talk", Relay::ip4_addr).await;
    chat(&mut a, &mut b, "first").await;
    bulk(&mut a, &mut b).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dusk_054_clients_come_back_by_themselves_after_a_relay_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let community = "interop-restart";
    let (relay, mut a, mut b) =
        relay_and_two_clients(dir.path(), port, community, Relay::ip4_addr).await;
    let relay_id = relay.peer_id;
    chat(&mut a, &mut b, "before the restart").await;

    relay.stop().await;
    let (a_id, b_id) = (a.peer_id, b.peer_id);
    // Two failed redials each (0.5 s, then 1 s later), then the relay comes back.
    expect_relay_lost(&mut a, relay_id, b_id).await;
    expect_relay_lost(&mut b, relay_id, a_id).await;

    let relay = Relay::start(dir.path(), port).await;
    assert_eq!(relay.peer_id, relay_id, "same keypair, same peer id");
    register_and_meet(&mut a, &mut b, community).await;
    chat(&mut a, &mut b, "after the restart").await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dusk_054_client_reaches_the_relay_by_dns_name() {
    let dir = tempfile::tempdir().unwrap();
    // A knows the relay by name, B by IP: each registers the address it dialed.
    let (relay, mut a, mut b) =
        relay_and_two_clients(dir.path(), 0, "interop-dns", Relay::dns4_addr).await;
    assert!(a.circuit_addr().starts_with("/dns4/localhost/tcp/"));
    chat(&mut a, &mut b, "by name").await;
    bulk(&mut a, &mut b).await;
    relay.stop().await;
}
