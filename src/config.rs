//! The relay's configuration: defaults overridden by `DUSK_*` environment variables,
//! parsed and validated once at start. A bad value stops the relay before anything
//! listens, with an error naming the variable and the value.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;

use crate::defaults;

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
    /// Connections with no reservation, circuit or stream are closed after this.
    pub idle_connection_timeout: Duration,
    pub relay: RelayLimits,
    pub rendezvous: RendezvousLimits,
    /// The `/metrics`, `/healthz`, `/readyz` endpoint; `None` disables it.
    pub metrics_addr: Option<SocketAddr>,
    /// How long open circuits may keep flowing after the first stop signal; zero stops
    /// at once.
    pub drain_timeout: Duration,
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
}

/// Circuit relay v2 limits. See [`crate::defaults`] for why each value is what it is.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub reservation_duration: Duration,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
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
}

/// A configuration value the relay cannot start with.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
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
            },
            idle_connection_timeout: defaults::IDLE_CONNECTION_TIMEOUT,
            relay: RelayLimits {
                max_reservations: defaults::MAX_RESERVATIONS,
                max_reservations_per_peer: defaults::MAX_RESERVATIONS_PER_PEER,
                reservation_duration: defaults::RESERVATION_DURATION,
                max_circuits: defaults::MAX_CIRCUITS,
                max_circuits_per_peer: defaults::MAX_CIRCUITS_PER_PEER,
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
            },
            metrics_addr: Some(SocketAddr::new(
                defaults::METRICS_IP,
                defaults::PORT + defaults::METRICS_PORT_OFFSET,
            )),
            drain_timeout: defaults::DRAIN_TIMEOUT,
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

/// Every environment variable the relay reads (the README's table documents each). An
/// unknown `DUSK_*` variable is reported as a likely typo.
pub const ENV_VARS: &[&str] = &[
    "DUSK_RELAY_PORT",
    "DUSK_RELAY_WS_PORT",
    "DUSK_RELAY_WSS_PORT",
    "DUSK_RELAY_LISTEN_IPS",
    "DUSK_RELAY_EXTERNAL_ADDR",
    "DUSK_RELAY_KEYPAIR",
    "DUSK_RELAY_TLS_CERT",
    "DUSK_RELAY_TLS_KEY",
    "DUSK_RELAY_TLS_HOSTNAMES",
    "DUSK_MAX_CONNECTIONS",
    "DUSK_RELAY_MAX_CONNECTIONS_PER_PEER",
    "DUSK_RELAY_MAX_PENDING_INCOMING",
    "DUSK_RELAY_IDLE_TIMEOUT_SECS",
    "DUSK_RELAY_MAX_RESERVATIONS",
    "DUSK_RELAY_MAX_RESERVATIONS_PER_PEER",
    "DUSK_RELAY_RESERVATION_DURATION_SECS",
    "DUSK_RELAY_MAX_CIRCUITS",
    "DUSK_RELAY_MAX_CIRCUITS_PER_PEER",
    "DUSK_RELAY_MAX_CIRCUIT_DURATION_SECS",
    "DUSK_RELAY_MAX_CIRCUIT_BYTES",
    "DUSK_RELAY_RESERVATION_RATE_PER_PEER",
    "DUSK_RELAY_RESERVATION_RATE_PER_IP",
    "DUSK_RELAY_CIRCUIT_RATE_PER_PEER",
    "DUSK_RELAY_CIRCUIT_RATE_PER_IP",
    "DUSK_RELAY_RENDEZVOUS_MIN_TTL_SECS",
    "DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS",
    "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_PEER",
    "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS",
    "DUSK_RELAY_METRICS_ADDR",
    "DUSK_RELAY_DRAIN_SECS",
    // Read by the binary before the configuration, to set up logging.
    "DUSK_RELAY_LOG_FORMAT",
];

/// The `DUSK_*` variables of the environment, with typed accessors that name the variable
/// in their errors.
struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    fn get(&self, var: &'static str) -> Option<&str> {
        self.values
            .get(var)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| invalid(var, raw, e.to_string())),
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
            return Err(invalid(var, raw, "must be at least 1".into()));
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
                .map_err(|_| invalid(var, raw, "not a port number (1-65535, or 0/off to disable)".into())),
            None if port == 0 => Ok(Some(0)),
            None => port.checked_add(offset).map(Some).ok_or_else(|| {
                invalid(
                    var,
                    "",
                    format!(
                        "unset, and DUSK_RELAY_PORT + {offset} is past 65535; set {var} explicitly (0 disables)"
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
                invalid(VAR, raw, "not an IP:port (e.g. 127.0.0.1:9001), or off".into())
            }),
            None if port == 0 => Ok(Some(SocketAddr::new(defaults::METRICS_IP, 0))),
            None => match port.checked_add(defaults::METRICS_PORT_OFFSET) {
                Some(metrics_port) => Ok(Some(SocketAddr::new(defaults::METRICS_IP, metrics_port))),
                None => Err(invalid(
                    VAR,
                    "",
                    format!(
                        "unset, and DUSK_RELAY_PORT + {} is past 65535; set {VAR} explicitly (off disables)",
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
                    .map_err(|e: T::Err| invalid(var, item, e.to_string()))
            })
            .collect()
    }
}

fn invalid(var: &'static str, value: &str, reason: String) -> ConfigError {
    ConfigError {
        var,
        value: value.to_owned(),
        reason,
    }
}

impl Config {
    /// Reads the process environment. Returns the config and the names of unknown
    /// `DUSK_*` variables, which the caller should warn about.
    pub fn from_env() -> Result<(Config, Vec<String>), ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Builds a config from `(name, value)` pairs, as [`Config::from_env`] does.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let values: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("DUSK_"))
            .collect();
        let unknown = values
            .keys()
            .filter(|name| !ENV_VARS.contains(&name.as_str()) && *name != "DUSK_RELAY_ADDR")
            .cloned()
            .collect();
        let vars = Vars { values };
        let d = Config::default();

        let port = vars.parse("DUSK_RELAY_PORT", d.port)?;
        let listen_ips: Vec<IpAddr> = vars.list("DUSK_RELAY_LISTEN_IPS", defaults::LISTEN_IPS)?;
        if listen_ips.is_empty() {
            return Err(invalid(
                "DUSK_RELAY_LISTEN_IPS",
                "",
                "needs at least one IP".into(),
            ));
        }
        let external_addrs = vars.list("DUSK_RELAY_EXTERNAL_ADDR", "")?;

        let cert = vars.get("DUSK_RELAY_TLS_CERT").map(PathBuf::from);
        let key = vars.get("DUSK_RELAY_TLS_KEY").map(PathBuf::from);
        let cert_and_key = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(invalid(
                    "DUSK_RELAY_TLS_KEY",
                    "",
                    format!(
                        "unset while DUSK_RELAY_TLS_CERT is {}; set both or neither",
                        cert.display()
                    ),
                ))
            }
            (None, Some(key)) => {
                return Err(invalid(
                    "DUSK_RELAY_TLS_CERT",
                    "",
                    format!(
                        "unset while DUSK_RELAY_TLS_KEY is {}; set both or neither",
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
            return Err(invalid(
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
        };
        if rendezvous.min_ttl_secs > rendezvous.max_ttl_secs {
            return Err(invalid(
                "DUSK_RELAY_RENDEZVOUS_MIN_TTL_SECS",
                &rendezvous.min_ttl_secs.to_string(),
                format!(
                    "above DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS ({})",
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
            },
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
                reservation_duration: Duration::from_secs(vars.positive(
                    "DUSK_RELAY_RESERVATION_DURATION_SECS",
                    d.relay.reservation_duration.as_secs(),
                )?),
                max_circuits: vars.positive("DUSK_RELAY_MAX_CIRCUITS", d.relay.max_circuits)?,
                max_circuits_per_peer: vars.positive(
                    "DUSK_RELAY_MAX_CIRCUITS_PER_PEER",
                    d.relay.max_circuits_per_peer,
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
            metrics_addr: vars.metrics_addr(port)?,
            drain_timeout: Duration::from_secs(
                vars.parse("DUSK_RELAY_DRAIN_SECS", d.drain_timeout.as_secs())?,
            ),
        };
        Ok((config, unknown))
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
