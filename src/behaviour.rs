//! The relay's one `NetworkBehaviour`: connection caps, circuit relay v2 (server),
//! rendezvous (our own server, [`crate::rendezvous`]), identify and ping. No dcutr, autonat or kad: the relay is the
//! only path between dusk peers and learns nothing it does not need.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{connection_limits, identify, ping, relay};

use crate::config::Config;
use crate::defaults;
use crate::rendezvous::{self, MemoryStore, Store};

/// The token buckets of libp2p's relay refill over this window; our rates are per minute.
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// First, so a connection over the caps is refused before any other behaviour sees it.
    pub connection_limits: connection_limits::Behaviour,
    pub relay: relay::Behaviour,
    pub rendezvous: rendezvous::Server,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

impl Behaviour {
    /// With an in-memory rendezvous store and no drain gate.
    pub fn new(keypair: &Keypair, config: &Config) -> Self {
        Self::with_drain_gate(
            keypair,
            config,
            Arc::new(MemoryStore::new()),
            Arc::default(),
        )
    }

    /// While `draining` is true, reservation requests are denied
    /// (`RESOURCE_LIMIT_EXCEEDED`) and rendezvous registrations too (`E_UNAVAILABLE`);
    /// circuits, discovery and everything else carry on.
    pub fn with_drain_gate(
        keypair: &Keypair,
        config: &Config,
        store: Arc<dyn Store>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        let limits = &config.connection_limits;
        let connection_limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(limits.max_established))
                .with_max_established_per_peer(Some(limits.max_established_per_peer))
                .with_max_pending_incoming(Some(limits.max_pending_incoming)),
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(defaults::IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                .with_agent_version(defaults::agent_version())
                // Announce only the external addresses, never the interface addresses
                // a wildcard listener expands to (private and container IPs).
                .with_hide_listen_addrs(true),
        );

        let rendezvous = rendezvous::Server::new(
            store,
            rendezvous::Policy::from_limits(&config.rendezvous),
            draining.clone(),
        );

        Behaviour {
            connection_limits,
            relay: relay::Behaviour::new(
                keypair.public().to_peer_id(),
                relay_config(config, draining),
            ),
            rendezvous,
            identify,
            ping: ping::Behaviour::default(),
        }
    }
}

/// libp2p's relay config with dusk's limits. Reservations and circuits on relayed
/// connections are refused by libp2p itself (such connections get no HOP handler).
fn relay_config(config: &Config, draining: Arc<AtomicBool>) -> relay::Config {
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
    relay
}
