//! The relay's configuration: defaults < TOML file < `DUSK_*` environment variables <
//! command-line flags (merged by [`crate::config::settings`]), parsed and validated once at
//! start. A bad value stops the relay before anything listens, with an error naming the
//! setting as the operator wrote it and the value.

pub mod defaults;
pub mod settings;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::access::AccessList;

use settings::{FileError, Layers, Named};

/// Everything the relay needs to start. Fields are public so tests and embedders can
/// build one directly; [`Config::from_env`] is what the binary uses.
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
    /// The `/metrics`, `/healthz`, `/readyz` endpoint; `None` disables it.
    pub metrics_addr: Option<SocketAddr>,
    /// How long open circuits may keep flowing after the first stop signal; zero stops
    /// at once.
    pub drain_timeout: Duration,
    /// How the binary writes its log lines.
    pub log_format: LogFormat,
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
            listen_ips: vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            external_addrs: Vec::new(),
            keypair_path: default_keypair_path(),
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
            metrics_addr: Some(SocketAddr::new(
                defaults::METRICS_IP,
                defaults::PORT + defaults::METRICS_PORT_OFFSET,
            )),
            drain_timeout: defaults::DRAIN_TIMEOUT,
            log_format: LogFormat::Text,
        }
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// `dirs::data_dir()/dusk-relay/keypair` (Linux: `~/.local/share/dusk-relay/keypair`),
/// or `./relay_keypair` where the platform has no data directory: the original relay's paths.
pub fn default_keypair_path() -> PathBuf {
    match dirs::data_dir() {
        Some(dir) => dir.join(defaults::KEYPAIR_DIR).join(defaults::KEYPAIR_FILE),
        None => PathBuf::from(defaults::KEYPAIR_FALLBACK),
    }
}

/// The merged layers, with typed accessors whose errors name the setting the way the
/// operator wrote it (flag, variable, or file key).
struct Vars<'a> {
    layers: &'a Layers,
}

impl Vars<'_> {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.layers.get(var).map(|v| v.text.trim())
    }

    fn invalid(&self, var: &'static str, value: &str, reason: String) -> ConfigError {
        ConfigError {
            var,
            key: self.name(var),
            // A store URL may carry a password: never print it back.
            value: if var == "DUSK_RELAY_RENDEZVOUS_STORE" {
                crate::rendezvous::redis::redact(value)
            } else {
                crate::rendezvous::redis::redact_urls_in(value)
            },
            reason,
        }
    }

    /// The setting as the operator wrote it (flag, variable or file key).
    fn name(&self, var: &'static str) -> String {
        let origin = self.layers.origin(var);
        match settings::by_env(var) {
            Some(setting) => Named {
                setting,
                origin: &origin,
            }
            .to_string(),
            None => var.to_owned(),
        }
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| self.invalid(var, raw, e.to_string())),
        }
    }

    /// A count that must be at least 1.
    fn positive<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + From<u8> + Copy,
        T::Err: std::fmt::Display,
    {
        let value = self.parse(var, default)?;
        if value < T::from(1) {
            let raw = self.get(var).unwrap_or_default();
            return Err(self.invalid(var, raw, "must be at least 1".into()));
        }
        Ok(value)
    }

    /// A listener port: `0` or `off` disables, unset derives from the main port.
    fn listener_port(
        &self,
        var: &'static str,
        port: u16,
        offset: u16,
    ) -> Result<Option<u16>, ConfigError> {
        match self.get(var) {
            Some("0") | Some("off") => Ok(None),
            Some(raw) => raw
                .parse::<u16>()
                .map(Some)
                .map_err(|_| self.invalid(var, raw, "not a port number (1-65535, or 0/off to disable)".into())),
            None if port == 0 => Ok(Some(0)),
            None => port.checked_add(offset).map(Some).ok_or_else(|| {
                self.invalid(
                    var,
                    "",
                    format!(
                        "unset, and port ({}) + {offset} is past 65535; set it explicitly (0 disables)",
                        self.name("DUSK_RELAY_PORT")
                    ),
                )
            }),
        }
    }

    /// The metrics endpoint: `off` or `0` disables, unset derives the port from the
    /// main port on loopback.
    fn metrics_addr(&self, port: u16) -> Result<Option<SocketAddr>, ConfigError> {
        const VAR: &str = "DUSK_RELAY_METRICS_ADDR";
        match self.get(VAR) {
            Some("0") | Some("off") => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|_| {
                self.invalid(
                    VAR,
                    raw,
                    "not an IP:port (e.g. 127.0.0.1:9001), or off".into(),
                )
            }),
            None if port == 0 => Ok(Some(SocketAddr::new(defaults::METRICS_IP, 0))),
            None => match port.checked_add(defaults::METRICS_PORT_OFFSET) {
                Some(metrics_port) => Ok(Some(SocketAddr::new(defaults::METRICS_IP, metrics_port))),
                None => Err(self.invalid(
                    VAR,
                    "",
                    format!(
                        "unset, and port ({}) + {} is past 65535; set it explicitly (off disables)",
                        self.name("DUSK_RELAY_PORT"),
                        defaults::METRICS_PORT_OFFSET
                    ),
                )),
            },
        }
    }

    fn list<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: &str,
    ) -> Result<Vec<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.get(var).unwrap_or(default);
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|e: T::Err| self.invalid(var, item, e.to_string()))
            })
            .collect()
    }
}

impl Config {
    /// The whole stack: `file` (if any) < `env` < `flags` (`(variable, value)` pairs).
    /// Returns the config and the unknown `DUSK_*` variables, which the caller should
    /// warn about.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Result<(Config, Vec<String>), LoadError> {
        let mut layers = Layers::default();
        if let Some(path) = file {
            layers.add_file(path)?;
        }
        layers.add_env(env);
        layers.add_flags(flags);
        let config = Self::from_layers(&layers)?;
        Ok((config, layers.unknown_env))
    }

    /// Builds a config from environment-style `(name, value)` pairs alone.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut layers = Layers::default();
        layers.add_env(vars);
        let config = Self::from_layers(&layers)?;
        Ok((config, layers.unknown_env))
    }

    /// Parses and validates merged layers.
    pub fn from_layers(layers: &Layers) -> Result<Config, ConfigError> {
        let vars = Vars { layers };
        let d = Config::default();

        let port = vars.parse("DUSK_RELAY_PORT", d.port)?;
        let listen_ips: Vec<IpAddr> = vars.list("DUSK_RELAY_LISTEN_IPS", defaults::LISTEN_IPS)?;
        if listen_ips.is_empty() {
            return Err(vars.invalid("DUSK_RELAY_LISTEN_IPS", "", "needs at least one IP".into()));
        }
        let external_addrs = vars.list("DUSK_RELAY_EXTERNAL_ADDR", "")?;

        let cert = vars.get("DUSK_RELAY_TLS_CERT").map(PathBuf::from);
        let key = vars.get("DUSK_RELAY_TLS_KEY").map(PathBuf::from);
        let cert_and_key = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(vars.invalid(
                    "DUSK_RELAY_TLS_KEY",
                    "",
                    format!(
                        "unset while {} is {}; set both or neither",
                        vars.name("DUSK_RELAY_TLS_CERT"),
                        cert.display()
                    ),
                ))
            }
            (None, Some(key)) => {
                return Err(vars.invalid(
                    "DUSK_RELAY_TLS_CERT",
                    "",
                    format!(
                        "unset while {} is {}; set both or neither",
                        vars.name("DUSK_RELAY_TLS_KEY"),
                        key.display()
                    ),
                ))
            }
        };

        let circuit_duration_secs: u64 = vars.parse(
            "DUSK_RELAY_MAX_CIRCUIT_DURATION_SECS",
            defaults::MAX_CIRCUIT_DURATION.as_secs(),
        )?;
        // libp2p panics above u32::MAX seconds; 0 there closes circuits at once, so 0
        // here means "no limit" instead.
        if circuit_duration_secs > u64::from(u32::MAX) {
            return Err(vars.invalid(
                "DUSK_RELAY_MAX_CIRCUIT_DURATION_SECS",
                &circuit_duration_secs.to_string(),
                format!("at most {} (0 = no limit)", u32::MAX),
            ));
        }
        let rendezvous = RendezvousLimits {
            min_ttl_secs: vars.positive(
                "DUSK_RELAY_RENDEZVOUS_MIN_TTL_SECS",
                d.rendezvous.min_ttl_secs,
            )?,
            max_ttl_secs: vars.positive(
                "DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS",
                d.rendezvous.max_ttl_secs,
            )?,
            max_registrations_per_peer: vars.positive(
                "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_PEER",
                d.rendezvous.max_registrations_per_peer,
            )?,
            max_registrations: vars.positive(
                "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS",
                d.rendezvous.max_registrations,
            )?,
            max_registrations_per_ip: vars.parse(
                "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IP",
                d.rendezvous.max_registrations_per_ip,
            )?,
            max_registrations_per_ipv6_64: vars.parse(
                "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_64",
                d.rendezvous.max_registrations_per_ipv6_64,
            )?,
            max_registrations_per_ipv6_48: vars.parse(
                "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_48",
                d.rendezvous.max_registrations_per_ipv6_48,
            )?,
            register_rate_per_peer: vars.parse(
                "DUSK_RELAY_RENDEZVOUS_REGISTER_RATE_PER_PEER",
                d.rendezvous.register_rate_per_peer,
            )?,
            register_rate_per_ip: vars.parse(
                "DUSK_RELAY_RENDEZVOUS_REGISTER_RATE_PER_IP",
                d.rendezvous.register_rate_per_ip,
            )?,
            max_record_bytes: vars.positive(
                "DUSK_RELAY_RENDEZVOUS_MAX_RECORD_BYTES",
                d.rendezvous.max_record_bytes,
            )?,
            max_record_addrs: vars.positive(
                "DUSK_RELAY_RENDEZVOUS_MAX_RECORD_ADDRS",
                d.rendezvous.max_record_addrs,
            )?,
            max_bytes_per_peer: vars.positive(
                "DUSK_RELAY_RENDEZVOUS_MAX_BYTES_PER_PEER",
                d.rendezvous.max_bytes_per_peer,
            )?,
            max_bytes: vars.positive("DUSK_RELAY_RENDEZVOUS_MAX_BYTES", d.rendezvous.max_bytes)?,
            allow_discover_all: vars.parse(
                "DUSK_RELAY_RENDEZVOUS_ALLOW_DISCOVER_ALL",
                d.rendezvous.allow_discover_all,
            )?,
            allow_direct_addresses: vars.parse(
                "DUSK_RELAY_RENDEZVOUS_ALLOW_DIRECT_ADDRS",
                d.rendezvous.allow_direct_addresses,
            )?,
            store: vars.parse("DUSK_RELAY_RENDEZVOUS_STORE", d.rendezvous.store.clone())?,
        };
        if rendezvous.max_ttl_secs > defaults::RENDEZVOUS_TTL_CEILING_SECS {
            return Err(vars.invalid(
                "DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS",
                &rendezvous.max_ttl_secs.to_string(),
                format!(
                    "at most {} (one year)",
                    defaults::RENDEZVOUS_TTL_CEILING_SECS
                ),
            ));
        }
        if rendezvous.min_ttl_secs > rendezvous.max_ttl_secs {
            return Err(vars.invalid(
                "DUSK_RELAY_RENDEZVOUS_MIN_TTL_SECS",
                &rendezvous.min_ttl_secs.to_string(),
                format!(
                    "above {} ({})",
                    vars.name("DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS"),
                    rendezvous.max_ttl_secs
                ),
            ));
        }

        let config = Config {
            port,
            ws_port: vars.listener_port("DUSK_RELAY_WS_PORT", port, defaults::WS_PORT_OFFSET)?,
            wss_port: vars.listener_port("DUSK_RELAY_WSS_PORT", port, defaults::WSS_PORT_OFFSET)?,
            listen_ips,
            external_addrs,
            keypair_path: vars
                .get("DUSK_RELAY_KEYPAIR")
                .map(PathBuf::from)
                .unwrap_or(d.keypair_path),
            tls: TlsConfig {
                cert_and_key,
                hostnames: vars.list("DUSK_RELAY_TLS_HOSTNAMES", "")?,
            },
            connection_limits: ConnectionLimits {
                max_established: vars
                    .positive("DUSK_MAX_CONNECTIONS", d.connection_limits.max_established)?,
                max_established_per_peer: vars.positive(
                    "DUSK_RELAY_MAX_CONNECTIONS_PER_PEER",
                    d.connection_limits.max_established_per_peer,
                )?,
                max_pending_incoming: vars.positive(
                    "DUSK_RELAY_MAX_PENDING_INCOMING",
                    d.connection_limits.max_pending_incoming,
                )?,
                max_per_ip: vars.parse(
                    "DUSK_RELAY_MAX_CONNECTIONS_PER_IP",
                    d.connection_limits.max_per_ip,
                )?,
                max_per_ipv6_64: vars.parse(
                    "DUSK_RELAY_MAX_CONNECTIONS_PER_IPV6_64",
                    d.connection_limits.max_per_ipv6_64,
                )?,
                max_per_ipv6_48: vars.parse(
                    "DUSK_RELAY_MAX_CONNECTIONS_PER_IPV6_48",
                    d.connection_limits.max_per_ipv6_48,
                )?,
                max_pending_per_ip: vars.parse(
                    "DUSK_RELAY_MAX_PENDING_PER_IP",
                    d.connection_limits.max_pending_per_ip,
                )?,
                max_pending_per_ipv6_64: vars.parse(
                    "DUSK_RELAY_MAX_PENDING_PER_IPV6_64",
                    d.connection_limits.max_pending_per_ipv6_64,
                )?,
                max_pending_per_ipv6_48: vars.parse(
                    "DUSK_RELAY_MAX_PENDING_PER_IPV6_48",
                    d.connection_limits.max_pending_per_ipv6_48,
                )?,
                max_memory_bytes: match vars
                    .parse("DUSK_RELAY_MAX_MEMORY_MIB", defaults::MAX_MEMORY_MIB)?
                {
                    0 => None,
                    n => Some(mib(n)),
                },
                max_negotiating_streams: vars.positive(
                    "DUSK_RELAY_MAX_NEGOTIATING_STREAMS",
                    d.connection_limits.max_negotiating_streams,
                )?,
            },
            handshake_timeout: Duration::from_secs(vars.positive(
                "DUSK_RELAY_HANDSHAKE_TIMEOUT_SECS",
                d.handshake_timeout.as_secs(),
            )?),
            idle_connection_timeout: Duration::from_secs(vars.positive(
                "DUSK_RELAY_IDLE_TIMEOUT_SECS",
                d.idle_connection_timeout.as_secs(),
            )?),
            relay: RelayLimits {
                max_reservations: vars
                    .positive("DUSK_RELAY_MAX_RESERVATIONS", d.relay.max_reservations)?,
                max_reservations_per_peer: vars.positive(
                    "DUSK_RELAY_MAX_RESERVATIONS_PER_PEER",
                    d.relay.max_reservations_per_peer,
                )?,
                max_reservations_per_ip: vars.parse(
                    "DUSK_RELAY_MAX_RESERVATIONS_PER_IP",
                    d.relay.max_reservations_per_ip,
                )?,
                max_reservations_per_ipv6_64: vars.parse(
                    "DUSK_RELAY_MAX_RESERVATIONS_PER_IPV6_64",
                    d.relay.max_reservations_per_ipv6_64,
                )?,
                max_reservations_per_ipv6_48: vars.parse(
                    "DUSK_RELAY_MAX_RESERVATIONS_PER_IPV6_48",
                    d.relay.max_reservations_per_ipv6_48,
                )?,
                reservation_duration: Duration::from_secs(vars.positive(
                    "DUSK_RELAY_RESERVATION_DURATION_SECS",
                    d.relay.reservation_duration.as_secs(),
                )?),
                max_circuits: vars.positive("DUSK_RELAY_MAX_CIRCUITS", d.relay.max_circuits)?,
                max_circuits_per_peer: vars.positive(
                    "DUSK_RELAY_MAX_CIRCUITS_PER_PEER",
                    d.relay.max_circuits_per_peer,
                )?,
                max_circuits_per_ip: vars.parse(
                    "DUSK_RELAY_MAX_CIRCUITS_PER_IP",
                    d.relay.max_circuits_per_ip,
                )?,
                max_circuits_per_ipv6_64: vars.parse(
                    "DUSK_RELAY_MAX_CIRCUITS_PER_IPV6_64",
                    d.relay.max_circuits_per_ipv6_64,
                )?,
                max_circuits_per_ipv6_48: vars.parse(
                    "DUSK_RELAY_MAX_CIRCUITS_PER_IPV6_48",
                    d.relay.max_circuits_per_ipv6_48,
                )?,
                max_circuit_duration: (circuit_duration_secs > 0)
                    .then(|| Duration::from_secs(circuit_duration_secs)),
                max_circuit_bytes: vars
                    .parse("DUSK_RELAY_MAX_CIRCUIT_BYTES", d.relay.max_circuit_bytes)?,
                reservation_rate_per_peer: vars.parse(
                    "DUSK_RELAY_RESERVATION_RATE_PER_PEER",
                    d.relay.reservation_rate_per_peer,
                )?,
                reservation_rate_per_ip: vars.parse(
                    "DUSK_RELAY_RESERVATION_RATE_PER_IP",
                    d.relay.reservation_rate_per_ip,
                )?,
                circuit_rate_per_peer: vars.parse(
                    "DUSK_RELAY_CIRCUIT_RATE_PER_PEER",
                    d.relay.circuit_rate_per_peer,
                )?,
                circuit_rate_per_ip: vars.parse(
                    "DUSK_RELAY_CIRCUIT_RATE_PER_IP",
                    d.relay.circuit_rate_per_ip,
                )?,
            },
            rendezvous,
            bandwidth: BandwidthLimits {
                circuit_bytes_per_sec: vars.parse(
                    "DUSK_RELAY_CIRCUIT_BYTES_PER_SEC",
                    d.bandwidth.circuit_bytes_per_sec,
                )?,
                peer_bytes_per_sec: vars.parse(
                    "DUSK_RELAY_PEER_BYTES_PER_SEC",
                    d.bandwidth.peer_bytes_per_sec,
                )?,
                total_bytes_per_sec: vars.parse(
                    "DUSK_RELAY_TOTAL_BYTES_PER_SEC",
                    d.bandwidth.total_bytes_per_sec,
                )?,
                exempt: vars.list("DUSK_RELAY_BANDWIDTH_EXEMPT", "")?,
            },
            access: AccessList {
                allow: vars.list("DUSK_RELAY_ALLOW", "")?,
                deny: vars.list("DUSK_RELAY_DENY", "")?,
            },
            metrics_addr: vars.metrics_addr(port)?,
            drain_timeout: Duration::from_secs(
                vars.parse("DUSK_RELAY_DRAIN_SECS", d.drain_timeout.as_secs())?,
            ),
            log_format: vars.parse("DUSK_RELAY_LOG_FORMAT", d.log_format)?,
        };
        Ok(config)
    }

    /// The effective configuration as a config file: every key, in [`settings::SETTINGS`]
    /// order, so `--print-config > relay.toml` is a file the relay accepts as it is.
    /// Certificate and identity *paths* are printed; no key material is.
    pub fn to_toml(&self) -> String {
        let mut root = toml::Table::new();
        for setting in settings::SETTINGS {
            let Some(value) = self.value_of(setting.env) else {
                continue;
            };
            let mut table = &mut root;
            let mut parts: Vec<&str> = setting.key.split('.').collect();
            let leaf = parts.pop().unwrap_or(setting.key);
            for part in parts {
                table = match table
                    .entry(part)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                {
                    toml::Value::Table(inner) => inner,
                    _ => unreachable!("setting keys never use a leaf as a section"),
                };
            }
            table.insert(leaf.to_owned(), value);
        }
        root.to_string()
    }

    /// One setting's effective value as the environment would spell it (`--help` shows
    /// the defaults this way); `None` when unset.
    pub fn value_text(&self, env: &str) -> Option<String> {
        Some(match self.value_of(env)? {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        })
    }

    /// One setting's effective value; `None` for an unset optional path.
    fn value_of(&self, env: &str) -> Option<toml::Value> {
        use toml::Value;
        let int = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let list =
            |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
        let port = |p: Option<u16>| match p {
            Some(p) => Value::Integer(p.into()),
            None => Value::String("off".into()),
        };
        let r = &self.relay;
        let c = &self.connection_limits;
        let z = &self.rendezvous;
        Some(match env {
            "DUSK_RELAY_PORT" => int(self.port.into()),
            "DUSK_RELAY_WS_PORT" => port(self.ws_port),
            "DUSK_RELAY_WSS_PORT" => port(self.wss_port),
            "DUSK_RELAY_LISTEN_IPS" => {
                list(self.listen_ips.iter().map(ToString::to_string).collect())
            }
            "DUSK_RELAY_EXTERNAL_ADDR" if self.external_addrs.is_empty() => return None,
            "DUSK_RELAY_EXTERNAL_ADDR" => list(
                self.external_addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            "DUSK_RELAY_KEYPAIR" => Value::String(self.keypair_path.display().to_string()),
            "DUSK_RELAY_LOG_FORMAT" => Value::String(self.log_format.as_str().into()),
            "DUSK_RELAY_METRICS_ADDR" => match self.metrics_addr {
                Some(addr) => Value::String(addr.to_string()),
                None => Value::String("off".into()),
            },
            "DUSK_RELAY_DRAIN_SECS" => int(self.drain_timeout.as_secs()),
            "DUSK_RELAY_TLS_CERT" => {
                Value::String(self.tls.cert_and_key.as_ref()?.0.display().to_string())
            }
            "DUSK_RELAY_TLS_KEY" => {
                Value::String(self.tls.cert_and_key.as_ref()?.1.display().to_string())
            }
            "DUSK_RELAY_TLS_HOSTNAMES" if self.tls.hostnames.is_empty() => return None,
            "DUSK_RELAY_TLS_HOSTNAMES" => list(self.tls.hostnames.clone()),
            "DUSK_MAX_CONNECTIONS" => int(c.max_established.into()),
            "DUSK_RELAY_MAX_CONNECTIONS_PER_PEER" => int(c.max_established_per_peer.into()),
            "DUSK_RELAY_MAX_PENDING_INCOMING" => int(c.max_pending_incoming.into()),
            "DUSK_RELAY_MAX_CONNECTIONS_PER_IP" => int(c.max_per_ip as u64),
            "DUSK_RELAY_MAX_CONNECTIONS_PER_IPV6_64" => int(c.max_per_ipv6_64 as u64),
            "DUSK_RELAY_MAX_CONNECTIONS_PER_IPV6_48" => int(c.max_per_ipv6_48 as u64),
            "DUSK_RELAY_MAX_PENDING_PER_IP" => int(c.max_pending_per_ip as u64),
            "DUSK_RELAY_MAX_PENDING_PER_IPV6_64" => int(c.max_pending_per_ipv6_64 as u64),
            "DUSK_RELAY_MAX_PENDING_PER_IPV6_48" => int(c.max_pending_per_ipv6_48 as u64),
            "DUSK_RELAY_MAX_MEMORY_MIB" => {
                int(c.max_memory_bytes.map_or(0, |b| b as u64 / (1024 * 1024)))
            }
            "DUSK_RELAY_HANDSHAKE_TIMEOUT_SECS" => int(self.handshake_timeout.as_secs()),
            "DUSK_RELAY_MAX_NEGOTIATING_STREAMS" => int(c.max_negotiating_streams as u64),
            "DUSK_RELAY_IDLE_TIMEOUT_SECS" => int(self.idle_connection_timeout.as_secs()),
            "DUSK_RELAY_MAX_RESERVATIONS" => int(r.max_reservations as u64),
            "DUSK_RELAY_MAX_RESERVATIONS_PER_PEER" => int(r.max_reservations_per_peer as u64),
            "DUSK_RELAY_MAX_RESERVATIONS_PER_IP" => int(r.max_reservations_per_ip as u64),
            "DUSK_RELAY_MAX_RESERVATIONS_PER_IPV6_64" => int(r.max_reservations_per_ipv6_64 as u64),
            "DUSK_RELAY_MAX_RESERVATIONS_PER_IPV6_48" => int(r.max_reservations_per_ipv6_48 as u64),
            "DUSK_RELAY_RESERVATION_DURATION_SECS" => int(r.reservation_duration.as_secs()),
            "DUSK_RELAY_MAX_CIRCUITS" => int(r.max_circuits as u64),
            "DUSK_RELAY_MAX_CIRCUITS_PER_PEER" => int(r.max_circuits_per_peer as u64),
            "DUSK_RELAY_MAX_CIRCUITS_PER_IP" => int(r.max_circuits_per_ip as u64),
            "DUSK_RELAY_MAX_CIRCUITS_PER_IPV6_64" => int(r.max_circuits_per_ipv6_64 as u64),
            "DUSK_RELAY_MAX_CIRCUITS_PER_IPV6_48" => int(r.max_circuits_per_ipv6_48 as u64),
            "DUSK_RELAY_MAX_CIRCUIT_DURATION_SECS" => {
                int(r.max_circuit_duration.map_or(0, |d| d.as_secs()))
            }
            "DUSK_RELAY_MAX_CIRCUIT_BYTES" => int(r.max_circuit_bytes),
            "DUSK_RELAY_RESERVATION_RATE_PER_PEER" => int(r.reservation_rate_per_peer.into()),
            "DUSK_RELAY_RESERVATION_RATE_PER_IP" => int(r.reservation_rate_per_ip.into()),
            "DUSK_RELAY_CIRCUIT_RATE_PER_PEER" => int(r.circuit_rate_per_peer.into()),
            "DUSK_RELAY_CIRCUIT_RATE_PER_IP" => int(r.circuit_rate_per_ip.into()),
            "DUSK_RELAY_CIRCUIT_BYTES_PER_SEC" => int(self.bandwidth.circuit_bytes_per_sec.into()),
            "DUSK_RELAY_PEER_BYTES_PER_SEC" => int(self.bandwidth.peer_bytes_per_sec.into()),
            "DUSK_RELAY_TOTAL_BYTES_PER_SEC" => int(self.bandwidth.total_bytes_per_sec.into()),
            "DUSK_RELAY_BANDWIDTH_EXEMPT" => list(
                self.bandwidth
                    .exempt
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            "DUSK_RELAY_ALLOW" => list(self.access.allow.iter().map(ToString::to_string).collect()),
            "DUSK_RELAY_DENY" => list(self.access.deny.iter().map(ToString::to_string).collect()),
            "DUSK_RELAY_RENDEZVOUS_MIN_TTL_SECS" => int(z.min_ttl_secs),
            "DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS" => int(z.max_ttl_secs),
            "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_PEER" => {
                int(z.max_registrations_per_peer as u64)
            }
            "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS" => int(z.max_registrations as u64),
            "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IP" => {
                int(z.max_registrations_per_ip as u64)
            }
            "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_64" => {
                int(z.max_registrations_per_ipv6_64 as u64)
            }
            "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_48" => {
                int(z.max_registrations_per_ipv6_48 as u64)
            }
            "DUSK_RELAY_RENDEZVOUS_REGISTER_RATE_PER_PEER" => int(z.register_rate_per_peer.into()),
            "DUSK_RELAY_RENDEZVOUS_REGISTER_RATE_PER_IP" => int(z.register_rate_per_ip.into()),
            "DUSK_RELAY_RENDEZVOUS_MAX_RECORD_BYTES" => int(z.max_record_bytes as u64),
            "DUSK_RELAY_RENDEZVOUS_MAX_RECORD_ADDRS" => int(z.max_record_addrs as u64),
            "DUSK_RELAY_RENDEZVOUS_MAX_BYTES_PER_PEER" => int(z.max_bytes_per_peer as u64),
            "DUSK_RELAY_RENDEZVOUS_MAX_BYTES" => int(z.max_bytes as u64),
            "DUSK_RELAY_RENDEZVOUS_ALLOW_DISCOVER_ALL" => Value::Boolean(z.allow_discover_all),
            "DUSK_RELAY_RENDEZVOUS_ALLOW_DIRECT_ADDRS" => Value::Boolean(z.allow_direct_addresses),
            // A Redis URL may carry a password: printed redacted.
            "DUSK_RELAY_RENDEZVOUS_STORE" => Value::String(match &z.store {
                RendezvousStore::Memory => "memory".into(),
                RendezvousStore::Redis(url) => crate::rendezvous::redis::redact(url),
            }),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_variables() {
        let (config, unknown) = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.port, 4001);
        assert_eq!(config.ws_port, Some(14001));
        assert_eq!(config.wss_port, Some(24001));
        assert_eq!(config.relay.max_circuit_bytes, 0);
        assert!(config.relay.max_circuit_duration.unwrap() >= Duration::from_secs(24 * 3600));
        assert!(unknown.is_empty());
    }

    #[test]
    fn relays_on_different_ports_do_not_collide() {
        let a = Config::from_vars(vars(&[("DUSK_RELAY_PORT", "4001")]))
            .unwrap()
            .0;
        let b = Config::from_vars(vars(&[("DUSK_RELAY_PORT", "4002")]))
            .unwrap()
            .0;
        let ports = |c: &Config| {
            [
                Some(c.port),
                c.ws_port,
                c.wss_port,
                c.metrics_addr.map(|a| a.port()),
            ]
        };
        for port in ports(&a) {
            assert!(!ports(&b).contains(&port), "{port:?} shared");
        }
    }

    #[test]
    fn zero_disables_ws_and_wss() {
        let config = Config::from_vars(vars(&[
            ("DUSK_RELAY_WS_PORT", "0"),
            ("DUSK_RELAY_WSS_PORT", "off"),
        ]))
        .unwrap()
        .0;
        assert_eq!((config.ws_port, config.wss_port), (None, None));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("DUSK_RELAY_PORT", "70000"),
            ("DUSK_MAX_CONNECTIONS", "0"),
            ("DUSK_RELAY_EXTERNAL_ADDR", "not-a-multiaddr"),
            ("DUSK_RELAY_LISTEN_IPS", "1.2.3"),
            ("DUSK_RELAY_MAX_CIRCUIT_DURATION_SECS", "99999999999"),
            ("DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS", "18446744073709551615"),
            ("DUSK_RELAY_RENDEZVOUS_MAX_RECORD_BYTES", "0"),
        ] {
            let err = Config::from_vars(vars(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = Config::from_vars(vars(&[("DUSK_RELAY_PORT", "60000")])).unwrap_err();
        assert_eq!(err.var, "DUSK_RELAY_WS_PORT");
        let err = Config::from_vars(vars(&[("DUSK_RELAY_TLS_CERT", "/c.pem")])).unwrap_err();
        assert_eq!(err.var, "DUSK_RELAY_TLS_KEY");
    }

    #[test]
    fn circuit_duration_zero_means_unlimited() {
        let config = Config::from_vars(vars(&[("DUSK_RELAY_MAX_CIRCUIT_DURATION_SECS", "0")]))
            .unwrap()
            .0;
        assert_eq!(config.relay.max_circuit_duration, None);
    }

    #[test]
    fn unknown_dusk_variables_are_reported() {
        let (_, unknown) = Config::from_vars(vars(&[("DUSK_RELAY_PROT", "1")])).unwrap();
        assert_eq!(unknown, vec!["DUSK_RELAY_PROT".to_string()]);
    }
}
