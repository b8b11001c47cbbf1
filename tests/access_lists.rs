//! The allow and deny lists over real sockets (README "Access control"): a denied peer
//! gets `PERMISSION_DENIED` from the relay itself and its connection closes, allow-list
//! mode serves only what it lists, and a list replaced at run time (SIGHUP, the
//! handle) closes the connections it now denies while a broken file keeps the lists.

mod support;

use std::net::Ipv4Addr;

use dusk_relay::access::{AccessList, Entry};
use dusk_relay::RelayEvent;
use libp2p::swarm::SwarmEvent;
use support::hop::{self, PERMISSION_DENIED};
use support::process::{relay_command, RelayProcess};
use support::*;

const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The reason the relay client reports for a circuit dial to `target` that fails.
async fn circuit_refusal(
    client: &mut Client,
    relay_addr: &libp2p::Multiaddr,
    target: libp2p::PeerId,
) -> String {
    let addr = circuit_addr(relay_addr, target);
    client.call(move |s| s.dial(addr)).await.expect("dial");
    client
        .next("refused circuit", |e| match e {
            SwarmEvent::OutgoingConnectionError { error, .. } => Some(format!("{error:?}")),
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target => {
                panic!("circuit to {target} opened")
            }
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_listed_peer_gets_permission_denied_and_its_connection_closed() {
    let mut denied = Client::new(None).await;
    let denied_id = denied.peer_id;
    let relay = TestRelay::start_with(move |c| c.access = denying(denied_id)).await;
    let mut events = relay.subscribe();
    let tcp = relay.addr(Transport::Tcp);

    denied.connect(&tcp).await;
    let status = hop::hop_request(&denied, relay.peer_id(), hop::reserve()).await;
    assert_eq!(status, Some(PERMISSION_DENIED));
    relay_event(&mut events, |e| match e {
        RelayEvent::AccessDenied { peer, what } if *peer == denied_id => Some(*what),
        _ => None,
    })
    .await;
    denied.disconnected_from(relay.peer_id()).await;

    // As a circuit's source it is refused too, with the same code.
    let mut a = relay.client().await;
    a.reserve(&tcp).await;
    denied.connect(&tcp).await;
    let error = circuit_refusal(&mut denied, &tcp, a.peer_id).await;
    assert!(error.contains("PermissionDenied"), "{error}");
    // Everyone else is served.
    let (_a, _b) = open_circuit(&relay, Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_list_mode_serves_listed_peers_and_ranges_and_refuses_everyone_else() {
    let mut listed = Client::new(None).await;
    let listed_id = listed.peer_id;
    let relay = TestRelay::start_with(move |c| {
        c.access = AccessList {
            allow: vec![
                Entry::Peer(listed_id),
                "127.0.0.2/32".parse().expect("range"),
            ],
            deny: Vec::new(),
        }
    })
    .await;
    let (tcp, quic) = (relay.addr(Transport::Tcp), relay.addr(Transport::Quic));
    listed.reserve(&tcp).await;

    // A peer from the listed range is served.
    let mut in_range = Client::new(None).await;
    in_range.quic_from(OTHER_IP).await;
    in_range.reserve(&quic).await;

    // Anyone else, from 127.0.0.1: no reservation, no circuit, connection closed.
    let stranger = Client::new(None).await;
    let mut stranger = stranger;
    stranger.connect(&tcp).await;
    let status = hop::hop_request(&stranger, relay.peer_id(), hop::reserve()).await;
    assert_eq!(status, Some(PERMISSION_DENIED));
    stranger.disconnected_from(relay.peer_id()).await;
    stranger.connect(&tcp).await;
    let status = hop::hop_request(&stranger, relay.peer_id(), hop::connect(listed_id)).await;
    assert_eq!(status, Some(PERMISSION_DENIED));

    // The listed peer reaches the one in the range through the relay.
    listed.connect(&tcp).await;
    listed.dial_through(&tcp, in_range.peer_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_access_list_closes_the_connections_it_denies() {
    let relay = TestRelay::start().await;
    let tcp = relay.addr(Transport::Tcp);
    let (mut a, mut b) = open_circuit(&relay, Transport::Tcp).await;
    let mut events = relay.subscribe();
    relay.handle.replace_access_list(denying(a.peer_id));
    let what = relay_event(&mut events, |e| match e {
        RelayEvent::AccessDenied { peer, what } if *peer == a.peer_id => Some(*what),
        _ => None,
    })
    .await;
    assert_eq!(what, "connection");
    a.disconnected_from(relay.peer_id()).await;
    // A is refused from now on; B, not listed, keeps being served.
    a.connect(&tcp).await;
    assert_eq!(
        hop::hop_request(&a, relay.peer_id(), hop::reserve()).await,
        Some(PERMISSION_DENIED)
    );
    b.reserve(&tcp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_access_lists_from_the_config_file_and_a_broken_file_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dusk-relay.toml");
    std::fs::write(&file, "[access]\ndeny = []\n").expect("write config");
    let mut command = relay_command(dir.path());
    command
        .env("DUSK_RELAY_CONFIG", &file)
        .env("DUSK_RELAY_METRICS_ADDR", "off");
    let mut relay = RelayProcess::ready_without_websockets(command).await;
    let tcp = relay.listen_addr(Transport::Tcp);
    let relay_id = peer_of(&tcp);

    let mut a = Client::new(None).await;
    a.reserve(&tcp).await;
    std::fs::write(&file, format!("[access]\ndeny = [\"{}\"]\n", a.peer_id)).expect("write");
    relay.signal(libc::SIGHUP);
    relay
        .line_containing("access lists reloaded: 0 allow entries, 1 deny entries")
        .await;
    a.disconnected_from(relay_id).await;
    a.connect(&tcp).await;
    assert_eq!(
        hop::hop_request(&a, relay_id, hop::reserve()).await,
        Some(PERMISSION_DENIED)
    );

    std::fs::write(&file, "[access\ndeny = ").expect("write");
    relay.signal(libc::SIGHUP);
    relay.line_containing("access lists not reloaded").await;
    a.disconnected_from(relay_id).await;
    a.connect(&tcp).await;
    assert_eq!(
        hop::hop_request(&a, relay_id, hop::reserve()).await,
        Some(PERMISSION_DENIED),
        "a broken file keeps the lists in force"
    );
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
}
