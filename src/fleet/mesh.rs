//! The mesh: each node's own libp2p swarm that the other nodes of the fleet dial to
//! forward circuits. It listens on `DUSK_RELAY_MESH_ADDR` and is reached at
//! [`Mesh::local`] (the announce address, or the listen address, with the mesh's
//! peer id).
//!
//! - **Authenticated by the fleet secret.** Noise's handshake is bound to the key from
//!   [`super::key`] (its prologue): a peer without it, or with another fleet's, cannot
//!   finish a handshake, and each byte is encrypted once, by noise.
//! - **A random identity per start.** Every node has the relay's identity, and a swarm
//!   cannot dial its own peer id; the directory names a node by its mesh address with
//!   this id.
//! - **Nothing but circuits.** One protocol ([`PROTOCOL`]), served by
//!   [`super::forward`]; no identify, no ping, no relay.
//! - **Bounded.** Handshakes in flight, connections and connections per node are capped
//!   ([`mesh_caps`]); a handshake has [`HANDSHAKE_TIMEOUT`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::Version;
use libp2p::core::Endpoint;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Stream, StreamProtocol, Transport};

use super::key::FleetKey;
use super::FleetError;
use crate::config::{ConnectionLimits, FleetConfig};
use crate::limits::connection_caps::ConnectionCaps;

/// The one protocol of the mesh: a circuit forwarded from another node.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/dusk-relay/mesh/circuit/1");

/// Nodes of one fleet are on one network: a handshake that takes longer is not a node.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A mesh connection with no circuit is kept this long for the next one.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Mesh addresses remembered for dialling; past this the memory is cleared (the
/// directory gives them again).
const MAX_KNOWN_NODES: usize = 1024;

/// The mesh's connection caps: a fleet has a handful of nodes.
fn mesh_caps() -> ConnectionCaps {
    ConnectionCaps::new(&ConnectionLimits {
        max_established: 256,
        max_established_per_peer: 4,
        max_pending_incoming: 64,
        max_per_ip: 0,
        max_per_ipv6_64: 0,
        max_per_ipv6_48: 0,
        max_pending_per_ip: 0,
        max_pending_per_ipv6_64: 0,
        max_pending_per_ipv6_48: 0,
        max_memory_bytes: None,
        max_negotiating_streams: 0,
    })
}

#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct MeshBehaviour {
    caps: ConnectionCaps,
    nodes: KnownNodes,
    streams: libp2p_stream::Behaviour,
}

/// This node's end of the mesh. Dropping it stops the mesh swarm.
pub struct Mesh {
    control: libp2p_stream::Control,
    nodes: KnownNodes,
    local: Multiaddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mesh {
    /// Listens on the configured mesh address; returns the mesh and the circuits other
    /// nodes forward to this one.
    pub async fn start(
        config: &FleetConfig,
        key: &FleetKey,
    ) -> Result<(Mesh, libp2p_stream::IncomingStreams), FleetError> {
        let error = |reason: String| FleetError::Mesh {
            addr: config.mesh_addr.to_string(),
            reason,
        };
        let keypair = Keypair::generate_ed25519();
        let noise = noise::Config::new(&keypair)
            .map_err(|e| error(e.to_string()))?
            .with_prologue(key.prologue());
        let transport = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .boxed();
        let nodes = KnownNodes::default();
        let behaviour = MeshBehaviour {
            caps: mesh_caps(),
            nodes: nodes.clone(),
            streams: libp2p_stream::Behaviour::new(),
        };
        let mut control = behaviour.streams.new_control();
        let incoming = control.accept(PROTOCOL).map_err(|e| error(e.to_string()))?;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|_| transport)
            .map_err(|e| error(e.to_string()))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| error(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build();
        let listen = tcp_multiaddr(config.mesh_addr);
        swarm.listen_on(listen).map_err(|e| error(e.to_string()))?;
        let bound = loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => break address,
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(error(match reason {
                        Ok(()) => "closed".into(),
                        Err(e) => e.to_string(),
                    }))
                }
                SwarmEvent::ListenerError { error: e, .. } => return Err(error(e.to_string())),
                _ => {}
            }
        };
        let reachable_at = match &config.mesh_announce {
            Some(announce) => super::announce_multiaddr(announce).map_err(error)?,
            None if config.mesh_addr.ip().is_unspecified() => {
                return Err(error(format!(
                    "listening on every interface, other nodes need an address to dial: set {}",
                    crate::config::settings::Id::MeshAnnounceAddr.env()
                )))
            }
            None => bound,
        };
        let local = reachable_at.with(Protocol::P2p(*swarm.local_peer_id()));
        let task = tokio::spawn(async move {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        tracing::debug!(node = %peer_id, "mesh connection up")
                    }
                    SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                        tracing::debug!(node = %peer_id, ?cause, "mesh connection closed")
                    }
                    SwarmEvent::IncomingConnectionError { error, .. } => {
                        tracing::debug!(%error, "mesh handshake failed (no or another fleet secret?)")
                    }
                    _ => {}
                }
            }
        });
        Ok((
            Mesh {
                control,
                nodes,
                local,
                task,
            },
            incoming,
        ))
    }

    /// Where the other nodes reach this one: the value of this node's directory entries.
    pub fn local(&self) -> &Multiaddr {
        &self.local
    }

    /// A fresh circuit stream to the node at `node` (a mesh address ending in its
    /// mesh peer id), dialling it if there is no connection yet.
    pub async fn open(&self, node: &Multiaddr) -> Result<Stream, String> {
        let mut addr = node.clone();
        let Some(Protocol::P2p(peer)) = addr.pop() else {
            return Err(format!("{node} names no mesh peer id"));
        };
        let addr = resolve(addr).await?;
        self.nodes.remember(peer, addr);
        self.control
            .clone()
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(|e| e.to_string())
    }
}

fn tcp_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::from(addr.ip()).with(Protocol::Tcp(addr.port()))
}

/// `/dns/<name>/tcp/<port>` to an IP address (the mesh transport has no DNS layer);
/// anything else as it is.
async fn resolve(addr: Multiaddr) -> Result<Multiaddr, String> {
    let mut parts = addr.iter();
    let (
        Some(Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name)),
        Some(Protocol::Tcp(port)),
    ) = (parts.next(), parts.next())
    else {
        return Ok(addr);
    };
    let resolved = tokio::net::lookup_host((name.as_ref(), port))
        .await
        .map_err(|e| format!("cannot resolve {name}: {e}"))?
        .next()
        .ok_or_else(|| format!("{name} resolves to no address"))?;
    Ok(tcp_multiaddr(resolved))
}

/// The mesh addresses of nodes, by mesh peer id: libp2p-stream dials by peer id, and
/// this is where the swarm finds the address.
#[derive(Clone, Default)]
struct KnownNodes(Arc<Mutex<HashMap<PeerId, Multiaddr>>>);

impl KnownNodes {
    fn remember(&self, peer: PeerId, addr: Multiaddr) {
        let mut nodes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if nodes.len() >= MAX_KNOWN_NODES && !nodes.contains_key(&peer) {
            nodes.clear();
        }
        nodes.insert(peer, addr);
    }

    fn address_of(&self, peer: &PeerId) -> Option<Multiaddr> {
        let nodes = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        nodes.get(peer).cloned()
    }
}

impl NetworkBehaviour for KnownNodes {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(peer.and_then(|p| self.address_of(&p)).into_iter().collect())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
