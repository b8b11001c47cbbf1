//! The relay's one `NetworkBehaviour`: connection caps, circuit relay v2 (our own
//! server, [`crate::circuit`]), rendezvous (our own server, [`crate::rendezvous`]),
//! identify and ping. No dcutr, autonat or kad: the relay is the
//! only path between dusk peers and learns nothing it does not need.

pub(crate) mod boxed_handler;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, memory_connection_limits, ping};

use crate::access::AccessControl;
use crate::behaviour::boxed_handler::Boxed;
use crate::circuit::splice::SpliceServices;
use crate::circuit::{self, ServerParts};
use crate::config::defaults;
use crate::config::Config;
use crate::fleet::FleetLink;
use crate::limits::bandwidth::Bandwidth;
use crate::limits::connection_caps::ConnectionCaps;
use crate::limits::connections::SourceLimits;
use crate::limits::relay_per_ip::IpCaps;
use crate::rendezvous::{self, MemoryStore, Store};

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over a per-IP cap or the descriptor budget is refused
    /// before any other behaviour (or a handshake) spends anything on it.
    pub source_limits: SourceLimits,
    /// libp2p's `connection_limits`, without its per-peer memory leak.
    pub connection_limits: ConnectionCaps,
    pub memory_limits: Toggle<memory_connection_limits::Behaviour>,
    /// Circuit relay v2: HOP and STOP.
    pub relay: circuit::Server,
    pub rendezvous: rendezvous::Server,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

/// The relay's swarm: [`Behaviour`] with its connection handlers boxed, which halves
/// what an idle connection costs (see `boxed_handler.rs`).
pub type RelaySwarm = libp2p::Swarm<Boxed<Behaviour>>;

/// What the behaviour shares with the rest of the relay.
pub struct Shared {
    pub store: Arc<dyn Store>,
    /// While true, reservation requests are denied (`RESERVATION_REFUSED`) and
    /// rendezvous registrations too (`E_UNAVAILABLE`); circuits, discovery and
    /// everything else carry on.
    pub draining: Arc<AtomicBool>,
    pub ip_caps: IpCaps,
    pub access: AccessControl,
    /// Connections that may hold a file descriptor ([`crate::limits::file_descriptors`]); `None`: no
    /// budget.
    pub descriptor_budget: Option<usize>,
    /// Byte counts and bandwidth caps of circuits.
    pub splice: SpliceServices,
    /// Fleet mode's directory and mesh; `None` for a single relay.
    pub fleet: Option<FleetLink>,
}

impl Shared {
    /// An in-memory rendezvous store, no drain, the config's caps and access list.
    pub fn for_config(config: &Config) -> Self {
        Shared {
            store: Arc::new(MemoryStore::new()),
            draining: Arc::default(),
            ip_caps: IpCaps::new(&config.relay, Default::default()),
            access: AccessControl::new(config.access.clone()),
            descriptor_budget: None,
            splice: SpliceServices {
                relayed: Default::default(),
                bandwidth: Bandwidth::new(&config.bandwidth, Default::default()),
            },
            fleet: None,
        }
    }
}

impl Behaviour {
    /// With an in-memory rendezvous store and nothing shared.
    pub fn new(keypair: &Keypair, config: &Config) -> Self {
        Self::with_shared(keypair, config, Shared::for_config(config))
    }

    pub fn with_shared(keypair: &Keypair, config: &Config, shared: Shared) -> Self {
        let limits = &config.connection_limits;
        let connection_limits = ConnectionCaps::new(limits);
        let memory_limits = limits
            .max_memory_bytes
            .map(memory_connection_limits::Behaviour::with_max_bytes);

        let identify = identify::Behaviour::new(
            identify::Config::new(defaults::IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                .with_agent_version(defaults::agent_version())
                // Announce only the external addresses, never the interface addresses
                // a wildcard listener expands to (private and container IPs).
                .with_hide_listen_addrs(true),
        );

        let rendezvous = rendezvous::Server::new(
            shared.store,
            rendezvous::Policy::from_limits(&config.rendezvous),
            keypair.public().to_peer_id(),
            shared.draining.clone(),
            shared.access.clone(),
        );
        let relay = circuit::Server::new(ServerParts {
            keypair: keypair.clone(),
            limits: config.relay.clone(),
            draining: shared.draining,
            access: shared.access,
            ip_caps: shared.ip_caps,
            splice: shared.splice,
            fleet: shared.fleet,
        });

        Behaviour {
            source_limits: SourceLimits::new(limits, shared.descriptor_budget),
            connection_limits,
            memory_limits: memory_limits.into(),
            relay,
            rendezvous,
            identify,
            ping: ping::Behaviour::default(),
        }
    }
}
