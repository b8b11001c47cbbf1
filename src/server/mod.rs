//! The running relay: identity, certificate, swarm, listeners and the event loop.
//!
//! [`Relay::bind`] does everything that can fail (keypair, certificate, binding every
//! listener) and returns once all listeners are up, so a caller knows the relay is
//! reachable; [`Relay::run`] then serves until its shutdown future completes.

pub mod healthcheck;
pub mod log_text;
pub(crate) mod log_throttle;
mod startup;
pub(crate) mod swarm_events;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use libp2p::{Multiaddr, PeerId};
use rustls_pki_types::CertificateDer;
use tokio::sync::{broadcast, oneshot};
use tracing::{info, warn};

use crate::access::{AccessControl, AccessList};
use crate::behaviour::{RelaySwarm, Shared};
use crate::circuit::splice::SpliceServices;
use crate::config::defaults;
use crate::config::{Config, RendezvousStore};
use crate::events::RelayEvent;
use crate::fleet::Directory;
use crate::http::Health;
use crate::identity::IdentityError;
use crate::limits::bandwidth::Bandwidth;
use crate::limits::file_descriptors;
use crate::limits::relay_per_ip::IpCaps;
use crate::metrics::{Metrics, Sampled};
use crate::net::udp_buffer;
use crate::rendezvous::redis::{self, RedisStore};
use crate::rendezvous::{MemoryStore, Store, StoreError};
use crate::tls::reload::{CertificateReloader, Reloaded, WatchGuard};
use crate::tls::TlsError;
use swarm_events::EventHandler;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    RendezvousStore(#[from] StoreError),
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    #[error("fleet mode cannot start: {0}")]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(
        "cannot listen on {addr}: {reason}. If the port is in use, find the other process \
         (lsof -i :{port}) or choose another port ({var})"
    )]
    Listen {
        addr: Multiaddr,
        port: u16,
        var: &'static str,
        reason: String,
    },
    #[error("listener on {addr} failed while starting: {reason}")]
    ListenerFailed { addr: Multiaddr, reason: String },
    #[error(transparent)]
    Acme(#[from] crate::tls::acme::AcmeError),
    #[error(
        "cannot listen on {addr} for ACME HTTP-01 validation: {reason}. Choose another port \
         with DUSK_RELAY_ACME_HTTP_PORT, or unset it to validate over WSS (TLS-ALPN-01)"
    )]
    AcmeHttpListen { addr: SocketAddr, reason: String },
    #[error(
        "cannot listen on {addr} for metrics and health: {reason}. Choose another address \
         with DUSK_RELAY_METRICS_ADDR (off disables the endpoint)"
    )]
    MetricsListen { addr: SocketAddr, reason: String },
}

/// A relay whose listeners are all up, ready to [`run`](Relay::run).
pub struct Relay {
    swarm: RelaySwarm,
    events: EventHandler,
    listen_addrs: Vec<Multiaddr>,
    observers: broadcast::Sender<RelayEvent>,
    certificate_chain: Vec<CertificateDer<'static>>,
    certificate_reloader: Option<CertificateReloader>,
    /// Dropped when the relay stops: ends the certificate file watch.
    _certificate_watch: Option<WatchGuard>,
    /// Dropped when the relay stops: ends ACME orders and renewals.
    _acme: Option<startup::AcmeGuard>,
    health: Arc<Health>,
    access: AccessControl,
    /// Set when draining; the relay behaviour then denies reservations.
    draining: Arc<AtomicBool>,
    drain_timeout: Duration,
    /// Fleet mode: the reservation directory, which the node leaves as it stops.
    directory: Option<Directory>,
    http_addr: Option<SocketAddr>,
    /// Dropped when the relay stops: ends the HTTP endpoint.
    _http_stop: Option<oneshot::Sender<()>>,
}

impl Relay {
    /// Loads (or creates) the identity and WSS certificate, builds the swarm and binds
    /// every configured listener. Returns when every listener is bound and each one on a
    /// specific IP has reported its address.
    pub async fn bind(config: Config) -> Result<Relay, RelayError> {
        let store: Arc<dyn Store> = match &config.rendezvous.store {
            RendezvousStore::Memory => {
                info!("rendezvous store: memory (this relay only)");
                Arc::new(MemoryStore::new())
            }
            RendezvousStore::Redis(url) => {
                let store = RedisStore::connect(url).await?;
                info!(
                    "rendezvous store: {} (shared with other relays)",
                    redis::redact(url)
                );
                Arc::new(store)
            }
        };
        Self::bind_with_store(config, store).await
    }

    /// [`Relay::bind`] with a rendezvous store of the caller's (the configured one is
    /// ignored): for embedders and tests.
    pub async fn bind_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Relay, RelayError> {
        let identity = startup::load_identity(&config)?;
        let mut certificate = startup::load_certificate(&config)?;
        let acme_setup = certificate.as_mut().and_then(|c| c.acme.take());
        let fleet = startup::start_fleet(&config).await?;
        let directory = fleet.as_ref().map(|fleet| fleet.directory.clone());
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut registry);
        let draining = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Health::default());
        Metrics::register_sampled(
            &mut registry,
            Sampled {
                health: health.clone(),
                draining: draining.clone(),
                max_memory_bytes: config.connection_limits.max_memory_bytes,
            },
        );
        if let Some(certificate) = &certificate {
            Metrics::register_certificate_not_after(&mut registry, certificate.served.not_after());
        }
        if let Some(fleet) = &fleet {
            Metrics::register_fleet_directory_up(&mut registry, fleet.directory.up());
        }
        let access = AccessControl::new(config.access.clone());
        let ip_caps = IpCaps::new(&config.relay, metrics.source_cap_denials());
        udp_buffer::log_at_start();
        let mut swarm = startup::build_swarm(
            &config,
            identity.keypair,
            certificate.as_ref(),
            Shared {
                store,
                draining: draining.clone(),
                ip_caps,
                access: access.clone(),
                descriptor_budget: file_descriptors::raise_and_budget(),
                splice: SpliceServices {
                    relayed: metrics.relayed_bytes(),
                    bandwidth: Bandwidth::new(&config.bandwidth, metrics.throttled_seconds()),
                },
                fleet,
            },
            &mut registry,
        )?;
        let (observers, _) = broadcast::channel(1024);
        let certificate_chain = certificate
            .as_ref()
            .map(|c| c.material.certs.clone())
            .unwrap_or_default();
        let (certificate_reloader, certificate_watch) =
            startup::start_certificate_reload(certificate, &observers, &metrics);
        let acme_orders = metrics.acme_orders();
        let mut events = EventHandler::new(
            identity.peer_id,
            identity.probe_peer_id,
            config.external_addrs.is_empty(),
            config.connection_limits.max_established,
            observers.clone(),
            metrics,
        );
        startup::announce_external_addresses(&mut swarm, &config, &events);
        let listeners = startup::bind_listeners(&mut swarm, &config, &mut events).await?;
        let acme = startup::start_acme(
            &config,
            acme_setup,
            certificate_reloader.as_ref(),
            acme_orders,
        )
        .await?;
        health.tick();
        let (http_addr, http_stop) =
            startup::start_http_endpoint(config.metrics_addr, registry, health.clone()).await?;
        health.set_ready(true);
        info!("dusk relay ready: {} listeners bound", listeners.bound);

        Ok(Relay {
            swarm,
            events,
            health,
            access,
            draining,
            drain_timeout: config.drain_timeout,
            directory,
            http_addr,
            _http_stop: http_stop,
            listen_addrs: listeners.addresses,
            observers,
            certificate_chain,
            certificate_reloader,
            _certificate_watch: certificate_watch,
            _acme: acme,
        })
    }

    /// Reloads the WSS certificate from its files (what SIGHUP does); `None` when WSS is
    /// off. Clone it before [`Relay::run`] to reload while the relay runs.
    pub fn certificate_reloader(&self) -> Option<CertificateReloader> {
        self.certificate_reloader.clone()
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// The allow and deny lists in force; [`AccessControl::replace`] swaps them while the
    /// relay runs (what SIGHUP does). Clone it before [`Relay::run`].
    pub fn access_control(&self) -> AccessControl {
        self.access.clone()
    }

    /// The addresses the listeners on specific IPs reported while starting (without
    /// `/p2p/`). Wildcard listeners' addresses are only logged.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The WSS certificate chain (DER), empty when WSS is disabled.
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.certificate_chain
    }

    /// Events for observers; each subscriber sees what happens after it subscribed.
    pub fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.observers.subscribe()
    }

    /// Serves until the first item of `signals`, then drains: not ready, no new
    /// reservations, open circuits keep flowing until they end or the drain timeout
    /// passes. A second item, or the end of `signals`, stops at once. Then a fleet node
    /// unlists its reservations from the directory, and every listener and connection
    /// is closed.
    pub async fn run(mut self, mut signals: impl Stream<Item = ()> + Unpin) {
        let mut tick = tokio::time::interval(defaults::EVENT_LOOP_TICK);
        let drain = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.events.handle(&mut self.swarm, event),
                _ = tick.tick() => {
                    self.health.tick();
                    self.events.tick();
                }
                signal = signals.next() => break signal.is_some(),
            }
        };
        self.health.set_ready(false);
        if drain {
            self.drain(&mut signals, &mut tick).await;
        }
        if let Some(directory) = &self.directory {
            directory.withdraw().await;
        }
        let open = self
            .swarm
            .network_info()
            .connection_counters()
            .num_established();
        info!("dusk relay stopping; closing {open} connections");
        // Dropping the swarm closes listeners and connections.
    }

    async fn drain(
        &mut self,
        signals: &mut (impl Stream<Item = ()> + Unpin),
        tick: &mut tokio::time::Interval,
    ) {
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.observers.send(RelayEvent::Draining);
        let (circuits, reservations) = (self.events.circuits(), self.events.reservations());
        if circuits == 0 || self.drain_timeout.is_zero() {
            info!("draining: {circuits} circuits open, nothing to wait for");
            return;
        }
        info!(
            "draining: refusing new reservations; {circuits} circuits and {reservations} reservations open; \
             waiting up to {}s for the circuits to end (a second signal stops at once)",
            self.drain_timeout.as_secs()
        );
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    self.events.handle(&mut self.swarm, event);
                    if self.events.circuits() == 0 {
                        info!("drained: every circuit has ended");
                        return;
                    }
                }
                _ = tick.tick() => self.health.tick(),
                () = &mut deadline => {
                    let (circuits, reservations) = (self.events.circuits(), self.events.reservations());
                    warn!("drain deadline passed with {circuits} circuits and {reservations} reservations still open");
                    let _ = self.observers.send(RelayEvent::DrainDeadline { circuits });
                    return;
                }
                _ = signals.next() => {
                    info!("second stop signal: stopping now");
                    return;
                }
            }
        }
    }

    /// Runs the relay on its own task; the handle stops it. For tests and embedders.
    pub fn spawn(self) -> RelayHandle {
        let (stop, signals) = futures::channel::mpsc::unbounded::<()>();
        let peer_id = self.peer_id();
        let listen_addrs = self.listen_addrs.clone();
        let certificate_chain = self.certificate_chain.clone();
        let certificate_reloader = self.certificate_reloader.clone();
        let observers = self.observers.clone();
        let http_addr = self.http_addr;
        let access = self.access.clone();
        let task = tokio::spawn(self.run(signals));
        RelayHandle {
            peer_id,
            listen_addrs,
            certificate_chain,
            certificate_reloader,
            http_addr,
            access,
            observers,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// A relay running on its own task. Dropping the handle stops the relay.
pub struct RelayHandle {
    pub peer_id: PeerId,
    pub listen_addrs: Vec<Multiaddr>,
    pub certificate_chain: Vec<CertificateDer<'static>>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if enabled.
    pub http_addr: Option<SocketAddr>,
    certificate_reloader: Option<CertificateReloader>,
    access: AccessControl,
    observers: broadcast::Sender<RelayEvent>,
    stop: Option<futures::channel::mpsc::UnboundedSender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RelayHandle {
    pub fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.observers.subscribe()
    }

    /// What SIGHUP does to the binary: reload the WSS certificate from its files.
    pub fn reload_certificate(&self) -> Option<Result<Reloaded, TlsError>> {
        self.certificate_reloader
            .as_ref()
            .map(|reloader| reloader.reload("requested"))
    }

    /// What SIGHUP does to the binary's access lists: serve `list` from now on and close
    /// the connections of peers it denies.
    pub fn replace_access_list(&self, list: AccessList) {
        self.access.replace(list);
    }

    /// What SIGTERM does to the binary: the first call starts a drain, the second
    /// stops at once.
    pub fn signal(&self) {
        if let Some(stop) = &self.stop {
            let _ = stop.unbounded_send(());
        }
    }

    /// Waits until the relay has stopped (after [`signal`](Self::signal)).
    pub async fn stopped(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the relay at once (no drain) and waits until its listeners and
    /// connections are closed. Dropping the handle stops it too.
    pub async fn shutdown(mut self) {
        self.stop.take();
        self.stopped().await;
    }
}
