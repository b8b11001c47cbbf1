//! The circuit relay v2 server (HOP and STOP, libp2p/specs `relay/circuit-v2.md`): every
//! decision about reservations and circuits, made in one place with every policy in it.
//!
//! - RESERVE: refused while draining (`RESERVATION_REFUSED`); over the total, per-peer,
//!   per-IP or per-prefix caps or rates, `RESOURCE_LIMIT_EXCEEDED`; otherwise answered
//!   with the relay's public addresses, the expiry and a voucher ([`super::voucher`]).
//! - CONNECT: over the circuit caps or rates, `RESOURCE_LIMIT_EXCEEDED`; to a peer
//!   without a reservation, `NO_RESERVATION`; otherwise STOP CONNECT to the destination
//!   over the connection holding its reservation, and `CONNECTION_FAILED` if it refuses
//!   or cannot be reached. Then [`super::splice`] moves the bytes in a task of its own.
//! - A peer the access list denies is answered `PERMISSION_DENIED` by its connection's
//!   handler ([`super::handler`]); a list reload closes the connections it now denies.
//! - Relayed connections get no HOP at all (no relay over relay).
//! - In a fleet ([`crate::fleet`]), a CONNECT to a peer reserved on another node is
//!   forwarded there over the mesh, and circuits other nodes forward here are served
//!   like local CONNECTs (never forwarded again); reservations are listed in the
//!   fleet's directory.
//!
//! The limit sent with every accepted request is what libp2p-relay sent, which
//! js-libp2p and the dusk 0.54 client accept: a duration (`u32::MAX` s when circuits
//! have no time limit, which js reads as unlimited) and the byte limit (0: none).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use either::Either;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::ExternalAddresses;
use libp2p::swarm::{
    dummy, CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, Stream, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::handler::{self, CircuitId, FromServer, Handler, ToServer};
use super::proto::{hop_message, HopMessage, Limit, Reservation, Status};
use super::rates::Rates;
use super::reservations::{Reservations, Reserved};
use super::splice::{self, CircuitLimits, End, SpliceServices};
use super::voucher;
use super::wire::{self, HopRequest};
use crate::access::{AccessControl, Denied};
use crate::config::RelayLimits;
use crate::fleet::forward::{self, Forwarding};
use crate::fleet::{Across, FleetLink, MeshCircuit, RemoteEvent};
use crate::limits::relay_per_ip::{CircuitLeg, IpCaps};
use crate::multiaddr_ext::{ip_of, is_relayed};

/// How often idle rate buckets are forgotten.
const FORGET_RATES_EVERY: Duration = Duration::from_secs(60);

/// What the server did. Peer ids only, never an address.
#[derive(Debug)]
pub enum Event {
    ReservationAccepted {
        peer: PeerId,
        /// On the same connection as before.
        renewed: bool,
        /// The peer held no reservation before.
        new_peer: bool,
        /// Peers holding a reservation now.
        peers: usize,
    },
    ReservationDenied {
        peer: PeerId,
        status: Status,
    },
    /// The peer's last reservation ended (its connection closed, or it expired).
    ReservationEnded {
        peer: PeerId,
        peers: usize,
    },
    CircuitOpened {
        src: PeerId,
        dst: PeerId,
        open: usize,
        /// `Some` for a circuit across the fleet.
        across: Option<Across>,
    },
    CircuitDenied {
        src: PeerId,
        dst: PeerId,
        status: Status,
    },
    CircuitClosed {
        src: PeerId,
        dst: PeerId,
        open: usize,
        error: Option<io::Error>,
        across: Option<Across>,
    },
    AccessDenied {
        peer: PeerId,
        what: Denied,
    },
}

/// What the server shares with the rest of the relay.
pub struct ServerParts {
    pub keypair: Keypair,
    pub limits: RelayLimits,
    /// While true, RESERVE is refused; circuits carry on.
    pub draining: Arc<AtomicBool>,
    pub access: AccessControl,
    pub ip_caps: IpCaps,
    pub splice: SpliceServices,
    /// Fleet mode: the directory and the mesh; `None` for a single relay.
    pub fleet: Option<FleetLink>,
}

struct Connection {
    peer: PeerId,
    ip: Option<IpAddr>,
    denied: bool,
}

/// A circuit whose destination has not answered STOP yet.
struct Pending {
    src: PeerId,
    /// `None` for a circuit another node forwarded.
    src_connection: Option<ConnectionId>,
    src_leg: Option<CircuitLeg>,
    dst: PeerId,
    dst_connection: ConnectionId,
    hop: Stream,
    across: Option<Across>,
}

type ForwardedSender = mpsc::UnboundedSender<(CircuitId, RemoteEvent)>;
type ForwardedReceiver = mpsc::UnboundedReceiver<(CircuitId, RemoteEvent)>;

struct Ended {
    src: PeerId,
    dst: PeerId,
    error: Option<io::Error>,
    across: Option<Across>,
}

pub struct Server {
    local_peer_id: PeerId,
    parts: ServerParts,
    limit: Limit,
    circuit_limits: CircuitLimits,
    external_addresses: ExternalAddresses,
    access_generation: u64,
    reservation_rates: Rates,
    circuit_rates: Rates,
    forget_rates_at: Instant,
    connections: HashMap<ConnectionId, Connection>,
    reservations: Reservations,
    pending: HashMap<CircuitId, Pending>,
    /// Circuits this node forwards to another, pending or open.
    forwarded: HashMap<CircuitId, (PeerId, PeerId)>,
    forwarded_events: (ForwardedSender, ForwardedReceiver),
    /// Circuits pending or open, per peer at either end.
    circuits_of_peer: HashMap<PeerId, usize>,
    /// Circuits pending or open.
    circuits_taken: usize,
    open: usize,
    running: FuturesUnordered<BoxFuture<'static, Ended>>,
    next_circuit: u64,
    expiry: std::pin::Pin<Box<tokio::time::Sleep>>,
    actions: VecDeque<ToSwarm<Event, THandlerInEvent<Self>>>,
}

impl Server {
    pub fn new(parts: ServerParts) -> Self {
        let limits = &parts.limits;
        let circuit_limits = CircuitLimits {
            duration: limits.max_circuit_duration,
            bytes: limits.max_circuit_bytes,
        };
        let limit = Limit {
            duration: Some(
                limits
                    .max_circuit_duration
                    .map_or(u32::MAX, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            ),
            data: Some(limits.max_circuit_bytes),
        };
        Server {
            local_peer_id: parts.keypair.public().to_peer_id(),
            limit,
            circuit_limits,
            external_addresses: ExternalAddresses::default(),
            access_generation: parts.access.generation(),
            reservation_rates: Rates::per_minute(
                limits.reservation_rate_per_peer,
                limits.reservation_rate_per_ip,
            ),
            circuit_rates: Rates::per_minute(
                limits.circuit_rate_per_peer,
                limits.circuit_rate_per_ip,
            ),
            forget_rates_at: Instant::now() + FORGET_RATES_EVERY,
            connections: HashMap::new(),
            reservations: Reservations::default(),
            pending: HashMap::new(),
            forwarded: HashMap::new(),
            forwarded_events: mpsc::unbounded_channel(),
            circuits_of_peer: HashMap::new(),
            circuits_taken: 0,
            open: 0,
            running: FuturesUnordered::new(),
            next_circuit: 0,
            expiry: Box::pin(tokio::time::sleep(Duration::ZERO)),
            actions: VecDeque::new(),
            parts,
        }
    }

    fn event(&mut self, event: Event) {
        self.actions.push_back(ToSwarm::GenerateEvent(event));
    }

    fn notify(&mut self, peer_id: PeerId, connection: ConnectionId, event: FromServer) {
        self.actions.push_back(ToSwarm::NotifyHandler {
            peer_id,
            handler: NotifyHandler::One(connection),
            event: Either::Left(event),
        });
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        stream: Stream,
        request: HopRequest,
    ) {
        let ip = self.connections.get(&connection).and_then(|c| c.ip);
        let now = Instant::now();
        if now >= self.forget_rates_at {
            self.reservation_rates.forget_idle();
            self.circuit_rates.forget_idle();
            self.forget_rates_at = now + FORGET_RATES_EVERY;
        }
        match request {
            HopRequest::Reserve => self.on_reserve(peer, connection, ip, stream),
            HopRequest::Connect { dst } => self.on_connect(peer, connection, ip, dst, stream),
        }
    }

    /// Why a RESERVE is refused, if it is; the per-IP tally is taken last, when nothing
    /// else refuses.
    fn reservation_refusal(
        &self,
        peer: PeerId,
        connection: ConnectionId,
        ip: Option<IpAddr>,
    ) -> Option<Status> {
        if self.parts.draining.load(Ordering::Relaxed) {
            return Some(Status::ReservationRefused);
        }
        let limits = &self.parts.limits;
        let renewal = self.reservations.holds(&peer, connection);
        let over_caps = !renewal
            && (self.reservations.of_peer(&peer) >= limits.max_reservations_per_peer
                || self.reservations.total() >= limits.max_reservations);
        if over_caps
            || !self.reservation_rates.admit(peer, ip)
            || !self.parts.ip_caps.admit_reservation(peer, ip)
        {
            return Some(Status::ResourceLimitExceeded);
        }
        None
    }

    fn on_reserve(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        ip: Option<IpAddr>,
        stream: Stream,
    ) {
        if let Some(status) = self.reservation_refusal(peer, connection, ip) {
            tokio::spawn(handler::answer(stream, status));
            self.event(Event::ReservationDenied { peer, status });
            return;
        }
        let duration = self.parts.limits.reservation_duration;
        let until = Instant::now() + duration;
        let reserved = self.reservations.reserve(peer, connection, until);
        if let Some(fleet) = &self.parts.fleet {
            fleet.directory.claim(peer, duration);
        }
        self.notify(peer, connection, FromServer::Reserved { until });
        let expire = (SystemTime::now() + duration)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let answer = HopMessage {
            r#type: hop_message::Type::Status as i32,
            status: Some(Status::Ok as i32),
            reservation: Some(Reservation {
                expire,
                addrs: self.public_addresses().iter().map(|a| a.to_vec()).collect(),
                voucher: voucher::sign(&self.parts.keypair, peer, expire).ok(),
            }),
            limit: Some(self.limit),
            peer: None,
        };
        tokio::spawn(async move {
            let mut stream = stream;
            let answered = async {
                wire::write_message(&mut stream, &answer).await?;
                futures::AsyncWriteExt::close(&mut stream).await
            };
            let _ = tokio::time::timeout(handler::STREAM_TIMEOUT, answered).await;
        });
        self.event(Event::ReservationAccepted {
            peer,
            renewed: reserved == Reserved::Renewed,
            new_peer: reserved == Reserved::New,
            peers: self.reservations.peers(),
        });
    }

    /// The external addresses, each ending in the relay's peer id.
    fn public_addresses(&self) -> Vec<Multiaddr> {
        self.external_addresses
            .iter()
            .filter(|a| !is_relayed(a))
            .map(|a| match a.iter().last() {
                Some(Protocol::P2p(_)) => a.clone(),
                _ => a.clone().with(Protocol::P2p(self.local_peer_id)),
            })
            .collect()
    }

    fn circuit_refusal(&self, src: PeerId, ip: Option<IpAddr>) -> Option<Status> {
        let limits = &self.parts.limits;
        let of_src = self.circuits_of_peer.get(&src).copied().unwrap_or(0);
        let over =
            self.circuits_taken >= limits.max_circuits || of_src >= limits.max_circuits_per_peer;
        if over || !self.circuit_rates.admit(src, ip) || !self.parts.ip_caps.admit_circuit(ip) {
            return Some(Status::ResourceLimitExceeded);
        }
        None
    }

    fn on_connect(
        &mut self,
        src: PeerId,
        src_connection: ConnectionId,
        src_ip: Option<IpAddr>,
        dst: PeerId,
        hop: Stream,
    ) {
        let refusal = self.circuit_refusal(src, src_ip);
        let dst_connection = self.reservations.connection_of(&dst);
        let dst_connection = match (refusal, dst_connection) {
            (None, Some(connection)) => connection,
            (None, None) if self.parts.fleet.is_some() => {
                self.forward(src, src_ip, dst, hop);
                return;
            }
            (refusal, _) => {
                self.deny_circuit(src, dst, hop, refusal.unwrap_or(Status::NoReservation));
                return;
            }
        };
        let src_leg = src_ip.map(|ip| self.parts.ip_caps.circuit_leg(ip));
        self.stop(Pending {
            src,
            src_connection: Some(src_connection),
            src_leg,
            dst,
            dst_connection,
            hop,
            across: None,
        });
    }

    /// A circuit another node forwarded: served like a local CONNECT (the source's IP
    /// is that node's to count), never forwarded again.
    fn on_received(&mut self, circuit: MeshCircuit) {
        let MeshCircuit { src, dst, stream } = circuit;
        let refusal = self.circuit_refusal(src, None);
        match (refusal, self.reservations.connection_of(&dst)) {
            (None, Some(dst_connection)) => self.stop(Pending {
                src,
                src_connection: None,
                src_leg: None,
                dst,
                dst_connection,
                hop: stream,
                across: Some(Across::Received),
            }),
            (refusal, _) => {
                let status = refusal.unwrap_or(Status::NoReservation);
                self.deny_circuit(src, dst, stream, status);
            }
        }
    }

    fn take_circuit(&mut self, src: PeerId, dst: PeerId) -> CircuitId {
        let id = CircuitId(self.next_circuit);
        self.next_circuit += 1;
        self.circuits_taken += 1;
        for peer in [src, dst] {
            *self.circuits_of_peer.entry(peer).or_default() += 1;
        }
        id
    }

    /// Sends `dst` STOP CONNECT for a circuit that passed every check.
    fn stop(&mut self, pending: Pending) {
        let (src, dst, dst_connection) = (pending.src, pending.dst, pending.dst_connection);
        let id = self.take_circuit(src, dst);
        self.pending.insert(id, pending);
        self.notify(
            dst,
            dst_connection,
            FromServer::OpenStop {
                id,
                src,
                limit: self.limit,
            },
        );
    }

    /// Forwards a CONNECT to the node holding `dst`'s reservation, if one does.
    fn forward(&mut self, src: PeerId, src_ip: Option<IpAddr>, dst: PeerId, hop: Stream) {
        let Some(fleet) = &self.parts.fleet else {
            return;
        };
        let (directory, mesh) = (fleet.directory.clone(), fleet.mesh.clone());
        let id = self.take_circuit(src, dst);
        self.forwarded.insert(id, (src, dst));
        tokio::spawn(forward::forward(Forwarding {
            id,
            src,
            dst,
            hop,
            src_leg: src_ip.map(|ip| self.parts.ip_caps.circuit_leg(ip)),
            limit: self.limit,
            limits: self.circuit_limits,
            services: self.parts.splice.clone(),
            directory,
            mesh,
            events: self.forwarded_events.0.clone(),
        }));
    }

    fn on_forwarded(&mut self, id: CircuitId, event: RemoteEvent) {
        let Some(&(src, dst)) = self.forwarded.get(&id) else {
            return;
        };
        let across = Some(Across::Forwarded);
        match event {
            RemoteEvent::Opened => self.opened(src, dst, across),
            RemoteEvent::Denied(status) => {
                self.forwarded.remove(&id);
                self.circuit_gone(src, dst);
                self.event(Event::CircuitDenied { src, dst, status });
            }
            RemoteEvent::Ended(error) => {
                self.forwarded.remove(&id);
                self.closed(Ended {
                    src,
                    dst,
                    error,
                    across,
                });
            }
        }
    }

    /// A circuit starts carrying bytes.
    fn opened(&mut self, src: PeerId, dst: PeerId, across: Option<Across>) {
        self.open += 1;
        self.event(Event::CircuitOpened {
            src,
            dst,
            open: self.open,
            across,
        });
    }

    /// An open circuit is over.
    fn closed(&mut self, ended: Ended) {
        self.open = self.open.saturating_sub(1);
        self.circuit_gone(ended.src, ended.dst);
        self.event(Event::CircuitClosed {
            src: ended.src,
            dst: ended.dst,
            open: self.open,
            error: ended.error,
            across: ended.across,
        });
    }

    fn deny_circuit(&mut self, src: PeerId, dst: PeerId, hop: Stream, status: Status) {
        tokio::spawn(handler::answer(hop, status));
        self.event(Event::CircuitDenied { src, dst, status });
    }

    /// A circuit pending or open is gone from the counts.
    fn circuit_gone(&mut self, src: PeerId, dst: PeerId) {
        self.circuits_taken = self.circuits_taken.saturating_sub(1);
        for peer in [src, dst] {
            if let Some(count) = self.circuits_of_peer.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    self.circuits_of_peer.remove(&peer);
                }
            }
        }
    }

    fn on_stop(&mut self, id: CircuitId, stream: Result<Stream, String>) {
        let Some(pending) = self.pending.remove(&id) else {
            return; // its source left meanwhile
        };
        let stop = match stream {
            Ok(stop) => stop,
            Err(why) => {
                tracing::debug!(why, "the destination did not take the circuit");
                self.circuit_gone(pending.src, pending.dst);
                self.deny_circuit(
                    pending.src,
                    pending.dst,
                    pending.hop,
                    Status::ConnectionFailed,
                );
                return;
            }
        };
        let (src, dst, across) = (pending.src, pending.dst, pending.across);
        let dst_leg = self
            .connections
            .get(&pending.dst_connection)
            .and_then(|c| c.ip)
            .map(|ip| self.parts.ip_caps.circuit_leg(ip));
        let answer = wire::hop_status(Status::Ok, Some(self.limit));
        let limits = self.circuit_limits;
        let services = self.parts.splice.clone();
        let mut hop = pending.hop;
        let task = tokio::spawn(async move {
            wire::write_message(&mut hop, &answer).await?;
            let src = End {
                stream: hop,
                peer: src,
                leg: pending.src_leg,
            };
            let dst = End {
                stream: stop,
                peer: dst,
                leg: dst_leg,
            };
            splice::splice(src, dst, limits, services).await
        });
        self.running.push(
            task.map(move |joined| Ended {
                src,
                dst,
                error: match joined {
                    Ok(result) => result.err(),
                    Err(e) => Some(io::Error::other(e)),
                },
                across,
            })
            .boxed(),
        );
        self.opened(src, dst, across);
    }

    fn on_connection_closed(&mut self, peer: PeerId, connection: ConnectionId) {
        self.connections.remove(&connection);
        self.parts.access.set_denied(connection, false);
        self.release(peer, connection);
        let orphaned: Vec<CircuitId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.src_connection == Some(connection) || p.dst_connection == connection)
            .map(|(id, _)| *id)
            .collect();
        for id in orphaned {
            if let Some(pending) = self.pending.remove(&id) {
                self.circuit_gone(pending.src, pending.dst);
                if pending.dst_connection == connection
                    && pending.src_connection != Some(connection)
                {
                    self.deny_circuit(
                        pending.src,
                        pending.dst,
                        pending.hop,
                        Status::ConnectionFailed,
                    );
                }
            }
        }
    }

    /// Ends `peer`'s reservation on `connection`, if it held one there.
    fn release(&mut self, peer: PeerId, connection: ConnectionId) {
        if let Some(last) = self.reservations.release(peer, connection) {
            self.ended(peer, last);
        }
    }

    fn ended(&mut self, peer: PeerId, last: bool) {
        if last {
            self.parts.ip_caps.reservation_ended(peer);
            if let Some(fleet) = &self.parts.fleet {
                fleet.directory.release(peer);
            }
            self.event(Event::ReservationEnded {
                peer,
                peers: self.reservations.peers(),
            });
        }
    }

    /// Closes the connections a replaced access list denies.
    fn recheck_access(&mut self) {
        let list = self.parts.access.current();
        let now_denied: Vec<(ConnectionId, PeerId)> = self
            .connections
            .iter()
            .filter(|(_, c)| !c.denied && !list.permits(&c.peer, c.ip))
            .map(|(id, c)| (*id, c.peer))
            .collect();
        for (connection, peer) in now_denied {
            if let Some(c) = self.connections.get_mut(&connection) {
                c.denied = true;
            }
            self.parts.access.set_denied(connection, true);
            self.event(Event::AccessDenied {
                peer,
                what: Denied::Connection,
            });
            self.actions.push_back(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::One(connection),
            });
        }
    }

    fn poll_expiry(&mut self, cx: &mut Context<'_>) {
        let Some(next) = self.reservations.next_expiry() else {
            return;
        };
        if self.expiry.deadline() != next {
            self.expiry.as_mut().reset(next);
        }
        if self.expiry.as_mut().poll(cx).is_ready() {
            for (peer, connection, last) in self.reservations.expire(Instant::now()) {
                self.notify(peer, connection, FromServer::Released);
                self.ended(peer, last);
            }
            if let Some(next) = self.reservations.next_expiry() {
                self.expiry.as_mut().reset(next);
                let _ = self.expiry.as_mut().poll(cx);
            }
        }
    }
}

impl NetworkBehaviour for Server {
    type ConnectionHandler = Either<Handler, dummy::ConnectionHandler>;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if is_relayed(local_addr) || is_relayed(remote_addr) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        if !self
            .parts
            .access
            .current()
            .permits(&peer, ip_of(remote_addr))
        {
            self.parts.access.set_denied(connection_id, true);
            return Ok(Either::Left(Handler::denied()));
        }
        Ok(Either::Left(Handler::serving()))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The relay never dials; a dial is someone embedding it, not a client.
        if is_relayed(addr) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        Ok(Either::Left(Handler::serving()))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.external_addresses.on_swarm_event(&event);
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections.insert(
                    e.connection_id,
                    Connection {
                        peer: e.peer_id,
                        ip: ip_of(e.endpoint.get_remote_address()),
                        denied: self.parts.access.is_denied(e.connection_id),
                    },
                );
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => self.on_connection_closed(peer_id, connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let event = match event {
            Either::Left(event) => event,
            Either::Right(never) => libp2p::core::util::unreachable(never),
        };
        match event {
            ToServer::Request { stream, request } => {
                self.on_request(peer, connection, stream, request)
            }
            ToServer::Stop { id, stream } => self.on_stop(id, stream),
            ToServer::Denied(what) => self.event(Event::AccessDenied { peer, what }),
            ToServer::GraceOver => self.actions.push_back(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::One(connection),
            }),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        self.parts.access.register(cx.waker());
        let generation = self.parts.access.generation();
        if generation != self.access_generation {
            self.access_generation = generation;
            self.recheck_access();
        }
        while let Poll::Ready(Some(ended)) = self.running.poll_next_unpin(cx) {
            self.closed(ended);
        }
        while let Poll::Ready(Some((id, event))) = self.forwarded_events.1.poll_recv(cx) {
            self.on_forwarded(id, event);
        }
        while let Some(Poll::Ready(Some(circuit))) = self
            .parts
            .fleet
            .as_mut()
            .map(|fleet| fleet.received.poll_recv(cx))
        {
            self.on_received(circuit);
        }
        self.poll_expiry(cx);
        match self.actions.pop_front() {
            Some(action) => Poll::Ready(action),
            None => Poll::Pending,
        }
    }
}
