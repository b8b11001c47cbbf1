//! Attacks on the relay's network edge (issue 16 items 1, 7 and 8), written the way an
//! attacker writes them: raw sockets and raw bytes, no libp2p on the hostile side.
//!
//! - A WebSocket frame header declaring 256 MiB, then silence: libp2p-websocket's default
//!   frame bound let soketto allocate and zero-fill the declared length at once.
//! - Handshakes opened and never finished, holding the relay's pending-handshake slots.
//! - An IPv6 site rotating through the 65,536 /64s of its /48 (behaviour level: loopback
//!   has only `::1`, so these call the relay's own behaviour and caps directly).
//!
//! Attackers are 127.0.0.2 and 127.0.0.3 (their sockets bind there before connecting);
//! legitimate clients dial from 127.0.0.1 or, over QUIC, listen on 127.0.0.4.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dusk_relay::config::Config;
use dusk_relay::limits::connections::{Refused, SourceLimits};
use dusk_relay::limits::relay_per_ip::IpCaps;
use dusk_relay::metrics::{SourceCapDenials, SourceCapLabel};
use dusk_relay::RelayEvent;
use futures::future::join_all;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, ListenFailure};
use libp2p::swarm::{ConnectionId, FromSwarm, ListenError, NetworkBehaviour};
use libp2p::{Multiaddr, PeerId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use support::process::{relay_command, RelayProcess};
use support::*;

const ATTACKERS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
const MIB: u64 = 1024 * 1024;

/// A masked binary frame (FIN, opcode 2) whose 64-bit length says 256 MiB: what the
/// attacker sends after the upgrade, and then nothing.
const HUGE_FRAME_HEADER: [u8; 14] = [
    0x82, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78,
];

/// How long the relay may take to drop a socket whose frame header it refuses. Far
/// below the handshake timeout (20 s), which would drop it anyway.
const REFUSAL_BOUND: Duration = Duration::from_secs(5);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A TCP connection from `from` to `to` (a socket bound to `from` before connecting).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> libp2p::tcp::tokio::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind the attacker's address");
    let stream = within(EVENT_TIMEOUT, "TCP connect", socket.connect(to))
        .await
        .expect("TCP connect");
    libp2p::tcp::tokio::TcpStream(stream)
}

/// A WebSocket upgraded by hand from `from` to `to`, over TLS when `tls` is given.
async fn upgraded_websocket(
    from: Ipv4Addr,
    to: SocketAddr,
    tls: Option<futures_rustls::TlsConnector>,
) -> Box<dyn Io> {
    let tcp = connect_from(from, to).await;
    let mut io: Box<dyn Io> = match tls {
        Some(tls) => Box::new(
            within(
                EVENT_TIMEOUT,
                "TLS handshake",
                tls.connect(ServerName::from(to.ip()), tcp),
            )
            .await
            .expect("TLS handshake"),
        ),
        None => Box::new(tcp),
    };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    io.write_all(request.as_bytes())
        .await
        .expect("send upgrade");
    io.flush().await.expect("flush upgrade");
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    within(EVENT_TIMEOUT, "upgrade response", async {
        while !response.ends_with(b"\r\n\r\n") {
            io.read_exact(&mut byte)
                .await
                .expect("read upgrade response");
            response.push(byte[0]);
            assert!(response.len() < 4096, "no end to the response headers");
        }
    })
    .await;
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "upgrade refused: {}",
        String::from_utf8_lossy(&response)
    );
    io
}

/// Reads until the relay closes `io` (end of stream or an error); false if it is still
/// open after `limit`.
async fn closed_by_relay(io: &mut (impl AsyncRead + Unpin + ?Sized), limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// A TLS client that accepts any certificate: the attacker does not care whom it talks to.
fn attacker_tls() -> futures_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    futures_rustls::TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Resident memory of a process: (now, peak), in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// The IP and TCP port of a relay address.
fn socket_addr(addr: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::new(ip.expect("an IPv4 address"), port.expect("a TCP port"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_stalled_websockets_declaring_256_mib_frames_from_two_ips_cost_at_most_64_mib_while_another_ip_reserves_and_relays(
) {
    const SOCKETS: usize = 60;
    const GROWTH_LIMIT: u64 = 64 * MIB;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = relay_command(dir.path());
    command
        // The frame bound is under test: no per-IP handshake cap in its way.
        .env("DUSK_RELAY_MAX_PENDING_PER_IP", "0")
        .env("DUSK_RELAY_METRICS_ADDR", "off");
    let mut relay = RelayProcess::spawn(command);
    relay.line_containing("dusk relay ready").await;
    let (ws, wss) = (
        relay.listen_addr(Transport::Ws),
        relay.listen_addr(Transport::Wss),
    );
    let pid = relay.child.id().expect("running");
    let (_, peak_before) = memory(pid);

    // Every socket upgraded and held at once: 15 WS and 15 WSS from each attacker IP.
    let tls = attacker_tls();
    let mut sockets = join_all((0..SOCKETS).map(|i| {
        let from = ATTACKERS[i % 2];
        match (i / 2) % 2 {
            0 => upgraded_websocket(from, socket_addr(&ws), None),
            _ => upgraded_websocket(from, socket_addr(&wss), Some(tls.clone())),
        }
    }))
    .await;

    // While every attacking socket stalls in its handshake, a legitimate pair from
    // 127.0.0.1 gets through: A reserves over WS, B reaches it over WSS.
    let cert =
        CertificateDer::from_pem_file(dir.path().join(dusk_relay::config::defaults::DEV_CERT_FILE))
            .expect("the relay's WSS certificate");
    let mut a = Client::new(Some(cert.to_vec())).await;
    let mut b = Client::new(Some(cert.to_vec())).await;
    a.reserve(&ws).await;
    b.connect(&wss).await;
    b.dial_through(&wss, a.peer_id).await;

    // The headers go out one pair (one socket per IP) at a time, each pair waiting for
    // the relay's answer: the unbounded relay would otherwise try to zero-fill 15 GiB
    // on the test machine. A pair is answered when the relay drops both sockets.
    for (pair, sockets) in sockets.chunks_mut(2).enumerate() {
        for io in sockets.iter_mut() {
            io.write_all(&HUGE_FRAME_HEADER)
                .await
                .expect("send frame header");
            io.flush().await.expect("flush frame header");
        }
        for io in sockets.iter_mut() {
            let closed = closed_by_relay(io, REFUSAL_BOUND).await;
            let (now, peak) = memory(pid);
            assert!(
                closed,
                "the relay still holds a socket {REFUSAL_BOUND:?} after its header declared \
                 a 256 MiB frame (pair {pair}); its RSS is {:.1} MiB, peak grew by {:.1} MiB",
                mib(now),
                mib(peak.saturating_sub(peak_before))
            );
        }
        let (_, peak) = memory(pid);
        assert!(
            peak.saturating_sub(peak_before) <= GROWTH_LIMIT,
            "relay peak RSS grew by {:.1} MiB after {} sockets",
            mib(peak - peak_before),
            2 * (pair + 1)
        );
    }

    // The circuit opened under the attack carries 1 MiB each way (real traffic, in
    // frames up to the new bound).
    exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;

    let (now, peak) = memory(pid);
    let growth = peak.saturating_sub(peak_before);
    println!(
        "{SOCKETS} WebSockets (WS and WSS, from {} and {}) declaring 256 MiB frames: relay \
         peak RSS {:.1} MiB before, {:.1} MiB after (+{:.1} MiB), {:.1} MiB now; a legitimate \
         pair reserved, opened a circuit and relayed 1 MiB each way",
        ATTACKERS[0],
        ATTACKERS[1],
        mib(peak_before),
        mib(peak),
        mib(growth),
        mib(now)
    );
    assert!(
        growth <= GROWTH_LIMIT,
        "peak RSS grew by {:.1} MiB",
        mib(growth)
    );
    drop(sockets);
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_requests_are_bounded_in_size_and_in_time_on_ws_and_wss() {
    // Size: soketto reads at most 8 KiB of request headers, then gives up, long before
    // the 20 s handshake timeout.
    let relay = TestRelay::start().await;
    let ws = socket_addr(&relay.addr(Transport::Ws));
    let mut endless = connect_from(ATTACKERS[0], ws).await;
    let mut request = b"GET / HTTP/1.1\r\n".to_vec();
    while request.len() < 64 * 1024 {
        request
            .extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    // The relay may close while this is still being written.
    let _ = endless.write_all(&request).await;
    assert!(
        closed_by_relay(&mut endless, REFUSAL_BOUND).await,
        "the relay still reads an upgrade request 64 KiB long"
    );

    // Time: the transport's upgrade timeout covers the TLS accept of WSS and the HTTP
    // upgrade of both, so a client that stalls in either is dropped when it ends.
    let relay = TestRelay::start_with(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let (ws, wss) = (
        socket_addr(&relay.addr(Transport::Ws)),
        socket_addr(&relay.addr(Transport::Wss)),
    );
    let mut half_request = connect_from(ATTACKERS[0], ws).await;
    half_request
        .write_all(b"GET / HTTP/1.1\r\nHost: relay\r\n")
        .await
        .expect("half a request");
    let mut no_tls_hello = connect_from(ATTACKERS[1], wss).await;
    let mut half_request_over_tls = {
        let tcp = connect_from(ATTACKERS[1], wss).await;
        let mut tls = attacker_tls()
            .connect(ServerName::from(wss.ip()), tcp)
            .await
            .expect("TLS handshake");
        tls.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        tls.flush().await.expect("flush");
        tls
    };
    for (what, closed) in [
        (
            "half an upgrade request",
            closed_by_relay(&mut half_request, REFUSAL_BOUND).await,
        ),
        (
            "no TLS hello",
            closed_by_relay(&mut no_tls_hello, REFUSAL_BOUND).await,
        ),
        (
            "half an upgrade request over TLS",
            closed_by_relay(&mut half_request_over_tls, REFUSAL_BOUND).await,
        ),
    ] {
        assert!(
            closed,
            "{what}: still open {REFUSAL_BOUND:?} after a 1 s handshake timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn handshakes_left_unfinished_are_capped_per_ip_while_another_ip_still_connects_and_reserves()
{
    const PENDING: usize = 4;
    const EXTRA: usize = 3;
    let relay = TestRelay::start_with(|c| c.connection_limits.max_pending_per_ip = PENDING).await;
    let mut events = relay.subscribe();
    let tcp = relay.addr(Transport::Tcp);

    // The attacker opens TCP connections and never finishes a handshake: half send
    // nothing, half stop in the middle of the multistream header.
    let mut stalled = Vec::new();
    for i in 0..PENDING + EXTRA {
        let mut socket = connect_from(ATTACKERS[0], socket_addr(&tcp)).await;
        if i % 2 == 1 {
            socket
                .write_all(b"\x13/multistream/")
                .await
                .expect("half a header");
        }
        stalled.push(socket);
    }
    // The relay accepts in connection order: the first PENDING hold every slot of the
    // attacker's IP, and the rest are refused and closed at once.
    for _ in 0..EXTRA {
        let reason = relay_event(&mut events, |e| match e {
            RelayEvent::ConnectionRefused { reason } => Some(*reason),
            _ => None,
        })
        .await;
        assert_eq!(reason, "pending_per_ip");
    }
    for socket in &mut stalled[PENDING..] {
        assert!(closed_by_relay(socket, EVENT_TIMEOUT).await);
    }
    let metrics = scrape(relay.handle.http_addr.expect("metrics on")).await;
    let counted = metric_sum(
        &metrics,
        "dusk_relay_connections_refused_total",
        &[("reason", "pending_per_ip")],
    );
    assert_eq!(counted, EXTRA as f64);

    // QUIC handshakes are counted apart (a forged UDP source must not lock an IP out of
    // TCP, WS and WSS): a QUIC client from the attacker's IP still connects.
    let mut same_ip = relay.client().await;
    same_ip.quic_from(ATTACKERS[0]).await;
    assert!(same_ip
        .try_connect(&relay.addr(Transport::Quic))
        .await
        .is_ok());

    // Other IPs are untouched: 127.0.0.1 reserves over the TCP listener under attack,
    // and one QUIC client after another from 127.0.0.4, more than PENDING of them, each
    // connects (a finished handshake leaves its pending slot).
    let mut other = relay.client().await;
    other.reserve(&tcp).await;
    let mut done = Vec::new();
    for _ in 0..PENDING + 2 {
        let mut client = relay.client().await;
        client.quic_from(Ipv4Addr::new(127, 0, 0, 4)).await;
        client.connect(&relay.addr(Transport::Quic)).await;
        done.push(client);
    }
    drop(stalled);
}

fn limits_allowing_all() -> Config {
    let mut config = Config::default();
    let c = &mut config.connection_limits;
    (c.max_per_ip, c.max_per_ipv6_64, c.max_per_ipv6_48) = (0, 0, 0);
    (
        c.max_pending_per_ip,
        c.max_pending_per_ipv6_64,
        c.max_pending_per_ipv6_48,
    ) = (0, 0, 0);
    config
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
    let mut config = limits_allowing_all();
    config.connection_limits.max_per_ipv6_64 = 2;
    config.connection_limits.max_per_ipv6_48 = 4;
    let mut limits = SourceLimits::new(&config.connection_limits, None);
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
    let mut config = limits_allowing_all();
    config.connection_limits.max_pending_per_ipv6_64 = 2;
    config.connection_limits.max_pending_per_ipv6_48 = 3;
    let mut limits = SourceLimits::new(&config.connection_limits, None);
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
    let mut config = limits_allowing_all();
    config.connection_limits.max_pending_per_ip = 1;
    let mut limits = SourceLimits::new(&config.connection_limits, None);
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
    let addr = |n: u16| -> Multiaddr { in_site(n).parse().expect("multiaddr") };
    let ip = |n: u16| -> IpAddr { format!("2001:db8:7:{n:x}::1").parse().expect("ip") };

    let peers: Vec<PeerId> = (0..4).map(|_| random_peer()).collect();
    assert!(caps.admit_reservation(peers[0], &addr(0)));
    assert!(caps.admit_reservation(peers[1], &addr(1)));
    assert!(
        !caps.admit_reservation(peers[2], &addr(2)),
        "a third /64 of a /48 capped at two reservations"
    );
    assert!(caps.admit_reservation(peers[3], &"/ip6/2001:db8:8::1/tcp/1".parse().expect("ma")));
    caps.reservation_ended(peers[0]);
    assert!(caps.admit_reservation(peers[2], &addr(2)));

    // Circuit legs: the request's own HOP stream is counted before it is admitted.
    let _legs = [caps.circuit_leg(ip(0)), caps.circuit_leg(ip(1))];
    let third = caps.circuit_leg(ip(2));
    assert!(
        !caps.admit_circuit(&addr(2)),
        "a third circuit leg in a /48 capped at two"
    );
    drop(third);
    assert!(caps.admit_circuit(&addr(2)));

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
