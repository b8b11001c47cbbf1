//! `dusk-relay healthcheck`: asks the running relay itself whether it is serving.
//!
//! It completes a libp2p handshake (TCP + noise + yamux) with the relay's TCP listener
//! on loopback and checks the relay answers with its own peer id, read from the
//! keypair file. A port that merely accepts TCP is not enough. Used by the Docker
//! `HEALTHCHECK`; needs no shell and writes nothing.
//!
//! When the probe's own address is one the relay expects PROXY protocol headers from
//! (`proxy_protocol.from` lists loopback, or the address the relay binds to), the probe
//! starts with `PROXY UNKNOWN`, as a balancer's health check does: otherwise the relay
//! would close it for lacking a header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures::{AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::upgrade::Version;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{dummy, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Transport};

use crate::config::Config;
use crate::identity::{self, IdentityError};

/// A healthy relay answers on loopback in milliseconds; Docker's own timeout is longer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("unhealthy: cannot read the relay's identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("unhealthy: DUSK_RELAY_PORT is 0 (OS-assigned), so there is no known port to probe")]
    NoPort,
    #[error("unhealthy: cannot build the probe: {0}")]
    Probe(String),
    #[error("unhealthy: {addr} did not answer as the relay: {reason}")]
    NoAnswer { addr: Multiaddr, reason: String },
}

/// The PROXY protocol v1 header of a connection that proxies no client: the relay keeps
/// the connection's own address.
const PROXY_UNKNOWN: &[u8] = b"PROXY UNKNOWN\r\n";

fn probe_ip(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// The loopback address of the relay's TCP listener, with its peer id.
pub fn probe_address(config: &Config, relay: PeerId) -> Result<Multiaddr, HealthError> {
    if config.port == 0 {
        return Err(HealthError::NoPort);
    }
    let reachable = |ip: &IpAddr| ip.is_unspecified() || ip.is_loopback();
    let ip = if config
        .listen_ips
        .iter()
        .any(|ip| ip.is_ipv4() && reachable(ip))
    {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else if config
        .listen_ips
        .iter()
        .any(|ip| ip.is_ipv6() && reachable(ip))
    {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        // Bound to specific addresses only: probe the first.
        *config.listen_ips.first().ok_or(HealthError::NoPort)?
    };
    Ok(Multiaddr::from(ip)
        .with(Protocol::Tcp(config.port))
        .with(Protocol::P2p(relay)))
}

/// Succeeds when the relay described by `config` completes a handshake as itself.
pub async fn check(config: &Config) -> Result<PeerId, HealthError> {
    let relay_keypair = identity::load(&config.keypair_path)?;
    let relay = relay_keypair.public().to_peer_id();
    let addr = probe_address(config, relay)?;
    let probe = identity::probe_keypair(&relay_keypair).ok_or_else(|| {
        HealthError::Probe("the relay's key type cannot derive a probe identity".into())
    })?;
    // The probe dials the relay's own address, so its source address is that address.
    let announce = probe_ip(&addr).is_some_and(|ip| {
        config
            .proxy_protocol_from
            .iter()
            .any(|range| range.0.contains(&ip))
    });
    let noise = noise::Config::new(&probe).map_err(|e| HealthError::Probe(e.to_string()))?;
    let transport = tcp::tokio::Transport::new(tcp::Config::default())
        .and_then(move |mut stream, _| {
            async move {
                if announce {
                    stream.write_all(PROXY_UNKNOWN).await?;
                }
                Ok::<_, std::io::Error>(stream)
            }
            .boxed()
        })
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(probe)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| HealthError::Probe(e.to_string()))?
        .with_behaviour(|_| dummy::Behaviour)
        .map_err(|e| HealthError::Probe(e.to_string()))?
        .build();
    swarm
        .dial(addr.clone())
        .map_err(|e| HealthError::NoAnswer {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let answer = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == relay => {
                    return Ok(())
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
        Ok(Ok(())) => Ok(relay),
        Ok(Err(reason)) => Err(HealthError::NoAnswer { addr, reason }),
        Err(_) => Err(HealthError::NoAnswer {
            addr,
            reason: format!("no handshake within {PROBE_TIMEOUT:?}"),
        }),
    }
}
