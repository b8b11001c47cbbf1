//! The effective configuration printed back: `--print-config` (a file the relay accepts
//! as it is) and the defaults `--help` shows. Every setting has an arm in
//! `Config::value_of`, so a setting that cannot be printed does not compile.

use super::*;

impl Config {
    /// The effective configuration as a config file: every key, in [`settings::SETTINGS`]
    /// order, so `--print-config > relay.toml` is a file the relay accepts as it is.
    /// Certificate and identity *paths* are printed; no key material is.
    pub fn to_toml(&self) -> String {
        let mut root = toml::Table::new();
        for setting in settings::SETTINGS {
            let Some(value) = self.value_of(setting.id) else {
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
    pub fn value_text(&self, id: Id) -> Option<String> {
        Some(match self.value_of(id)? {
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

    /// One setting's effective value; `None` where unset (a certificate path, an empty
    /// optional list). The settings that are one field print from their row in
    /// `settings!`; the others are here.
    fn value_of(&self, id: Id) -> Option<toml::Value> {
        use toml::Value;
        let port = |p: Option<u16>| match p {
            Some(p) => Value::Integer(p.into()),
            None => Value::String("off".into()),
        };
        let path = |p: &Path| Value::String(p.display().to_string());
        match id {
            Id::WsPort => Some(port(self.ws_port)),
            Id::WssPort => Some(port(self.wss_port)),
            Id::MetricsAddr => Some(Value::String(match self.metrics_addr {
                Some(addr) => addr.to_string(),
                None => "off".into(),
            })),
            Id::DataDir => Some(path(&self.data_dir())),
            Id::TlsCert => Some(path(&self.tls.cert_and_key.as_ref()?.0)),
            Id::TlsKey => Some(path(&self.tls.cert_and_key.as_ref()?.1)),
            Id::ExternalAddr if self.external_addrs.is_empty() => None,
            Id::TlsHostnames if self.tls.hostnames.is_empty() => None,
            Id::MaxMemoryMib => Some(
                self.connection_limits
                    .max_memory_bytes
                    .map_or(0, |b| b / (1024 * 1024))
                    .to_toml(),
            ),
            Id::MaxCircuitDurationSecs => Some(
                self.relay
                    .max_circuit_duration
                    .unwrap_or(Duration::ZERO)
                    .to_toml(),
            ),
            Id::Fleet => Some(Value::String(crate::rendezvous::redis::redact(
                &self.fleet.as_ref()?.redis,
            ))),
            Id::MeshAddr => Some(Value::String(self.fleet.as_ref()?.mesh_addr.to_string())),
            Id::MeshAnnounceAddr => {
                Some(Value::String(self.fleet.as_ref()?.mesh_announce.clone()?))
            }
            Id::MeshKeyFile => Some(path(&self.fleet.as_ref()?.mesh_key_file)),
            Id::AcmeDomains => Some(Value::Array(
                self.tls
                    .acme
                    .as_ref()?
                    .domains
                    .iter()
                    .map(|d| Value::String(d.clone()))
                    .collect(),
            )),
            Id::AcmeDirectory => Some(Value::String(self.tls.acme.as_ref()?.directory.clone())),
            Id::AcmeEmail => Some(Value::String(self.tls.acme.as_ref()?.email.clone()?)),
            Id::AcmeCa => Some(path(self.tls.acme.as_ref()?.ca.as_ref()?)),
            Id::AcmeHttpPort => Some(port(self.tls.acme.as_ref()?.http_port)),
            _ => self.field_value(id),
        }
    }
}

/// A field's value as `--print-config` writes it.
pub(super) trait ToToml {
    fn to_toml(&self) -> toml::Value;
}

macro_rules! integers_to_toml {
    ($($int:ty),*) => {$(
        impl ToToml for $int {
            fn to_toml(&self) -> toml::Value {
                toml::Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
integers_to_toml!(u16, u32, u64, usize);

impl ToToml for bool {
    fn to_toml(&self) -> toml::Value {
        toml::Value::Boolean(*self)
    }
}

/// Whole seconds, as the `*_secs` settings take them.
impl ToToml for Duration {
    fn to_toml(&self) -> toml::Value {
        self.as_secs().to_toml()
    }
}

impl ToToml for PathBuf {
    fn to_toml(&self) -> toml::Value {
        toml::Value::String(self.display().to_string())
    }
}

impl ToToml for LogFormat {
    fn to_toml(&self) -> toml::Value {
        toml::Value::String(self.as_str().into())
    }
}

/// A Redis URL may carry a password: printed redacted.
impl ToToml for RendezvousStore {
    fn to_toml(&self) -> toml::Value {
        toml::Value::String(match self {
            RendezvousStore::Memory => "memory".into(),
            RendezvousStore::Redis(url) => crate::rendezvous::redis::redact(url),
        })
    }
}

/// A list: IPs, multiaddrs, peer ids, CIDR ranges, names.
impl<T: std::fmt::Display> ToToml for Vec<T> {
    fn to_toml(&self) -> toml::Value {
        toml::Value::Array(
            self.iter()
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each setting prints: from its row in `settings!`, or from an arm of
    /// `Config::value_of` (a row without a field that `value_of` forgot prints nothing).
    #[test]
    fn every_setting_has_a_printed_value() {
        let mut config = Config::default();
        config.tls.cert_and_key = Some(("/c.pem".into(), "/k.pem".into()));
        config.tls.hostnames = vec!["relay.example".into()];
        config.external_addrs = vec!["/dns4/relay.example/tcp/4001".parse().unwrap()];
        config.fleet = Some(crate::config::FleetConfig {
            redis: "redis://valkey:6379/0".into(),
            mesh_addr: "10.0.0.5:4002".parse().unwrap(),
            mesh_announce: Some("relay-2:4002".into()),
            mesh_key_file: "/fleet.key".into(),
        });
        // Not a config the relay accepts (ACME beside files), but every row prints.
        config.tls.acme = Some(crate::config::AcmeConfig {
            domains: vec!["relay.example.com".into()],
            directory: crate::config::defaults::ACME_DIRECTORY.into(),
            email: Some("ops@example.com".into()),
            ca: Some("/ca.pem".into()),
            http_port: Some(80),
        });
        for setting in settings::SETTINGS {
            assert!(
                config.value_of(setting.id).is_some(),
                "{} has no printed value",
                setting.env
            );
        }
    }
}
