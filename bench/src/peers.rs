//! The bench's peers: client swarms (relay client + raw streams) on their own tasks, and
//! the two relays under test, each a child process of this binary (`--serve dusk` or
//! `--serve baseline`) so its CPU time and memory can be read from `/proc/<pid>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use dusk_relay::net::transport::{self, WssTls};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, noise, ping, relay, rendezvous, websocket, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::relay_child::RelayChild;

/// The protocol bench clients exchange bytes on.
pub const DATA_PROTOCOL: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new("/dusk-relay-bench/data/1.0.0");

/// Bound on anything that should take well under a second on loopback.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

pub use dusk_relay::testing::Transport;

pub async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| anyhow!("timed out after {limit:?} waiting for {what}"))
}

#[derive(NetworkBehaviour)]
pub struct ClientBehaviour {
    relay_client: relay::client::Behaviour,
    /// The rendezvous client dusk ships (the soak registers and discovers with it).
    pub(crate) rendezvous: rendezvous::client::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

type SwarmCall = Box<dyn FnOnce(&mut Swarm<ClientBehaviour>) + Send>;

/// How a client does WSS: dial trusting the bench certificate, or listen with it (the
/// listening side of a direct WSS connection).
pub enum Tls {
    Trust(Vec<u8>),
    Serve(Arc<rustls::ServerConfig>),
}

/// A client swarm on its own task, as a dusk peer: relay client, rendezvous client,
/// identify, ping and raw streams on [`DATA_PROTOCOL`].
pub struct Client {
    pub peer_id: PeerId,
    pub control: libp2p_stream::Control,
    pub incoming: libp2p_stream::IncomingStreams,
    calls: mpsc::UnboundedSender<SwarmCall>,
    events: mpsc::UnboundedReceiver<SwarmEvent<ClientBehaviourEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    pub fn new(tls: Tls) -> anyhow::Result<Client> {
        let wss = match tls {
            Tls::Trust(cert) => {
                let mut builder = websocket::tls::Config::builder();
                builder
                    .add_trust(&websocket::tls::Certificate::new(cert))
                    .map_err(|e| anyhow!("cannot trust the bench certificate: {e}"))?;
                WssTls::Trust(builder.finish())
            }
            Tls::Serve(config) => WssTls::Serve(config),
        };
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|key| {
                transport::build(
                    key,
                    Some(wss),
                    Duration::from_secs(20),
                    &dusk_relay::net::proxy_protocol::ProxyProtocol::off(),
                )
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| anyhow!("client transport: {e}"))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| anyhow!("client relay transport: {e}"))?
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
            .map_err(|e| anyhow!("client behaviour: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let peer_id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(DATA_PROTOCOL)
            .map_err(|e| anyhow!("accept {DATA_PROTOCOL}: {e}"))?;
        let (calls, mut call_rx) = mpsc::unbounded_channel::<SwarmCall>();
        let (event_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    call = call_rx.recv() => match call {
                        Some(call) => call(&mut swarm),
                        None => break,
                    },
                    event = swarm.select_next_some() => {
                        // A circuit listen address is the client's only external address,
                        // as a dusk peer's: REGISTER publishes it in the signed record.
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
        Ok(Client {
            peer_id,
            control,
            incoming,
            calls,
            events,
            task,
        })
    }

    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Swarm<ClientBehaviour>) -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Box::new(move |swarm| {
                let _ = tx.send(f(swarm));
            }))
            .map_err(|_| anyhow!("client task stopped"))?;
        rx.await.map_err(|_| anyhow!("client task stopped"))
    }

    /// The next event `f` maps to `Some`, within [`EVENT_TIMEOUT`].
    pub(crate) async fn next<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(SwarmEvent<ClientBehaviourEvent>) -> Option<T>,
    ) -> anyhow::Result<T> {
        let events = &mut self.events;
        within(EVENT_TIMEOUT, what, async {
            // The channel ends only when the client's task does.
            while let Some(event) = events.recv().await {
                if let Some(found) = f(event) {
                    return Ok(found);
                }
            }
            Err(anyhow!("client task stopped"))
        })
        .await?
    }

    /// Listens on `addr` (a direct listener); returns the bound address.
    pub async fn listen(&mut self, addr: Multiaddr) -> anyhow::Result<Multiaddr> {
        self.call(move |s| s.listen_on(addr)).await??;
        self.next("listen address", |e| match e {
            SwarmEvent::NewListenAddr { address, .. } => Some(Ok(address)),
            SwarmEvent::ListenerClosed { reason, .. } => {
                Some(Err(anyhow!("listener closed: {reason:?}")))
            }
            _ => None,
        })
        .await?
    }

    /// Dials `addr` (ending in `/p2p/<peer>`) and waits for the connection to `peer`.
    pub async fn connect(&mut self, addr: Multiaddr, peer: PeerId) -> anyhow::Result<()> {
        self.call(move |s| s.dial(addr)).await??;
        self.next("connection", |e| match e {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => Some(Ok(())),
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                Some(Err(anyhow!("cannot connect to {peer}: {error}")))
            }
            _ => None,
        })
        .await?
    }

    /// Reserves a slot on the relay at `relay_addr` (with `/p2p/<relay>`).
    pub async fn reserve(&mut self, relay_addr: &Multiaddr) -> anyhow::Result<()> {
        let circuit = relay_addr.clone().with(Protocol::P2pCircuit);
        self.call(move |s| s.listen_on(circuit)).await??;
        self.next("reservation", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { .. },
            )) => Some(Ok(())),
            SwarmEvent::ListenerClosed { reason, .. } => {
                Some(Err(anyhow!("reservation refused: {reason:?}")))
            }
            SwarmEvent::ListenerError { error, .. } => {
                Some(Err(anyhow!("reservation failed: {error}")))
            }
            _ => None,
        })
        .await?
    }

    /// Dials `target` through the relay at `relay_addr` (with `/p2p/<relay>`; connected
    /// already) and waits for the relayed connection.
    pub async fn dial_through(
        &mut self,
        relay_addr: &Multiaddr,
        target: PeerId,
    ) -> anyhow::Result<()> {
        let circuit = relay_addr
            .clone()
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(target));
        self.call(move |s| s.dial(circuit)).await??;
        self.next("relayed connection", |e| match e {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == target => Some(if endpoint.is_relayed() {
                Ok(())
            } else {
                Err(anyhow!("the connection did not go through the relay"))
            }),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            } if p == target => Some(Err(anyhow!("circuit failed: {error}"))),
            _ => None,
        })
        .await?
    }

    /// Closes every connection to `peer` and waits until the last one is gone.
    pub async fn disconnect(&mut self, peer: PeerId) -> anyhow::Result<()> {
        self.call(move |s| s.disconnect_peer_id(peer))
            .await?
            .map_err(|()| anyhow!("no connection to {peer} to close"))?;
        self.next("the connection closed", |e| match e {
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if peer_id == peer => Some(()),
            _ => None,
        })
        .await
    }

    pub async fn open_stream(&mut self, peer: PeerId) -> anyhow::Result<libp2p::Stream> {
        within(
            EVENT_TIMEOUT,
            "data stream",
            self.control.open_stream(peer, DATA_PROTOCOL),
        )
        .await?
        .map_err(|e| anyhow!("open data stream: {e}"))
    }

    pub async fn accept_stream(&mut self) -> anyhow::Result<libp2p::Stream> {
        let (_, stream) = within(EVENT_TIMEOUT, "incoming data stream", self.incoming.next())
            .await?
            .ok_or_else(|| anyhow!("incoming streams closed"))?;
        Ok(stream)
    }
}

/// Which path a pair of clients talks over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Direct,
    Dusk,
    Baseline,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Dusk => "dusk-relay",
            Via::Baseline => "baseline",
        }
    }
}

/// Two clients connected over `path`: `dialer` opens streams to `listener`.
pub struct Pair {
    pub dialer: Client,
    pub listener: Client,
}

impl Pair {
    /// Clients connected directly over `transport`.
    pub async fn direct(env: &BenchEnv, transport: Transport) -> anyhow::Result<Pair> {
        let mut listener = Client::new(Tls::Serve(env.server_config.clone()))?;
        let mut dialer = Client::new(Tls::Trust(env.cert_der.clone()))?;
        let addr = listener.listen(transport.listen_addr()).await?;
        let peer = listener.peer_id;
        dialer.connect(addr.with(Protocol::P2p(peer)), peer).await?;
        Ok(Pair { dialer, listener })
    }

    /// `listener` reserves on `relay`, `dialer` dials it through the relay.
    pub async fn relayed(
        env: &BenchEnv,
        relay: &RelayChild,
        transport: Transport,
    ) -> anyhow::Result<Pair> {
        let relay_addr = relay.addr(transport)?;
        let mut listener = Client::new(Tls::Trust(env.cert_der.clone()))?;
        let mut dialer = Client::new(Tls::Trust(env.cert_der.clone()))?;
        listener.reserve(&relay_addr).await?;
        dialer.connect(relay_addr.clone(), relay.peer_id).await?;
        dialer.dial_through(&relay_addr, listener.peer_id).await?;
        Ok(Pair { dialer, listener })
    }

    /// A fresh stream from the dialer to the listener: (dialer's end, listener's end).
    pub async fn stream(&mut self) -> anyhow::Result<(libp2p::Stream, libp2p::Stream)> {
        let peer = self.listener.peer_id;
        let (out, inbound) =
            futures::future::join(self.dialer.open_stream(peer), self.listener.accept_stream())
                .await;
        Ok((out?, inbound?))
    }
}

/// What every scenario shares: a scratch directory and the WSS certificate that the
/// relays and direct listeners serve and the clients trust.
pub struct BenchEnv {
    pub dir: ScratchDir,
    pub cert_der: Vec<u8>,
    pub server_config: Arc<rustls::ServerConfig>,
    pub circuits: usize,
}

impl BenchEnv {
    pub fn new(circuits: usize) -> anyhow::Result<BenchEnv> {
        let dir = ScratchDir::new()?;
        let (cert_der, server_config) = load_tls(dir.path())?;
        Ok(BenchEnv {
            dir,
            cert_der,
            server_config,
            circuits,
        })
    }

    pub fn spawn_relay(&self, path: Via) -> anyhow::Result<RelayChild> {
        let kind = match path {
            Via::Dusk => "dusk",
            Via::Baseline => "baseline",
            Via::Direct => bail!("a direct pair has no relay"),
        };
        RelayChild::spawn(kind, self.dir.path(), self.circuits, 0)
    }

    /// A relay child for the capacity and churn scenarios: the baseline's reservation
    /// and circuit counts lifted to `reservations` and `circuits` and its rate limiters
    /// cleared, so it can hold the same load as dusk-relay (whose config is the bench's
    /// [`dusk_config`] either way).
    pub fn spawn_relay_sized(
        &self,
        path: Via,
        reservations: usize,
        circuits: usize,
    ) -> anyhow::Result<RelayChild> {
        let kind = match path {
            Via::Dusk => "dusk",
            Via::Baseline => "baseline",
            Via::Direct => bail!("a direct pair has no relay"),
        };
        RelayChild::spawn(
            kind,
            self.dir.path(),
            circuits.max(self.circuits),
            reservations,
        )
    }
}

/// A directory of this run's files (keypairs, certificate), removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!("dusk-relay-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the scratch directory {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The relay config of the bench ([`dusk_relay::testing::loopback_config`]): loopback, every
/// listener on an OS-assigned port, files in `dir`. Every client of the bench shares
/// 127.0.0.1 and the bench measures how fast the relay can go, so the per-IP ceilings,
/// the per-IP reservation and circuit rate limits and the bandwidth caps are lifted
/// (the code paths that enforce them still run; the per-peer rates stay, and every
/// bench peer reserves once).
pub fn dusk_config(dir: &Path) -> dusk_relay::Config {
    let defaults = dusk_relay::testing::loopback_config(dir);
    dusk_relay::Config {
        connection_limits: dusk_relay::config::ConnectionLimits {
            max_per_ip: 0,
            max_per_ipv6_64: 0,
            max_per_ipv6_48: 0,
            max_pending_per_ip: 0,
            max_pending_per_ipv6_64: 0,
            max_pending_per_ipv6_48: 0,
            ..defaults.connection_limits.clone()
        },
        relay: dusk_relay::config::RelayLimits {
            max_reservations_per_ip: 0,
            max_reservations_per_ipv6_64: 0,
            max_reservations_per_ipv6_48: 0,
            max_circuits_per_ip: 0,
            max_circuits_per_ipv6_64: 0,
            max_circuits_per_ipv6_48: 0,
            reservation_rate_per_ip: 0,
            circuit_rate_per_ip: 0,
            ..defaults.relay.clone()
        },
        bandwidth: dusk_relay::config::BandwidthLimits::unlimited(),
        ..defaults
    }
}

/// Loads (creating on first use) the self-signed WSS certificate in `dir`, the one the
/// dusk relay child finds there too: (its DER, a server config serving it).
pub fn load_tls(dir: &Path) -> anyhow::Result<(Vec<u8>, Arc<rustls::ServerConfig>)> {
    let material = dusk_relay::tls::load_or_generate(&dusk_config(dir))?;
    let der = material
        .certs
        .first()
        .ok_or_else(|| anyhow!("the WSS certificate chain is empty"))?
        .to_vec();
    let served = dusk_relay::tls::reload::ServedCertificate::new(&material)?;
    Ok((der, served.server_config()))
}
