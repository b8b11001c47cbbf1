//! What the tests and the load generator share about running a relay and reaching it:
//! the four transports (a loopback listen address, which addresses belong to each) and
//! the environment a relay binary runs with as their child. Not part of the relay.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use crate::config::settings::Id;
use crate::Config;

/// One of the relay's transports, as a client dials it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
    Ws,
    Wss,
}

pub const ALL_TRANSPORTS: [Transport; 4] = [
    Transport::Tcp,
    Transport::Quic,
    Transport::Ws,
    Transport::Wss,
];

impl Transport {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    pub fn parse(s: &str) -> Option<Transport> {
        ALL_TRANSPORTS.into_iter().find(|t| t.name() == s)
    }

    /// A loopback listen address of this transport on an OS-assigned port.
    pub fn listen_addr(self) -> Multiaddr {
        let ip = Multiaddr::empty().with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST));
        match self {
            Transport::Tcp => ip.with(Protocol::Tcp(0)),
            Transport::Quic => ip.with(Protocol::Udp(0)).with(Protocol::QuicV1),
            Transport::Ws => ip.with(Protocol::Tcp(0)).with(Protocol::Ws("/".into())),
            Transport::Wss => ip
                .with(Protocol::Tcp(0))
                .with(Protocol::Tls)
                .with(Protocol::Ws("/".into())),
        }
    }

    /// Whether `addr` is an address of this transport.
    pub fn matches(self, addr: &Multiaddr) -> bool {
        let protocols: Vec<_> = addr.iter().collect();
        let has = |f: fn(&Protocol) -> bool| protocols.iter().any(f);
        let ws = has(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_)));
        let tls = has(|p| matches!(p, Protocol::Tls | Protocol::Wss(_)));
        match self {
            Transport::Tcp => has(|p| matches!(p, Protocol::Tcp(_))) && !ws,
            Transport::Quic => has(|p| matches!(p, Protocol::QuicV1)),
            Transport::Ws => ws && !tls,
            Transport::Wss => ws && tls,
        }
    }
}

/// The environment of a relay binary started as a child (after `env_clear`): its files
/// in `dir`, every listener on 127.0.0.1 and an OS-assigned port, `info` logs.
pub fn relay_child_env(dir: &Path) -> Vec<(&'static str, OsString)> {
    vec![
        ("HOME", dir.into()),
        ("RUST_LOG", "info".into()),
        (Id::Port.env(), "0".into()),
        (Id::ListenIps.env(), "127.0.0.1".into()),
        (Id::Keypair.env(), dir.join("keypair").into()),
    ]
}

/// A relay config on 127.0.0.1 with every listener (and the HTTP endpoint) on an
/// OS-assigned port and its files in `dir`; everything else the defaults.
pub fn loopback_config(dir: &Path) -> Config {
    Config {
        port: 0,
        ws_port: Some(0),
        wss_port: Some(0),
        listen_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        keypair_path: dir.join("keypair"),
        metrics_addr: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
        ..Config::default()
    }
}
