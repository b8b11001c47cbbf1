//! Connection ceilings libp2p has no behaviour for: connections per source IP and per
//! IPv6 /64, and a file-descriptor budget (strelaysrv's: refuse new connections once
//! they would take the process past 80% of its open-file limit, so it never fails to
//! accept, open a file or answer a health check for lack of descriptors).
//!
//! Counted from the first packet of a connection (pending handshakes included) until it
//! closes, and refused before any handshake work is done.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::source::{ip_of, SourceCap, Tally};

/// Why [`SourceLimits`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Source(SourceCap),
    FileDescriptors,
}

impl Refusal {
    /// The metric label and log word.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Source(cap) => cap.name(),
            Refusal::FileDescriptors => "file_descriptors",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("connection refused: {}", match .reason {
    Refusal::Source(SourceCap::PerIp) => "too many connections from one IP address (DUSK_RELAY_MAX_CONNECTIONS_PER_IP)",
    Refusal::Source(SourceCap::PerIpv6Range) => "too many connections from one IPv6 /64 (DUSK_RELAY_MAX_CONNECTIONS_PER_IPV6_64)",
    Refusal::FileDescriptors => "the relay is near its open-file limit (raise LimitNOFILE / ulimit -n)",
})]
pub struct Refused {
    pub reason: Refusal,
}

struct Tracked {
    ip: IpAddr,
    uses_descriptor: bool,
}

pub struct SourceLimits {
    tally: Tally,
    /// Connections that hold a file descriptor of their own (all but QUIC, whose
    /// connections share the listener's UDP socket), and how many may.
    descriptors: usize,
    descriptor_budget: Option<usize>,
    connections: HashMap<ConnectionId, Tracked>,
}

impl SourceLimits {
    /// 0 for a cap means no limit; `descriptor_budget` `None` means no budget.
    pub fn new(per_ip: usize, per_ipv6_64: usize, descriptor_budget: Option<usize>) -> Self {
        SourceLimits {
            tally: Tally::new(per_ip, per_ipv6_64),
            descriptors: 0,
            descriptor_budget,
            connections: HashMap::new(),
        }
    }

    /// Distinct source IPs with a connection (pending or established).
    pub fn source_ips(&self) -> usize {
        self.tally.ips()
    }

    fn release(&mut self, connection: ConnectionId) {
        if let Some(tracked) = self.connections.remove(&connection) {
            self.tally.remove(tracked.ip);
            if tracked.uses_descriptor {
                self.descriptors -= 1;
            }
        }
    }
}

fn uses_descriptor(addr: &Multiaddr) -> bool {
    !addr
        .iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

impl NetworkBehaviour for SourceLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote_addr) else {
            return Ok(());
        };
        let uses_descriptor = uses_descriptor(remote_addr);
        if uses_descriptor
            && self
                .descriptor_budget
                .is_some_and(|budget| self.descriptors >= budget)
        {
            return Err(ConnectionDenied::new(Refused {
                reason: Refusal::FileDescriptors,
            }));
        }
        self.tally.try_add(ip).map_err(|cap| {
            ConnectionDenied::new(Refused {
                reason: Refusal::Source(cap),
            })
        })?;
        if uses_descriptor {
            self.descriptors += 1;
        }
        self.connections.insert(
            connection_id,
            Tracked {
                ip,
                uses_descriptor,
            },
        );
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(closed) => self.release(closed.connection_id),
            // A handshake that failed or was denied by another behaviour.
            FromSwarm::ListenFailure(failure) => self.release(failure.connection_id),
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

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
