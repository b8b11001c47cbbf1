//! The command line: one flag per setting (its environment variable is its twin), the
//! config file, `--print-config`, and the one-shot commands. Built from
//! [`crate::config::settings::SETTINGS`] so a new setting gets its flag, `--help` line and
//! default without another list to keep in step.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::settings::{CONFIG_ENV, SETTINGS};
use crate::config::{Config, LoadError};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Cli {
    pub command: CliCommand,
    /// `--config PATH` or `DUSK_RELAY_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// `--print-config`: print the effective configuration and exit.
    pub print_config: bool,
    /// `(environment variable, value)` for every setting given as a flag.
    pub flags: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliCommand {
    Run,
    Healthcheck,
    GenCert { dir: PathBuf, names: Vec<String> },
}

impl Cli {
    /// Parses `args` (the first is the program name). Errors are clap's, including
    /// `--help` and `--version`, which the caller prints with `Error::exit`.
    pub fn parse_from(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
        let matches = command().try_get_matches_from(args)?;
        let command = match matches.subcommand() {
            None => CliCommand::Run,
            Some(("healthcheck", _)) => CliCommand::Healthcheck,
            Some(("gen-cert", sub)) => CliCommand::GenCert {
                dir: sub.get_one::<PathBuf>("dir").cloned().unwrap_or_default(),
                names: sub
                    .get_many::<String>("names")
                    .map(|names| names.cloned().collect())
                    .unwrap_or_default(),
            },
            Some((other, _)) => unreachable!("clap only yields declared subcommands, not {other}"),
        };
        Ok(Cli {
            command,
            config_file: matches.get_one::<PathBuf>("config").cloned(),
            print_config: matches.get_flag("print-config"),
            flags: flags_given(&matches),
        })
    }

    /// The configuration these arguments, `env` and the config file make.
    pub fn load_config(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), LoadError> {
        Config::load(self.config_file.as_deref(), env, self.flags.clone())
    }
}

fn flags_given(matches: &ArgMatches) -> Vec<(&'static str, String)> {
    SETTINGS
        .iter()
        .filter_map(|setting| {
            matches
                .get_one::<String>(setting.env)
                .map(|value| (setting.env, value.clone()))
        })
        .collect()
}

/// The clap command, for parsing and for `--help`.
pub fn command() -> Command {
    let defaults = Config::default();
    let mut command = Command::new("dusk-relay")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The dusk relay: circuit relay v2 and rendezvous over TCP, QUIC, WS and WSS")
        .after_help(
            "Precedence: defaults < config file < DUSK_* environment variables < flags.\n\
             Signals: SIGTERM/SIGINT drain then stop (a second one stops at once); \
             SIGHUP reloads the WSS certificate.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("PATH")
                .env(CONFIG_ENV)
                .value_parser(clap::value_parser!(PathBuf))
                .global(true)
                .help("TOML config file (see deploy/dusk-relay.toml)"),
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("print the effective configuration as TOML and exit"),
        )
        .subcommand(Command::new("healthcheck").about(
            "exit 0 if the relay on this host completes a libp2p handshake as itself on its TCP port",
        ))
        .subcommand(
            Command::new("gen-cert")
                .about("write a development CA (ca-cert.pem) and a WSS certificate it signs (cert.pem, key.pem)")
                .arg(
                    Arg::new("dir")
                        .required(true)
                        .value_parser(clap::value_parser!(PathBuf)),
                )
                .arg(
                    Arg::new("names")
                        .num_args(0..)
                        .help("DNS names or IPs besides localhost, 127.0.0.1 and ::1"),
                ),
        );
    for setting in SETTINGS {
        let default = defaults
            .value_text(setting.id)
            .unwrap_or_else(|| "none".into());
        command = command.arg(
            Arg::new(setting.env)
                .long(setting.flag())
                .value_name("VALUE")
                // `--drain-secs -1` should reach validation and be named there.
                .allow_negative_numbers(true)
                .global(true)
                .help_heading("Settings (each also a DUSK_* variable and a config-file key)")
                .help(format!(
                    "{} [env: {}] [file: {}] [default: {default}]",
                    setting.help, setting.env, setting.key
                )),
        );
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::Id;

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_from(
            std::iter::once("dusk-relay")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
        .unwrap()
    }

    #[test]
    fn the_command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn flags_are_collected_by_their_variable() {
        let cli = parse(&["--port", "5000", "--max-circuits", "9"]);
        assert_eq!(cli.command, CliCommand::Run);
        assert_eq!(
            cli.flags,
            vec![
                (Id::Port.env(), "5000".to_owned()),
                (Id::MaxCircuits.env(), "9".to_owned())
            ]
        );
        let cli = parse(&["healthcheck", "--port", "5000"]);
        assert_eq!(cli.command, CliCommand::Healthcheck);
        assert_eq!(cli.flags, vec![(Id::Port.env(), "5000".to_owned())]);
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = command().render_long_help().to_string();
        for setting in SETTINGS {
            assert!(
                help.contains(&format!("--{}", setting.flag())),
                "{}",
                setting.env
            );
            assert!(help.contains(setting.env), "{}", setting.env);
        }
        assert!(help.contains("[default: 4001]"), "{help}");
    }
}
