//! `--serve dusk|baseline`: the bench binary as a relay child process. It prints
//! `peer <id>`, one `addr <multiaddr>` per listener, `metrics <ip:port>` where dusk-relay
//! serves `/metrics` (the soak reads its gauges there; the baseline has none) and
//! `ready`, then relays until its stdin closes (the bench exited or dropped it).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use dusk_relay::net::transport::{self, WssTls};
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping, relay, Multiaddr, PeerId};

use crate::peers::{dusk_config, load_tls, Transport};

/// The keypair and the fleet secret every node of the bench's fleet shares, in `--dir`.
pub const FLEET_KEYPAIR: &str = "fleet-keypair";
pub const FLEET_SECRET: &str = "fleet.key";

const ALL: [Transport; 4] = [
    Transport::Tcp,
    Transport::Quic,
    Transport::Ws,
    Transport::Wss,
];

/// `fleet`: a Redis URL for a dusk-relay node in fleet mode (see [`dusk`]).
pub fn run(
    kind: &str,
    dir: &Path,
    circuits: usize,
    reservations: usize,
    fleet: Option<&str>,
) -> anyhow::Result<()> {
    // Exit when the bench goes away, however it goes.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match kind {
        "dusk" => runtime.block_on(dusk(dir, fleet)),
        "baseline" => runtime.block_on(baseline(dir, circuits, reservations)),
        other => Err(anyhow!("unknown relay kind {other:?} (dusk or baseline)")),
    }
}

fn announce(peer: PeerId, addrs: &[Multiaddr], metrics: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "peer {peer}")?;
    for addr in addrs {
        writeln!(out, "addr {addr}")?;
    }
    if let Some(metrics) = metrics {
        writeln!(out, "metrics {metrics}")?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

/// dusk-relay itself, in this process: `Relay::bind(config).await?.spawn()`. With
/// `fleet` (a Redis URL) a node of the bench's fleet, as `DUSK_RELAY_FLEET` makes it:
/// the keypair `fleet-keypair` and the secret `fleet.key` in `dir` (every node of the
/// fleet shares them), a mesh listener on a free loopback port, rendezvous in Redis.
async fn dusk(dir: &Path, fleet: Option<&str>) -> anyhow::Result<()> {
    let mut config = dusk_config(dir);
    if let Some(redis) = fleet {
        config.keypair_path = dir.join(FLEET_KEYPAIR);
        config.rendezvous.store = dusk_relay::config::RendezvousStore::Redis(redis.to_owned());
        config.fleet = Some(dusk_relay::config::FleetConfig {
            redis: redis.to_owned(),
            mesh_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            mesh_announce: None,
            mesh_key_file: dir.join(FLEET_SECRET),
        });
    }
    let handle = dusk_relay::Relay::bind(config).await?.spawn();
    announce(handle.peer_id, &handle.listen_addrs, handle.http_addr)?;
    futures::future::pending::<()>().await;
    Ok(())
}

#[derive(NetworkBehaviour)]
struct BaselineBehaviour {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// libp2p's stock relay with its default config, except no circuit duration or byte
/// limit (dusk's relayed connection is the chat path) and room for `circuits`
/// circuits and `reservations` reservations (with the rate limiters cleared when either
/// is lifted); on dusk's transports (`dusk_relay::net::transport::build`), so only the
/// behaviour differs.
async fn baseline(dir: &Path, circuits: usize, reservations: usize) -> anyhow::Result<()> {
    // Connections are descriptors: take what the hard limit allows, as dusk-relay does.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("baseline relay child: cannot raise the open-file limit: {e}");
    }
    let (_, server_config) = load_tls(dir)?;
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let mut config = relay::Config {
        max_circuit_duration: Duration::from_secs(u64::from(u32::MAX)),
        max_circuit_bytes: 0,
        ..relay::Config::default()
    };
    let default_reservations = config.max_reservations;
    config.max_reservations = config.max_reservations.max(2 * circuits).max(reservations);
    config.max_circuits = config.max_circuits.max(circuits);
    if circuits > 1 || reservations > default_reservations {
        // Many circuits or reservations from one loopback IP would trip the per-IP
        // token buckets.
        config.reservation_rate_limiters.clear();
        config.circuit_src_rate_limiters.clear();
    }
    let transport = transport::build(
        &keypair,
        Some(WssTls::Serve(server_config)),
        dusk_relay::config::defaults::CONNECTION_UPGRADE_TIMEOUT,
        &dusk_relay::net::proxy_protocol::ProxyProtocol::off(),
    )?;
    let behaviour = BaselineBehaviour {
        relay: relay::Behaviour::new(peer_id, config),
        identify: identify::Behaviour::new(identify::Config::new(
            "/dusk/relay/1.0.0".into(),
            keypair.public(),
        )),
        ping: ping::Behaviour::default(),
    };
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| anyhow!("baseline transport: {e}"))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| anyhow!("baseline behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for transport in ALL {
        swarm.listen_on(transport.listen_addr())?;
    }
    let mut addrs = Vec::new();
    while addrs.len() < ALL.len() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                // A libp2p 0.57 relay offers HOP only with an external address.
                swarm.add_external_address(address.clone());
                addrs.push(address);
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                return Err(anyhow!("baseline listener closed: {reason:?}"))
            }
            _ => {}
        }
    }
    announce(peer_id, &addrs, None)?;
    loop {
        swarm.select_next_some().await;
    }
}
