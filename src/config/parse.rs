//! Reading the merged layers into a [`Config`]: each value parsed and checked once,
//! every error naming the setting as the operator wrote it (flag, variable or file key).

use super::*;

/// The merged layers, with typed accessors whose errors name the setting the way the
/// operator wrote it (flag, variable, or file key).
pub(super) struct Vars<'a> {
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
            value: if var == Id::RendezvousStore || var == Id::Fleet {
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

    // The readers a row of `settings!` can name: each takes the field's default.

    pub(super) fn parse<T>(&self, var: Id, default: &T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + Clone,
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default.clone()),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| self.invalid(var, raw, e.to_string())),
        }
    }

    /// A count that must be at least 1.
    pub(super) fn positive<T>(&self, var: Id, default: &T) -> Result<T, ConfigError>
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

    /// A duration in whole seconds.
    pub(super) fn secs(&self, var: Id, default: &Duration) -> Result<Duration, ConfigError> {
        self.parse(var, &default.as_secs()).map(Duration::from_secs)
    }

    /// A duration in whole seconds, at least 1.
    pub(super) fn positive_secs(
        &self,
        var: Id,
        default: &Duration,
    ) -> Result<Duration, ConfigError> {
        self.positive(var, &default.as_secs())
            .map(Duration::from_secs)
    }

    /// A comma-separated list (a TOML array in the file layer).
    pub(super) fn items<T>(&self, var: Id, default: &[T]) -> Result<Vec<T>, ConfigError>
    where
        T: std::str::FromStr + Clone,
        T::Err: std::fmt::Display,
    {
        let Some(raw) = self.get(var) else {
            return Ok(default.to_vec());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|e: T::Err| self.invalid(var, item, e.to_string()))
            })
            .collect()
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

    /// Parses and validates merged layers: every one-field setting over its default,
    /// then the settings that depend on others, then the checks across settings.
    pub fn from_layers(layers: &Layers) -> Result<Config, ConfigError> {
        let vars = Vars { layers };
        let mut config = Config::default();
        config.read_fields(&vars)?;
        let port = config.port;
        config.ws_port = vars.listener_port(Id::WsPort, port, defaults::WS_PORT_OFFSET)?;
        config.wss_port = vars.listener_port(Id::WssPort, port, defaults::WSS_PORT_OFFSET)?;
        config.metrics_addr = vars.metrics_addr(port)?;
        config.tls.cert_and_key = vars.cert_and_key()?;
        // Empty is unset, as Compose passes `${VAR:-}`.
        config.data_dir = vars
            .get(Id::DataDir)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        config.tls.acme = vars.acme(&config)?;
        config.connection_limits.max_memory_bytes =
            match vars.parse(Id::MaxMemoryMib, &defaults::MAX_MEMORY_MIB)? {
                0 => None,
                n => Some(mib(n)),
            };
        config.relay.max_circuit_duration = vars.circuit_duration()?;
        if config.listen_ips.is_empty() {
            return Err(vars.invalid(Id::ListenIps, "", "needs at least one IP".into()));
        }
        vars.check_ttls(&config.rendezvous)?;
        config.fleet = vars.fleet()?;
        if let (Some(fleet), None) = (&config.fleet, vars.get(Id::RendezvousStore)) {
            config.rendezvous.store = RendezvousStore::Redis(fleet.redis.clone());
        }
        Ok(config)
    }
}

impl Vars<'_> {
    /// The WSS certificate and key: both or neither.
    fn cert_and_key(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        let cert = self.get(Id::TlsCert).map(PathBuf::from);
        let key = self.get(Id::TlsKey).map(PathBuf::from);
        let (missing, present, path) = match (cert, key) {
            (Some(cert), Some(key)) => return Ok(Some((cert, key))),
            (None, None) => return Ok(None),
            (Some(cert), None) => (Id::TlsKey, Id::TlsCert, cert),
            (None, Some(key)) => (Id::TlsCert, Id::TlsKey, key),
        };
        Err(self.invalid(
            missing,
            "",
            format!(
                "unset while {} is {}; set both or neither",
                self.name(present),
                path.display()
            ),
        ))
    }

    /// ACME: the domains turn it on; the other ACME settings alone are a mistake worth
    /// stopping for, and so are configured certificate files or WSS off beside it.
    fn acme(&self, config: &Config) -> Result<Option<AcmeConfig>, ConfigError> {
        // Empty is unset, as Compose passes `${VAR:-}`.
        let set = |id: Id| self.get(id).filter(|value| !value.is_empty());
        let others = [
            Id::AcmeDirectory,
            Id::AcmeEmail,
            Id::AcmeCa,
            Id::AcmeHttpPort,
        ];
        let Some(raw_domains) = set(Id::AcmeDomains) else {
            if let Some(id) = others.into_iter().find(|id| set(*id).is_some()) {
                let raw = set(id).unwrap_or_default();
                return Err(self.invalid(
                    id,
                    raw,
                    format!("has no effect without {}", self.name(Id::AcmeDomains)),
                ));
            }
            return Ok(None);
        };
        if config.tls.cert_and_key.is_some() {
            return Err(self.invalid(
                Id::AcmeDomains,
                raw_domains,
                format!(
                    "ACME obtains the WSS certificate itself; unset {} and {}, or unset this to serve those files",
                    self.name(Id::TlsCert),
                    self.name(Id::TlsKey)
                ),
            ));
        }
        if config.wss_port.is_none() {
            return Err(self.invalid(
                Id::AcmeDomains,
                raw_domains,
                format!(
                    "the certificate is for the WSS listener, which {} turns off",
                    self.name(Id::WssPort)
                ),
            ));
        }
        let mut domains = Vec::new();
        for item in raw_domains
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            let domain = acme_identifier(item)
                .map_err(|reason| self.invalid(Id::AcmeDomains, item, reason))?;
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        if domains.is_empty() {
            return Err(self.invalid(
                Id::AcmeDomains,
                raw_domains,
                "needs at least one name, e.g. relay.example.com".into(),
            ));
        }
        let directory = match set(Id::AcmeDirectory) {
            None => defaults::ACME_DIRECTORY.to_owned(),
            Some("letsencrypt") => defaults::ACME_DIRECTORY.to_owned(),
            Some("letsencrypt-staging") => defaults::ACME_DIRECTORY_STAGING.to_owned(),
            Some(raw) if raw.starts_with("https://") && raw.len() > "https://".len() => {
                raw.to_owned()
            }
            Some(raw) => {
                return Err(self.invalid(
                    Id::AcmeDirectory,
                    raw,
                    "expected an https:// directory URL, letsencrypt or letsencrypt-staging".into(),
                ))
            }
        };
        let email = match set(Id::AcmeEmail) {
            None => None,
            Some(raw) => {
                let address = raw.strip_prefix("mailto:").unwrap_or(raw);
                let plausible = address
                    .split_once('@')
                    .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
                    && !address.contains(|c: char| c.is_whitespace() || c == ',');
                if !plausible {
                    return Err(self.invalid(
                        Id::AcmeEmail,
                        raw,
                        "expected one e-mail address, e.g. ops@example.com".into(),
                    ));
                }
                Some(address.to_owned())
            }
        };
        let ca = set(Id::AcmeCa).map(PathBuf::from);
        let http_port = match set(Id::AcmeHttpPort) {
            None | Some("0") | Some("off") => None,
            Some(raw) => Some(raw.parse::<u16>().map_err(|_| {
                self.invalid(
                    Id::AcmeHttpPort,
                    raw,
                    "not a port number (1-65535, or off)".into(),
                )
            })?),
        };
        Ok(Some(AcmeConfig {
            domains,
            directory,
            email,
            ca,
            http_port,
        }))
    }

    /// Fleet mode: the Redis URL turns it on and needs the mesh address and key; the
    /// mesh settings alone are a mistake worth stopping for.
    fn fleet(&self) -> Result<Option<FleetConfig>, ConfigError> {
        let mesh = [Id::MeshAddr, Id::MeshAnnounceAddr, Id::MeshKeyFile];
        let Some(redis) = self.get(Id::Fleet) else {
            if let Some(id) = mesh.into_iter().find(|id| self.get(*id).is_some()) {
                let raw = self.get(id).unwrap_or_default();
                return Err(self.invalid(
                    id,
                    raw,
                    format!("has no effect without {}", self.name(Id::Fleet)),
                ));
            }
            return Ok(None);
        };
        match redis.parse::<RendezvousStore>() {
            Ok(RendezvousStore::Redis(_)) => {}
            Ok(RendezvousStore::Memory) => {
                return Err(self.invalid(
                    Id::Fleet,
                    redis,
                    "expected a redis://host:port[/db] URL".into(),
                ))
            }
            Err(reason) => return Err(self.invalid(Id::Fleet, redis, reason)),
        }
        let required = |id: Id, what: &str| {
            self.get(id).ok_or_else(|| {
                self.invalid(
                    id,
                    "",
                    format!(
                        "unset, and fleet mode ({}) needs {what}",
                        self.name(Id::Fleet)
                    ),
                )
            })
        };
        let raw = required(Id::MeshAddr, "this node's mesh listener (IP:port)")?;
        let mesh_addr = raw.parse().map_err(|_| {
            self.invalid(
                Id::MeshAddr,
                raw,
                "not an IP:port (e.g. 10.0.0.5:4002)".into(),
            )
        })?;
        let mesh_key_file = PathBuf::from(required(Id::MeshKeyFile, "the fleet secret's file")?);
        let mesh_announce = match self.get(Id::MeshAnnounceAddr) {
            None => None,
            Some(raw) => {
                crate::fleet::announce_multiaddr(raw)
                    .map_err(|reason| self.invalid(Id::MeshAnnounceAddr, raw, reason))?;
                Some(raw.to_owned())
            }
        };
        Ok(Some(FleetConfig {
            redis: redis.to_owned(),
            mesh_addr,
            mesh_announce,
            mesh_key_file,
        }))
    }

    /// The circuit lifetime: 0 means no limit. libp2p panics above `u32::MAX` seconds
    /// and closes circuits at once on 0, hence both rules.
    fn circuit_duration(&self) -> Result<Option<Duration>, ConfigError> {
        const VAR: Id = Id::MaxCircuitDurationSecs;
        let secs: u64 = self.parse(VAR, &defaults::MAX_CIRCUIT_DURATION.as_secs())?;
        if secs > u64::from(u32::MAX) {
            return Err(self.invalid(
                VAR,
                &secs.to_string(),
                format!("at most {} (0 = no limit)", u32::MAX),
            ));
        }
        Ok((secs > 0).then(|| Duration::from_secs(secs)))
    }

    /// Registration TTL bounds: at most a year, and the minimum not above the maximum.
    fn check_ttls(&self, rendezvous: &RendezvousLimits) -> Result<(), ConfigError> {
        if rendezvous.max_ttl_secs > defaults::RENDEZVOUS_TTL_CEILING_SECS {
            return Err(self.invalid(
                Id::RendezvousMaxTtlSecs,
                &rendezvous.max_ttl_secs.to_string(),
                format!(
                    "at most {} (one year)",
                    defaults::RENDEZVOUS_TTL_CEILING_SECS
                ),
            ));
        }
        if rendezvous.min_ttl_secs > rendezvous.max_ttl_secs {
            return Err(self.invalid(
                Id::RendezvousMinTtlSecs,
                &rendezvous.min_ttl_secs.to_string(),
                format!(
                    "above {} ({})",
                    self.name(Id::RendezvousMaxTtlSecs),
                    rendezvous.max_ttl_secs
                ),
            ));
        }
        Ok(())
    }
}

/// A name ACME can validate over TLS-ALPN-01 or HTTP-01: a DNS name (lower-cased) or an
/// IP address. Wildcards need DNS-01, which the relay does not do.
fn acme_identifier(item: &str) -> Result<String, String> {
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if item.contains('*') {
        return Err(
            "wildcards need the DNS-01 challenge, which the relay does not answer; list each name"
                .into(),
        );
    }
    let name = item.trim_end_matches('.').to_ascii_lowercase();
    match rustls_pki_types::DnsName::try_from(name.as_str()) {
        Ok(_) if name.contains('.') => Ok(name),
        _ => Err("not a DNS name with a domain (relay.example.com) or an IP address".into()),
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
    fn the_data_dir_follows_the_keypair_unless_set() {
        let keypair = (Id::Keypair.env(), "/run/secrets/keypair");
        let (config, _) = Config::from_vars(vars(&[keypair])).unwrap();
        assert_eq!(config.data_dir(), PathBuf::from("/run/secrets"));
        let (config, _) = Config::from_vars(vars(&[keypair, (Id::DataDir.env(), "")])).unwrap();
        assert_eq!(config.data_dir(), PathBuf::from("/run/secrets"));
        let set = (Id::DataDir.env(), "/data/dusk-relay");
        let (config, _) = Config::from_vars(vars(&[keypair, set])).unwrap();
        assert_eq!(config.data_dir(), PathBuf::from("/data/dusk-relay"));
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
        let a = Config::from_vars(vars(&[(Id::Port.env(), "4001")]))
            .unwrap()
            .0;
        let b = Config::from_vars(vars(&[(Id::Port.env(), "4002")]))
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
        let config =
            Config::from_vars(vars(&[(Id::WsPort.env(), "0"), (Id::WssPort.env(), "off")]))
                .unwrap()
                .0;
        assert_eq!((config.ws_port, config.wss_port), (None, None));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            (Id::Port.env(), "70000"),
            (Id::MaxConnections.env(), "0"),
            (Id::ExternalAddr.env(), "not-a-multiaddr"),
            (Id::ListenIps.env(), "1.2.3"),
            (Id::MaxCircuitDurationSecs.env(), "99999999999"),
            (Id::RendezvousMaxTtlSecs.env(), "18446744073709551615"),
            (Id::RendezvousMaxRecordBytes.env(), "0"),
            (Id::ProxyProtocolFrom.env(), "10.0.0.0/33"),
            (Id::ProxyProtocolFrom.env(), "10.0.0.0/8,balancer.internal"),
        ] {
            let err = Config::from_vars(vars(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = Config::from_vars(vars(&[(Id::Port.env(), "60000")])).unwrap_err();
        assert_eq!(err.var, Id::WsPort.env());
        let err = Config::from_vars(vars(&[(Id::TlsCert.env(), "/c.pem")])).unwrap_err();
        assert_eq!(err.var, Id::TlsKey.env());
    }

    #[test]
    fn acme_is_off_unless_domains_are_given() {
        let config = Config::from_vars(vars(&[])).unwrap().0;
        assert_eq!(config.tls.acme, None);
        // What docker-compose.yml passes when the operator sets none of them.
        let empty = [
            Id::AcmeDomains,
            Id::AcmeDirectory,
            Id::AcmeEmail,
            Id::AcmeCa,
            Id::AcmeHttpPort,
        ]
        .map(|id| (id.env(), ""));
        let config = Config::from_vars(vars(&empty)).unwrap().0;
        assert_eq!(config.tls.acme, None);
        let config = Config::from_vars(vars(&[
            (
                Id::AcmeDomains.env(),
                "Relay.Example.com, 192.0.2.7,relay.example.com",
            ),
            (Id::AcmeDirectory.env(), "letsencrypt-staging"),
            (Id::AcmeEmail.env(), "mailto:ops@example.com"),
            (Id::AcmeHttpPort.env(), "80"),
        ]))
        .unwrap()
        .0;
        let acme = config.tls.acme.unwrap();
        assert_eq!(acme.domains, ["relay.example.com", "192.0.2.7"]);
        assert_eq!(acme.directory, defaults::ACME_DIRECTORY_STAGING);
        assert_eq!(acme.email.as_deref(), Some("ops@example.com"));
        assert_eq!(acme.http_port, Some(80));
        let acme = Config::from_vars(vars(&[(Id::AcmeDomains.env(), "relay.example.com")]))
            .unwrap()
            .0
            .tls
            .acme
            .unwrap();
        assert_eq!(acme.directory, defaults::ACME_DIRECTORY);
        assert_eq!(acme.http_port, None);
    }

    #[test]
    fn bad_acme_settings_name_the_setting() {
        let domains = (Id::AcmeDomains.env(), "relay.example.com");
        for (pairs, var) in [
            (
                vec![(Id::AcmeDomains.env(), "*.example.com")],
                Id::AcmeDomains,
            ),
            (vec![(Id::AcmeDomains.env(), "relay")], Id::AcmeDomains),
            (vec![(Id::AcmeDomains.env(), " , ")], Id::AcmeDomains),
            (
                vec![domains, (Id::AcmeDirectory.env(), "http://ca.example/dir")],
                Id::AcmeDirectory,
            ),
            (vec![domains, (Id::AcmeEmail.env(), "ops")], Id::AcmeEmail),
            (
                vec![domains, (Id::AcmeHttpPort.env(), "70000")],
                Id::AcmeHttpPort,
            ),
            (
                vec![(Id::AcmeEmail.env(), "ops@example.com")],
                Id::AcmeEmail,
            ),
            (
                vec![
                    domains,
                    (Id::TlsCert.env(), "/c.pem"),
                    (Id::TlsKey.env(), "/k.pem"),
                ],
                Id::AcmeDomains,
            ),
            (vec![domains, (Id::WssPort.env(), "off")], Id::AcmeDomains),
        ] {
            let err = Config::from_vars(vars(&pairs)).unwrap_err();
            assert_eq!(err.var, var.env(), "{pairs:?}: {err}");
            assert!(err.to_string().contains(var.env()), "{err}");
        }
    }

    #[test]
    fn proxy_protocol_is_off_unless_ranges_are_given() {
        let config = Config::from_vars(vars(&[])).unwrap().0;
        assert!(config.proxy_protocol_from.is_empty());
        let config = Config::from_vars(vars(&[(
            Id::ProxyProtocolFrom.env(),
            "10.0.0.0/8, 192.0.2.7,2001:db8::/32",
        )]))
        .unwrap()
        .0;
        let ranges: Vec<String> = config
            .proxy_protocol_from
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(ranges, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
    }

    #[test]
    fn circuit_duration_zero_means_unlimited() {
        let config = Config::from_vars(vars(&[(Id::MaxCircuitDurationSecs.env(), "0")]))
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
