//! Connection ceilings libp2p has no behaviour for: connections and handshakes in flight
//! per source IP, IPv6 /64 and IPv6 /48, and a file-descriptor budget (strelaysrv's:
//! refuse new connections once they would take the process past 80% of its open-file
//! limit, so it never fails to accept, open a file or answer a health check for lack of
//! descriptors).
//!
//! A connection counts from its first packet (pending handshakes included) until it
//! closes, and is refused before any handshake work is done. Handshakes in flight have a
//! second, smaller tally: libp2p's `max_pending_incoming` is one pool for every transport,
//! held up to the handshake timeout, so without it 16 IPv4 addresses (or four IPv6 /64s)
//! that open handshakes and never finish them would hold every slot. A handshake leaves
//! that tally when its connection is established, fails or is denied.
//!
//! QUIC handshakes count as any other. libp2p-quic 0.14 accepts every QUIC Initial
//! without address validation (no retry), so their source IP is not proven: a host that
//! forges UDP source addresses can take another IP's handshake slots for the QUIC
//! handshake timeout (5 s).

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

use crate::config::settings::Id;
use crate::config::ConnectionLimits;
use crate::limits::ip_tally::{SourceCap, Tally};
use crate::multiaddr_ext::ip_of;

/// Why [`SourceLimits`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Connections (pending or established) from one source.
    Source(SourceCap),
    /// Handshakes in flight from one source.
    Pending(SourceCap),
    FileDescriptors,
}

impl Refusal {
    /// The metric label and log word: one of a fixed set of names.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Source(cap) => cap.name(),
            Refusal::Pending(SourceCap::PerIp) => "pending_per_ip",
            Refusal::Pending(SourceCap::PerIpv6Range) => "pending_per_ipv6_64",
            Refusal::Pending(SourceCap::PerIpv6Site) => "pending_per_ipv6_48",
            Refusal::FileDescriptors => "file_descriptors",
        }
    }

    /// What was exceeded.
    fn what(self) -> String {
        match self {
            Refusal::Source(cap) => format!("too many connections from {}", cap.scope()),
            Refusal::Pending(cap) => format!("too many handshakes in flight from {}", cap.scope()),
            Refusal::FileDescriptors => {
                "the relay is near its open-file limit (raise LimitNOFILE / ulimit -n)".into()
            }
        }
    }

    /// The setting that raises the ceiling; the open-file limit is the system's.
    fn setting(self) -> Option<Id> {
        Some(match self {
            Refusal::Source(SourceCap::PerIp) => Id::MaxConnectionsPerIp,
            Refusal::Source(SourceCap::PerIpv6Range) => Id::MaxConnectionsPerIpv6Prefix64,
            Refusal::Source(SourceCap::PerIpv6Site) => Id::MaxConnectionsPerIpv6Prefix48,
            Refusal::Pending(SourceCap::PerIp) => Id::MaxPendingPerIp,
            Refusal::Pending(SourceCap::PerIpv6Range) => Id::MaxPendingPerIpv6Prefix64,
            Refusal::Pending(SourceCap::PerIpv6Site) => Id::MaxPendingPerIpv6Prefix48,
            Refusal::FileDescriptors => return None,
        })
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = self.reason.what();
        match self.reason.setting() {
            Some(setting) => write!(f, "connection refused: {what} ({})", setting.env()),
            None => write!(f, "connection refused: {what}"),
        }
    }
}

#[derive(Debug)]
pub struct Refused {
    pub reason: Refusal,
}

impl std::error::Error for Refused {}

struct Tracked {
    ip: IpAddr,
    uses_descriptor: bool,
    /// Still in its handshake, so counted in [`SourceLimits::handshakes`] too.
    pending: bool,
}

pub struct SourceLimits {
    /// Connections per source, pending or established.
    sources: Tally,
    /// Handshakes in flight per source, over TCP, WS and WSS.
    handshakes: Tally,
    /// The same for QUIC, apart: a QUIC Initial's source address is not validated
    /// (libp2p-quic 0.14 cannot ask quinn for a retry), so whoever can forge UDP source
    /// addresses could fill a victim IP's handshake slots. Kept apart, that locks the
    /// victim out of QUIC only, never out of TCP, WS and WSS.
    quic_handshakes: Tally,
    /// Connections that hold a file descriptor of their own (all but QUIC, whose
    /// connections share the listener's UDP socket), and how many may.
    descriptors: usize,
    descriptor_budget: Option<usize>,
    connections: HashMap<ConnectionId, Tracked>,
}

impl SourceLimits {
    /// 0 for a cap means no limit; `descriptor_budget` `None` means no budget.
    pub fn new(limits: &ConnectionLimits, descriptor_budget: Option<usize>) -> Self {
        SourceLimits {
            sources: Tally::new(
                limits.max_per_ip,
                limits.max_per_ipv6_64,
                limits.max_per_ipv6_48,
            ),
            handshakes: Tally::new(
                limits.max_pending_per_ip,
                limits.max_pending_per_ipv6_64,
                limits.max_pending_per_ipv6_48,
            ),
            quic_handshakes: Tally::new(
                limits.max_pending_per_ip,
                limits.max_pending_per_ipv6_64,
                limits.max_pending_per_ipv6_48,
            ),
            descriptors: 0,
            descriptor_budget,
            connections: HashMap::new(),
        }
    }

    /// Distinct source IPs with a connection (pending or established).
    pub fn source_ips(&self) -> usize {
        self.sources.ips()
    }

    /// The connection's handshake is over: it leaves the handshake tally.
    fn established(&mut self, connection: ConnectionId) {
        if let Some(tracked) = self.connections.get_mut(&connection) {
            if tracked.pending {
                tracked.pending = false;
                let (ip, quic) = (tracked.ip, !tracked.uses_descriptor);
                self.handshakes_of(quic).remove(ip);
            }
        }
    }

    fn handshakes_of(&mut self, quic: bool) -> &mut Tally {
        if quic {
            &mut self.quic_handshakes
        } else {
            &mut self.handshakes
        }
    }

    fn release(&mut self, connection: ConnectionId) {
        if let Some(tracked) = self.connections.remove(&connection) {
            self.sources.remove(tracked.ip);
            if tracked.pending {
                self.handshakes_of(!tracked.uses_descriptor)
                    .remove(tracked.ip);
            }
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
        // Both checked before either counts, so a refusal leaves no trace.
        let refusal = match self.sources.would_exceed(ip, 1) {
            Some(cap) => Some(Refusal::Source(cap)),
            None => self
                .handshakes_of(!uses_descriptor)
                .would_exceed(ip, 1)
                .map(Refusal::Pending),
        };
        if let Some(reason) = refusal {
            return Err(ConnectionDenied::new(Refused { reason }));
        }
        self.sources.add(ip);
        self.handshakes_of(!uses_descriptor).add(ip);
        if uses_descriptor {
            self.descriptors += 1;
        }
        self.connections.insert(
            connection_id,
            Tracked {
                ip,
                uses_descriptor,
                pending: true,
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
            FromSwarm::ConnectionEstablished(established) => {
                self.established(established.connection_id)
            }
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
