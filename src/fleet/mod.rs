//! A fleet: relays that share one identity behind one DNS name, so the dusk client as
//! it ships (one pinned relay address) reaches whichever node DNS gives it, and two
//! users on two nodes still reach each other.
//!
//! ```text
//!   peer A ──HOP CONNECT──▶ node 1 ══mesh (noise, fleet key)══▶ node 2 ──STOP──▶ peer B
//!                            │                               │
//!                            └──── Redis: B → node 2's mesh address ◀── B reserved here
//! ```
//!
//! - [`directory`]: which node holds each peer's reservation, in the fleet's Redis,
//!   expiring with the reservation. Peer ids and mesh addresses only, never a client IP.
//! - [`mesh`]: a libp2p swarm of its own per node (a random identity: a swarm cannot
//!   dial its own peer id, and every node has the relay's), whose noise handshakes are
//!   bound to a key derived from the fleet secret ([`key`]); it carries nothing but
//!   forwarded circuits.
//! - [`forward`]: a CONNECT to a peer reserved on another node goes one hop over the
//!   mesh; that node sends STOP exactly as for a local circuit. Noise stays end to end
//!   between the two peers. A node never forwards what it received over the mesh, so
//!   there is one hop and never a loop.

pub mod directory;
pub mod forward;
pub mod key;
pub mod mesh;

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

pub use directory::Directory;
pub use forward::{Across, FleetLink, MeshCircuit, RemoteEvent};
pub use mesh::Mesh;

/// Why fleet mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet secret {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("fleet Redis: {0}")]
    Redis(String),
    #[error("mesh listener {addr}: {reason}")]
    Mesh { addr: String, reason: String },
}

/// `host:port` as a multiaddr other nodes can dial: `/ip4|ip6/…/tcp/…` for an IP,
/// `/dns/…/tcp/…` for a name (a container's service name), resolved when dialled.
pub fn announce_multiaddr(host_port: &str) -> Result<Multiaddr, String> {
    let bad =
        || format!("expected host:port (e.g. 10.0.0.5:4002 or relay-2:4002), got {host_port:?}");
    let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err("port 0 cannot be dialled".into());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            return Err("an unspecified IP (0.0.0.0, ::) cannot be dialled".into())
        }
        Ok(ip) => Multiaddr::from(ip),
        Err(_) => Multiaddr::empty().with(Protocol::Dns(host.to_owned().into())),
    };
    Ok(addr.with(Protocol::Tcp(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_addresses_are_dialable() {
        assert_eq!(
            announce_multiaddr("10.0.0.5:4002").unwrap().to_string(),
            "/ip4/10.0.0.5/tcp/4002"
        );
        assert_eq!(
            announce_multiaddr("[::1]:4002").unwrap().to_string(),
            "/ip6/::1/tcp/4002"
        );
        assert_eq!(
            announce_multiaddr("relay-2:4002").unwrap().to_string(),
            "/dns/relay-2/tcp/4002"
        );
        for bad in ["relay-2", ":4002", "0.0.0.0:4002", "relay:0", "relay:x"] {
            assert!(announce_multiaddr(bad).is_err(), "{bad}");
        }
    }
}
