//! Reading the merged layers into a [`Config`]: each value parsed and checked once,
//! every error naming the setting as the operator wrote it (flag, variable or file key).

use super::*;

/// The merged layers, with typed accessors whose errors name the setting the way the
/// operator wrote it (flag, variable, or file key).
struct Vars<'a> {
    layers: &'a Layers,
}

impl Vars<'_> {
    fn get(&self, id: Id) -> Option<&str> {
        self.layers.get(id.env()).map(|v| v.text.trim())
    }

    fn invalid(&self, var: Id, value: &str, reason: String) -> ConfigError {
        ConfigError {
            var: var.env(),
            key: self.name(var),
            // A store URL may carry a password: never print it back.
            value: if var == Id::RendezvousStore {
                crate::rendezvous::redis::redact(value)
            } else {
                crate::rendezvous::redis::redact_urls_in(value)
            },
            reason,
        }
    }

    /// The setting as the operator wrote it (flag, variable or file key).
    fn name(&self, var: Id) -> String {
        Named {
            setting: var.setting(),
            origin: &self.layers.origin(var.env()),
        }
        .to_string()
    }

    fn parse<T: std::str::FromStr>(&self, var: Id, default: T) -> Result<T, ConfigError>
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
    fn positive<T>(&self, var: Id, default: T) -> Result<T, ConfigError>
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
    fn listener_port(&self, var: Id, port: u16, offset: u16) -> Result<Option<u16>, ConfigError> {
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
                        self.name(Id::Port)
                    ),
                )
            }),
        }
    }

    /// The metrics endpoint: `off` or `0` disables, unset derives the port from the
    /// main port on loopback.
    fn metrics_addr(&self, port: u16) -> Result<Option<SocketAddr>, ConfigError> {
        const VAR: Id = Id::MetricsAddr;
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
                        self.name(Id::Port),
                        defaults::METRICS_PORT_OFFSET
                    ),
                )),
            },
        }
    }

    fn list<T: std::str::FromStr>(&self, var: Id, default: &str) -> Result<Vec<T>, ConfigError>
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

        let port = vars.parse(Id::Port, d.port)?;
        let listen_ips: Vec<IpAddr> = vars.list(Id::ListenIps, defaults::LISTEN_IPS)?;
        if listen_ips.is_empty() {
            return Err(vars.invalid(Id::ListenIps, "", "needs at least one IP".into()));
        }
        let external_addrs = vars.list(Id::ExternalAddr, "")?;

        let cert = vars.get(Id::TlsCert).map(PathBuf::from);
        let key = vars.get(Id::TlsKey).map(PathBuf::from);
        let cert_and_key = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(vars.invalid(
                    Id::TlsKey,
                    "",
                    format!(
                        "unset while {} is {}; set both or neither",
                        vars.name(Id::TlsCert),
                        cert.display()
                    ),
                ))
            }
            (None, Some(key)) => {
                return Err(vars.invalid(
                    Id::TlsCert,
                    "",
                    format!(
                        "unset while {} is {}; set both or neither",
                        vars.name(Id::TlsKey),
                        key.display()
                    ),
                ))
            }
        };

        let circuit_duration_secs: u64 = vars.parse(
            Id::MaxCircuitDurationSecs,
            defaults::MAX_CIRCUIT_DURATION.as_secs(),
        )?;
        // libp2p panics above u32::MAX seconds; 0 there closes circuits at once, so 0
        // here means "no limit" instead.
        if circuit_duration_secs > u64::from(u32::MAX) {
            return Err(vars.invalid(
                Id::MaxCircuitDurationSecs,
                &circuit_duration_secs.to_string(),
                format!("at most {} (0 = no limit)", u32::MAX),
            ));
        }
        let rendezvous = RendezvousLimits {
            min_ttl_secs: vars.positive(Id::RendezvousMinTtlSecs, d.rendezvous.min_ttl_secs)?,
            max_ttl_secs: vars.positive(Id::RendezvousMaxTtlSecs, d.rendezvous.max_ttl_secs)?,
            max_registrations_per_peer: vars.positive(
                Id::RendezvousMaxRegistrationsPerPeer,
                d.rendezvous.max_registrations_per_peer,
            )?,
            max_registrations: vars.positive(
                Id::RendezvousMaxRegistrations,
                d.rendezvous.max_registrations,
            )?,
            max_registrations_per_ip: vars.parse(
                Id::RendezvousMaxRegistrationsPerIp,
                d.rendezvous.max_registrations_per_ip,
            )?,
            max_registrations_per_ipv6_64: vars.parse(
                Id::RendezvousMaxRegistrationsPerIpv6Prefix64,
                d.rendezvous.max_registrations_per_ipv6_64,
            )?,
            max_registrations_per_ipv6_48: vars.parse(
                Id::RendezvousMaxRegistrationsPerIpv6Prefix48,
                d.rendezvous.max_registrations_per_ipv6_48,
            )?,
            register_rate_per_peer: vars.parse(
                Id::RendezvousRegisterRatePerPeer,
                d.rendezvous.register_rate_per_peer,
            )?,
            register_rate_per_ip: vars.parse(
                Id::RendezvousRegisterRatePerIp,
                d.rendezvous.register_rate_per_ip,
            )?,
            max_record_bytes: vars
                .positive(Id::RendezvousMaxRecordBytes, d.rendezvous.max_record_bytes)?,
            max_record_addrs: vars
                .positive(Id::RendezvousMaxRecordAddrs, d.rendezvous.max_record_addrs)?,
            max_bytes_per_peer: vars.positive(
                Id::RendezvousMaxBytesPerPeer,
                d.rendezvous.max_bytes_per_peer,
            )?,
            max_bytes: vars.positive(Id::RendezvousMaxBytes, d.rendezvous.max_bytes)?,
            allow_discover_all: vars.parse(
                Id::RendezvousAllowDiscoverAll,
                d.rendezvous.allow_discover_all,
            )?,
            allow_direct_addresses: vars.parse(
                Id::RendezvousAllowDirectAddrs,
                d.rendezvous.allow_direct_addresses,
            )?,
            store: vars.parse(Id::RendezvousStore, d.rendezvous.store.clone())?,
        };
        if rendezvous.max_ttl_secs > defaults::RENDEZVOUS_TTL_CEILING_SECS {
            return Err(vars.invalid(
                Id::RendezvousMaxTtlSecs,
                &rendezvous.max_ttl_secs.to_string(),
                format!(
                    "at most {} (one year)",
                    defaults::RENDEZVOUS_TTL_CEILING_SECS
                ),
            ));
        }
        if rendezvous.min_ttl_secs > rendezvous.max_ttl_secs {
            return Err(vars.invalid(
                Id::RendezvousMinTtlSecs,
                &rendezvous.min_ttl_secs.to_string(),
                format!(
                    "above {} ({})",
                    vars.name(Id::RendezvousMaxTtlSecs),
                    rendezvous.max_ttl_secs
                ),
            ));
        }

        let config = Config {
            port,
            ws_port: vars.listener_port(Id::WsPort, port, defaults::WS_PORT_OFFSET)?,
            wss_port: vars.listener_port(Id::WssPort, port, defaults::WSS_PORT_OFFSET)?,
            listen_ips,
            external_addrs,
            keypair_path: vars
                .get(Id::Keypair)
                .map(PathBuf::from)
                .unwrap_or(d.keypair_path),
            tls: TlsConfig {
                cert_and_key,
                hostnames: vars.list(Id::TlsHostnames, "")?,
            },
            connection_limits: ConnectionLimits {
                max_established: vars
                    .positive(Id::MaxConnections, d.connection_limits.max_established)?,
                max_established_per_peer: vars.positive(
                    Id::MaxConnectionsPerPeer,
                    d.connection_limits.max_established_per_peer,
                )?,
                max_pending_incoming: vars.positive(
                    Id::MaxPendingIncoming,
                    d.connection_limits.max_pending_incoming,
                )?,
                max_per_ip: vars.parse(Id::MaxConnectionsPerIp, d.connection_limits.max_per_ip)?,
                max_per_ipv6_64: vars.parse(
                    Id::MaxConnectionsPerIpv6Prefix64,
                    d.connection_limits.max_per_ipv6_64,
                )?,
                max_per_ipv6_48: vars.parse(
                    Id::MaxConnectionsPerIpv6Prefix48,
                    d.connection_limits.max_per_ipv6_48,
                )?,
                max_pending_per_ip: vars
                    .parse(Id::MaxPendingPerIp, d.connection_limits.max_pending_per_ip)?,
                max_pending_per_ipv6_64: vars.parse(
                    Id::MaxPendingPerIpv6Prefix64,
                    d.connection_limits.max_pending_per_ipv6_64,
                )?,
                max_pending_per_ipv6_48: vars.parse(
                    Id::MaxPendingPerIpv6Prefix48,
                    d.connection_limits.max_pending_per_ipv6_48,
                )?,
                max_memory_bytes: match vars.parse(Id::MaxMemoryMib, defaults::MAX_MEMORY_MIB)? {
                    0 => None,
                    n => Some(mib(n)),
                },
                max_negotiating_streams: vars.positive(
                    Id::MaxNegotiatingStreams,
                    d.connection_limits.max_negotiating_streams,
                )?,
            },
            handshake_timeout: Duration::from_secs(
                vars.positive(Id::HandshakeTimeoutSecs, d.handshake_timeout.as_secs())?,
            ),
            idle_connection_timeout: Duration::from_secs(
                vars.positive(Id::IdleTimeoutSecs, d.idle_connection_timeout.as_secs())?,
            ),
            relay: RelayLimits {
                max_reservations: vars.positive(Id::MaxReservations, d.relay.max_reservations)?,
                max_reservations_per_peer: vars.positive(
                    Id::MaxReservationsPerPeer,
                    d.relay.max_reservations_per_peer,
                )?,
                max_reservations_per_ip: vars
                    .parse(Id::MaxReservationsPerIp, d.relay.max_reservations_per_ip)?,
                max_reservations_per_ipv6_64: vars.parse(
                    Id::MaxReservationsPerIpv6Prefix64,
                    d.relay.max_reservations_per_ipv6_64,
                )?,
                max_reservations_per_ipv6_48: vars.parse(
                    Id::MaxReservationsPerIpv6Prefix48,
                    d.relay.max_reservations_per_ipv6_48,
                )?,
                reservation_duration: Duration::from_secs(vars.positive(
                    Id::ReservationDurationSecs,
                    d.relay.reservation_duration.as_secs(),
                )?),
                max_circuits: vars.positive(Id::MaxCircuits, d.relay.max_circuits)?,
                max_circuits_per_peer: vars
                    .positive(Id::MaxCircuitsPerPeer, d.relay.max_circuits_per_peer)?,
                max_circuits_per_ip: vars
                    .parse(Id::MaxCircuitsPerIp, d.relay.max_circuits_per_ip)?,
                max_circuits_per_ipv6_64: vars.parse(
                    Id::MaxCircuitsPerIpv6Prefix64,
                    d.relay.max_circuits_per_ipv6_64,
                )?,
                max_circuits_per_ipv6_48: vars.parse(
                    Id::MaxCircuitsPerIpv6Prefix48,
                    d.relay.max_circuits_per_ipv6_48,
                )?,
                max_circuit_duration: (circuit_duration_secs > 0)
                    .then(|| Duration::from_secs(circuit_duration_secs)),
                max_circuit_bytes: vars.parse(Id::MaxCircuitBytes, d.relay.max_circuit_bytes)?,
                reservation_rate_per_peer: vars.parse(
                    Id::ReservationRatePerPeer,
                    d.relay.reservation_rate_per_peer,
                )?,
                reservation_rate_per_ip: vars
                    .parse(Id::ReservationRatePerIp, d.relay.reservation_rate_per_ip)?,
                circuit_rate_per_peer: vars
                    .parse(Id::CircuitRatePerPeer, d.relay.circuit_rate_per_peer)?,
                circuit_rate_per_ip: vars
                    .parse(Id::CircuitRatePerIp, d.relay.circuit_rate_per_ip)?,
            },
            rendezvous,
            bandwidth: BandwidthLimits {
                circuit_bytes_per_sec: vars
                    .parse(Id::CircuitBytesPerSec, d.bandwidth.circuit_bytes_per_sec)?,
                peer_bytes_per_sec: vars
                    .parse(Id::PeerBytesPerSec, d.bandwidth.peer_bytes_per_sec)?,
                total_bytes_per_sec: vars
                    .parse(Id::TotalBytesPerSec, d.bandwidth.total_bytes_per_sec)?,
                exempt: vars.list(Id::BandwidthExempt, "")?,
            },
            access: AccessList {
                allow: vars.list(Id::Allow, "")?,
                deny: vars.list(Id::Deny, "")?,
            },
            metrics_addr: vars.metrics_addr(port)?,
            drain_timeout: Duration::from_secs(
                vars.parse(Id::DrainSecs, d.drain_timeout.as_secs())?,
            ),
            log_format: vars.parse(Id::LogFormat, d.log_format)?,
        };
        Ok(config)
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
