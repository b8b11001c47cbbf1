//! Prometheus metrics: libp2p's own (swarm, ping, bandwidth per transport) plus the
//! relay's gauges and counters (reservations and circuits among them, counted by our own
//! circuit server).
//!
//! Privacy and cardinality: no label carries a peer id, an IP address or a rendezvous
//! namespace. Labels take values from small fixed sets (transport, status code, outcome).
//! Nothing a peer reports becomes a label: libp2p's identify recorder (labels from the
//! protocol stacks of the addresses a peer claims) is not fed, and the swarm recorder
//! is not shown address candidates (what peers say they observed); its other labels
//! are the stacks of this relay's own listeners and of the addresses its transports
//! give connections, a small fixed set.

mod sampled;

use libp2p::{identify, ping, Multiaddr};

use crate::circuit::proto::Status;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::multiaddr_ext::transport_of;

pub use sampled::Sampled;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceCapLabel {
    /// `reservation` or `circuit`.
    pub what: &'static str,
    /// `per_ip`, `per_ipv6_64` or `per_ipv6_48` ([`crate::limits::ip_tally::SourceCap::name`]).
    pub cap: &'static str,
}

/// Reservations and circuits refused by a per-source cap.
pub type SourceCapDenials = Family<SourceCapLabel, Counter>;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    /// `circuit`, `peer` or `total`: which cap made a stream wait.
    pub scope: &'static str,
}

/// Seconds circuit streams spent waiting for a bucket, by cap.
pub type ThrottledSeconds = Family<ScopeLabel, Counter<f64, std::sync::atomic::AtomicU64>>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// A circuit relay v2 status code name (`RESOURCE_LIMIT_EXCEEDED`, …).
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    /// `tcp`, `quic`, `ws`, `wss`, `relayed` or `other`.
    pub transport: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `closed` (either side ended it) or `error`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// Which ceiling refused: `per_ip`, `per_ipv6_64`, `per_ipv6_48`, `pending_per_ip`,
    /// `pending_per_ipv6_64`, `pending_per_ipv6_48`, `file_descriptors`, `memory`,
    /// `max_connections`, `max_per_peer`, `max_pending`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentifyLabel {
    /// `received`, `sent`, `pushed` or `error`.
    pub event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabel {
    /// What the access list refused: `reservation`, `circuit` or `connection`.
    pub what: &'static str,
}

/// Every metric the relay exports. Cheap to update; shared with the HTTP endpoint
/// through the [`Registry`] they are registered in.
/// Which way a circuit crosses the fleet: `forwarded` (a client here, the destination
/// on another node) or `received`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcrossLabel {
    pub across: &'static str,
}

pub struct Metrics {
    libp2p: libp2p::metrics::Metrics,
    reservations: Gauge,
    reservations_accepted: Counter,
    reservation_denials: Family<StatusLabel, Counter>,
    circuits: Gauge,
    runtime_tasks: Gauge,
    circuits_opened: Counter,
    fleet_circuits: Family<AcrossLabel, Gauge>,
    fleet_circuits_opened: Family<AcrossLabel, Counter>,
    circuits_closed: Family<ReasonLabel, Counter>,
    circuit_denials: Family<StatusLabel, Counter>,
    registrations: Gauge,
    registration_requests: Family<OutcomeLabel, Counter>,
    discover_requests: Family<OutcomeLabel, Counter>,
    connections: Family<TransportLabel, Gauge>,
    connections_refused: Family<RefusalLabel, Counter>,
    source_ips: Gauge,
    access_denials: Family<DeniedLabel, Counter>,
    throttled_seconds: ThrottledSeconds,
    source_cap_denials: SourceCapDenials,
    certificate_reloads: Family<OutcomeLabel, Counter>,
    acme_orders: Family<OutcomeLabel, Counter>,
    relayed_bytes: Counter,
    identify: Family<IdentifyLabel, Counter>,
    rendezvous_store_up: Gauge,
}

impl Metrics {
    /// The counters [`crate::limits::bandwidth`] updates from inside every circuit stream.
    pub fn throttled_seconds(&self) -> ThrottledSeconds {
        self.throttled_seconds.clone()
    }

    /// The counters [`crate::limits::relay_per_ip`] updates from inside the relay's limiters.
    pub fn source_cap_denials(&self) -> SourceCapDenials {
        self.source_cap_denials.clone()
    }

    /// The counter [`crate::circuit::splice`] updates for every byte a circuit carries.
    pub fn relayed_bytes(&self) -> Counter {
        self.relayed_bytes.clone()
    }

    /// The counter [`crate::tls::reload::CertificateReloader`] updates.
    pub fn certificate_reloads(&self) -> Family<OutcomeLabel, Counter> {
        self.certificate_reloads.clone()
    }

    /// The counter [`crate::tls::acme::AcmeTask`] updates.
    pub fn acme_orders(&self) -> Family<OutcomeLabel, Counter> {
        self.acme_orders.clone()
    }

    /// Registers every metric in `registry` under the `dusk_relay` prefix (libp2p's
    /// under `libp2p`).
    pub fn new(registry: &mut Registry) -> Metrics {
        let libp2p = libp2p::metrics::Metrics::new(registry);
        let relay = registry.sub_registry_with_prefix("dusk_relay");
        relay.register(
            "build",
            "Version of the running relay",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let metrics = Metrics {
            libp2p,
            reservations: Gauge::default(),
            reservations_accepted: Counter::default(),
            reservation_denials: Family::default(),
            circuits: Gauge::default(),
            runtime_tasks: Gauge::default(),
            circuits_opened: Counter::default(),
            fleet_circuits: Family::default(),
            fleet_circuits_opened: Family::default(),
            circuits_closed: Family::default(),
            circuit_denials: Family::default(),
            registrations: Gauge::default(),
            registration_requests: Family::default(),
            discover_requests: Family::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
            source_ips: Gauge::default(),
            access_denials: Family::default(),
            throttled_seconds: ThrottledSeconds::default(),
            source_cap_denials: SourceCapDenials::default(),
            certificate_reloads: Family::default(),
            acme_orders: Family::default(),
            relayed_bytes: Counter::default(),
            identify: Family::default(),
            rendezvous_store_up: Gauge::default(),
        };
        relay.register(
            "rendezvous_store_up",
            "1 while the rendezvous store (memory or Redis) answered its last check (every 10 s), 0 when it did not",
            metrics.rendezvous_store_up.clone(),
        );
        relay.register(
            "relayed_bytes",
            "Bytes forwarded through circuits, both directions (plus circuit handshakes)",
            metrics.relayed_bytes.clone(),
        );
        relay.register(
            "certificate_reloads",
            "WSS certificate reloads, by outcome (reloaded, unchanged, failed)",
            metrics.certificate_reloads.clone(),
        );
        relay.register(
            "acme_orders",
            "ACME certificate orders and account set-ups, by outcome (issued, failed)",
            metrics.acme_orders.clone(),
        );
        relay.register(
            "reservations",
            "Peers holding a reservation",
            metrics.reservations.clone(),
        );
        relay.register(
            "reservations_accepted",
            "Reservations accepted (new, not renewals)",
            metrics.reservations_accepted.clone(),
        );
        relay.register(
            "reservation_denials",
            "Reservation requests denied, by status code",
            metrics.reservation_denials.clone(),
        );
        relay.register("circuits", "Circuits open now", metrics.circuits.clone());
        relay.register(
            "fleet_circuits",
            "Circuits open now that cross the fleet's mesh (fleet mode), by direction",
            metrics.fleet_circuits.clone(),
        );
        relay.register(
            "fleet_circuits_opened",
            "Circuits opened across the fleet's mesh (fleet mode), by direction",
            metrics.fleet_circuits_opened.clone(),
        );
        relay.register(
            "runtime_tasks",
            "Tasks alive in the relay's tokio runtime (each open circuit is one), sampled every second",
            metrics.runtime_tasks.clone(),
        );
        relay.register(
            "circuits_opened",
            "Circuits opened",
            metrics.circuits_opened.clone(),
        );
        relay.register(
            "circuits_closed",
            "Circuits closed, by reason",
            metrics.circuits_closed.clone(),
        );
        relay.register(
            "circuit_denials",
            "Circuit requests denied, by status code",
            metrics.circuit_denials.clone(),
        );
        relay.register(
            "rendezvous_registrations",
            "Rendezvous registrations held now",
            metrics.registrations.clone(),
        );
        relay.register(
            "rendezvous_register_requests",
            "Rendezvous REGISTER requests, by outcome",
            metrics.registration_requests.clone(),
        );
        relay.register(
            "rendezvous_discover_requests",
            "Rendezvous DISCOVER requests, by outcome",
            metrics.discover_requests.clone(),
        );
        relay.register(
            "connections",
            "Established connections, by transport",
            metrics.connections.clone(),
        );
        relay.register(
            "connections_refused",
            "Incoming connections refused by a ceiling, by reason",
            metrics.connections_refused.clone(),
        );
        relay.register(
            "source_ips",
            "Distinct IP addresses with a connection (pending or established)",
            metrics.source_ips.clone(),
        );
        relay.register(
            "access_denials",
            "Requests and connections refused by the allow/deny lists",
            metrics.access_denials.clone(),
        );
        relay.register(
            "source_cap_denials",
            "Reservations and circuits refused by a per-IP or per-IPv6-/64 cap",
            metrics.source_cap_denials.clone(),
        );
        relay.register(
            "identify",
            "Identify exchanges with peers, by event (received, sent, pushed, error)",
            metrics.identify.clone(),
        );
        relay.register(
            "throttled_seconds",
            "Time circuit streams waited for a bandwidth cap, by cap (circuit, peer, total)",
            metrics.throttled_seconds.clone(),
        );
        metrics.export_known_labels();
        metrics
    }

    /// Creates every series whose labels come from a small fixed set, at zero. A series
    /// that first appears at 1 loses that first event to `rate()` and `increase()`, and
    /// dashboards and alerts would query names a fresh relay does not export yet.
    fn export_known_labels(&self) {
        for reason in ["closed", "error"] {
            zero(&self.circuits_closed, &ReasonLabel { reason });
        }
        for transport in ["tcp", "quic", "ws", "wss"] {
            zero(&self.connections, &TransportLabel { transport });
        }
        for reason in REFUSAL_REASONS {
            zero(&self.connections_refused, &RefusalLabel { reason });
        }
        for status in DENIAL_STATUSES {
            let label = StatusLabel {
                status: status.as_str_name().to_owned(),
            };
            zero(&self.reservation_denials, &label);
            zero(&self.circuit_denials, &label);
        }
        for outcome in ["OK", "E_UNAVAILABLE"] {
            let label = OutcomeLabel {
                outcome: outcome.into(),
            };
            zero(&self.registration_requests, &label);
            zero(&self.discover_requests, &label);
        }
        for outcome in ["reloaded", "unchanged", "failed"] {
            zero(
                &self.certificate_reloads,
                &OutcomeLabel {
                    outcome: outcome.into(),
                },
            );
        }
        for outcome in ["issued", "failed"] {
            zero(
                &self.acme_orders,
                &OutcomeLabel {
                    outcome: outcome.into(),
                },
            );
        }
        for across in ["forwarded", "received"] {
            zero(&self.fleet_circuits, &AcrossLabel { across });
            zero(&self.fleet_circuits_opened, &AcrossLabel { across });
        }
        for what in ["reservation", "circuit", "connection"] {
            zero(&self.access_denials, &DeniedLabel { what });
        }
        for what in ["reservation", "circuit"] {
            for cap in ["per_ip", "per_ipv6_64", "per_ipv6_48"] {
                zero(&self.source_cap_denials, &SourceCapLabel { what, cap });
            }
        }
    }

    /// The gauges read at each scrape rather than kept up to date (see [`Sampled`]).
    pub fn register_sampled(registry: &mut Registry, sampled: Sampled) {
        registry
            .sub_registry_with_prefix("dusk_relay")
            .register_collector(Box::new(sampled));
    }

    /// `dusk_relay_tls_certificate_not_after_timestamp_seconds`, registered only when WSS
    /// is on: a relay without a certificate has no expiry to alert on. A timestamp, not
    /// seconds left: it is exact without a timer, stays one value between renewals, and
    /// `… - time()` gives the seconds left at whatever moment a rule or panel evaluates.
    /// The gauge is [`crate::tls::reload::ServedCertificate::not_after`]'s, which
    /// every certificate install sets.
    pub fn register_certificate_not_after(registry: &mut Registry, gauge: Gauge) {
        registry.sub_registry_with_prefix("dusk_relay").register(
            "tls_certificate_not_after_timestamp_seconds",
            "When the WSS certificate in use expires (its leaf's notAfter), in seconds since the Unix epoch; 0 if it cannot be read",
            gauge,
        );
    }

    /// `dusk_relay_fleet_directory_up`, registered in fleet mode only; the gauge is
    /// [`crate::fleet::Directory::up`]'s.
    pub fn register_fleet_directory_up(registry: &mut Registry, gauge: Gauge) {
        registry.sub_registry_with_prefix("dusk_relay").register(
            "fleet_directory_up",
            "1 while the fleet's reservation directory (Redis) answered within the last second or so, 0 when it did not",
            gauge,
        );
    }

    /// Whether the rendezvous store answered its periodic count.
    pub fn set_rendezvous_store_up(&self, up: bool) {
        self.rendezvous_store_up.set(i64::from(up));
    }

    pub fn record_swarm<E>(&self, event: &libp2p::swarm::SwarmEvent<E>) {
        use libp2p::metrics::Recorder;
        // A candidate is an address a peer says it saw us at (identify): any protocol
        // stack it likes, and the recorder's counters keep every label forever.
        if matches!(
            event,
            libp2p::swarm::SwarmEvent::NewExternalAddrCandidate { .. }
        ) {
            return;
        }
        self.libp2p.record(event);
    }

    /// Counted by kind only: libp2p's recorder would label gauges with the protocol
    /// stacks of the addresses the peer reports (see the module doc).
    pub fn record_identify(&self, event: &identify::Event) {
        let event = match event {
            identify::Event::Received { .. } => "received",
            identify::Event::Sent { .. } => "sent",
            identify::Event::Pushed { .. } => "pushed",
            identify::Event::Error { .. } => "error",
        };
        self.identify.get_or_create(&IdentifyLabel { event }).inc();
    }

    pub fn record_ping(&self, event: &ping::Event) {
        use libp2p::metrics::Recorder;
        self.libp2p.record(event);
    }

    /// Samples the runtime the caller runs on: a task that never ends (a leak in the
    /// circuit path) shows here before it shows in memory.
    pub fn sample_runtime(&self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(runtime.metrics().num_alive_tasks() as i64);
        }
    }

    pub fn set_reservations(&self, count: usize) {
        self.reservations.set(count as i64);
    }

    pub fn reservation_accepted(&self) {
        self.reservations_accepted.inc();
    }

    pub fn reservation_denied(&self, status: Status) {
        self.reservation_denials
            .get_or_create(&StatusLabel {
                status: status.as_str_name().to_owned(),
            })
            .inc();
    }

    pub fn circuit_opened(&self, open: usize) {
        self.circuits_opened.inc();
        self.circuits.set(open as i64);
    }

    /// A circuit across the fleet opened (`true`) or closed.
    pub fn fleet_circuit(&self, across: &'static str, opened: bool) {
        let label = AcrossLabel { across };
        if opened {
            self.fleet_circuits_opened.get_or_create(&label).inc();
            self.fleet_circuits.get_or_create(&label).inc();
        } else {
            self.fleet_circuits.get_or_create(&label).dec();
        }
    }

    pub fn circuit_closed(&self, open: usize, error: bool) {
        let reason = if error { "error" } else { "closed" };
        self.circuits_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.circuits.set(open as i64);
    }

    pub fn circuit_denied(&self, status: Status) {
        self.circuit_denials
            .get_or_create(&StatusLabel {
                status: status.as_str_name().to_owned(),
            })
            .inc();
    }

    /// `outcome` is `accepted` or an error code name; never a namespace.
    pub fn register_request(&self, outcome: String, held: usize) {
        self.registration_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.registrations.set(held as i64);
    }

    pub fn set_registrations(&self, held: usize) {
        self.registrations.set(held as i64);
    }

    pub fn discover_request(&self, outcome: String) {
        self.discover_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn connection_opened(&self, remote: &Multiaddr) {
        self.connections
            .get_or_create(&TransportLabel {
                transport: transport_of(remote),
            })
            .inc();
    }

    pub fn connection_closed(&self, remote: &Multiaddr) {
        self.connections
            .get_or_create(&TransportLabel {
                transport: transport_of(remote),
            })
            .dec();
    }

    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RefusalLabel { reason })
            .inc();
    }

    pub fn set_source_ips(&self, ips: usize) {
        self.source_ips.set(ips as i64);
    }

    pub fn access_denied(&self, what: &'static str) {
        self.access_denials
            .get_or_create(&DeniedLabel { what })
            .inc();
    }
}

/// Creates `label`'s series in `family` if it is not there (at zero).
fn zero<L, M>(family: &Family<L, M>, label: &L)
where
    L: Clone + std::hash::Hash + Eq,
    M: Default,
{
    drop(family.get_or_create(label));
}

/// Every `reason` of `dusk_relay_connections_refused_total` ([`RefusalLabel`]).
const REFUSAL_REASONS: [&str; 11] = [
    "per_ip",
    "per_ipv6_64",
    "per_ipv6_48",
    "pending_per_ip",
    "pending_per_ipv6_64",
    "pending_per_ipv6_48",
    "file_descriptors",
    "memory",
    "max_connections",
    "max_per_peer",
    "max_pending",
];

/// The circuit relay v2 statuses a reservation or circuit can be denied with.
const DENIAL_STATUSES: [Status; 7] = [
    Status::ReservationRefused,
    Status::ResourceLimitExceeded,
    Status::PermissionDenied,
    Status::ConnectionFailed,
    Status::NoReservation,
    Status::MalformedMessage,
    Status::UnexpectedMessage,
];
