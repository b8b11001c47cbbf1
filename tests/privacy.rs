//! Privacy (issue "abuse resistance"): a full session (connect, reserve, circuit,
//! rendezvous, disconnect) leaves no IPv4 or IPv6 address in the relay's `info` log,
//! and the destination of a circuit never receives the source's addresses, neither in
//! the STOP message nor in what the relay tells it through identify.
//!
//! The source dials from 127.0.0.2 (a QUIC client listening there: libp2p's QUIC dials
//! leave from a listening socket) so that its address differs from everyone else's.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{AsyncWriteExt, StreamExt};
use libp2p::core::PeerRecord;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, yamux, Multiaddr, PeerId};
use prost::Message as _;
use support::hop::*;
use support::process::{relay_command, RelayProcess};
use support::*;
use tokio::sync::mpsc;

/// The source's address, seen by the relay and by no one else.
const SOURCE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

// ---------------------------------------------------------------------------------------
// Finding IP addresses in text, without a regex crate: split a line into tokens of the
// characters addresses are written with, and let `std::net` judge each candidate.

/// Every IPv4 and IPv6 address written in `line`: bare, with a port (`1.2.3.4:80`,
/// `[::1]:80`), in a multiaddr (`/ip4/…`, `/ip6/…`), with a zone (`fe80::1%eth0`), at
/// the end of a sentence.
fn ip_addresses(line: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    let tokens = line.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '%')));
    for token in tokens {
        let token = token.trim_end_matches('.');
        let unzoned = token.split('%').next().unwrap_or_default();
        let v6 = unzoned
            .parse::<Ipv6Addr>()
            .or_else(|_| unzoned.trim_end_matches(':').parse::<Ipv6Addr>());
        if let Ok(v6) = v6 {
            found.push(IpAddr::V6(v6));
            continue;
        }
        // `1.2.3.4:80`, `addr:1.2.3.4`
        for piece in token.split(':') {
            if let Ok(v4) = piece.trim_end_matches('.').parse::<Ipv4Addr>() {
                found.push(IpAddr::V4(v4));
            }
        }
    }
    found
}

fn has_ip(addr: &Multiaddr, ip: Ipv4Addr) -> bool {
    addr.iter().any(|p| p == Protocol::Ip4(ip))
}

#[test]
fn the_ip_finder_flags_every_way_of_writing_an_address_and_spares_peer_ids_and_times() {
    let peer = PeerId::random();
    let relay = PeerId::random();
    let flagged = [
        ("peer connected from 127.0.0.1:4000", "127.0.0.1"),
        ("remote=[::1]:4001 closed", "::1"),
        ("dialing /ip6/2001:db8::7/udp/1/quic-v1", "2001:db8::7"),
        (&*format!("at /ip4/10.0.0.7/tcp/1/p2p/{peer}"), "10.0.0.7"),
        ("mapped ::ffff:127.0.0.2 here", "::ffff:127.0.0.2"),
        ("link-local fe80::1%eth0.", "fe80::1"),
        ("seen at 192.168.1.20.", "192.168.1.20"),
        ("listening on :: and 0.0.0.0", "::"),
        ("ip=8.8.8.8,port=53", "8.8.8.8"),
    ];
    for (line, ip) in flagged {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(
            ip_addresses(line).contains(&ip),
            "{ip} not found in {line:?}: {:?}",
            ip_addresses(line)
        );
    }
    let clean = [
        format!(
            "2025-06-01T03:44:12.123456Z  INFO dusk_relay::events: circuit opened: {peer} -> {relay} (through relay)"
        ),
        format!("2025-06-01T03:44:12.123456Z  INFO libp2p_swarm::behaviour: relay reservation accepted for peer {peer} (total: 1)"),
        "dusk-relay 0.1.0: rendezvous registration accepted (ttl 7200s, total registrations: 1)".into(),
        "circuit closed after 1.5s, 65536 bytes".into(),
    ];
    for line in clean {
        assert!(
            ip_addresses(&line).is_empty(),
            "false positive in {line:?}: {:?}",
            ip_addresses(&line)
        );
    }
}

/// Lines the relay prints about itself before it is ready: its own listen addresses, its
/// loopback metrics endpoint and the names (loopback IPs among them) of the dev WSS
/// certificate it generated. Nothing else may hold an address.
const OWN_ADDRESS_LINES: [&str; 2] = ["relay address: ", "metrics and health endpoint: "];

#[tokio::test(flavor = "multi_thread")]
async fn a_full_session_leaves_no_ip_address_in_the_info_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = relay_command(dir.path());
    command.env("RUST_LOG", "info");
    let mut out = RelayProcess::ready(command).await;
    let ready_at = out.seen.len();
    let (tcp, quic) = (
        out.listen_addr(Transport::Tcp),
        out.listen_addr(Transport::Quic),
    );
    let relay_id = peer_of(&tcp);

    // Connect and reserve (A, TCP from 127.0.0.1).
    let mut a = Client::new(None).await;
    let a_id = a.peer_id;
    a.reserve(&tcp).await;
    out.line_containing(&format!("relay reservation accepted for peer {a_id}"))
        .await;

    // A circuit with data (B, QUIC from 127.0.0.2).
    let mut b = Client::new(None).await;
    let b_id = b.peer_id;
    b.quic_from(SOURCE_IP).await;
    b.connect(&quic).await;
    b.dial_through(&quic, a_id).await;
    out.line_containing(&format!("circuit opened: {b_id} -> {a_id}"))
        .await;
    exchange_both_ways(&mut b, &mut a, 64 * 1024).await;

    // Rendezvous: A registers its circuit address, B finds it.
    register(&mut a, relay_id, "dusk/peers", None)
        .await
        .expect("registration accepted");
    out.line_containing(&format!("rendezvous registration accepted for peer {a_id}"))
        .await;
    let found = discover(&mut b, relay_id, "dusk/peers").await;
    assert!(found.iter().any(|r| r.record.peer_id() == a_id));

    // Disconnect.
    drop(a);
    drop(b);
    out.lines_containing_all(&[
        format!("peer disconnected: {a_id}"),
        format!("peer disconnected: {b_id}"),
    ])
    .await;

    out.signal(libc::SIGTERM);
    let status = out.exit_status().await;
    out.rest().await;
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(
        out.seen.iter().any(|l| l.contains("dusk relay stopped")),
        "the whole output was read"
    );

    let mut leaks = Vec::new();
    for (i, line) in out.seen.iter().enumerate() {
        let ips = ip_addresses(line);
        let own = i < ready_at && OWN_ADDRESS_LINES.iter().any(|m| line.contains(m));
        if ips.contains(&IpAddr::V4(SOURCE_IP)) || (!ips.is_empty() && !own) {
            leaks.push(format!("{ips:?} in {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "addresses in the info log:\n{}\n\nwhole output:\n{}",
        leaks.join("\n"),
        out.seen.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// What the destination of a circuit learns.

/// A destination that speaks circuit relay by hand, so the test reads the STOP message
/// as the relay sent it (libp2p's relay client would consume it).
#[derive(NetworkBehaviour)]
struct Destination {
    stream: libp2p_stream::Behaviour,
    identify: identify::Behaviour,
}

fn identify_addresses(info: &identify::Info) -> Vec<Multiaddr> {
    let mut addrs = info.listen_addrs.clone();
    addrs.push(info.observed_addr.clone());
    if let Some(envelope) = &info.signed_peer_record {
        let record = PeerRecord::from_signed_envelope(envelope.clone()).expect("a peer record");
        addrs.extend(record.addresses().iter().cloned());
    }
    addrs
}

#[tokio::test(flavor = "multi_thread")]
async fn the_destination_of_a_circuit_never_receives_the_source_addresses() {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();

    // A: TCP + noise + yamux, raw streams, identify.
    let mut swarm = tcp_swarm(yamux::Config::default, |key| Destination {
        stream: libp2p_stream::Behaviour::new(),
        identify: identify::Behaviour::new(identify::Config::new(
            "/dusk/1.0.0".into(),
            key.public(),
        )),
    });
    let a_id = *swarm.local_peer_id();
    let mut control = swarm.behaviour().stream.new_control();
    let mut stops = control.accept(STOP).expect("accept STOP");
    swarm
        .dial(relay.addr(Transport::Tcp))
        .expect("dial the relay");
    let (identified_tx, mut identified) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(DestinationEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) = swarm.select_next_some().await
            {
                if peer_id == relay_id {
                    let _ = identified_tx.send(info);
                }
            }
        }
    });
    let mut from_relay = vec![
        within(EVENT_TIMEOUT, "identify from the relay", identified.recv())
            .await
            .expect("A's swarm runs"),
    ];

    // A's raw reservation.
    let mut hop = within(
        EVENT_TIMEOUT,
        "HOP stream",
        control.open_stream(relay_id, HOP),
    )
    .await
    .expect("HOP stream");
    assert_eq!(
        reserve_on(&mut hop, EVENT_TIMEOUT, "A's reservation").await,
        Some(OK),
        "A's reservation"
    );

    // B, from 127.0.0.2: the relay sees that address (identify tells B so).
    let mut b = relay.client().await;
    let b_id = b.peer_id;
    b.quic_from(SOURCE_IP).await;
    let quic = relay.addr(Transport::Quic);
    b.connect(&quic).await;
    let observed = b
        .next("identify from the relay", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if peer_id == relay_id => Some(info.observed_addr),
            _ => None,
        })
        .await;
    assert!(
        has_ip(&observed, SOURCE_IP),
        "the relay sees B at {SOURCE_IP}: {observed}"
    );
    let to_a = circuit_addr(&quic, a_id);
    b.call(move |s| s.dial(to_a)).await.expect("dial A");

    // The STOP CONNECT the relay sends A.
    let (from, mut stop) = within(EVENT_TIMEOUT, "STOP stream", stops.next())
        .await
        .expect("STOP streams");
    assert_eq!(from, relay_id);
    let body = within(EVENT_TIMEOUT, "STOP CONNECT", read_frame(&mut stop))
        .await
        .expect("a STOP message");
    let message = StopMessage::decode(body.as_slice()).expect("a StopMessage");
    assert_eq!(message.r#type, STOP_CONNECT);
    let peer = message.peer.expect("the source peer");
    assert_eq!(
        PeerId::from_bytes(&peer.id).expect("a peer id"),
        b_id,
        "the source's peer id"
    );
    assert!(peer.addrs.is_empty(), "source addresses: {:?}", peer.addrs);
    let raw = frame(&body);
    let multiaddr_bytes = Multiaddr::from(SOURCE_IP).to_vec(); // 04 7f 00 00 02
    assert!(
        !raw.windows(multiaddr_bytes.len())
            .any(|w| w == multiaddr_bytes.as_slice())
            && !raw.windows(4).any(|w| w == SOURCE_IP.octets())
            && !raw
                .windows(SOURCE_IP.to_string().len())
                .any(|w| w == SOURCE_IP.to_string().as_bytes()),
        "the STOP message holds {SOURCE_IP}: {raw:02x?}"
    );

    // A drops the stream unanswered; the relay refuses B's circuit.
    drop(stop);
    b.next("B's circuit to fail", |e| match e {
        SwarmEvent::OutgoingConnectionError {
            peer_id: Some(p), ..
        } if p == a_id => Some(()),
        SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == a_id => {
            panic!("a circuit A never accepted")
        }
        _ => None,
    })
    .await;

    // Everything the relay told A through identify, first exchange and any push.
    while let Ok(info) = identified.try_recv() {
        from_relay.push(info);
    }
    for info in &from_relay {
        for addr in identify_addresses(info) {
            assert!(
                !has_ip(&addr, SOURCE_IP),
                "the relay told A about {addr} through identify"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Text a peer writes: its identify agent version and addresses end up in log lines and
// (through libp2p-metrics' identify and swarm recorders) in metric labels.

/// An identify push as an attacker writes it (libp2p identify's `Identify` protobuf;
/// every field optional in a push).
#[derive(Clone, PartialEq, prost::Message)]
struct IdentifyPush {
    #[prost(bytes = "vec", repeated, tag = "2")]
    listen_addrs: Vec<Vec<u8>>,
    #[prost(string, repeated, tag = "3")]
    protocols: Vec<String>,
    #[prost(bytes = "vec", optional, tag = "4")]
    observed_addr: Option<Vec<u8>>,
    #[prost(string, optional, tag = "6")]
    agent_version: Option<String>,
}

/// The text after each newline a peer smuggles in: a whole log line of the relay's own
/// kind, which must never stand on a line of its own.
const FORGED: &str = "2030-01-01T00:00:00.000000Z  INFO dusk_relay::events: FORGED";

/// The label values of every sample in a Prometheus text exposition.
fn label_values(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (_, rest) = l.split_once('{')?;
            let (labels, _) = rest.rsplit_once('}')?;
            Some(labels.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_cannot_forge_log_lines_or_metric_labels_with_its_identify_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = relay_command(dir.path());
    command
        .env("RUST_LOG", "debug")
        .env("DUSK_RELAY_METRICS_ADDR", "127.0.0.1:0")
        .env("DUSK_RELAY_WS_PORT", "off")
        .env("DUSK_RELAY_WSS_PORT", "off");
    let mut out = RelayProcess::ready(command).await;
    let tcp = out.listen_addr(Transport::Tcp);
    let metrics = out.metrics_addr();
    let relay_id = peer_of(&tcp);

    let mut client = Client::new(None).await;
    client.connect(&tcp).await;
    // The relay has identified the client: a push is merged into what it knows.
    out.line_containing(&format!("identified peer={}", client.peer_id))
        .await;

    // Stacks the relay's own addresses never have, so a label showing them came from
    // the peer.
    let dns = |marker: &str| -> Vec<u8> {
        Multiaddr::empty()
            .with(Protocol::Dns(
                format!("evil.example\n{FORGED}-{marker}").into(),
            ))
            .with(Protocol::Tcp(4001))
            .with(Protocol::Tls)
            .with(Protocol::Sni(format!("x\n{FORGED}-{marker}-sni").into()))
            .with(Protocol::Ws("/".into()))
            .to_vec()
    };
    let push = IdentifyPush {
        listen_addrs: vec![dns("LISTEN")],
        protocols: vec![format!("/evil\r{FORGED}-PROTOCOL")],
        observed_addr: Some(dns("OBSERVED")),
        agent_version: Some(format!("dusk/1.0\n{FORGED}-AGENT")),
    };
    let mut control = client.control.clone();
    let mut stream = within(
        EVENT_TIMEOUT,
        "identify push stream",
        control.open_stream(relay_id, libp2p::StreamProtocol::new("/ipfs/id/push/1.0.0")),
    )
    .await
    .expect("the relay takes identify pushes");
    stream
        .write_all(&frame(&push.encode_to_vec()))
        .await
        .expect("push");
    stream.close().await.expect("close");
    // The agent version (our debug line) and the observed address (libp2p-identify's
    // own info line) are logged.
    out.lines_containing_all(&[format!("{FORGED}-AGENT"), format!("{FORGED}-OBSERVED")])
        .await;

    let (status, body) = http(metrics, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let peer_labels: Vec<_> = label_values(&body)
        .into_iter()
        .filter(|l| l.contains("dns") || l.contains("sni") || l.contains("FORGED"))
        .collect();

    drop(client);
    out.signal(libc::SIGTERM);
    let status = out.exit_status().await;
    out.rest().await;
    assert!(status.success(), "SIGTERM exits 0: {status}");
    let forged: Vec<_> = out
        .seen
        .iter()
        .filter(|l| l.starts_with(FORGED) || l.contains('\r'))
        .collect();
    assert!(
        forged.is_empty() && peer_labels.is_empty(),
        "lines the peer wrote:\n{}\n\nlabels made of the peer's data: {peer_labels:?}",
        forged
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
