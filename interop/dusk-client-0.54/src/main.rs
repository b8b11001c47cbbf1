//! The dusk client's networking as it ships (libp2p 0.54.1: relay client 0.18,
//! rendezvous client 0.15), scriptable for interop tests against dusk-relay.
//!
//! Configuration reproduced: TCP + DNS + noise + yamux only (no QUIC, no WebSocket, no
//! TCP listener), identify `/dusk/1.0.0`, ping every 30 s, idle connection timeout 300 s.
//!
//! Flow: dial the relay; once connected, `listen_on(<relay>/p2p-circuit)`; once the
//! reservation is accepted, register (TTL unset) under `dusk/community/<id>`,
//! `dusk/peer/<own id>` and `dusk/peers`, every 120 s again, discover the community and
//! `dusk/peers`, and dial each discovered peer at `<relay>/p2p-circuit/p2p/<peer>`.
//! When the relay connection drops, redial with a backoff (see [`Backoff`]).
//!
//! The only external address is the circuit address: relay client 0.18 itself confirms
//! `<relay>/p2p-circuit/p2p/<own id>` (`ExternalAddrConfirmed`) when a reservation is
//! accepted and expires it when the relay connection closes, and nothing else here
//! confirms one (identify only reports candidates), so the rendezvous record holds the
//! circuit address alone.
//!
//! Usage: `dusk-client-054 [--relay <multiaddr>] [--community <id>]` (or `DUSK_RELAY_ADDR`,
//! `DUSK_COMMUNITY`). stdout: one JSON object per line per milestone. stdin, one command
//! per line:
//!   say <peer> <text>      send a chat message (prints `sent` once the peer acked it)
//!   send <peer> <bytes>    send that many pattern bytes on a stream; the peer verifies
//!                          them and answers the count (prints `stream_ok`)
//!   discover               discover the community and `dusk/peers` now
//!   find <peer>            discover `dusk/peer/<peer>`
//!   quit                   exit (so does end of input)

mod streams;

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, ping, relay, rendezvous, tcp, yamux, Multiaddr, PeerId, Swarm};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use streams::{receive_bulk, receive_chat, send_bulk, send_chat, BULK, CHAT};

/// The dusk client's values.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const REREGISTER_EVERY: Duration = Duration::from_secs(120);

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::client::Behaviour,
    rendezvous: rendezvous::client::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn emit(value: Value) {
    println!("{value}");
}

/// The redial backoff. The shipped client's exact schedule is not visible from here;
/// this one is a sensible stand-in: 0.5 s, doubling to at most 10 s, back to 0.5 s once
/// a reservation is accepted (not merely a connection: a relay that accepts connections
/// but refuses reservations must not be hammered).
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    fn take(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

struct Client {
    swarm: Swarm<Behaviour>,
    relay_addr: Multiaddr,
    relay: PeerId,
    community: String,
    /// A direct connection to the relay is up.
    connected: bool,
    /// The `/p2p-circuit` listener, while it is open.
    listener: Option<libp2p::core::transport::ListenerId>,
    reserved: bool,
    backoff: Backoff,
    /// When to dial the relay again (or ask for a reservation again).
    retry_at: Option<Instant>,
}

impl Client {
    fn namespaces(&self) -> [String; 3] {
        [
            format!("dusk/community/{}", self.community),
            format!("dusk/peer/{}", self.swarm.local_peer_id()),
            "dusk/peers".to_owned(),
        ]
    }

    fn schedule_retry(&mut self) {
        if self.retry_at.is_some() {
            return;
        }
        let delay = self.backoff.take();
        emit(json!({"event": "retry", "in_ms": delay.as_millis() as u64}));
        self.retry_at = Some(Instant::now() + delay);
    }

    fn retry(&mut self) {
        self.retry_at = None;
        if !self.connected {
            if let Err(e) = self.swarm.dial(self.relay_addr.clone()) {
                emit(json!({"event": "error", "what": "dial relay", "error": e.to_string()}));
                self.schedule_retry();
            }
        } else if self.listener.is_none() {
            self.listen();
        }
    }

    fn listen(&mut self) {
        let circuit = self.relay_addr.clone().with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit) {
            Ok(id) => self.listener = Some(id),
            Err(e) => {
                emit(json!({"event": "error", "what": "listen_on", "error": e.to_string()}));
                self.schedule_retry();
            }
        }
    }

    fn register_all(&mut self) {
        for ns in self.namespaces() {
            let namespace = rendezvous::Namespace::new(ns.clone()).expect("namespace fits");
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .rendezvous
                .register(namespace, self.relay, None)
            {
                emit(json!({"event": "register_failed", "namespace": ns, "error": e.to_string()}));
            }
        }
    }

    fn discover(&mut self, namespace: String) {
        let ns = rendezvous::Namespace::new(namespace).expect("namespace fits");
        self.swarm
            .behaviour_mut()
            .rendezvous
            .discover(Some(ns), None, None, self.relay);
    }

    fn discover_all(&mut self) {
        let [community, _own, peers] = self.namespaces();
        self.discover(community);
        self.discover(peers);
    }

    fn circuit_to(&self, peer: PeerId) -> Multiaddr {
        self.relay_addr
            .clone()
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(peer))
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == self.relay && !endpoint.is_relayed() => {
                emit(json!({"event": "relay_connected"}));
                self.connected = true;
                self.retry_at = None;
                if self.listener.is_none() {
                    self.listen();
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                emit(
                    json!({"event": "connected", "peer": peer_id.to_string(), "relayed": endpoint.is_relayed()}),
                );
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                let cause = cause.map(|c| c.to_string());
                if peer_id == self.relay && !endpoint.is_relayed() {
                    if num_established == 0 {
                        emit(json!({"event": "relay_disconnected", "cause": cause}));
                        self.connected = false;
                        self.reserved = false;
                        self.schedule_retry();
                    }
                } else {
                    emit(
                        json!({"event": "disconnected", "peer": peer_id.to_string(), "cause": cause}),
                    );
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                emit(
                    json!({"event": "dial_failed", "peer": peer_id.map(|p| p.to_string()), "error": error.to_string()}),
                );
                if peer_id == Some(self.relay) && !self.connected {
                    self.schedule_retry();
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if Some(listener_id) == self.listener => {
                emit(
                    json!({"event": "listener_closed", "error": reason.err().map(|e| e.to_string())}),
                );
                self.listener = None;
                self.reserved = false;
                if self.connected {
                    self.schedule_retry();
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                emit(json!({"event": "listen_addr", "addr": address.to_string()}));
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                emit(json!({"event": "external_addr", "addr": address.to_string()}));
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                emit(json!({"event": "external_addr_expired", "addr": address.to_string()}));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(
                relay::client::Event::ReservationReqAccepted { renewal, .. },
            )) => {
                emit(json!({"event": "reserved", "renewal": renewal}));
                if !renewal {
                    self.reserved = true;
                    self.backoff.reset();
                    self.register_all();
                    self.discover_all();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(event)) => self.on_rendezvous(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                emit(json!({
                    "event": "identified",
                    "peer": peer_id.to_string(),
                    "protocol_version": info.protocol_version,
                    "agent_version": info.agent_version,
                }));
            }
            _ => {}
        }
    }

    fn on_rendezvous(&mut self, event: rendezvous::client::Event) {
        use rendezvous::client::Event;
        match event {
            Event::Registered { namespace, ttl, .. } => {
                emit(
                    json!({"event": "registered", "namespace": namespace.to_string(), "ttl": ttl}),
                );
            }
            Event::RegisterFailed {
                namespace, error, ..
            } => {
                emit(
                    json!({"event": "register_failed", "namespace": namespace.to_string(), "error": format!("{error:?}")}),
                );
            }
            Event::Discovered { registrations, .. } => {
                let me = *self.swarm.local_peer_id();
                for registration in registrations {
                    let peer = registration.record.peer_id();
                    if peer == me {
                        continue;
                    }
                    let addrs: Vec<String> = registration
                        .record
                        .addresses()
                        .iter()
                        .map(|a| a.to_string())
                        .collect();
                    emit(json!({
                        "event": "discovered",
                        "peer": peer.to_string(),
                        "namespace": registration.namespace.to_string(),
                        "addrs": addrs,
                    }));
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![self.circuit_to(peer)])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, "not dialing: {e}");
                    }
                }
            }
            Event::DiscoverFailed {
                namespace, error, ..
            } => {
                emit(
                    json!({"event": "discover_failed", "namespace": namespace.map(|n| n.to_string()), "error": format!("{error:?}")}),
                );
            }
            Event::Expired { peer } => {
                emit(json!({"event": "expired", "peer": peer.to_string()}));
            }
        }
    }

    /// Handles one stdin command; false to quit.
    fn on_command(&mut self, line: &str) -> bool {
        let mut words = line.trim().splitn(3, ' ');
        let command = words.next().unwrap_or_default();
        let peer = words.next().map(str::parse::<PeerId>);
        let rest = words.next().unwrap_or_default().to_owned();
        let control = self.swarm.behaviour().stream.new_control();
        match (command, peer) {
            ("", _) => {}
            ("quit", _) => return false,
            ("discover", _) => self.discover_all(),
            ("find", Some(Ok(peer))) => self.discover(format!("dusk/peer/{peer}")),
            ("say", Some(Ok(peer))) => {
                tokio::spawn(send_chat(control, peer, rest));
            }
            ("send", Some(Ok(peer))) => match rest.parse::<u64>() {
                Ok(len) => {
                    tokio::spawn(send_bulk(control, peer, len));
                }
                Err(_) => emit(json!({"event": "error", "what": "bad byte count", "line": line})),
            },
            _ => emit(json!({"event": "error", "what": "bad command", "line": line})),
        }
        true
    }
}

fn arg_or_env(flag: &str, var: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(var).ok())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let relay_addr: Multiaddr = arg_or_env("--relay", "DUSK_RELAY_ADDR")
        .ok_or("set --relay or DUSK_RELAY_ADDR to /ip4/…/tcp/…/p2p/<relay>")?
        .parse()?;
    let relay = relay_addr
        .iter()
        .find_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .ok_or("the relay address needs /p2p/<relay peer id>")?;
    let community = arg_or_env("--community", "DUSK_COMMUNITY").unwrap_or_else(|| "default".into());

    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_dns()?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay| Behaviour {
            relay,
            rendezvous: rendezvous::client::Behaviour::new(key.clone()),
            identify: identify::Behaviour::new(identify::Config::new(
                "/dusk/1.0.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
            stream: libp2p_stream::Behaviour::new(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    emit(json!({"event": "started", "peer": swarm.local_peer_id().to_string()}));

    let mut control = swarm.behaviour().stream.new_control();
    let mut chats = control.accept(CHAT)?;
    let mut bulks = control.accept(BULK)?;
    let mut client = Client {
        swarm,
        relay_addr,
        relay,
        community,
        connected: false,
        listener: None,
        reserved: false,
        backoff: Backoff {
            next: Backoff::FIRST,
        },
        retry_at: None,
    };
    client.retry(); // the first dial
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut reregister = tokio::time::interval_at(
        tokio::time::Instant::now() + REREGISTER_EVERY,
        REREGISTER_EVERY,
    );

    loop {
        let retry_at = client.retry_at;
        tokio::select! {
            event = client.swarm.select_next_some() => client.on_event(event),
            line = stdin.next_line() => match line? {
                Some(line) if client.on_command(&line) => {}
                _ => break,
            },
            _ = async { tokio::time::sleep_until(retry_at.expect("guarded").into()).await },
                if retry_at.is_some() => client.retry(),
            _ = reregister.tick() => if client.reserved {
                client.register_all();
                client.discover_all();
            },
            Some((peer, stream)) = chats.next() => {
                tokio::spawn(async move {
                    if let Err(e) = receive_chat(peer, stream).await {
                        emit(json!({"event": "receive_failed", "from": peer.to_string(), "error": e.to_string()}));
                    }
                });
            }
            Some((peer, stream)) = bulks.next() => {
                tokio::spawn(async move {
                    if let Err(e) = receive_bulk(peer, stream).await {
                        emit(json!({"event": "stream_failed", "from": peer.to_string(), "error": e.to_string()}));
                    }
                });
            }
        }
    }
    emit(json!({"event": "stopped"}));
    Ok(())
}
