//! The relay's configuration: defaults < TOML file < `DUSK_*` environment variables <
//! command-line flags (merged by [`crate::config::layers`]), parsed and validated once at
//! start. A bad value stops the relay before anything listens, with an error naming the
//! setting as the operator wrote it and the value.

pub mod defaults;
pub mod layers;
mod parse;
mod print;
pub mod settings;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::access::AccessList;
use crate::net::proxy_protocol::TrustedRange;

use layers::{FileError, Layers, Named};
use settings::Id;

/// Everything the relay needs to start. Fields are public so tests and embedders can
/// build one directly; [`Config::load`] is what the binary uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port, and UDP port of QUIC v1. 0 lets the OS pick (tests).
    pub port: u16,
    /// WebSocket port: `None` disables the listener, `Some(0)` lets the OS pick.
    pub ws_port: Option<u16>,
    /// Secure WebSocket port: `None` disables the listener, `Some(0)` lets the OS pick.
    pub wss_port: Option<u16>,
    /// Addresses every listener binds to (IPv4 and/or IPv6).
    pub listen_ips: Vec<IpAddr>,
    /// Addresses the relay is reachable at from the internet, put in reservations.
    /// Empty: the relay advertises its own listen addresses (good for local use only).
    pub external_addrs: Vec<Multiaddr>,
    /// Where the relay's ed25519 identity lives.
    pub keypair_path: PathBuf,
    /// Where the relay keeps the files it makes itself (the self-signed WSS certificate);
    /// `None`: beside the keypair. See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// WSS certificate source.
    pub tls: TlsConfig,
    pub connection_limits: ConnectionLimits,
    /// The whole transport upgrade (TCP/WS/TLS, noise, yamux) must finish within this.
    pub handshake_timeout: Duration,
    /// Connections with no reservation, circuit or stream are closed after this.
    pub idle_connection_timeout: Duration,
    pub relay: RelayLimits,
    pub rendezvous: RendezvousLimits,
    pub bandwidth: BandwidthLimits,
    /// Who is served; replaced on SIGHUP.
    pub access: AccessList,
    /// Load balancers whose TCP, WS and WSS connections start with a PROXY protocol
    /// header naming the client ([`crate::net::proxy_protocol`]). Empty (the default):
    /// no PROXY protocol. Read at start only: the listeners are built with it.
    pub proxy_protocol_from: Vec<TrustedRange>,
    /// The `/metrics`, `/healthz`, `/readyz` endpoint; `None` disables it.
    pub metrics_addr: Option<SocketAddr>,
    /// How long open circuits may keep flowing after the first stop signal; zero stops
    /// at once.
    pub drain_timeout: Duration,
    /// How the binary writes its log lines.
    pub log_format: LogFormat,
    /// Fleet mode: `None` for a single relay.
    pub fleet: Option<FleetConfig>,
}

/// Fleet mode (`DUSK_RELAY_FLEET`): relays sharing one identity behind one name, a
/// reservation directory in Redis and a mesh between them ([`crate::fleet`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The fleet's Redis/Valkey URL: the reservation directory, and the rendezvous
    /// store unless `rendezvous.store` is set.
    pub redis: String,
    /// This node's mesh listener.
    pub mesh_addr: SocketAddr,
    /// `host:port` the other nodes dial this node's mesh at; `None`: `mesh_addr`.
    pub mesh_announce: Option<String>,
    /// The fleet secret every node shares.
    pub mesh_key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// The seed's human lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Where the WSS certificate comes from.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM certificate chain and private key. Both or neither; with neither, a
    /// self-signed certificate is generated and kept beside the keypair.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Extra names (DNS names or IPs) for the self-signed certificate, besides
    /// `localhost`, `127.0.0.1`, `::1` and the hosts of the external addresses.
    pub hostnames: Vec<String>,
    /// Certificates from an ACME CA ([`crate::tls::acme`]); excludes `cert_and_key`.
    pub acme: Option<AcmeConfig>,
}

/// Where and how the relay obtains its WSS certificate by ACME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// DNS names (lower case) and IP addresses the certificate covers.
    pub domains: Vec<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// The account's contact, without `mailto:`.
    pub email: Option<String>,
    /// A PEM CA certificate trusted for the directory's HTTPS besides the system's roots.
    pub ca: Option<PathBuf>,
    /// Port of the HTTP-01 responder; `None`: TLS-ALPN-01 on the WSS listener only.
    pub http_port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_established: u32,
    pub max_established_per_peer: u32,
    pub max_pending_incoming: u32,
    /// 0: no limit.
    pub max_per_ip: usize,
    pub max_per_ipv6_64: usize,
    pub max_per_ipv6_48: usize,
    /// Handshakes in flight per IP, IPv6 /64 and /48; 0: no limit.
    pub max_pending_per_ip: usize,
    pub max_pending_per_ipv6_64: usize,
    pub max_pending_per_ipv6_48: usize,
    /// Refuse new connections while resident memory is above this; `None`: off.
    pub max_memory_bytes: Option<usize>,
    pub max_negotiating_streams: usize,
}

/// Circuit bandwidth caps in bytes per second, 0 meaning no limit. See
/// [`crate::limits::bandwidth`].
#[derive(Debug, Clone)]
pub struct BandwidthLimits {
    /// One direction of one circuit.
    pub circuit_bytes_per_sec: u32,
    /// What one peer sends into all its circuits.
    pub peer_bytes_per_sec: u32,
    /// All circuits together.
    pub total_bytes_per_sec: u32,
    /// Never throttled.
    pub exempt: Vec<PeerId>,
}

impl BandwidthLimits {
    pub fn unlimited() -> Self {
        BandwidthLimits {
            circuit_bytes_per_sec: 0,
            peer_bytes_per_sec: 0,
            total_bytes_per_sec: 0,
            exempt: Vec::new(),
        }
    }
}

/// Circuit relay v2 limits. See [`crate::config::defaults`] for why each value is what it is.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    /// Peers holding a reservation per IP and per IPv6 /64; 0: no limit.
    pub max_reservations_per_ip: usize,
    pub max_reservations_per_ipv6_64: usize,
    pub max_reservations_per_ipv6_48: usize,
    pub reservation_duration: Duration,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    /// Open circuit ends per IP and per IPv6 /64; 0: no limit.
    pub max_circuits_per_ip: usize,
    pub max_circuits_per_ipv6_64: usize,
    pub max_circuits_per_ipv6_48: usize,
    /// `None`: no time limit.
    pub max_circuit_duration: Option<Duration>,
    /// 0: no byte limit.
    pub max_circuit_bytes: u64,
    /// Requests per minute; 0 turns the limiter off.
    pub reservation_rate_per_peer: u32,
    pub reservation_rate_per_ip: u32,
    pub circuit_rate_per_peer: u32,
    pub circuit_rate_per_ip: u32,
}

#[derive(Debug, Clone)]
pub struct RendezvousLimits {
    pub min_ttl_secs: u64,
    pub max_ttl_secs: u64,
    pub max_registrations_per_peer: usize,
    pub max_registrations: usize,
    /// Registrations made from one IP, IPv6 /64 and /48 through this relay; 0: no limit.
    pub max_registrations_per_ip: usize,
    pub max_registrations_per_ipv6_64: usize,
    pub max_registrations_per_ipv6_48: usize,
    /// REGISTER requests per minute; 0 turns the limiter off.
    pub register_rate_per_peer: u32,
    pub register_rate_per_ip: u32,
    /// Largest signed record and most addresses in it.
    pub max_record_bytes: usize,
    pub max_record_addrs: usize,
    /// Record bytes per peer and in the whole store.
    pub max_bytes_per_peer: usize,
    pub max_bytes: usize,
    /// Answer DISCOVER without a namespace. Off: it would list who is in which
    /// community, and who is online, to anyone who asks.
    pub allow_discover_all: bool,
    /// Accept signed records holding addresses that are not `/p2p-circuit`. Off: such
    /// records would reveal the registrant's IP to every discoverer.
    pub allow_direct_addresses: bool,
    pub store: RendezvousStore,
}

/// Where rendezvous registrations live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RendezvousStore {
    /// In this process (default): nothing to set up; lost on restart.
    #[default]
    Memory,
    /// A Redis/Valkey URL shared by a fleet of relays.
    Redis(String),
}

impl std::str::FromStr for RendezvousStore {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            Ok(RendezvousStore::Memory)
        } else if s.starts_with("redis://") {
            Ok(RendezvousStore::Redis(s.to_owned()))
        } else if s.starts_with("rediss://") {
            Err("TLS to Redis (rediss://) is not supported; reach Redis over a private network with redis://".into())
        } else {
            Err("expected memory, or a redis://[:password@]host:port[/db] URL".into())
        }
    }
}

/// A configuration value the relay cannot start with.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key} = {value:?}: {reason}")]
pub struct ConfigError {
    /// The setting's environment variable, whatever layer set it.
    pub var: &'static str,
    /// The setting as the operator wrote it: `--port`, `DUSK_RELAY_PORT`, or
    /// `port in /etc/dusk-relay/config.toml`.
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// Why the layers could not become a [`Config`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: defaults::PORT,
            ws_port: Some(defaults::PORT + defaults::WS_PORT_OFFSET),
            wss_port: Some(defaults::PORT + defaults::WSS_PORT_OFFSET),
            listen_ips: defaults::LISTEN_IPS.to_vec(),
            external_addrs: Vec::new(),
            keypair_path: default_keypair_path(),
            data_dir: None,
            tls: TlsConfig::default(),
            connection_limits: ConnectionLimits {
                max_established: defaults::MAX_CONNECTIONS,
                max_established_per_peer: defaults::MAX_CONNECTIONS_PER_PEER,
                max_pending_incoming: defaults::MAX_PENDING_INCOMING,
                max_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
                max_per_ipv6_64: defaults::MAX_CONNECTIONS_PER_IPV6_64,
                max_per_ipv6_48: defaults::MAX_CONNECTIONS_PER_IPV6_48,
                max_pending_per_ip: defaults::MAX_PENDING_PER_IP,
                max_pending_per_ipv6_64: defaults::MAX_PENDING_PER_IPV6_64,
                max_pending_per_ipv6_48: defaults::MAX_PENDING_PER_IPV6_48,
                max_memory_bytes: Some(mib(defaults::MAX_MEMORY_MIB)),
                max_negotiating_streams: defaults::MAX_NEGOTIATING_STREAMS,
            },
            handshake_timeout: defaults::CONNECTION_UPGRADE_TIMEOUT,
            idle_connection_timeout: defaults::IDLE_CONNECTION_TIMEOUT,
            relay: RelayLimits {
                max_reservations: defaults::MAX_RESERVATIONS,
                max_reservations_per_peer: defaults::MAX_RESERVATIONS_PER_PEER,
                max_reservations_per_ip: defaults::MAX_RESERVATIONS_PER_IP,
                max_reservations_per_ipv6_64: defaults::MAX_RESERVATIONS_PER_IPV6_64,
                max_reservations_per_ipv6_48: defaults::MAX_RESERVATIONS_PER_IPV6_48,
                reservation_duration: defaults::RESERVATION_DURATION,
                max_circuits: defaults::MAX_CIRCUITS,
                max_circuits_per_peer: defaults::MAX_CIRCUITS_PER_PEER,
                max_circuits_per_ip: defaults::MAX_CIRCUITS_PER_IP,
                max_circuits_per_ipv6_64: defaults::MAX_CIRCUITS_PER_IPV6_64,
                max_circuits_per_ipv6_48: defaults::MAX_CIRCUITS_PER_IPV6_48,
                max_circuit_duration: Some(defaults::MAX_CIRCUIT_DURATION),
                max_circuit_bytes: defaults::MAX_CIRCUIT_BYTES,
                reservation_rate_per_peer: defaults::RESERVATION_RATE_PER_PEER,
                reservation_rate_per_ip: defaults::RESERVATION_RATE_PER_IP,
                circuit_rate_per_peer: defaults::CIRCUIT_RATE_PER_PEER,
                circuit_rate_per_ip: defaults::CIRCUIT_RATE_PER_IP,
            },
            rendezvous: RendezvousLimits {
                min_ttl_secs: defaults::RENDEZVOUS_MIN_TTL_SECS,
                max_ttl_secs: defaults::RENDEZVOUS_MAX_TTL_SECS,
                max_registrations_per_peer: defaults::RENDEZVOUS_MAX_REGISTRATIONS_PER_PEER,
                max_registrations: defaults::RENDEZVOUS_MAX_REGISTRATIONS,
                max_registrations_per_ip: defaults::RENDEZVOUS_MAX_REGISTRATIONS_PER_IP,
                max_registrations_per_ipv6_64: defaults::RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_64,
                max_registrations_per_ipv6_48: defaults::RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_48,
                register_rate_per_peer: defaults::RENDEZVOUS_REGISTER_RATE_PER_PEER,
                register_rate_per_ip: defaults::RENDEZVOUS_REGISTER_RATE_PER_IP,
                max_record_bytes: defaults::RENDEZVOUS_MAX_RECORD_BYTES,
                max_record_addrs: defaults::RENDEZVOUS_MAX_RECORD_ADDRS,
                max_bytes_per_peer: defaults::RENDEZVOUS_MAX_BYTES_PER_PEER,
                max_bytes: defaults::RENDEZVOUS_MAX_BYTES,
                allow_discover_all: false,
                allow_direct_addresses: false,
                store: RendezvousStore::Memory,
            },
            bandwidth: BandwidthLimits {
                circuit_bytes_per_sec: defaults::CIRCUIT_BYTES_PER_SEC,
                peer_bytes_per_sec: defaults::PEER_BYTES_PER_SEC,
                total_bytes_per_sec: defaults::TOTAL_BYTES_PER_SEC,
                exempt: Vec::new(),
            },
            access: AccessList::default(),
            proxy_protocol_from: Vec::new(),
            metrics_addr: Some(SocketAddr::new(
                defaults::METRICS_IP,
                defaults::PORT + defaults::METRICS_PORT_OFFSET,
            )),
            drain_timeout: defaults::DRAIN_TIMEOUT,
            log_format: LogFormat::Text,
            fleet: None,
        }
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

impl Config {
    /// The directory for the files the relay makes itself: `DUSK_RELAY_DATA_DIR`, or the
    /// keypair's directory. A fleet mounts its shared keypair read-only, so it needs
    /// somewhere else to write.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        match self.keypair_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        }
    }
}

/// `dirs::data_dir()/dusk-relay/keypair` (Linux: `~/.local/share/dusk-relay/keypair`),
/// or `./relay_keypair` where the platform has no data directory: the original relay's paths.
pub fn default_keypair_path() -> PathBuf {
    match dirs::data_dir() {
        Some(dir) => dir.join(defaults::KEYPAIR_DIR).join(defaults::KEYPAIR_FILE),
        None => PathBuf::from(defaults::KEYPAIR_FALLBACK),
    }
}
