//! The relay's one `NetworkBehaviour`: connection caps, circuit relay v2 (server),
//! rendezvous (our own server, [`crate::rendezvous`]), identify and ping. No dcutr, autonat or kad: the relay is the
//! only path between dusk peers and learns nothing it does not need.

pub(crate) mod boxed_handler;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{connection_limits, identify, memory_connection_limits, ping, relay};

use crate::access::gate::AccessGate;
use crate::access::AccessControl;
use crate::behaviour::boxed_handler::Boxed;
use crate::config::defaults;
use crate::config::Config;
use crate::limits::connections::SourceLimits;
use crate::limits::relay_per_ip::IpCaps;
use crate::rendezvous::{self, MemoryStore, Store};

/// The token buckets of libp2p's relay refill over this window; our rates are per minute.
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over a per-IP cap or the descriptor budget is refused
    /// before any other behaviour (or a handshake) spends anything on it.
    pub source_limits: SourceLimits,
    pub connection_limits: connection_limits::Behaviour,
    pub memory_limits: Toggle<memory_connection_limits::Behaviour>,
    /// libp2p's relay behind the access list.
    pub relay: AccessGate,
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
    /// While true, reservation requests are denied (`RESOURCE_LIMIT_EXCEEDED`) and
    /// rendezvous registrations too (`E_UNAVAILABLE`); circuits, discovery and
    /// everything else carry on.
    pub draining: Arc<AtomicBool>,
    pub ip_caps: IpCaps,
    pub access: AccessControl,
    /// Connections that may hold a file descriptor ([`crate::limits::file_descriptors`]); `None`: no
    /// budget.
    pub descriptor_budget: Option<usize>,
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
        let connection_limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(limits.max_established))
                .with_max_established_per_peer(Some(limits.max_established_per_peer))
                .with_max_pending_incoming(Some(limits.max_pending_incoming)),
        );
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
        let relay = relay::Behaviour::new(
            keypair.public().to_peer_id(),
            relay_config(config, shared.draining, &shared.ip_caps),
        );

        Behaviour {
            source_limits: SourceLimits::new(limits, shared.descriptor_budget),
            connection_limits,
            memory_limits: memory_limits.into(),
            relay: AccessGate::new(relay, shared.access),
            rendezvous,
            identify,
            ping: ping::Behaviour::default(),
        }
    }
}

/// libp2p's relay config with dusk's limits. Reservations and circuits on relayed
/// connections are refused by libp2p itself (such connections get no HOP handler).
fn relay_config(config: &Config, draining: Arc<AtomicBool>, ip_caps: &IpCaps) -> relay::Config {
    let limits = &config.relay;
    let mut relay = relay::Config {
        max_reservations: limits.max_reservations,
        max_reservations_per_peer: limits.max_reservations_per_peer,
        reservation_duration: limits.reservation_duration,
        max_circuits: limits.max_circuits,
        max_circuits_per_peer: limits.max_circuits_per_peer,
        // libp2p panics above u32::MAX seconds and closes at once on 0, so "no limit"
        // is the largest duration it accepts (136 years).
        max_circuit_duration: limits
            .max_circuit_duration
            .unwrap_or(Duration::from_secs(u64::from(u32::MAX))),
        max_circuit_bytes: limits.max_circuit_bytes,
        // First, so a draining relay denies without spending anyone's tokens (libp2p
        // stops at the first limiter that says no). The builder methods below push
        // after it.
        reservation_rate_limiters: vec![Box::new(
            move |_: libp2p::PeerId, _: &libp2p::Multiaddr, _| !draining.load(Ordering::Relaxed),
        )],
        circuit_src_rate_limiters: Vec::new(),
    };
    if let Some(rate) = NonZeroU32::new(limits.reservation_rate_per_peer) {
        relay = relay.reservation_rate_per_peer(rate, RATE_WINDOW);
    }
    if let Some(rate) = NonZeroU32::new(limits.reservation_rate_per_ip) {
        relay = relay.reservation_rate_per_ip(rate, RATE_WINDOW);
    }
    if let Some(rate) = NonZeroU32::new(limits.circuit_rate_per_peer) {
        relay = relay.circuit_src_per_peer(rate, RATE_WINDOW);
    }
    if let Some(rate) = NonZeroU32::new(limits.circuit_rate_per_ip) {
        relay = relay.circuit_src_per_ip(rate, RATE_WINDOW);
    }
    // Last: libp2p asks limiters in order and stops at the first "no", so a "yes" here
    // means the request is accepted, which is when the per-IP counts must move.
    let caps = ip_caps.clone();
    relay
        .reservation_rate_limiters
        .push(Box::new(move |peer, addr: &libp2p::Multiaddr, _| {
            caps.admit_reservation(peer, addr)
        }));
    let caps = ip_caps.clone();
    relay
        .circuit_src_rate_limiters
        .push(Box::new(move |_, addr: &libp2p::Multiaddr, _| {
            caps.admit_circuit(addr)
        }));
    relay
}
