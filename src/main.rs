//! `dusk-relay`: parses the command line, reads the configuration layers and runs the
//! relay until SIGINT or SIGTERM. `dusk-relay --help` lists every flag.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use dusk_relay::cli::{Cli, CliCommand};
use dusk_relay::config::LogFormat;
use dusk_relay::server::healthcheck;
use dusk_relay::server::log_text::OneLinePerEvent;
use dusk_relay::{tls, Config, Relay};
use futures::StreamExt;
use tracing::{error, info, warn};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // Prints help or version (exit 0), or the usage error (exit 2).
        Err(e) => e.exit(),
    };
    match &cli.command {
        CliCommand::Run if cli.print_config => report_plain(print_config(&cli)),
        CliCommand::Run => {
            // Before anything slow: a SIGTERM during start-up must stop the relay
            // cleanly, not kill it with the default action.
            let signals = match stop_signals().and_then(|s| Ok((s, hangups()?))) {
                Ok(signals) => signals,
                Err(e) => {
                    eprintln!("cannot install signal handlers: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Errors in the configuration are reported before logging is set up (the
            // log format is itself a setting), on stderr, in the same words.
            let (config, unknown) = match cli.load_config(std::env::vars()) {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            init_tracing(config.log_format);
            for name in unknown {
                warn!("ignoring unknown environment variable {name} (a typo?)");
            }
            report(run(&cli, config, signals).await)
        }
        CliCommand::Healthcheck => report_plain(check_health(&cli).await),
        CliCommand::GenCert { dir, names } => report_plain(gen_cert(dir, names)),
    }
}

/// `RUST_LOG` filters (default `info`); the format is the seed's human lines or one JSON
/// object per line for log shippers.
fn init_tracing(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // libp2p-identify logs at info the address a peer says it sees us at: peer data, for
    // debug runs only (unless the operator's RUST_LOG names the crate itself).
    let names_identify = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("libp2p_identify"));
    if !names_identify
        && filter
            .max_level_hint()
            .is_some_and(|l| l <= LevelFilter::INFO)
    {
        if let Ok(quiet) = "libp2p_identify=warn".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    match format {
        LogFormat::Text => {
            // Colour codes only for a person at a terminal, not in journald or docker logs.
            let ansi = std::io::stdout().is_terminal();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                // Peers choose some of the text logged (libp2p's lines too): one event
                // stays one line whatever it holds.
                .with_writer(OneLinePerEvent::new(std::io::stdout, ansi))
                .init();
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Library errors already name their cause; `{:#}` would repeat it.
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// For the one-shot commands: a line on stdout or stderr, no log formatting.
fn report_plain(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cli: &Cli,
    config: Config,
    (mut signals, mut hangups): (impl futures::Stream<Item = ()> + Unpin, Hangups),
) -> anyhow::Result<()> {
    info!("dusk relay server starting");
    // A signal during start-up stops it too: nothing may leave the relay deaf to SIGTERM.
    let relay = tokio::select! {
        relay = Relay::bind(config) => relay?,
        _ = signals.next() => {
            info!("dusk relay stopped before it was ready");
            return Ok(());
        }
    };
    let reloader = relay.certificate_reloader();
    let access = relay.access_control();
    let cli = cli.clone();
    tokio::spawn(async move {
        while hangups.next().await.is_some() {
            if let Some(reloader) = &reloader {
                // Logged and counted by the reloader, whatever the outcome.
                let _ = reloader.reload("SIGHUP");
            }
            // The access lists come from the same layers as at start (file, env, flags);
            // a file that no longer parses keeps the lists in force.
            match cli.load_config(std::env::vars()) {
                Ok((config, _)) => {
                    let (allow, deny) = (config.access.allow.len(), config.access.deny.len());
                    access.replace(config.access);
                    info!("access lists reloaded: {allow} allow entries, {deny} deny entries");
                }
                Err(e) => error!("access lists not reloaded, the previous ones stay: {e}"),
            }
        }
    });
    relay.run(signals).await;
    info!("dusk relay stopped");
    Ok(())
}

fn print_config(cli: &Cli) -> anyhow::Result<String> {
    let (config, _) = cli.load_config(std::env::vars())?;
    Ok(config.to_toml().trim_end().to_owned())
}

async fn check_health(cli: &Cli) -> anyhow::Result<String> {
    let (config, _) = cli.load_config(std::env::vars())?;
    let peer_id = healthcheck::check(&config).await?;
    Ok(format!("healthy: relay {peer_id} answered"))
}

fn gen_cert(dir: &Path, names: &[String]) -> anyhow::Result<String> {
    let files = tls::generate_dev_ca(dir, names)?;
    Ok(format!(
        "wrote {} (trust this CA in browsers and clients), {} and {} (set DUSK_RELAY_TLS_CERT and DUSK_RELAY_TLS_KEY to these)",
        files.ca_cert.display(),
        files.cert.display(),
        files.key.display()
    ))
}

/// Installs the SIGINT and SIGTERM handlers now; the stream yields once per signal
/// (`docker stop`, systemd, Ctrl-C): the first drains the relay, the second stops it.
#[cfg(unix)]
fn stop_signals() -> std::io::Result<impl futures::Stream<Item = ()> + Unpin> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt())?;
    let terminate = signal(SignalKind::terminate())?;
    Ok(Box::pin(futures::stream::unfold(
        (interrupt, terminate),
        |(mut interrupt, mut terminate)| async move {
            tokio::select! {
                _ = interrupt.recv() => info!("received SIGINT"),
                _ = terminate.recv() => info!("received SIGTERM"),
            }
            Some(((), (interrupt, terminate)))
        },
    )))
}

type Hangups = std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send>>;

/// SIGHUP reloads the WSS certificate and the access lists. Installed at start, like the stop signals,
/// because SIGHUP's default action would kill the relay.
#[cfg(unix)]
fn hangups() -> std::io::Result<Hangups> {
    use tokio::signal::unix::{signal, SignalKind};
    let hangup = signal(SignalKind::hangup())?;
    Ok(Box::pin(futures::stream::unfold(
        hangup,
        |mut hangup| async move {
            hangup.recv().await?;
            info!("received SIGHUP: reloading the WSS certificate and the access lists");
            Some(((), hangup))
        },
    )))
}

#[cfg(not(unix))]
fn hangups() -> std::io::Result<Hangups> {
    Ok(Box::pin(futures::stream::pending()))
}

#[cfg(not(unix))]
fn stop_signals() -> std::io::Result<impl futures::Stream<Item = ()> + Unpin> {
    Ok(Box::pin(futures::stream::unfold((), |()| async {
        let _ = tokio::signal::ctrl_c().await;
        info!("received Ctrl-C");
        Some(((), ()))
    })))
}
