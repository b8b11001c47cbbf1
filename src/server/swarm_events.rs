//! Swarm events into the seed's log lines, metric updates, the relay's running counts
//! (which the drain waits on) and [`RelayEvent`]s for observers.
//!
//! Privacy: nothing logged at `info` links a peer id to an IP address. Remote addresses
//! appear only at `debug`.
//!
//! Text a peer chose (agent version, addresses it reports, namespaces, reasons that may
//! quote them, error texts) cannot start a line of its own: the text log's writer
//! escapes control characters ([`crate::server::log_text`]).

use std::time::Instant;

use libp2p::swarm::{ListenError, SwarmEvent};
use libp2p::{memory_connection_limits, multiaddr::Protocol, Multiaddr, PeerId};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::behaviour::{BehaviourEvent, RelaySwarm};
use crate::circuit;
use crate::config::settings::Id;
use crate::events::RelayEvent;
use crate::limits::connection_caps::CapExceeded;
use crate::limits::connections::Refused;
use crate::metrics::Metrics;
use crate::rendezvous;
use crate::server::log_throttle::{folded_suffix, LogThrottle};

/// The relay's running state, derived from events.
pub struct EventHandler {
    local_peer_id: PeerId,
    /// `dusk-relay healthcheck`'s identity: its connections are logged at debug only, or
    /// a Docker health check would add two info lines every 30 s.
    probe_peer_id: Option<PeerId>,
    /// No external address configured: advertise our own listen addresses.
    advertise_listen_addrs: bool,
    max_connections: u32,
    /// Peers holding a reservation and open circuits, as the circuit server last
    /// reported them (the drain waits on the circuits).
    reservations: usize,
    circuits: usize,
    /// Registrations in the rendezvous store, as last reported by it.
    registrations: usize,
    observers: broadcast::Sender<RelayEvent>,
    metrics: Metrics,
    /// Refusals and denials come in floods: one info line per kind per interval.
    refusal_log: LogThrottle,
}

impl EventHandler {
    pub fn new(
        local_peer_id: PeerId,
        probe_peer_id: Option<PeerId>,
        advertise_listen_addrs: bool,
        max_connections: u32,
        observers: broadcast::Sender<RelayEvent>,
        metrics: Metrics,
    ) -> Self {
        EventHandler {
            local_peer_id,
            probe_peer_id,
            advertise_listen_addrs,
            max_connections,
            reservations: 0,
            circuits: 0,
            registrations: 0,
            observers,
            metrics,
            refusal_log: LogThrottle::default(),
        }
    }

    pub fn circuits(&self) -> usize {
        self.circuits
    }

    /// Once a second, with the health tick.
    pub fn tick(&self) {
        self.metrics.sample_runtime();
    }

    pub fn reservations(&self) -> usize {
        self.reservations
    }

    fn emit(&self, event: RelayEvent) {
        // No subscriber is the normal case outside tests.
        let _ = self.observers.send(event);
    }

    /// The full address a client dials: the listen or external address with our peer id.
    pub fn full_address(&self, addr: &Multiaddr) -> Multiaddr {
        match addr.iter().last() {
            Some(Protocol::P2p(_)) => addr.clone(),
            _ => addr.clone().with(Protocol::P2p(self.local_peer_id)),
        }
    }

    pub fn handle(&mut self, swarm: &mut RelaySwarm, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record_swarm(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!("relay address: {}", self.full_address(&address));
                if self.advertise_listen_addrs {
                    swarm.add_external_address(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                info!("relay address gone: {}", self.full_address(&address));
                if self.advertise_listen_addrs {
                    swarm.remove_external_address(&address);
                }
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => match reason {
                Ok(()) => debug!(?addresses, "listener closed"),
                Err(error) => warn!(?addresses, %error, "listener closed with an error"),
            },
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                self.metrics
                    .connection_opened(endpoint.get_remote_address());
                if let Some(total) = self.connections_changed(swarm, peer_id, "connected") {
                    info!("peer connected: {peer_id} (total connections: {total})");
                    debug!(peer = %peer_id, remote = %endpoint.get_remote_address(), "connection established");
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                cause,
                endpoint,
                ..
            } => {
                self.metrics
                    .connection_closed(endpoint.get_remote_address());
                if let Some(total) = self.connections_changed(swarm, peer_id, "disconnected") {
                    info!("peer disconnected: {peer_id} (total connections: {total})");
                    debug!(peer = %peer_id, cause = ?cause, "connection closed");
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                self.on_incoming_error(error, &send_back_addr);
                self.count_sources(swarm);
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                debug!(address = %address, "external address confirmed")
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => self.on_relay(event),
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(event)) => self.on_rendezvous(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => {
                self.metrics.record_identify(&event);
                if let libp2p::identify::Event::Received { peer_id, info, .. } = event {
                    // All of it the peer's say: at debug (the log writer escapes it).
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        let listen: Vec<String> =
                            info.listen_addrs.iter().map(|a| a.to_string()).collect();
                        debug!(
                            peer = %peer_id,
                            agent = %info.agent_version,
                            listen_addrs = %listen.join(" "),
                            "identified"
                        );
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => self.metrics.record_ping(&event),
            other => tracing::trace!(event = ?other, "swarm event"),
        }
    }

    fn count_sources(&self, swarm: &RelaySwarm) {
        self.metrics
            .set_source_ips(swarm.behaviour().source_limits.source_ips());
    }

    /// After a connection of `peer` opened or closed: the source gauge, and the
    /// connection total to log, or `None` for the health check's own connection, which
    /// is not a peer's (`what` happened to it, at debug).
    fn connections_changed(&self, swarm: &RelaySwarm, peer: PeerId, what: &str) -> Option<u32> {
        self.count_sources(swarm);
        let total = swarm.network_info().connection_counters().num_established();
        if Some(peer) == self.probe_peer_id {
            debug!(total, "health check {what}");
            return None;
        }
        Some(total)
    }

    fn on_incoming_error(&mut self, error: ListenError, send_back_addr: &Multiaddr) {
        if let ListenError::Denied { cause } = &error {
            if let Some((reason, message)) = self.refusal(cause) {
                debug!(remote = %send_back_addr, reason, "refused connection");
                self.metrics.connection_refused(reason);
                if let Some(folded) = self.refusal_log.admit(reason, Instant::now()) {
                    info!("{message}{}", folded_suffix(folded));
                }
                self.emit(RelayEvent::ConnectionRefused { reason });
                return;
            }
        }
        debug!(remote = %send_back_addr, error = %error, "incoming connection failed");
    }

    /// The ceiling that denied a connection: its metric label and a line for the log
    /// (naming the setting, never the address).
    fn refusal(&self, cause: &libp2p::swarm::ConnectionDenied) -> Option<(&'static str, String)> {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some((refused.reason.name(), refused.to_string()));
        }
        if let Some(exceeded) =
            cause.downcast_ref::<memory_connection_limits::MemoryUsageLimitExceeded>()
        {
            return Some((
                "memory",
                format!(
                    "connection refused: {exceeded} ({})",
                    Id::MaxMemoryMib.env()
                ),
            ));
        }
        if let Some(exceeded) = cause.downcast_ref::<CapExceeded>() {
            return Some((
                exceeded.cap.name(),
                format!(
                    "connection refused: {exceeded} ({}={}, {}, {})",
                    Id::MaxConnections.env(),
                    self.max_connections,
                    Id::MaxConnectionsPerPeer.env(),
                    Id::MaxPendingIncoming.env(),
                ),
            ));
        }
        None
    }

    fn on_relay(&mut self, event: circuit::Event) {
        use circuit::Event;
        match event {
            Event::ReservationAccepted {
                peer,
                renewed,
                new_peer,
                peers,
            } => {
                self.reservations = peers;
                self.metrics.set_reservations(peers);
                if new_peer {
                    info!("relay reservation accepted for peer {peer} (total: {peers})");
                    self.metrics.reservation_accepted();
                } else {
                    debug!(%peer, renewed, "relay reservation renewed");
                }
                self.emit(RelayEvent::ReservationAccepted { peer, renewed });
            }
            Event::ReservationDenied { peer, status } => {
                match self.refusal_log.admit("reservation_denied", Instant::now()) {
                    Some(folded) => info!(
                        "relay reservation denied for peer {peer}: {status:?}{}",
                        folded_suffix(folded)
                    ),
                    None => debug!(%peer, ?status, "relay reservation denied"),
                }
                self.metrics.reservation_denied(status);
                self.emit(RelayEvent::ReservationDenied { peer });
            }
            Event::ReservationEnded { peer, peers } => {
                self.reservations = peers;
                info!("relay reservation ended for peer {peer} (total: {peers})");
                self.metrics.set_reservations(peers);
                self.emit(RelayEvent::ReservationEnded { peer });
            }
            Event::CircuitOpened {
                src,
                dst,
                open,
                across,
            } => {
                self.circuits = open;
                self.metrics.circuit_opened(open);
                match across {
                    None => info!("circuit opened: {src} -> {dst} (through relay)"),
                    Some(across) => {
                        self.metrics.fleet_circuit(across.name(), true);
                        info!(
                            "circuit opened: {src} -> {dst} (through relay, {} across the fleet)",
                            across.name()
                        )
                    }
                }
                self.emit(RelayEvent::CircuitOpened { src, dst });
            }
            Event::CircuitDenied { src, dst, status } => {
                match self.refusal_log.admit("circuit_denied", Instant::now()) {
                    Some(folded) => info!(
                        "circuit denied: {src} -> {dst}: {status:?}{}",
                        folded_suffix(folded)
                    ),
                    None => debug!(%src, %dst, ?status, "circuit denied"),
                }
                self.metrics.circuit_denied(status);
                self.emit(RelayEvent::CircuitDenied { src, dst });
            }
            Event::CircuitClosed {
                src,
                dst,
                open,
                error,
                across,
            } => {
                self.circuits = open;
                self.metrics.circuit_closed(open, error.is_some());
                if let Some(across) = across {
                    self.metrics.fleet_circuit(across.name(), false);
                }
                info!("circuit closed: {src} -> {dst} (active circuits: {open})");
                if let Some(error) = error {
                    debug!(error = %error, "circuit closed with an error");
                }
                self.emit(RelayEvent::CircuitClosed { src, dst });
            }
            Event::AccessDenied { peer, what } => {
                match self.refusal_log.admit("access_denied", Instant::now()) {
                    Some(folded) => info!(
                        "access denied for peer {peer}: {}{}",
                        what.name(),
                        folded_suffix(folded)
                    ),
                    None => debug!(%peer, what = what.name(), "access denied"),
                }
                self.metrics.access_denied(what.name());
                self.emit(RelayEvent::AccessDenied {
                    peer,
                    what: what.name(),
                });
            }
        }
    }

    fn on_rendezvous(&mut self, event: rendezvous::Event) {
        use rendezvous::Event;
        match event {
            Event::Registered {
                peer,
                namespace,
                ttl,
                total,
            } => {
                self.registrations = total.unwrap_or(self.registrations);
                info!(
                    "rendezvous registration accepted for peer {peer} (ttl {ttl}s, total registrations: {})",
                    self.registrations
                );
                self.metrics
                    .register_request("OK".into(), self.registrations);
                // Namespaces name communities: membership stays out of info logs.
                debug!(%peer, namespace = %namespace, "registered");
                self.emit(RelayEvent::Registered { peer, namespace });
            }
            Event::RegisterRefused {
                peer,
                namespace,
                status,
                reason,
            } => {
                // Refusals come in floods, like connection refusals.
                match self
                    .refusal_log
                    .admit("registration_refused", Instant::now())
                {
                    Some(folded) => info!(
                        "rendezvous registration refused for peer {peer}: {}: {}{}",
                        status.as_str_name(),
                        reason,
                        folded_suffix(folded)
                    ),
                    None => debug!(
                        %peer,
                        status = status.as_str_name(),
                        reason = %reason,
                        "rendezvous registration refused"
                    ),
                }
                self.metrics
                    .register_request(status.as_str_name().into(), self.registrations);
                self.emit(RelayEvent::RegistrationRefused {
                    peer,
                    namespace: namespace.unwrap_or_default(),
                    status,
                });
            }
            Event::Unregistered {
                peer,
                namespace,
                total,
            } => {
                self.registrations = total.unwrap_or(self.registrations);
                info!(
                    "rendezvous unregistration for peer {peer} (total registrations: {})",
                    self.registrations
                );
                self.metrics.set_registrations(self.registrations);
                self.emit(RelayEvent::Unregistered { peer, namespace });
            }
            Event::Discovered { peer, returned } => {
                self.metrics.discover_request("OK".into());
                debug!(%peer, returned, "rendezvous discover served")
            }
            Event::DiscoverRefused {
                peer,
                status,
                reason,
            } => {
                self.metrics.discover_request(status.as_str_name().into());
                debug!(%peer, status = status.as_str_name(), reason = %reason, "rendezvous discover refused")
            }
            Event::Counted(total) => {
                self.registrations = total;
                self.metrics.set_registrations(total);
                self.metrics.set_rendezvous_store_up(true);
            }
            // A gauge rather than a log line, which would repeat every 10 s while Redis is away.
            Event::CountFailed => self.metrics.set_rendezvous_store_up(false),
        }
    }
}
