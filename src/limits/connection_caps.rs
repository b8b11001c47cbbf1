//! Connections in all, per peer, and handshakes in flight: the ceilings libp2p's
//! `connection_limits` sets, with its words, kept here because its 0.7 behaviour never
//! forgets a peer. It keeps an entry per peer id it ever saw (an empty set once the
//! peer's connections closed), so every fresh identity that connects costs the relay
//! memory for good; a flood of fresh identities (free to make) grows it without bound.
//! Here a peer's entry goes with its last connection.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    behaviour::ConnectionEstablished, dummy, ConnectionClosed, ConnectionDenied, ConnectionId,
    FromSwarm, ListenFailure, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::config::ConnectionLimits;

/// Which ceiling refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    PendingIncoming,
    PerPeer,
    Total,
}

impl Cap {
    /// The metric label and log word.
    pub fn name(self) -> &'static str {
        match self {
            Cap::PendingIncoming => "max_pending",
            Cap::PerPeer => "max_per_peer",
            Cap::Total => "max_connections",
        }
    }
}

/// A connection over a ceiling (the words libp2p's `connection_limits` uses).
#[derive(Debug, thiserror::Error)]
#[error("connection limit exceeded: at most {limit} {} are allowed", what(*.cap))]
pub struct CapExceeded {
    pub cap: Cap,
    pub limit: u32,
}

fn what(cap: Cap) -> &'static str {
    match cap {
        Cap::PendingIncoming => "pending incoming connections",
        Cap::PerPeer => "established connections per peer",
        Cap::Total => "established connections",
    }
}

pub struct ConnectionCaps {
    max_established: u32,
    max_per_peer: u32,
    max_pending_incoming: u32,
    pending_incoming: HashSet<ConnectionId>,
    established: HashSet<ConnectionId>,
    /// Only peers with a connection open.
    per_peer: HashMap<PeerId, u32>,
}

impl ConnectionCaps {
    pub fn new(limits: &ConnectionLimits) -> Self {
        ConnectionCaps {
            max_established: limits.max_established,
            max_per_peer: limits.max_established_per_peer,
            max_pending_incoming: limits.max_pending_incoming,
            pending_incoming: HashSet::new(),
            established: HashSet::new(),
            per_peer: HashMap::new(),
        }
    }

    /// Peers with a connection open (what the relay remembers of peers here).
    pub fn peers(&self) -> usize {
        self.per_peer.len()
    }

    fn check(&self, peer: PeerId) -> Result<(), ConnectionDenied> {
        let of_peer = self.per_peer.get(&peer).copied().unwrap_or(0);
        if of_peer >= self.max_per_peer {
            return Err(denied(Cap::PerPeer, self.max_per_peer));
        }
        if self.established.len() >= self.max_established as usize {
            return Err(denied(Cap::Total, self.max_established));
        }
        Ok(())
    }
}

impl ConnectionCaps {
    fn established_one(&mut self, peer: PeerId, connection: ConnectionId) {
        if self.established.insert(connection) {
            *self.per_peer.entry(peer).or_default() += 1;
        }
    }

    fn closed_one(&mut self, peer: PeerId, connection: ConnectionId) {
        if !self.established.remove(&connection) {
            return;
        }
        if let Some(count) = self.per_peer.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }
}

fn denied(cap: Cap, limit: u32) -> ConnectionDenied {
    ConnectionDenied::new(CapExceeded { cap, limit })
}

impl NetworkBehaviour for ConnectionCaps {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_incoming.len() >= self.max_pending_incoming as usize {
            return Err(denied(Cap::PendingIncoming, self.max_pending_incoming));
        }
        self.pending_incoming.insert(connection_id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_incoming.remove(&connection_id);
        self.check(peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => self.established_one(peer_id, connection_id),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => self.closed_one(peer_id, connection_id),
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.pending_incoming.remove(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::ConnectedPoint;

    fn listener() -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: Multiaddr::empty(),
            send_back_addr: Multiaddr::empty(),
        }
    }

    #[test]
    fn fresh_identities_that_come_and_go_leave_nothing_behind_and_caps_hold() {
        let limits = ConnectionLimits {
            max_established: 3,
            max_established_per_peer: 2,
            max_pending_incoming: 8,
            ..crate::Config::default().connection_limits
        };
        let mut caps = ConnectionCaps::new(&limits);
        let endpoint = listener();
        let addr = Multiaddr::empty();
        let open = |caps: &mut ConnectionCaps, peer: PeerId, id: usize| {
            let connection = ConnectionId::new_unchecked(id);
            caps.handle_pending_inbound_connection(connection, &addr, &addr)?;
            caps.handle_established_inbound_connection(connection, peer, &addr, &addr)?;
            caps.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id: connection,
                endpoint: &endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
            Ok::<_, ConnectionDenied>(connection)
        };
        let close = |caps: &mut ConnectionCaps, peer: PeerId, connection: ConnectionId| {
            caps.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id: peer,
                connection_id: connection,
                endpoint: &endpoint,
                cause: None,
                remaining_established: 0,
            }));
        };

        for id in 0..1000 {
            let peer = PeerId::random();
            let connection = open(&mut caps, peer, id).expect("under every cap");
            close(&mut caps, peer, connection);
        }
        assert_eq!(caps.peers(), 0, "a thousand fresh identities left entries");

        let peer = PeerId::random();
        let first = open(&mut caps, peer, 1).expect("first");
        open(&mut caps, peer, 2).expect("second");
        let exceeded = |denied: ConnectionDenied| {
            let exceeded = denied.downcast_ref::<CapExceeded>().expect("a cap");
            (exceeded.cap, exceeded.to_string())
        };
        let third = open(&mut caps, peer, 3).expect_err("a third for one peer");
        assert_eq!(
            exceeded(third),
            (
                Cap::PerPeer,
                "connection limit exceeded: at most 2 established connections per peer are allowed"
                    .into()
            )
        );
        open(&mut caps, PeerId::random(), 4).expect("the third connection in all");
        let fourth = open(&mut caps, PeerId::random(), 5).expect_err("a fourth in all");
        assert_eq!(exceeded(fourth).0, Cap::Total);
        close(&mut caps, peer, first);
        open(&mut caps, PeerId::random(), 6).expect("room again");
    }
}
