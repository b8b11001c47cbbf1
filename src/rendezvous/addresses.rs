//! Which addresses a registration may publish: circuit addresses through THIS relay only.
//!
//! A dialer that finds a record by discovery dials its addresses. If any circuit address
//! were accepted, `/ip4/<attacker>/tcp/4001/p2p/<any relay>/p2p-circuit` would send every
//! dialer to the attacker's IP (a relay address is dialed before the circuit is asked
//! for), and the attacker would learn who looks for whom. So an address must be
//! `[<one of this relay's own addresses>]/p2p/<this relay>/p2p-circuit[/p2p/<registrant>]`:
//! one circuit, this relay's peer id right before it, nothing but the registrant after
//! it, and before the relay's id either nothing or an address the relay itself listens
//! on or announces. The relay client builds exactly these from a reservation (the
//! relay's external addresses + `/p2p-circuit/p2p/<client>`).
//!
//! The relay's own addresses come from the swarm: its listen addresses
//! (`FromSwarm::NewListenAddr`) and the external addresses it confirms itself
//! (`FromSwarm::ExternalAddrConfirmed`, which `Swarm::add_external_address` sends: the
//! operator's announced addresses, or the listen addresses when none are configured).
//! Candidates (`NewExternalAddrCandidate`) are NOT trusted: identify makes them from
//! what remote peers claim to observe, so a peer could plant the attacker's IP there.

use std::collections::HashSet;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::FromSwarm;
use libp2p::{Multiaddr, PeerId};

/// The addresses this relay is reachable at, without a trailing `/p2p/<relay>`.
#[derive(Debug, Clone, Default)]
pub struct OwnAddresses {
    /// Apart, because one address can be both and leave one list while staying in the
    /// other.
    listen: HashSet<Multiaddr>,
    external: HashSet<Multiaddr>,
}

impl OwnAddresses {
    /// Follows the swarm's listen and confirmed external addresses.
    pub fn on_swarm_event(&mut self, event: &FromSwarm) {
        match event {
            FromSwarm::NewListenAddr(e) => {
                self.listen.insert(without_peer_id(e.addr));
            }
            FromSwarm::ExpiredListenAddr(e) => {
                self.listen.remove(&without_peer_id(e.addr));
            }
            FromSwarm::ExternalAddrConfirmed(e) => {
                self.external.insert(without_peer_id(e.addr));
            }
            FromSwarm::ExternalAddrExpired(e) => {
                self.external.remove(&without_peer_id(e.addr));
            }
            _ => {}
        }
    }

    /// Whether `addr` reaches this relay: one of its addresses, or one of them with its
    /// host replaced by a name that is the relay's own. Those names are `localhost`
    /// (which sends a dialer to its own machine, so nothing leaks: the dusk client dialing
    /// `/dns4/localhost/tcp/4001` registers exactly that) and the DNS names the relay
    /// announces (`/dns4/relay.example` stands for `/dns/relay.example` as well).
    pub fn contains(&self, addr: &Multiaddr) -> bool {
        if self.listen.contains(addr) || self.external.contains(addr) {
            return true;
        }
        let mut parts = addr.iter();
        let Some(name) = parts.next().as_ref().and_then(dns_name) else {
            return false;
        };
        let own_name = name == "localhost"
            || self
                .all()
                .filter_map(|own| own.iter().next().as_ref().and_then(dns_name))
                .any(|own| own == name);
        if !own_name {
            return false;
        }
        let rest: Vec<Protocol> = parts.collect();
        self.all()
            .any(|own| own.iter().skip(1).eq(rest.iter().cloned()))
    }

    fn all(&self) -> impl Iterator<Item = &Multiaddr> {
        self.listen.iter().chain(self.external.iter())
    }
}

/// The host name of a `/dns`, `/dns4` or `/dns6` component, lower-cased (names are
/// case-insensitive).
fn dns_name(protocol: &Protocol) -> Option<String> {
    match protocol {
        Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
            Some(name.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// For tests and fuzzing: a fixed set of addresses (a trailing `/p2p/..` is dropped).
impl FromIterator<Multiaddr> for OwnAddresses {
    fn from_iter<I: IntoIterator<Item = Multiaddr>>(addrs: I) -> Self {
        OwnAddresses {
            listen: addrs.into_iter().map(|a| without_peer_id(&a)).collect(),
            external: HashSet::new(),
        }
    }
}

fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(_)) = addr.iter().last() {
        addr.pop();
    }
    addr
}

/// Whether `addr` is a circuit address through `relay` (whose own addresses are `own`)
/// for `registrant`: `[<own address>]/p2p/<relay>/p2p-circuit[/p2p/<registrant>]`.
pub fn is_circuit_via(
    addr: &Multiaddr,
    relay: PeerId,
    own: &OwnAddresses,
    registrant: PeerId,
) -> bool {
    let protocols: Vec<Protocol> = addr.iter().collect();
    let mut circuits = protocols
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == Protocol::P2pCircuit)
        .map(|(at, _)| at);
    let (Some(circuit), None) = (circuits.next(), circuits.next()) else {
        return false;
    };
    let Some(relay_at) = circuit.checked_sub(1) else {
        return false;
    };
    if protocols[relay_at] != Protocol::P2p(relay) {
        return false;
    }
    match &protocols[circuit + 1..] {
        [] => {}
        [Protocol::P2p(peer)] if *peer == registrant => {}
        _ => return false,
    }
    let before = &protocols[..relay_at];
    before.is_empty() || own.contains(&before.iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_circuits_through_this_relay_for_the_registrant_pass() {
        let relay = PeerId::random();
        let me = PeerId::random();
        let other = PeerId::random();
        let own: OwnAddresses = [
            addr("/ip4/192.0.2.1/tcp/4001"),
            addr(&format!("/dns4/relay.example/tcp/443/wss/p2p/{relay}")),
        ]
        .into_iter()
        .collect();
        let pass = |s: String| is_circuit_via(&addr(&s), relay, &own, me);
        assert!(pass(format!("/p2p/{relay}/p2p-circuit")));
        assert!(pass(format!("/p2p/{relay}/p2p-circuit/p2p/{me}")));
        assert!(pass(format!(
            "/ip4/192.0.2.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{me}"
        )));
        assert!(pass(format!(
            "/dns4/relay.example/tcp/443/wss/p2p/{relay}/p2p-circuit"
        )));
        // The relay's own names over its own transports: the announced name under
        // another /dns variant, and localhost (the dialer's own machine).
        assert!(pass(format!(
            "/dns/Relay.Example/tcp/443/wss/p2p/{relay}/p2p-circuit"
        )));
        assert!(pass(format!(
            "/dns4/localhost/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{me}"
        )));

        for bad in [
            // The attacker's IP or name before this relay's id.
            format!("/ip4/203.0.113.7/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{me}"),
            format!("/ip4/192.0.2.1/tcp/4002/p2p/{relay}/p2p-circuit"),
            format!("/dns4/evil.example/tcp/443/wss/p2p/{relay}/p2p-circuit"),
            // An own name over a port or transport the relay does not serve.
            format!("/dns4/localhost/tcp/4002/p2p/{relay}/p2p-circuit"),
            format!("/dns4/relay.example/tcp/4003/p2p/{relay}/p2p-circuit"),
            // Another relay.
            format!("/p2p/{other}/p2p-circuit/p2p/{me}"),
            format!("/ip4/192.0.2.1/tcp/4001/p2p/{other}/p2p-circuit"),
            // Someone else after the circuit, or more than a peer id.
            format!("/p2p/{relay}/p2p-circuit/p2p/{other}"),
            format!("/p2p/{relay}/p2p-circuit/p2p/{me}/p2p/{me}"),
            format!("/p2p/{relay}/p2p-circuit/ip4/203.0.113.7/tcp/1"),
            // Two circuits, or a circuit without a relay.
            format!("/p2p/{relay}/p2p-circuit/p2p/{relay}/p2p-circuit/p2p/{me}"),
            "/p2p-circuit".to_owned(),
            format!("/p2p-circuit/p2p/{me}"),
            format!("/ip4/192.0.2.1/tcp/4001/p2p-circuit/p2p/{me}"),
            // Not a circuit.
            "/ip4/192.0.2.1/tcp/4001".to_owned(),
            format!("/ip4/192.0.2.1/tcp/4001/p2p/{relay}"),
            // The relay's id twice: the part before it is not an own address.
            format!("/ip4/192.0.2.1/tcp/4001/p2p/{relay}/p2p/{relay}/p2p-circuit"),
        ] {
            assert!(!pass(bad.clone()), "{bad}");
        }
    }

    #[test]
    fn own_addresses_follow_the_swarm() {
        use libp2p::core::transport::ListenerId;
        use libp2p::swarm::behaviour::{
            ExpiredListenAddr, ExternalAddrConfirmed, ExternalAddrExpired, NewListenAddr,
        };
        let listen = addr("/ip4/192.0.2.1/tcp/4001");
        let external = addr("/dns4/relay.example/tcp/443/wss");
        let mut own = OwnAddresses::default();
        let listener_id = ListenerId::next();
        own.on_swarm_event(&FromSwarm::NewListenAddr(NewListenAddr {
            listener_id,
            addr: &listen,
        }));
        own.on_swarm_event(&FromSwarm::ExternalAddrConfirmed(ExternalAddrConfirmed {
            addr: &listen,
        }));
        own.on_swarm_event(&FromSwarm::ExternalAddrConfirmed(ExternalAddrConfirmed {
            addr: &external,
        }));
        assert!(own.contains(&listen) && own.contains(&external));
        // Still announced after the listener went.
        own.on_swarm_event(&FromSwarm::ExpiredListenAddr(ExpiredListenAddr {
            listener_id,
            addr: &listen,
        }));
        assert!(own.contains(&listen));
        own.on_swarm_event(&FromSwarm::ExternalAddrExpired(ExternalAddrExpired {
            addr: &listen,
        }));
        assert!(!own.contains(&listen) && own.contains(&external));
    }
}
