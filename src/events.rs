//! What the relay did, for observers (tests, the bench): [`RelayEvent`]s carry peer ids
//! and what happened, never an address. Sent by [`crate::server::swarm_events`].

use libp2p::PeerId;

/// What the relay did, for observers. Carries no addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    ReservationAccepted {
        peer: PeerId,
        renewed: bool,
    },
    ReservationDenied {
        peer: PeerId,
    },
    ReservationEnded {
        peer: PeerId,
    },
    CircuitOpened {
        src: PeerId,
        dst: PeerId,
    },
    CircuitDenied {
        src: PeerId,
        dst: PeerId,
    },
    CircuitClosed {
        src: PeerId,
        dst: PeerId,
    },
    Registered {
        peer: PeerId,
        namespace: String,
    },
    RegistrationRefused {
        peer: PeerId,
        namespace: String,
        status: crate::rendezvous::ResponseStatus,
    },
    Unregistered {
        peer: PeerId,
        namespace: String,
    },
    /// An incoming connection refused by a ceiling; `reason` is the metric label
    /// (`per_ip`, `per_ipv6_64`, `file_descriptors`, `memory`, `max_pending`,
    /// `max_per_peer`, `max_connections`).
    ConnectionRefused {
        reason: &'static str,
    },
    /// The access list refused a peer's reservation, circuit or (after a reload) its
    /// connection.
    AccessDenied {
        peer: PeerId,
        what: &'static str,
    },
    /// The first stop signal: readiness is off and reservations are refused.
    Draining,
    /// The drain deadline passed with circuits still open.
    DrainDeadline {
        circuits: usize,
    },
    /// New WSS connections get the certificate now on disk.
    CertificateReloaded,
    /// A reload found an unusable certificate or key; the previous one keeps serving.
    CertificateReloadFailed,
}
