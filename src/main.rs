//! `dusk-relay`: reads the environment and runs the relay until SIGINT or SIGTERM.
//!
//! ```text
//! dusk-relay                      run the relay (configured by DUSK_* variables)
//! dusk-relay healthcheck          exit 0 if the local relay answers as itself
//! dusk-relay gen-cert DIR [NAME]  write a dev CA and a WSS certificate it signs
//! dusk-relay --version | --help
//! ```

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use dusk_relay::{healthcheck, tls, Config, Relay};
use futures::StreamExt;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: dusk-relay [COMMAND]

  (no command)            run the relay; configuration comes from DUSK_* environment
                          variables (see README.md)
  healthcheck             exit 0 if the relay on this host completes a libp2p handshake
                          as itself on its TCP port, 1 otherwise
  gen-cert DIR [NAME...]  write a development CA (ca-cert.pem) and a WSS certificate it
                          signs (cert.pem, key.pem) for localhost, 127.0.0.1, ::1 and NAMEs
  --version               print the version
  --help                  print this help";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => match init_tracing() {
            Ok(()) => report(run().await),
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        },
        Some("healthcheck") if args.len() == 1 => report_plain(check_health().await),
        Some("gen-cert") if args.len() >= 2 => report_plain(gen_cert(&args[1], &args[2..])),
        Some("--version" | "-V") => {
            println!("dusk-relay {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(_) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `RUST_LOG` filters (default `info`); `DUSK_RELAY_LOG_FORMAT` picks the seed's human
/// lines (`text`, default) or one JSON object per line (`json`) for log shippers.
fn init_tracing() -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = std::env::var("DUSK_RELAY_LOG_FORMAT").unwrap_or_default();
    match format.trim() {
        "" | "text" => {
            // Colour codes only for a person at a terminal, not in journald or docker logs.
            let ansi = std::io::stdout().is_terminal();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .init();
        }
        "json" => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        other => {
            return Err(format!(
                "invalid configuration: DUSK_RELAY_LOG_FORMAT={other:?}: expected text or json"
            ))
        }
    }
    Ok(())
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

async fn run() -> anyhow::Result<()> {
    info!("dusk relay server starting");
    // Before anything slow: a SIGTERM during start-up must stop the relay cleanly, not
    // kill it with the default action.
    let mut signals = stop_signals()?;
    let (config, unknown) = Config::from_env()?;
    for name in unknown {
        warn!("ignoring unknown environment variable {name} (a typo?)");
    }
    // A signal during start-up stops it too: nothing may leave the relay deaf to SIGTERM.
    let relay = tokio::select! {
        relay = Relay::bind(config) => relay?,
        _ = signals.next() => {
            info!("dusk relay stopped before it was ready");
            return Ok(());
        }
    };
    relay.run(signals).await;
    info!("dusk relay stopped");
    Ok(())
}

async fn check_health() -> anyhow::Result<String> {
    let (config, _) = Config::from_env()?;
    let peer_id = healthcheck::check(&config).await?;
    Ok(format!("healthy: relay {peer_id} answered"))
}

fn gen_cert(dir: &str, names: &[String]) -> anyhow::Result<String> {
    let files = tls::generate_dev_ca(&PathBuf::from(dir), names)?;
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

#[cfg(not(unix))]
fn stop_signals() -> std::io::Result<impl futures::Stream<Item = ()> + Unpin> {
    Ok(Box::pin(futures::stream::unfold((), |()| async {
        let _ = tokio::signal::ctrl_c().await;
        info!("received Ctrl-C");
        Some(((), ()))
    })))
}
