//! `dusk-relay`: reads the environment, runs the relay until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use dusk_relay::{Config, Relay};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not in journald or docker logs.
    let ansi = std::io::stdout().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();

    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Library errors already name their cause; `{:#}` would repeat it.
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    info!("dusk relay server starting");
    let (config, unknown) = Config::from_env()?;
    for name in unknown {
        warn!("ignoring unknown environment variable {name} (a typo?)");
    }
    let relay = Relay::bind(config).await?;
    relay.run(shutdown_signal()).await;
    info!("dusk relay stopped");
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM (`docker stop`, systemd, Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
                    _ = term.recv() => info!("received SIGTERM"),
                }
            }
            Err(e) => {
                warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the relay cleanly");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        info!("received Ctrl-C");
    }
}
