//! Start-up in named steps, in the order [`Relay::bind_with_store`](super::Relay::bind_with_store)
//! takes them: the identity, the WSS certificate, the swarm, every listener, the
//! certificate reload and the HTTP endpoint. Each step that can fail says what the
//! operator should change.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, TransportError};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, oneshot};
use tracing::{info, warn};

use super::swarm_events::EventHandler;
use super::RelayError;
use crate::behaviour::boxed_handler::Boxed;
use crate::behaviour::{Behaviour, RelaySwarm, Shared};
use crate::config::settings::Id;
use crate::config::{AcmeConfig, Config};
use crate::events::RelayEvent;
use crate::fleet::{self, Directory, FleetLink, Mesh};
use crate::http::{self, Health};
use crate::identity::{self, Origin};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::net::proxy_protocol::ProxyProtocol;
use crate::net::transport;
use crate::net::transport::WssTls;
use crate::tls::acme::challenge::AcmeResolver;
use crate::tls::acme::http01::HttpResponder;
use crate::tls::acme::{AcmeSetup, AcmeTask};
use crate::tls::reload::{CertificateReloader, ServedCertificate, WatchGuard};
use crate::tls::{self, TlsMaterial};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub(super) struct Identity {
    pub keypair: Keypair,
    pub peer_id: PeerId,
    /// `dusk-relay healthcheck`'s identity, derived from ours.
    pub probe_peer_id: Option<PeerId>,
}

/// The relay's keypair, loaded or created (and logged, as the seed says).
pub(super) fn load_identity(config: &Config) -> Result<Identity, RelayError> {
    let (keypair, origin) = identity::load_or_create(&config.keypair_path)?;
    let peer_id = keypair.public().to_peer_id();
    let probe_peer_id = identity::probe_keypair(&keypair).map(|k| k.public().to_peer_id());
    info!("peer id: {peer_id}");
    match origin {
        Origin::Loaded => info!(path = %config.keypair_path.display(), "loaded relay identity"),
        Origin::Created => {
            info!(path = %config.keypair_path.display(), "created a new relay identity")
        }
    }
    Ok(Identity {
        keypair,
        peer_id,
        probe_peer_id,
    })
}

/// The WSS certificate as read from disk and as served (replaceable by a reload).
pub(super) struct Certificate {
    pub material: TlsMaterial,
    pub served: Arc<ServedCertificate>,
    /// What the WSS listener answers TLS with.
    pub server_config: Arc<rustls::ServerConfig>,
    /// With ACME on: its files and pending challenges.
    pub acme: Option<AcmeSetup>,
}

/// The WSS certificate, when WSS is on: the configured files, a self-signed one, or
/// (ACME) the stored one.
pub(super) fn load_certificate(config: &Config) -> Result<Option<Certificate>, RelayError> {
    if config.wss_port.is_none() {
        return Ok(None);
    }
    if let Some(acme) = &config.tls.acme {
        return load_acme_certificate(config, acme).map(Some);
    }
    let material = tls::load_or_generate(config)?;
    if material.self_signed {
        warn!(
            cert = %material.cert_path.display(),
            "WSS uses a self-signed certificate that browsers will not trust; \
             set {} and {} for public use",
            Id::TlsCert.env(),
            Id::TlsKey.env()
        );
    }
    let served = ServedCertificate::new(&material)?;
    let server_config = served.server_config();
    Ok(Some(Certificate {
        material,
        served,
        server_config,
        acme: None,
    }))
}

/// ACME: the stored certificate if there is one, else the self-signed one until the
/// first is issued. Either way reloads read the ACME certificate file.
fn load_acme_certificate(config: &Config, acme: &AcmeConfig) -> Result<Certificate, RelayError> {
    let shared = match (&config.fleet, acme.http_port) {
        (Some(fleet), Some(_)) => Some(
            tls::acme::shared::SharedChallenges::new(&fleet.redis)
                .map_err(crate::fleet::FleetError::Redis)?,
        ),
        (Some(_), None) => {
            // TLS-ALPN-01 is answered only by the node that ordered (see acme::shared).
            warn!(
                domains = %acme.domains.join(","),
                "ACME in fleet mode over TLS-ALPN-01: orders succeed only if these names \
                 reach this node alone; behind a name or load balancer shared by the fleet \
                 set DUSK_RELAY_ACME_HTTP_PORT on every node (HTTP-01, shared through the \
                 fleet's Redis)"
            );
            None
        }
        (None, _) => None,
    };
    let setup = tls::acme::prepare(acme, &config.data_dir(), shared)?;
    let certificate_path = setup.store.certificate_path();
    let material = match &setup.stored {
        Some((_, facts)) => {
            let expires_in = facts
                .not_after
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            info!(
                cert = %certificate_path.display(),
                serial = %facts.serial,
                expires_in_secs = expires_in.as_secs(),
                "WSS serves the stored ACME certificate"
            );
            tls::load(&certificate_path, &certificate_path, false)?
        }
        None => {
            let self_signed = tls::load_or_generate(config)?;
            warn!(
                domains = %acme.domains.join(","),
                "WSS serves the self-signed certificate until ACME issues one"
            );
            // The reloader reads only the paths: from now on, the ACME file's.
            TlsMaterial {
                cert_path: certificate_path.clone(),
                key_path: certificate_path,
                self_signed: false,
                ..self_signed
            }
        }
    };
    let served = ServedCertificate::new(&material)?;
    let server_config = AcmeResolver::new(served.clone(), setup.challenges.clone()).server_config();
    Ok(Certificate {
        material,
        served,
        server_config,
        acme: Some(setup),
    })
}

/// Starts obtaining and renewing the ACME certificate (and the HTTP-01 responder, if
/// configured); call once the WSS listener is bound, since the CA validates through it.
pub(super) async fn start_acme(
    config: &Config,
    setup: Option<AcmeSetup>,
    reloader: Option<&CertificateReloader>,
    orders: Family<OutcomeLabel, Counter>,
) -> Result<Option<AcmeGuard>, RelayError> {
    let (Some(acme), Some(setup), Some(reloader)) = (&config.tls.acme, setup, reloader) else {
        return Ok(None);
    };
    let responder = match acme.http_port {
        None => None,
        Some(port) => {
            let addrs: Vec<SocketAddr> = config
                .listen_ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect();
            let responder =
                HttpResponder::bind(&addrs, setup.challenges.clone(), Default::default())
                    .await
                    .map_err(|(addr, e)| RelayError::AcmeHttpListen {
                        addr,
                        reason: e.to_string(),
                    })?;
            for addr in &responder.local_addrs {
                info!("ACME HTTP-01 responder: http://{addr}/.well-known/acme-challenge/");
            }
            Some(responder)
        }
    };
    let task = AcmeTask {
        config: acme.clone(),
        store: setup.store,
        challenges: setup.challenges,
        reloader: reloader.clone(),
        orders,
        http01: responder.is_some(),
    };
    Ok(Some(AcmeGuard {
        task: tokio::spawn(task.run()),
        _responder: responder,
    }))
}

/// Stops the ACME task and its HTTP-01 responder when dropped.
pub(super) struct AcmeGuard {
    task: tokio::task::JoinHandle<()>,
    _responder: Option<HttpResponder>,
}

impl Drop for AcmeGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Fleet mode: the fleet secret, the mesh listener and the reservation directory;
/// `None` for a single relay.
pub(super) async fn start_fleet(config: &Config) -> Result<Option<FleetLink>, RelayError> {
    let Some(fleet) = &config.fleet else {
        return Ok(None);
    };
    let key = fleet::key::load(&fleet.mesh_key_file)?;
    let (mesh, incoming) = Mesh::start(fleet, &key).await?;
    let directory = Directory::start(&fleet.redis, mesh.local().clone())?;
    info!(
        "fleet mode: directory {}, mesh {} (key fingerprint {})",
        crate::rendezvous::redis::redact(&fleet.redis),
        mesh.local(),
        key.fingerprint()
    );
    Ok(Some(FleetLink::new(directory, mesh, incoming)))
}

/// The transport (every listener's) and the behaviour, in one swarm.
pub(super) fn build_swarm(
    config: &Config,
    keypair: Keypair,
    certificate: Option<&Certificate>,
    shared: Shared,
    registry: &mut Registry,
) -> Result<RelaySwarm, RelayError> {
    // Headers being read count as handshakes: the same budget bounds them.
    let proxy = ProxyProtocol::new(
        &config.proxy_protocol_from,
        usize::try_from(config.connection_limits.max_pending_incoming).unwrap_or(usize::MAX),
    );
    if proxy.is_on() {
        // The operator's balancer ranges, not any client's address.
        let from: Vec<String> = config
            .proxy_protocol_from
            .iter()
            .map(|r| r.to_string())
            .collect();
        info!(
            from = %from.join(","),
            "PROXY protocol: TCP, WS and WSS connections from these ranges must start with a header naming the client (QUIC is not covered)"
        );
    }
    let transport = transport::build(
        &keypair,
        certificate.map(|c| WssTls::Serve(c.server_config.clone())),
        config.handshake_timeout,
        &proxy,
    )
    .map_err(|e| RelayError::Transport(e.to_string()))?;
    let behaviour = Behaviour::with_shared(&keypair, config, shared);
    let idle_timeout = config.idle_connection_timeout;
    let max_negotiating = config.connection_limits.max_negotiating_streams;
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| RelayError::Transport(e.to_string()))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|_| Boxed(behaviour))
        .map_err(|e| RelayError::Transport(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(idle_timeout)
                .with_max_negotiating_inbound_streams(max_negotiating)
        })
        .build())
}

/// Reloads the WSS certificate on SIGHUP and when its files change; `None` without WSS.
/// A watch that cannot start leaves SIGHUP working.
pub(super) fn start_certificate_reload(
    certificate: Option<Certificate>,
    observers: &broadcast::Sender<RelayEvent>,
    metrics: &Metrics,
) -> (Option<CertificateReloader>, Option<WatchGuard>) {
    let Some(Certificate {
        material, served, ..
    }) = certificate
    else {
        return (None, None);
    };
    let reloader = CertificateReloader::new(
        served,
        &material,
        observers.clone(),
        metrics.certificate_reloads(),
    );
    let watch = match reloader.watch() {
        Ok(guard) => Some(guard),
        Err(e) => {
            warn!("cannot watch the WSS certificate files ({e}); reload with SIGHUP instead");
            None
        }
    };
    (Some(reloader), watch)
}

/// Puts the configured public addresses in reservations, or warns that there are none.
pub(super) fn announce_external_addresses(
    swarm: &mut RelaySwarm,
    config: &Config,
    events: &EventHandler,
) {
    for addr in &config.external_addrs {
        swarm.add_external_address(addr.clone());
        info!("relay address: {} (announced)", events.full_address(addr));
    }
    if config.external_addrs.is_empty() {
        warn!(
            "{} is not set: reservations carry this host's own \
             listen addresses, which only works for local clients; public deployments \
             must set it to the relay's public multiaddrs",
            Id::ExternalAddr.env()
        );
    }
}

pub(super) struct Listeners {
    /// How many listeners were bound.
    pub bound: usize,
    /// The addresses reported by listeners on a specific IP.
    pub addresses: Vec<Multiaddr>,
}

/// Binds every transport on every listen IP. Listeners on a specific IP report their
/// address at once: this waits for it, so callers (tests, embedders) learn OS-assigned
/// ports. A wildcard listener may never report one (`::` in a container with IPv6
/// disabled binds but has no address), so it is up once bound and its addresses are
/// printed as the system reports them.
pub(super) async fn bind_listeners(
    swarm: &mut RelaySwarm,
    config: &Config,
    events: &mut EventHandler,
) -> Result<Listeners, RelayError> {
    let mut pending = Vec::new();
    let mut bound = 0;
    for (listener, port) in [
        (Listener::Tcp, Some(config.port)),
        (Listener::Quic, Some(config.port)),
        (Listener::Ws, config.ws_port),
        (Listener::Wss, config.wss_port),
    ] {
        let Some(port) = port else { continue };
        for &ip in &config.listen_ips {
            let addr = listener.address(ip, port);
            match swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    bound += 1;
                    if !ip.is_unspecified() {
                        pending.push((id, addr));
                    }
                }
                Err(error) if ip.is_ipv6() && ipv6_unavailable(&error) => {
                    warn!(%addr, %error, "IPv6 is not available on this host; listening on IPv4 only");
                }
                Err(error) => {
                    return Err(RelayError::Listen {
                        addr,
                        port,
                        var: listener.port_var(),
                        reason: error.to_string(),
                    })
                }
            }
        }
    }

    let mut addresses = Vec::new();
    while !pending.is_empty() {
        let event = swarm.select_next_some().await;
        match &event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                addresses.push(address.clone());
                pending.retain(|(id, _)| id != listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(addr) = take_listener(&mut pending, *listener_id) {
                    let reason = match reason {
                        Ok(()) => "closed".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    return Err(RelayError::ListenerFailed { addr, reason });
                }
            }
            _ => {}
        }
        events.handle(swarm, event);
    }
    Ok(Listeners { bound, addresses })
}

/// `/metrics`, `/healthz` and `/readyz`, when configured: its bound address and the
/// sender whose drop stops it.
pub(super) async fn start_http_endpoint(
    addr: Option<SocketAddr>,
    registry: Registry,
    health: Arc<Health>,
) -> Result<(Option<SocketAddr>, Option<oneshot::Sender<()>>), RelayError> {
    let Some(addr) = addr else {
        return Ok((None, None));
    };
    let listener =
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| RelayError::MetricsListen {
                addr,
                reason: e.to_string(),
            })?;
    let bound_addr = listener.local_addr().ok();
    let (stop, stopped) = oneshot::channel();
    http::serve(listener, Arc::new(registry), health, stopped);
    if let Some(bound_addr) = bound_addr {
        info!("metrics and health endpoint: http://{bound_addr}/metrics, /healthz, /readyz");
    }
    Ok((bound_addr, Some(stop)))
}

/// Which listener an address belongs to; names the variable that sets its port.
#[derive(Debug, Clone, Copy)]
enum Listener {
    Tcp,
    Quic,
    Ws,
    Wss,
}

impl Listener {
    fn port_var(self) -> &'static str {
        match self {
            Listener::Tcp | Listener::Quic => Id::Port.env(),
            Listener::Ws => Id::WsPort.env(),
            Listener::Wss => Id::WssPort.env(),
        }
    }

    fn address(self, ip: IpAddr, port: u16) -> Multiaddr {
        let addr = Multiaddr::from(ip);
        match self {
            Listener::Tcp => addr.with(Protocol::Tcp(port)),
            Listener::Quic => addr.with(Protocol::Udp(port)).with(Protocol::QuicV1),
            Listener::Ws => addr
                .with(Protocol::Tcp(port))
                .with(Protocol::Ws("/".into())),
            Listener::Wss => addr
                .with(Protocol::Tcp(port))
                .with(Protocol::Tls)
                .with(Protocol::Ws("/".into())),
        }
    }
}

fn take_listener(pending: &mut Vec<(ListenerId, Multiaddr)>, id: ListenerId) -> Option<Multiaddr> {
    let index = pending
        .iter()
        .position(|(pending_id, _)| *pending_id == id)?;
    Some(pending.swap_remove(index).1)
}

/// Binding `::` on a host without IPv6 fails with one of these.
fn ipv6_unavailable(error: &TransportError<std::io::Error>) -> bool {
    use std::io::ErrorKind;
    match error {
        TransportError::Other(e) => {
            matches!(
                e.kind(),
                ErrorKind::AddrNotAvailable | ErrorKind::Unsupported
            ) || e.raw_os_error() == Some(97) // EAFNOSUPPORT
        }
        TransportError::MultiaddrNotSupported(_) => false,
    }
}
