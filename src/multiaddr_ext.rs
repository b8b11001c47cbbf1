//! What the relay reads off a multiaddr: the IP it comes from, whether it is a relayed
//! (`/p2p-circuit`) address, and its transport as a metric label. One copy for the
//! library, the tests and the bench.

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

/// Whether the address goes through a relay (`/p2p-circuit`).
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// The IP a multiaddr starts with; IPv4-mapped IPv6 (dual-stack sockets) as IPv4.
/// `None` for addresses without one (relayed, memory).
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    if is_relayed(addr) {
        return None;
    }
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        }),
        _ => None,
    }
}

/// The transport of a connection, from its address, as a metric label (`tcp`, `quic`,
/// `ws`, `wss`, `relayed`, `other`); never the address itself.
pub fn transport_of(addr: &Multiaddr) -> &'static str {
    let mut tcp = false;
    let mut ws = false;
    let mut tls = false;
    for protocol in addr.iter() {
        match protocol {
            Protocol::P2pCircuit => return "relayed",
            Protocol::QuicV1 => return "quic",
            Protocol::Tcp(_) => tcp = true,
            Protocol::Ws(_) => ws = true,
            Protocol::Wss(_) => (ws, tls) = (true, true),
            Protocol::Tls => tls = true,
            _ => {}
        }
    }
    match (tcp, ws, tls) {
        (true, true, true) => "wss",
        (true, true, false) => "ws",
        (true, false, _) => "tcp",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_of_multiaddrs_and_relayed_addresses() {
        let mapped: Multiaddr = "/ip6/::ffff:192.0.2.7/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&mapped), Some("192.0.2.7".parse().unwrap()));
        let quic: Multiaddr = "/ip6/2001:db8::1/udp/1/quic-v1".parse().unwrap();
        assert_eq!(ip_of(&quic), Some("2001:db8::1".parse().unwrap()));
        let relayed: Multiaddr =
            "/ip4/192.0.2.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
                .parse()
                .unwrap();
        assert_eq!(ip_of(&relayed), None);
        assert!(is_relayed(&relayed) && !is_relayed(&quic));
        assert_eq!(transport_of(&relayed), "relayed");
        assert_eq!(transport_of(&quic), "quic");
    }
}
