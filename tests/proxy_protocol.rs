//! The PROXY protocol on the TCP, WS and WSS listeners (README "Behind an L4 load
//! balancer"): a tiny in-test L4 balancer on 127.0.0.1 writes a v1 or v2 header claiming
//! a client IP, then copies bytes both ways; libp2p clients dial the balancer. The
//! claimed clients (203.0.113.7, 198.51.100.9, 2001:db8::7) are documentation addresses,
//! only ever written in headers.
//!
//! What the relay counts is checked through what it observes (identify's observed
//! address is the connection's `send_back_addr`) and through the per-IP connection cap.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use dusk_relay::net::proxy_protocol::{TrustedRange, HEADER_TIMEOUT};
use dusk_relay::RelayEvent;
use libp2p::identify;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLIENT_A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const CLIENT_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

/// What the balancer writes before the client's bytes.
#[derive(Debug, Clone)]
enum Header {
    None,
    V1(SocketAddr),
    V2(SocketAddr),
}

impl Header {
    fn bytes(&self, relay: SocketAddr) -> Vec<u8> {
        match self {
            Header::None => Vec::new(),
            Header::V1(client) => {
                let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
                // The destination must be of the client's family; its value is not read.
                let destination = match client.ip() {
                    IpAddr::V4(_) => relay.ip(),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                };
                format!(
                    "PROXY {family} {} {destination} {} {}\r\n",
                    client.ip(),
                    client.port(),
                    relay.port()
                )
                .into_bytes()
            }
            Header::V2(client) => {
                let destination = match client.ip() {
                    IpAddr::V4(_) => relay,
                    IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), relay.port()),
                };
                ppp::v2::Builder::with_addresses(
                    ppp::v2::Version::Two | ppp::v2::Command::Proxy,
                    ppp::v2::Protocol::Stream,
                    (*client, destination),
                )
                // A TLV, as AWS NLB sends one: the relay must read past it.
                .write_tlv(ppp::v2::Type::NoOp, b"dusk")
                .expect("TLV")
                .build()
                .expect("v2 header")
            }
        }
    }
}

/// A tiny L4 load balancer on 127.0.0.1: for its n-th connection it connects to
/// `relay`, writes `headers[n]` (the last one once they run out), then copies bytes both
/// ways until either side closes. Returns its address.
async fn balancer(relay: SocketAddr, headers: Vec<Header>) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the balancer");
    let addr = listener.local_addr().expect("balancer address");
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let header = headers
                .get(n)
                .or(headers.last())
                .map(|h| h.bytes(relay))
                .unwrap_or_default();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(relay).await else {
                    return;
                };
                if upstream.write_all(&header).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

/// The TCP socket address of the relay's `transport` listener.
fn socket_of(addr: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Tcp(port) => return SocketAddr::new(ip.expect("IP before TCP"), port),
            _ => {}
        }
    }
    panic!("no TCP socket in {addr}")
}

/// `relay_addr` (with its `/ws`, `/tls/ws` and `/p2p`) with the balancer's port.
fn via(relay_addr: &Multiaddr, balancer: SocketAddr) -> Multiaddr {
    relay_addr
        .iter()
        .map(|p| match p {
            Protocol::Tcp(_) => Protocol::Tcp(balancer.port()),
            other => other,
        })
        .collect()
}

/// A relay trusting `trusted` for PROXY headers, with `adjust` applied after.
async fn relay_trusting(trusted: &str, adjust: impl FnOnce(&mut dusk_relay::Config)) -> TestRelay {
    let ranges: Vec<TrustedRange> = trusted
        .split(',')
        .map(|r| r.parse().expect("test range"))
        .collect();
    TestRelay::start_with(|c| {
        c.proxy_protocol_from = ranges;
        adjust(c);
    })
    .await
}

/// The address the relay told `client` it observed (identify): the connection's
/// `send_back_addr` on the relay's side.
async fn observed_by_relay(client: &mut Client) -> Multiaddr {
    client
        .next("identify from the relay", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(identify::Event::Received {
                info,
                ..
            })) => Some(info.observed_addr),
            _ => None,
        })
        .await
}

fn tcp_addr(client: SocketAddr) -> Multiaddr {
    Multiaddr::from(client.ip()).with(Protocol::Tcp(client.port()))
}

/// A connection that the relay closes within `limit` (reads until EOF or an error).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

async fn the_client_a_header_names_is_who_the_relay_observes(
    transport: Transport,
    header: fn(SocketAddr) -> Header,
    client: SocketAddr,
) {
    let relay = relay_trusting("127.0.0.1", |_| {}).await;
    let target = relay.addr(transport);
    let lb = balancer(socket_of(&target), vec![header(client)]).await;
    let mut peer = relay.client().await;
    peer.connect(&via(&target, lb)).await;
    let mut expected = tcp_addr(client);
    match transport {
        Transport::Ws => expected.push(Protocol::Ws("/".into())),
        Transport::Wss => {
            expected.push(Protocol::Tls);
            expected.push(Protocol::Ws("/".into()));
        }
        _ => {}
    }
    assert_eq!(observed_by_relay(&mut peer).await, expected);
}

transport_tests! {
    the_client_a_header_names_is_who_the_relay_observes;
    a_v1_header_over_tcp_names_the_client => (
        Transport::Tcp, Header::V1, SocketAddr::new(CLIENT_A.into(), 40001)
    ),
    a_v2_header_over_tcp_names_an_ipv6_client => (
        Transport::Tcp, Header::V2, "[2001:db8::7]:40002".parse().unwrap()
    ),
    a_v2_header_over_websocket_names_the_client => (
        Transport::Ws, Header::V2, SocketAddr::new(CLIENT_B.into(), 40003)
    ),
    a_v1_header_over_secure_websocket_names_the_client => (
        Transport::Wss, Header::V1, SocketAddr::new(CLIENT_A.into(), 40004)
    ),
}

/// Two clients through the balancer with `max_connections_per_ip = 1`: `Ok` when the
/// second connected too, `Err` when it was refused (the relay said why).
async fn two_clients_through_a_balancer(
    relay: &TestRelay,
    transport: Transport,
    headers: Vec<Header>,
) -> Result<(), String> {
    let target = relay.addr(transport);
    let lb = balancer(socket_of(&target), headers).await;
    let mut events = relay.subscribe();
    let mut first = relay.client().await;
    first.connect(&via(&target, lb)).await;
    let mut second = relay.client().await;
    match second.try_connect(&via(&target, lb)).await {
        Ok(()) => Ok(()),
        Err(error) => {
            let reason = relay_event(&mut events, |e| match e {
                RelayEvent::ConnectionRefused { reason } => Some(*reason),
                _ => None,
            })
            .await;
            Err(format!("{reason}: {error}"))
        }
    }
}

fn one_per_ip(c: &mut dusk_relay::Config) {
    c.connection_limits.max_per_ip = 1;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_a_header_puts_on_one_ip_share_its_cap() {
    let relay = relay_trusting("127.0.0.1", one_per_ip).await;
    let claims = vec![
        Header::V1(SocketAddr::new(CLIENT_A.into(), 40001)),
        Header::V1(SocketAddr::new(CLIENT_A.into(), 40002)),
    ];
    let refused = two_clients_through_a_balancer(&relay, Transport::Tcp, claims)
        .await
        .expect_err("the second client from 203.0.113.7 must be refused");
    assert!(refused.starts_with("per_ip:"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_headers_put_on_different_ips_each_have_their_own_cap() {
    for transport in [Transport::Tcp, Transport::Ws] {
        let relay = relay_trusting("127.0.0.1", one_per_ip).await;
        let claims = vec![
            Header::V2(SocketAddr::new(CLIENT_A.into(), 40001)),
            Header::V2(SocketAddr::new(CLIENT_B.into(), 40002)),
        ];
        two_clients_through_a_balancer(&relay, transport, claims)
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: both clients connect: {e}"));
    }
}

/// The control for the two tests above: without the PROXY protocol the relay counts the
/// balancer, so the same two clients collide on 127.0.0.1.
#[tokio::test(flavor = "multi_thread")]
async fn without_proxy_protocol_two_clients_behind_a_balancer_share_its_ip() {
    let relay = TestRelay::start_with(one_per_ip).await;
    let refused = two_clients_through_a_balancer(&relay, Transport::Tcp, vec![Header::None])
        .await
        .expect_err("the second client from the balancer's IP must be refused");
    assert!(refused.starts_with("per_ip:"), "{refused}");
}

/// The relay trusts 10.0.0.0/8 only: a header from 127.0.0.1 is not read as one, so the
/// libp2p handshake (multistream-select on TCP, HTTP on WS) fails on it, while plain
/// connections from 127.0.0.1 are served as usual.
#[tokio::test(flavor = "multi_thread")]
async fn a_header_from_an_untrusted_source_fails_the_handshake() {
    let relay = relay_trusting("10.0.0.0/8", |_| {}).await;
    let claimed = SocketAddr::new(CLIENT_A.into(), 40001);
    for transport in [Transport::Tcp, Transport::Ws] {
        let target = relay.addr(transport);
        for header in [Header::V1(claimed), Header::V2(claimed)] {
            let lb = balancer(socket_of(&target), vec![header.clone()]).await;
            let mut client = relay.client().await;
            let result = client.try_connect(&via(&target, lb)).await;
            assert!(
                result.is_err(),
                "{transport:?} {header:?} from an untrusted source was accepted"
            );
        }
        // The controls: the same path without a header, and a direct dial, connect.
        let forwarder = balancer(socket_of(&target), vec![Header::None]).await;
        let mut client = relay.client().await;
        client.connect(&via(&target, forwarder)).await;
        assert_eq!(
            observed_by_relay(&mut client).await.iter().next(),
            Some(Protocol::Ip4(Ipv4Addr::LOCALHOST))
        );
        relay.client().await.connect(&target).await;
    }
}

/// A libp2p client dialing straight from a trusted range sends no header: refused, on
/// TCP and WS alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_in_the_trusted_range_that_sends_no_header_is_refused() {
    let relay = relay_trusting("127.0.0.0/8", |_| {}).await;
    for transport in [Transport::Tcp, Transport::Ws, Transport::Wss] {
        let mut client = relay.client().await;
        let result = client.try_connect(&relay.addr(transport)).await;
        assert!(
            result.is_err(),
            "{transport:?}: a headerless client was served"
        );
    }
    // QUIC has no PROXY protocol: the same client is served over UDP.
    relay
        .client()
        .await
        .connect(&relay.addr(Transport::Quic))
        .await;
}

/// A trusted source that sends something else than a header is closed at once (well
/// before the header timeout), and one that sends nothing is closed at the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_source_sending_garbage_or_nothing_is_closed() {
    let relay = relay_trusting("127.0.0.1", |_| {}).await;
    let tcp = socket_of(&relay.addr(Transport::Tcp));
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n".as_slice(),
        b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40001 4001 and on and on and on and on and on and on and on and on and on and on and on",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
    ] {
        let mut socket = TcpStream::connect(tcp).await.expect("connect");
        socket.write_all(garbage).await.expect("write");
        assert!(
            closed_within(&mut socket, HEADER_TIMEOUT / 2).await,
            "{:?} was not refused",
            String::from_utf8_lossy(garbage)
        );
    }
    let started = Instant::now();
    let mut silent = TcpStream::connect(tcp).await.expect("connect");
    assert!(
        closed_within(&mut silent, HEADER_TIMEOUT * 2).await,
        "a silent trusted source was kept past twice the header timeout"
    );
    assert!(
        started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500),
        "closed after {:?}, before the header timeout",
        started.elapsed()
    );
}

/// At most `max_pending_incoming` headers are read at once: a trusted source holding
/// every slot with silent connections gets its next connection dropped at once, and
/// the slots come back when the silent ones time out.
#[tokio::test(flavor = "multi_thread")]
async fn headers_read_at_once_are_capped_and_the_slots_come_back() {
    const SLOTS: u32 = 2;
    let relay = relay_trusting("127.0.0.1", |c| {
        c.connection_limits.max_pending_incoming = SLOTS
    })
    .await;
    let target = relay.addr(Transport::Tcp);
    let tcp = socket_of(&target);
    let mut silent = Vec::new();
    for _ in 0..SLOTS {
        silent.push(TcpStream::connect(tcp).await.expect("connect"));
    }
    // Accepted in order: these two hold both slots before the third is accepted. The
    // third is dropped without waiting for a header.
    let mut third = TcpStream::connect(tcp).await.expect("connect");
    let started = Instant::now();
    assert!(
        closed_within(&mut third, HEADER_TIMEOUT / 2).await,
        "a connection over the header budget was kept"
    );
    for socket in &mut silent {
        assert!(closed_within(socket, HEADER_TIMEOUT * 2).await);
    }
    assert!(
        started.elapsed() >= HEADER_TIMEOUT / 2,
        "the silent connections were closed before the header timeout"
    );
    // The slots are free again: a client through the balancer connects.
    let lb = balancer(
        tcp,
        vec![Header::V2(SocketAddr::new(CLIENT_A.into(), 40001))],
    )
    .await;
    let mut client = relay.client().await;
    client.connect(&via(&target, lb)).await;
    assert_eq!(
        observed_by_relay(&mut client).await,
        tcp_addr(SocketAddr::new(CLIENT_A.into(), 40001))
    );
}

/// `dusk-relay healthcheck` probes the relay from its own address: when the relay
/// trusts that address (a balancer on the same host), the probe sends `PROXY UNKNOWN`
/// and is served, instead of being closed for lacking a header.
#[tokio::test(flavor = "multi_thread")]
async fn the_health_check_passes_a_relay_that_trusts_loopback() {
    let relay = relay_trusting("127.0.0.1", |_| {}).await;
    let mut config = dusk_relay::testing::loopback_config(relay.dir.path());
    config.port = socket_of(&relay.addr(Transport::Tcp)).port();
    config.ws_port = None;
    config.wss_port = None;
    config.proxy_protocol_from = vec!["127.0.0.1".parse().expect("range")];
    let answered = dusk_relay::server::healthcheck::check(&config)
        .await
        .expect("the relay is healthy");
    assert_eq!(answered, relay.peer_id());
}
