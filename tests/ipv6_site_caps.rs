//! An IPv6 site rotating through the 65,536 /64s of its /48 (issue 16 item 8), at the
//! behaviour level: loopback has only `::1`, so these drive the relay's own connection
//! limits and reservation/circuit caps directly with the addresses a swarm would report.
//! Socket-level attacks: `tests/network_abuse.rs`.

mod support;

use std::net::IpAddr;

use dusk_relay::config::{Config, ConnectionLimits};
use dusk_relay::limits::connections::{Refused, SourceLimits};
use dusk_relay::limits::relay_per_ip::IpCaps;
use dusk_relay::metrics::{SourceCapDenials, SourceCapLabel};
use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, ListenFailure};
use libp2p::swarm::{ConnectionId, FromSwarm, ListenError, NetworkBehaviour};
use libp2p::{Multiaddr, PeerId};

/// The relay's connection limits with every per-source cap off but those `caps` sets.
fn limits_with(caps: impl FnOnce(&mut ConnectionLimits)) -> SourceLimits {
    let mut c = Config::default().connection_limits;
    (c.max_per_ip, c.max_per_ipv6_64, c.max_per_ipv6_48) = (0, 0, 0);
    (
        c.max_pending_per_ip,
        c.max_pending_per_ipv6_64,
        c.max_pending_per_ipv6_48,
    ) = (0, 0, 0);
    caps(&mut c);
    SourceLimits::new(&c, None)
}

const LOCAL: &str = "/ip6/2001:db8:ffff::1/tcp/4001";

/// A handshake arriving at `limits` from `remote`: the refusal's label if refused.
fn pending(limits: &mut SourceLimits, id: usize, remote: &str) -> Result<(), &'static str> {
    let remote: Multiaddr = remote.parse().expect("multiaddr");
    limits
        .handle_pending_inbound_connection(
            ConnectionId::new_unchecked(id),
            &LOCAL.parse().expect("multiaddr"),
            &remote,
        )
        .map_err(|denied| {
            denied
                .downcast_ref::<Refused>()
                .map(|refused| refused.reason.name())
                .unwrap_or("not ours")
        })
}

fn endpoint(remote: &str) -> ConnectedPoint {
    ConnectedPoint::Listener {
        local_addr: LOCAL.parse().expect("multiaddr"),
        send_back_addr: remote.parse().expect("multiaddr"),
    }
}

fn established(limits: &mut SourceLimits, id: usize, remote: &str) {
    let peer = random_peer();
    let endpoint = endpoint(remote);
    limits
        .handle_established_inbound_connection(
            ConnectionId::new_unchecked(id),
            peer,
            &LOCAL.parse().expect("multiaddr"),
            &remote.parse().expect("multiaddr"),
        )
        .expect("established");
    limits.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
        peer_id: peer,
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: &endpoint,
        failed_addresses: &[],
        other_established: 0,
    }));
}

fn closed(limits: &mut SourceLimits, id: usize, remote: &str) {
    limits.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
        peer_id: random_peer(),
        connection_id: ConnectionId::new_unchecked(id),
        endpoint: &endpoint(remote),
        cause: None,
        remaining_established: 0,
    }));
}

fn failed(limits: &mut SourceLimits, id: usize, remote: &str) {
    limits.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
        local_addr: &LOCAL.parse().expect("multiaddr"),
        send_back_addr: &remote.parse().expect("multiaddr"),
        error: &ListenError::Aborted,
        connection_id: ConnectionId::new_unchecked(id),
        peer_id: None,
    }));
}

/// One host of the `n`th /64 of 2001:db8:7::/48.
fn in_site(n: u16) -> String {
    format!("/ip6/2001:db8:7:{n:x}::1/tcp/5000")
}

#[test]
fn one_ipv6_48_rotating_through_its_64s_meets_the_connection_cap_of_the_48() {
    let mut limits = limits_with(|c| {
        c.max_per_ipv6_64 = 2;
        c.max_per_ipv6_48 = 4;
    });
    // One connection from each of four /64s, established.
    for n in 0..4 {
        assert_eq!(pending(&mut limits, n.into(), &in_site(n)), Ok(()));
        established(&mut limits, n.into(), &in_site(n));
    }
    // A fifth /64 of the same /48 is refused, by the /48's cap.
    assert_eq!(pending(&mut limits, 4, &in_site(4)), Err("per_ipv6_48"));
    // Another /48 is not.
    assert_eq!(pending(&mut limits, 5, "/ip6/2001:db8:8::1/tcp/1"), Ok(()));
    // A closed connection frees its slot for any /64 of the /48.
    closed(&mut limits, 0, &in_site(0));
    assert_eq!(pending(&mut limits, 6, &in_site(4)), Ok(()));
}

#[test]
fn handshakes_in_flight_are_capped_per_ipv6_64_and_48_and_released_when_they_end() {
    let mut limits = limits_with(|c| {
        c.max_pending_per_ipv6_64 = 2;
        c.max_pending_per_ipv6_48 = 3;
    });
    // Two handshakes from one /64: its cap.
    assert_eq!(
        pending(&mut limits, 0, "/ip6/2001:db8:7:1::1/tcp/1"),
        Ok(())
    );
    assert_eq!(
        pending(&mut limits, 1, "/ip6/2001:db8:7:1::2/tcp/1"),
        Ok(())
    );
    assert_eq!(
        pending(&mut limits, 2, "/ip6/2001:db8:7:1::3/tcp/1"),
        Err("pending_per_ipv6_64")
    );
    // A third from another /64 of the /48 fills the /48; a fourth /64 is refused.
    assert_eq!(pending(&mut limits, 3, &in_site(2)), Ok(()));
    assert_eq!(
        pending(&mut limits, 4, &in_site(3)),
        Err("pending_per_ipv6_48")
    );
    // A handshake that finishes leaves its slot (the connection stays, uncapped here)...
    established(&mut limits, 0, "/ip6/2001:db8:7:1::1/tcp/1");
    assert_eq!(pending(&mut limits, 5, &in_site(3)), Ok(()));
    assert_eq!(
        pending(&mut limits, 6, &in_site(4)),
        Err("pending_per_ipv6_48")
    );
    // ...and so does one that fails.
    failed(&mut limits, 3, &in_site(2));
    assert_eq!(pending(&mut limits, 7, &in_site(4)), Ok(()));
    // Closing the established one does not free a handshake slot it no longer holds.
    closed(&mut limits, 0, "/ip6/2001:db8:7:1::1/tcp/1");
    assert_eq!(
        pending(&mut limits, 8, &in_site(5)),
        Err("pending_per_ipv6_48")
    );
}

#[test]
fn the_handshake_cap_per_ip_names_its_setting_in_the_log() {
    let mut limits = limits_with(|c| c.max_pending_per_ip = 1);
    let from = "/ip4/192.0.2.1/tcp/1";
    assert_eq!(pending(&mut limits, 0, from), Ok(()));
    let denied = limits
        .handle_pending_inbound_connection(
            ConnectionId::new_unchecked(1),
            &LOCAL.parse().expect("multiaddr"),
            &from.parse().expect("multiaddr"),
        )
        .expect_err("over the cap");
    let refused = denied.downcast_ref::<Refused>().expect("ours");
    assert_eq!(refused.reason.name(), "pending_per_ip");
    assert!(
        refused
            .to_string()
            .contains("DUSK_RELAY_MAX_PENDING_PER_IP"),
        "{refused}"
    );
    // Outbound connections (the relay never dials, but libp2p may ask) are not counted.
    limits
        .handle_established_outbound_connection(
            ConnectionId::new_unchecked(2),
            random_peer(),
            &from.parse().expect("multiaddr"),
            Endpoint::Dialer,
            PortUse::New,
        )
        .expect("outbound");
}

#[test]
fn one_ipv6_48_rotating_through_its_64s_meets_the_reservation_and_circuit_caps_of_the_48() {
    let mut relay = Config::default().relay;
    (
        relay.max_reservations_per_ip,
        relay.max_reservations_per_ipv6_64,
    ) = (0, 0);
    (relay.max_circuits_per_ip, relay.max_circuits_per_ipv6_64) = (0, 0);
    relay.max_reservations_per_ipv6_48 = 2;
    relay.max_circuits_per_ipv6_48 = 2;
    let denials = SourceCapDenials::default();
    let caps = IpCaps::new(&relay, denials.clone());
    let ip = |n: u16| -> IpAddr { format!("2001:db8:7:{n:x}::1").parse().expect("ip") };
    let addr = |n: u16| Some(ip(n));

    let peers: Vec<PeerId> = (0..4).map(|_| random_peer()).collect();
    assert!(caps.admit_reservation(peers[0], addr(0)));
    assert!(caps.admit_reservation(peers[1], addr(1)));
    assert!(
        !caps.admit_reservation(peers[2], addr(2)),
        "a third /64 of a /48 capped at two reservations"
    );
    assert!(caps.admit_reservation(peers[3], Some("2001:db8:8::1".parse().expect("ip"))));
    caps.reservation_ended(peers[0]);
    assert!(caps.admit_reservation(peers[2], addr(2)));

    // Circuit ends: a request is admitted if its own end still fits.
    let _first = caps.circuit_leg(ip(0));
    let second = caps.circuit_leg(ip(1));
    assert!(
        !caps.admit_circuit(addr(2)),
        "a third circuit end in a /48 capped at two"
    );
    drop(second);
    assert!(caps.admit_circuit(addr(2)));

    for what in ["reservation", "circuit"] {
        let label = SourceCapLabel {
            what,
            cap: "per_ipv6_48",
        };
        assert_eq!(denials.get_or_create(&label).get(), 1, "{what}");
    }
}

fn random_peer() -> PeerId {
    libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
}
