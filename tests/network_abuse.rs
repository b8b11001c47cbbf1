//! Attacks on the relay's network edge (issue 16 items 1, 7 and 8), written the way an
//! attacker writes them: raw sockets and raw bytes, no libp2p on the hostile side.
//!
//! - A WebSocket frame header declaring 256 MiB, then silence: libp2p-websocket's default
//!   frame bound let soketto allocate and zero-fill the declared length at once.
//! - Handshakes opened and never finished, holding the relay's pending-handshake slots.
//! - An IPv6 site rotating through its /64s: `tests/ipv6_site_caps.rs` (behaviour level).
//!
//! Attackers are 127.0.0.2 and 127.0.0.3 (their sockets bind there before connecting);
//! legitimate clients dial from 127.0.0.1 or, over QUIC, listen on 127.0.0.4.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dusk_relay::RelayEvent;
use futures::future::join_all;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
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

/// A TLS client that trusts the relay's certificate `cert` (DER) and nothing else.
fn attacker_tls(cert: &[u8]) -> futures_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.to_vec()))
        .expect("the relay's certificate as a trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    futures_rustls::TlsConnector::from(Arc::new(config))
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
    let cert =
        CertificateDer::from_pem_file(dir.path().join(dusk_relay::config::defaults::DEV_CERT_FILE))
            .expect("the relay's WSS certificate");
    let pid = relay.child.id().expect("running");
    let (_, peak_before) = memory(pid);

    // Every socket upgraded and held at once: 15 WS and 15 WSS from each attacker IP.
    let tls = attacker_tls(&cert);
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
        let mut tls = attacker_tls(&relay.certificate())
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
