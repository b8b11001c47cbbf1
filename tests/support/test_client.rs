//! A real libp2p client swarm (relay client, rendezvous client, identify, ping, raw
//! streams) on its own task, driven by commands.

use super::*;

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
                    &dusk_relay::net::proxy_protocol::ProxyProtocol::off(),
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

    /// Waits until this client has no connection left to any of `peers`, whichever
    /// closes first.
    pub async fn disconnected_from_all(&mut self, peers: &[PeerId]) {
        let mut connected: std::collections::HashSet<PeerId> = peers.iter().copied().collect();
        self.next("connections closed", |e| match e {
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                connected.remove(&peer_id);
                connected.is_empty().then_some(())
            }
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
        let listener = self
            .call(move |s| s.listen_on(circuit))
            .await
            .map_err(|e| e.to_string())?;
        // Only this listener's end counts: an earlier reservation's listener may close
        // while this one is being set up (its relay went away).
        self.next("reservation", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { limit, .. },
            )) => Some(Ok(limit.map(|l| CircuitLimit {
                duration: l.duration(),
                data_in_bytes: l.data_in_bytes(),
            }))),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason: Err(error),
                ..
            } if listener_id == listener => Some(Err(error.to_string())),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason: Ok(()),
                ..
            } if listener_id == listener => Some(Err("listener closed".into())),
            SwarmEvent::ListenerError {
                listener_id, error, ..
            } if listener_id == listener => Some(Err(error.to_string())),
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
