//! Test support: a relay on loopback with OS-assigned ports, and real libp2p client
//! swarms (relay client, rendezvous client, identify, ping, raw streams) that drive it
//! over any of its transports. Every wait is on an event, bounded by a timeout that
//! only turns a hang into a failure.
#![allow(dead_code)] // each test file uses part of this module

pub mod hop;
pub mod js;
pub mod process;
pub mod redis;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use dusk_relay::{Config, Relay, RelayEvent, RelayHandle};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, noise, ping, relay, rendezvous, websocket, yamux, Multiaddr, PeerId, StreamProtocol,
    Swarm,
};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Generous bound for anything that should take well under a second on loopback.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The protocol test clients exchange bytes on.
pub const DATA_PROTOCOL: StreamProtocol = StreamProtocol::new("/dusk-test/data/1.0.0");

#[allow(unused_imports)] // Not every test binary uses both.
pub use dusk_relay::testing::{Transport, ALL_TRANSPORTS};

/// A config for a relay on 127.0.0.1 with every listener on an OS-assigned port and its
/// files in `dir`.
pub fn test_config(dir: &Path) -> Config {
    Config {
        port: 0,
        ws_port: Some(0),
        wss_port: Some(0),
        listen_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        keypair_path: dir.join("keypair"),
        metrics_addr: Some(std::net::SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            0,
        )),
        ..Config::default()
    }
}

/// A running relay and the directory holding its keypair and certificate.
pub struct TestRelay {
    pub handle: RelayHandle,
    pub dir: tempfile::TempDir,
}

impl TestRelay {
    pub async fn start() -> TestRelay {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let handle = start_relay_in(dir.path(), adjust).await;
        TestRelay { handle, dir }
    }

    pub fn peer_id(&self) -> PeerId {
        self.handle.peer_id
    }

    /// The full address (with `/p2p/<relay>`) of the relay's listener for `transport`.
    pub fn addr(&self, transport: Transport) -> Multiaddr {
        relay_addr(&self.handle, transport)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.handle.subscribe()
    }

    /// The relay's WSS certificate, for clients to trust.
    pub fn certificate(&self) -> Vec<u8> {
        self.handle.certificate_chain[0].to_vec()
    }

    pub async fn client(&self) -> Client {
        Client::new(Some(self.certificate())).await
    }
}

pub async fn start_relay_in(dir: &Path, adjust: impl FnOnce(&mut Config)) -> RelayHandle {
    let mut config = test_config(dir);
    adjust(&mut config);
    Relay::bind(config).await.expect("relay starts").spawn()
}

pub fn relay_addr(relay: &RelayHandle, transport: Transport) -> Multiaddr {
    relay
        .listen_addrs
        .iter()
        .find(|a| transport.matches(a))
        .unwrap_or_else(|| {
            panic!(
                "relay has no {transport:?} listener: {:?}",
                relay.listen_addrs
            )
        })
        .clone()
        .with(Protocol::P2p(relay.peer_id))
}

/// Waits for the first relay event `f` maps to `Some`.
pub async fn relay_event<T>(
    events: &mut broadcast::Receiver<RelayEvent>,
    mut f: impl FnMut(&RelayEvent) -> Option<T>,
) -> T {
    within(EVENT_TIMEOUT, "relay event", async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = f(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("missed {n} relay events"),
                Err(broadcast::error::RecvError::Closed) => panic!("relay stopped"),
            }
        }
    })
    .await
}

pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

#[derive(NetworkBehaviour)]
pub struct ClientBehaviour {
    pub relay_client: relay::client::Behaviour,
    pub rendezvous: rendezvous::client::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub stream: libp2p_stream::Behaviour,
}

/// The per-circuit limit a relay announces in a reservation (libp2p's type is private).
#[derive(Debug, Clone, Copy)]
pub struct CircuitLimit {
    pub duration: Option<Duration>,
    pub data_in_bytes: Option<u64>,
}

pub type ClientSwarm = Swarm<ClientBehaviour>;
type SwarmCall = Box<dyn FnOnce(&mut ClientSwarm) + Send>;

/// A client swarm on its own task. Tests act on it with [`Client::call`] and read its
/// events with [`Client::next`].
pub struct Client {
    pub peer_id: PeerId,
    pub keypair: libp2p::identity::Keypair,
    pub control: libp2p_stream::Control,
    pub incoming: libp2p_stream::IncomingStreams,
    calls: mpsc::UnboundedSender<SwarmCall>,
    events: mpsc::UnboundedReceiver<SwarmEvent<ClientBehaviourEvent>>,
}

impl Client {
    /// A client with every transport (TCP, QUIC, WS, WSS trusting `wss_cert`), DNS and
    /// the relay client transport. Which transport it uses is decided by the address
    /// it dials.
    pub async fn new(wss_cert: Option<Vec<u8>>) -> Client {
        let mut tls = websocket::tls::Config::builder();
        if let Some(cert) = wss_cert {
            tls.add_trust(&websocket::tls::Certificate::new(cert))
                .expect("trust relay cert");
        }
        let tls = tls.finish();
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_other_transport(|key| {
                dusk_relay::net::transport::build(
                    key,
                    Some(dusk_relay::net::transport::WssTls::Trust(tls)),
                    Duration::from_secs(20),
                )
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .expect("transport")
            .with_dns()
            .expect("dns")
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .expect("relay client")
            .with_behaviour(|key, relay_client| ClientBehaviour {
                relay_client,
                rendezvous: rendezvous::client::Behaviour::new(key.clone()),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/dusk/1.0.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                stream: libp2p_stream::Behaviour::new(),
            })
            .expect("behaviour")
            // The dusk client's idle timeout.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let peer_id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control.accept(DATA_PROTOCOL).expect("accept data protocol");
        let (calls, mut call_rx) = mpsc::unbounded_channel::<SwarmCall>();
        let (event_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    call = call_rx.recv() => match call {
                        Some(call) => call(&mut swarm),
                        None => break, // the Client was dropped
                    },
                    event = swarm.select_next_some() => {
                        // A circuit listen address is this client's only external address:
                        // rendezvous needs one to build its signed record.
                        if let SwarmEvent::NewListenAddr { address, .. } = &event {
                            if dusk_relay::multiaddr_ext::is_relayed(address) {
                                swarm.add_external_address(address.clone());
                            }
                        }
                        let _ = event_tx.send(event);
                    }
                }
            }
        });
        Client {
            peer_id,
            keypair,
            control,
            incoming,
            calls,
            events,
        }
    }

    /// Runs `f` on the swarm's task and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ClientSwarm) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Box::new(move |swarm| {
                let _ = tx.send(f(swarm));
            }))
            .expect("client task alive");
        rx.await.expect("client task alive")
    }

    /// The next event `f` maps to `Some`; panics on timeout.
    pub async fn next<T>(
        &mut self,
        what: &str,
        f: impl FnMut(SwarmEvent<ClientBehaviourEvent>) -> Option<T>,
    ) -> T {
        within(EVENT_TIMEOUT, what, self.next_unbounded(f)).await
    }

    /// The next event `f` maps to `Some`, however long it takes (for use in a `select!`
    /// that bounds it).
    pub async fn next_unbounded<T>(
        &mut self,
        mut f: impl FnMut(SwarmEvent<ClientBehaviourEvent>) -> Option<T>,
    ) -> T {
        loop {
            let event = self.events.recv().await.expect("client task alive");
            if let Some(found) = f(event) {
                return found;
            }
        }
    }

    /// A signed peer record of this client's with `addrs`, as the rendezvous client
    /// would send it (protobuf signed envelope).
    pub fn signed_record(&self, addrs: Vec<Multiaddr>) -> Vec<u8> {
        libp2p::core::PeerRecord::new(&self.keypair, addrs)
            .expect("sign a peer record")
            .into_signed_envelope()
            .into_protobuf_encoding()
    }

    /// Makes this client's QUIC dials leave from `ip`: it listens there, and libp2p's QUIC
    /// dials from a listening socket, so the relay sees another source address.
    pub async fn quic_from(&mut self, ip: Ipv4Addr) {
        let addr = Multiaddr::from(ip)
            .with(Protocol::Udp(0))
            .with(Protocol::QuicV1);
        self.call(move |s| s.listen_on(addr))
            .await
            .expect("listen on QUIC");
        self.next("QUIC listen address", |e| {
            matches!(e, SwarmEvent::NewListenAddr { .. }).then_some(())
        })
        .await;
    }

    /// Connects to the relay directly.
    pub async fn connect(&mut self, relay_addr: &Multiaddr) {
        if let Err(error) = self.try_connect(relay_addr).await {
            panic!("cannot connect to relay: {error}")
        }
    }

    /// Connects to the relay directly; `Err` with the reason if the connection fails.
    pub async fn try_connect(&mut self, relay_addr: &Multiaddr) -> Result<(), String> {
        let addr = relay_addr.clone();
        self.call(move |s| s.dial(addr))
            .await
            .map_err(|e| e.to_string())?;
        let relay = peer_of(relay_addr);
        self.next("connection to relay", |e| match e {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == relay => Some(Ok(())),
            SwarmEvent::OutgoingConnectionError { error, .. } => Some(Err(error.to_string())),
            _ => None,
        })
        .await
    }

    /// Waits until this client has no connection left to `relay`.
    pub async fn disconnected_from(&mut self, relay: PeerId) {
        self.next("connections to the relay closed", |e| match e {
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if peer_id == relay => Some(()),
            _ => None,
        })
        .await
    }

    /// Reserves a slot on the relay; returns the reservation's limit as the relay sent it.
    pub async fn reserve(&mut self, relay_addr: &Multiaddr) -> Option<CircuitLimit> {
        self.try_reserve(relay_addr)
            .await
            .expect("reservation accepted")
    }

    /// Asks for a reservation; `Err` with the reason if the relay does not grant one.
    pub async fn try_reserve(
        &mut self,
        relay_addr: &Multiaddr,
    ) -> Result<Option<CircuitLimit>, String> {
        let circuit = relay_addr.clone().with(Protocol::P2pCircuit);
        self.call(move |s| s.listen_on(circuit))
            .await
            .map_err(|e| e.to_string())?;
        self.next("reservation", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { limit, .. },
            )) => Some(Ok(limit.map(|l| CircuitLimit {
                duration: l.duration(),
                data_in_bytes: l.data_in_bytes(),
            }))),
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => Some(Err(error.to_string())),
            SwarmEvent::ListenerClosed { reason: Ok(()), .. } => {
                Some(Err("listener closed".into()))
            }
            SwarmEvent::ListenerError { error, .. } => Some(Err(error.to_string())),
            _ => None,
        })
        .await
    }

    /// Dials `target` through the relay and waits for the relayed connection.
    pub async fn dial_through(&mut self, relay_addr: &Multiaddr, target: PeerId) {
        let addr = circuit_addr(relay_addr, target);
        self.call(move |s| s.dial(addr))
            .await
            .expect("dial through relay");
        self.next("relayed connection", |e| match e {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == target => {
                assert!(
                    endpoint.is_relayed(),
                    "connection to the target must go through the relay"
                );
                Some(())
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            } if p == target => {
                panic!("circuit to {target} failed: {error}")
            }
            _ => None,
        })
        .await
    }

    pub async fn open_data_stream(&mut self, peer: PeerId) -> libp2p::Stream {
        within(
            EVENT_TIMEOUT,
            "data stream",
            self.control.open_stream(peer, DATA_PROTOCOL),
        )
        .await
        .expect("open data stream")
    }

    pub async fn accept_data_stream(&mut self) -> (PeerId, libp2p::Stream) {
        within(EVENT_TIMEOUT, "incoming data stream", self.incoming.next())
            .await
            .expect("incoming streams open")
    }
}

pub fn peer_of(addr: &Multiaddr) -> PeerId {
    addr.iter()
        .find_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .expect("address has /p2p/")
}

pub fn circuit_addr(relay_addr: &Multiaddr, target: PeerId) -> Multiaddr {
    relay_addr
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(target))
}

/// Deterministic, non-repeating bytes: a reordered, dropped or duplicated chunk
/// anywhere in a transfer shows up as a mismatch.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes `len` pattern bytes seeded `send_seed` while reading and checking `len`
/// bytes seeded `recv_seed`, at once, then half-closes. Returns the time taken.
pub async fn exchange(
    stream: libp2p::Stream,
    len: usize,
    send_seed: u64,
    recv_seed: u64,
) -> Duration {
    exchange_unequal(stream, len, len, send_seed, recv_seed).await
}

/// [`exchange`] with a length per direction: writes `send_len` pattern
/// bytes seeded `send_seed` while reading and checking `recv_len` bytes seeded
/// `recv_seed`, then half-closes. Returns the time taken.
pub async fn exchange_unequal(
    stream: libp2p::Stream,
    send_len: usize,
    recv_len: usize,
    send_seed: u64,
    recv_seed: u64,
) -> Duration {
    const CHUNK: usize = 64 * 1024;
    let start = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let send = async move {
        let mut pattern = Pattern::new(send_seed);
        let mut buf = vec![0u8; CHUNK];
        let mut left = send_len;
        while left > 0 {
            let n = left.min(CHUNK);
            pattern.fill(&mut buf[..n]);
            writer.write_all(&buf[..n]).await.expect("write");
            left -= n;
        }
        writer.close().await.expect("close");
    };
    let receive = async move {
        let mut pattern = Pattern::new(recv_seed);
        let mut buf = vec![0u8; CHUNK];
        let mut expected = vec![0u8; CHUNK];
        let mut done = 0;
        while done < recv_len {
            let n = (recv_len - done).min(CHUNK);
            reader
                .read_exact(&mut buf[..n])
                .await
                .unwrap_or_else(|e| panic!("read failed after {done} of {recv_len} bytes: {e}"));
            pattern.fill(&mut expected[..n]);
            assert!(
                buf[..n] == expected[..n],
                "received bytes differ from the sent ones at offset {done}"
            );
            done += n;
        }
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.expect("read to end");
        assert!(rest.is_empty(), "{} bytes more than sent", rest.len());
    };
    within(
        Duration::from_secs(120),
        "data exchange",
        futures::future::join(send, receive),
    )
    .await;
    start.elapsed()
}

/// Client `dialer` opens a data stream to `listener` (already connected) and both send
/// `len` bytes at once, each checking what it receives. Returns MiB/s per direction.
pub async fn exchange_both_ways(dialer: &mut Client, listener: &mut Client, len: usize) -> f64 {
    let listener_id = listener.peer_id;
    let dialer_id = dialer.peer_id;
    let (outbound, inbound) = futures::future::join(
        dialer.open_data_stream(listener_id),
        listener.accept_data_stream(),
    )
    .await;
    assert_eq!(inbound.0, dialer_id);
    let (a, b) = futures::future::join(
        exchange(outbound, len, 1, 2),
        exchange(inbound.1, len, 2, 1),
    )
    .await;
    let elapsed = a.max(b).as_secs_f64();
    len as f64 / (1024.0 * 1024.0) / elapsed
}

/// A reserves on `relay` over `transport`, B connects and dials A through the relay;
/// returns (A, B) once the relay reports the circuit open.
pub async fn open_circuit(relay: &TestRelay, transport: Transport) -> (Client, Client) {
    let (mut a, mut b) = (relay.client().await, relay.client().await);
    open_circuit_between(relay, &mut a, &mut b, transport).await;
    (a, b)
}

/// [`open_circuit`] with clients of the caller's: A reserves, B dials A through the relay.
pub async fn open_circuit_between(
    relay: &TestRelay,
    a: &mut Client,
    b: &mut Client,
    transport: Transport,
) {
    let mut events = relay.subscribe();
    a.reserve(&relay.addr(transport)).await;
    b.connect(&relay.addr(transport)).await;
    b.dial_through(&relay.addr(transport), a.peer_id).await;
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitOpened { .. }).then_some(())
    })
    .await;
}

/// Discovers `namespace` at the relay with the rendezvous client dusk ships.
pub async fn discover(
    client: &mut Client,
    relay: PeerId,
    namespace: &str,
) -> Vec<rendezvous::Registration> {
    let ns = rendezvous::Namespace::new(namespace.to_owned()).expect("namespace fits");
    client
        .call(move |s| {
            s.behaviour_mut()
                .rendezvous
                .discover(Some(ns), None, None, relay)
        })
        .await;
    client
        .next("discover response", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Discovered { registrations, .. },
            )) => Some(registrations),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::DiscoverFailed { error, .. },
            )) => panic!("discover failed: {error:?}"),
            _ => None,
        })
        .await
}

/// Registers `client` under `namespace` at the relay with the rendezvous client dusk
/// ships; the granted TTL, or the error code the relay answered.
pub async fn register(
    client: &mut Client,
    relay: PeerId,
    namespace: &str,
    ttl: Option<u64>,
) -> Result<u64, rendezvous::ErrorCode> {
    let ns = rendezvous::Namespace::new(namespace.to_owned()).expect("namespace fits");
    client
        .call(move |s| s.behaviour_mut().rendezvous.register(ns, relay, ttl))
        .await
        .expect("the client has an address to register");
    client
        .next("register response", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Registered { ttl, .. },
            )) => Some(Ok(ttl)),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::RegisterFailed { error, .. },
            )) => Some(Err(error)),
            _ => None,
        })
        .await
}

/// Writes one raw `/rendezvous/1.0.0` message (length prefix and protobuf) on a new
/// stream and closes its write side; the stream is returned for the answer, if any.
pub async fn raw_send(
    client: &Client,
    relay: PeerId,
    message: dusk_relay::rendezvous::proto::Message,
) -> libp2p::Stream {
    use prost::Message as _;
    let mut control = client.control.clone();
    let mut stream = within(
        EVENT_TIMEOUT,
        "rendezvous stream",
        control.open_stream(relay, dusk_relay::rendezvous::PROTOCOL),
    )
    .await
    .expect("open rendezvous stream");
    let body = message.encode_to_vec();
    let mut len = unsigned_varint::encode::usize_buffer();
    stream
        .write_all(unsigned_varint::encode::usize(body.len(), &mut len))
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
    stream.close().await.unwrap();
    stream
}

/// One raw request/response on `/rendezvous/1.0.0`, for what the crate's client cannot
/// send (someone else's record, an over-long namespace) and to read status texts.
pub async fn raw_request(
    client: &Client,
    relay: PeerId,
    request: dusk_relay::rendezvous::proto::Message,
) -> dusk_relay::rendezvous::proto::Message {
    use prost::Message as _;
    let mut stream = raw_send(client, relay, request).await;
    let mut response = Vec::new();
    within(
        EVENT_TIMEOUT,
        "rendezvous response",
        stream.read_to_end(&mut response),
    )
    .await
    .expect("read response");
    let mut body = response.as_slice();
    let (len, rest) = unsigned_varint::decode::usize(body).expect("length prefix");
    body = &rest[..len];
    dusk_relay::rendezvous::proto::Message::decode(body).expect("a rendezvous message")
}

/// The status and status text of a REGISTER_RESPONSE.
pub fn register_status(
    response: &dusk_relay::rendezvous::proto::Message,
) -> (dusk_relay::rendezvous::ResponseStatus, String) {
    let r = response
        .register_response
        .as_ref()
        .expect("a REGISTER_RESPONSE");
    (
        dusk_relay::rendezvous::ResponseStatus::try_from(r.status.unwrap_or_default())
            .expect("a known status"),
        r.status_text.clone().unwrap_or_default(),
    )
}

/// A minimal HTTP/1.1 request to the relay's endpoint; returns the status and the body.
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the endpoint");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = String::new();
    within(
        EVENT_TIMEOUT,
        "HTTP response",
        stream.read_to_string(&mut response),
    )
    .await
    .expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `/metrics` of the relay at `addr`, parsed.
pub async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("exposition parses")
}

/// The sum of the samples of `name` whose labels include every one of `labels`; 0 when
/// there are none (a counter family no event has touched yet).
pub fn metric_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        })
        .sum()
}
