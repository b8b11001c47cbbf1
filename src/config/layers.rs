//! Where each configuration value comes from: defaults < TOML file < `DUSK_*`
//! environment variables < command-line flags. The layers are merged into raw strings by
//! each setting's names ([`super::settings`]); [`crate::config`] parses and validates
//! them once, naming the layer a bad value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::settings::{by_env, Setting, CONFIG_ENV, SETTINGS};

/// Set by older deployments of the original relay and ignored without a warning.
const TOLERATED_ENV: &[&str] = &["DUSK_RELAY_ADDR"];

/// The layer a value came from, so an error can say where to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env,
    Flag,
}

/// A setting's raw text and where it came from.
#[derive(Debug, Clone)]
pub struct RawValue {
    pub text: String,
    pub origin: Origin,
}

/// How the operator wrote this setting, for error messages: `--port`,
/// `relay.max_circuits in /etc/dusk-relay.toml`, `DUSK_RELAY_PORT`.
pub struct Named<'a> {
    pub setting: &'a Setting,
    pub origin: &'a Origin,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Flag => write!(f, "--{}", self.setting.flag()),
            Origin::Env => f.write_str(self.setting.env),
            Origin::File(path) => write!(f, "{} in {}", self.setting.key, path.display()),
            Origin::Default => write!(
                f,
                "{} (unset: {}, --{}, or {} in the config file)",
                self.setting.env,
                self.setting.env,
                self.setting.flag(),
                self.setting.key
            ),
        }
    }
}

/// A config file that cannot be used: unreadable, not TOML, or with a key the relay
/// does not know.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("config file {}: unknown key {key:?} (see deploy/dusk-relay.toml for every key)", path.display())]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {}: {key} = {value}: {reason}", path.display())]
    BadValue {
        path: PathBuf,
        key: String,
        value: String,
        reason: &'static str,
    },
}

/// The merged layers: for each setting's environment variable, its winning raw value.
#[derive(Debug, Default)]
pub struct Layers {
    values: BTreeMap<&'static str, RawValue>,
    /// `DUSK_*` variables no setting reads: probably typos, worth a warning.
    pub unknown_env: Vec<String>,
}

impl Layers {
    /// The winning value of a setting, if any layer set it to something non-empty.
    pub fn get(&self, env: &str) -> Option<&RawValue> {
        self.values.get(env).filter(|v| !v.text.trim().is_empty())
    }

    /// Where a setting's value came from; `Default` if no layer set it.
    pub fn origin(&self, env: &str) -> Origin {
        self.get(env)
            .map(|v| v.origin.clone())
            .unwrap_or(Origin::Default)
    }

    fn set(&mut self, env: &'static str, text: String, origin: Origin) {
        self.values.insert(env, RawValue { text, origin });
    }

    /// The environment layer: every `DUSK_*` variable that names a setting.
    pub fn add_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        for (name, value) in vars {
            if !name.starts_with("DUSK_") {
                continue;
            }
            match by_env(&name) {
                Some(setting) => self.set(setting.env, value, Origin::Env),
                None if name == CONFIG_ENV || TOLERATED_ENV.contains(&name.as_str()) => {}
                None => self.unknown_env.push(name),
            }
        }
    }

    /// The flag layer: `(environment variable, value)` pairs from the command line.
    pub fn add_flags(&mut self, flags: impl IntoIterator<Item = (&'static str, String)>) {
        for (env, value) in flags {
            self.set(env, value, Origin::Flag);
        }
    }

    /// The file layer. Call before [`Layers::add_env`] and [`Layers::add_flags`], which
    /// override it.
    pub fn add_file(&mut self, path: &Path) -> Result<(), FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.add_toml(path, &text)
    }

    /// The file layer from text already read (`path` only names it in errors).
    pub fn add_toml(&mut self, path: &Path, text: &str) -> Result<(), FileError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| FileError::Syntax {
                path: path.to_owned(),
                // The snippet of the file may quote a store URL with its password.
                message: crate::rendezvous::redis::redact_urls_in(e.to_string().trim_end()),
            })?;
        let mut leaves = Vec::new();
        flatten("", &table, &mut leaves);
        for (key, value) in leaves {
            let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
                return Err(FileError::UnknownKey {
                    path: path.to_owned(),
                    key,
                });
            };
            let text = toml_to_text(value).map_err(|reason| FileError::BadValue {
                path: path.to_owned(),
                key: key.clone(),
                value: crate::rendezvous::redis::redact_urls_in(&value.to_string()),
                reason,
            })?;
            self.set(setting.env, text, Origin::File(path.to_owned()));
        }
        Ok(())
    }
}

fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            leaf => out.push((key, leaf)),
        }
    }
}

/// TOML values become the same text the environment would carry, so one parser
/// validates every layer: integers and strings as they are, arrays comma-joined (an
/// empty array is an empty list: no access-list entries, and for settings that need an
/// entry, such as `listen_ips`, the same error an empty variable gets).
fn toml_to_text(value: &toml::Value) -> Result<String, &'static str> {
    match value {
        toml::Value::String(s) => {
            if s.trim().is_empty() {
                Err("empty string; remove the key to use the default")
            } else {
                Ok(s.clone())
            }
        }
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Array(items) => {
            let texts = items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) if !s.contains(',') => Ok(s.clone()),
                    toml::Value::String(_) => Err("list items cannot contain commas"),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    _ => Err("expected a list of strings"),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join(","))
        }
        toml::Value::Float(_) => Err("expected a whole number"),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(_) => Err("expected a number or a string, not a date"),
        toml::Value::Table(_) => Err("expected a value, not a table"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::Id;

    #[test]
    fn file_keys_are_checked_and_values_become_text() {
        let path = Path::new("relay.toml");
        let mut layers = Layers::default();
        layers
            .add_toml(
                path,
                "port = 5000\nlisten_ips = [\"127.0.0.1\", \"::1\"]\n[relay]\nmax_circuits = 7\n",
            )
            .unwrap();
        assert_eq!(layers.get(Id::Port.env()).unwrap().text, "5000");
        assert_eq!(
            layers.get(Id::ListenIps.env()).unwrap().text,
            "127.0.0.1,::1"
        );
        assert_eq!(
            layers.origin(Id::MaxCircuits.env()),
            Origin::File(path.to_owned())
        );

        let err = Layers::default()
            .add_toml(path, "[relay]\nmax_circuit = 7\n")
            .unwrap_err();
        assert!(err.to_string().contains("\"relay.max_circuit\""), "{err}");
        let err = Layers::default()
            .add_toml(path, "drain_secs = 1.5\n")
            .unwrap_err();
        assert!(err.to_string().contains("drain_secs"), "{err}");
        let err = Layers::default().add_toml(path, "port = \n").unwrap_err();
        assert!(err.to_string().contains("relay.toml"), "{err}");
    }
}
