//! Puts the access list ([`crate::access`]) in front of libp2p's relay behaviour.
//!
//! libp2p's relay can only refuse with `RESOURCE_LIMIT_EXCEEDED`, and a refused
//! connection would tell a client nothing. So the gate wraps the relay: a connection of a
//! denied peer gets a small handler of ours instead of the relay's, which answers its HOP
//! requests (reservation or circuit) with `PERMISSION_DENIED` (202), and the connection
//! is closed [`DENIED_LINGER`] after the answer, or after [`DENIED_GRACE`] if the peer
//! asks nothing. The relay never learns about denied connections.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, Stream, StreamProtocol, SubstreamProtocol, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{relay, Multiaddr, PeerId};
use prost::Message as _;

use crate::access::AccessControl;
use crate::multiaddr_ext::ip_of;

/// How long a denied peer's connection stays open when it asks nothing: long enough to
/// send the HOP request it connected for and read the answer.
pub const DENIED_GRACE: Duration = Duration::from_secs(5);

/// How long a denied connection stays open after an answer: closing at once would race
/// the answer, and libp2p's relay client then reports a cancelled request instead of
/// `PERMISSION_DENIED`.
pub const DENIED_LINGER: Duration = Duration::from_secs(1);

/// libp2p-relay's cap on one HOP message.
const MAX_HOP_MESSAGE: usize = 4096;

/// HOP requests a denied connection gets answered at once; more are dropped.
const MAX_DENIALS_IN_FLIGHT: usize = 4;

/// The few fields of the HOP message a denial needs (the spec's proto2 message).
#[derive(Clone, PartialEq, prost::Message)]
struct HopMessage {
    #[prost(int32, optional, tag = "1")]
    r#type: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    status: Option<i32>,
}

const HOP_RESERVE: i32 = 0;
const HOP_CONNECT: i32 = 1;
const HOP_STATUS: i32 = 2;
const PERMISSION_DENIED: i32 = 202;

/// What a denied peer asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Reservation,
    Circuit,
    /// Its connection, when a replaced list denies a peer already connected.
    Connection,
}

impl Denied {
    pub fn name(self) -> &'static str {
        match self {
            Denied::Reservation => "reservation",
            Denied::Circuit => "circuit",
            Denied::Connection => "connection",
        }
    }
}

#[derive(Debug)]
pub enum GateEvent {
    Relay(relay::Event),
    Denied { peer: PeerId, what: Denied },
}

pub struct AccessGate {
    relay: relay::Behaviour,
    access: AccessControl,
    generation: u64,
    /// Connections the relay serves, to re-check when the list changes.
    served: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    denied: HashMap<ConnectionId, PeerId>,
    events: VecDeque<GateEvent>,
    to_close: VecDeque<(PeerId, ConnectionId)>,
}

impl AccessGate {
    pub fn new(relay: relay::Behaviour, access: AccessControl) -> Self {
        AccessGate {
            generation: access.generation(),
            relay,
            access,
            served: HashMap::new(),
            denied: HashMap::new(),
            events: VecDeque::new(),
            to_close: VecDeque::new(),
        }
    }

    fn recheck(&mut self) {
        let list = self.access.current();
        let now_denied: Vec<_> = self
            .served
            .iter()
            .filter(|(_, (peer, ip))| !list.permits(peer, *ip))
            .map(|(connection, (peer, _))| (*peer, *connection))
            .collect();
        for (peer, connection) in now_denied {
            self.served.remove(&connection);
            self.access.set_denied(connection, true);
            self.events.push_back(GateEvent::Denied {
                peer,
                what: Denied::Connection,
            });
            self.to_close.push_back((peer, connection));
        }
    }

    fn is_denied(&self, connection: ConnectionId) -> bool {
        self.denied.contains_key(&connection)
    }
}

impl NetworkBehaviour for AccessGate {
    type ConnectionHandler = either::Either<THandler<relay::Behaviour>, DeniedHandler>;
    type ToSwarm = GateEvent;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.relay
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let ip = ip_of(remote_addr);
        if !self.access.current().permits(&peer, ip) {
            self.denied.insert(connection_id, peer);
            self.access.set_denied(connection_id, true);
            return Ok(either::Either::Right(DeniedHandler::default()));
        }
        let handler = self.relay.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        self.served.insert(connection_id, (peer, ip));
        Ok(either::Either::Left(handler))
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The relay never dials; a dial is someone embedding it, not a client.
        self.relay
            .handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
            .map(either::Either::Left)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let connection = match &event {
            FromSwarm::ConnectionEstablished(e) => Some(e.connection_id),
            FromSwarm::ConnectionClosed(e) => Some(e.connection_id),
            FromSwarm::AddressChange(e) => Some(e.connection_id),
            _ => None,
        };
        if let Some(connection) = connection {
            if let FromSwarm::ConnectionClosed(_) = event {
                self.served.remove(&connection);
                self.access.set_denied(connection, false);
                if self.denied.remove(&connection).is_some() {
                    return;
                }
            } else if self.is_denied(connection) {
                return;
            }
        }
        self.relay.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            either::Either::Left(event) => self
                .relay
                .on_connection_handler_event(peer, connection, event),
            either::Either::Right(DeniedHandlerEvent::Answered(what)) => {
                self.events.push_back(GateEvent::Denied { peer, what });
            }
            either::Either::Right(DeniedHandlerEvent::GraceOver) => {
                self.to_close.push_back((peer, connection));
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.access.register(cx.waker());
        let generation = self.access.generation();
        if generation != self.generation {
            self.generation = generation;
            self.recheck();
        }
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ToSwarm::GenerateEvent(event));
        }
        if let Some((peer_id, connection)) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(connection),
            });
        }
        self.relay.poll(cx).map(|action| {
            action
                .map_out(GateEvent::Relay)
                .map_in(either::Either::Left)
        })
    }
}

#[derive(Debug)]
pub enum DeniedHandlerEvent {
    Answered(Denied),
    GraceOver,
}

type Answer = BoxFuture<'static, Option<Denied>>;

/// The handler of a denied peer's connection: answers HOP with `PERMISSION_DENIED`.
pub struct DeniedHandler {
    answers: FuturesUnordered<Answer>,
    grace: std::pin::Pin<Box<tokio::time::Sleep>>,
    grace_reported: bool,
}

impl Default for DeniedHandler {
    fn default() -> Self {
        DeniedHandler {
            answers: FuturesUnordered::new(),
            grace: Box::pin(tokio::time::sleep(DENIED_GRACE)),
            grace_reported: false,
        }
    }
}

/// Reads one HOP request and answers it `PERMISSION_DENIED`; `None` if the peer sent
/// no readable request (the stream is dropped, which resets it).
async fn deny(mut stream: Stream) -> Option<Denied> {
    let len = unsigned_varint::aio::read_usize(&mut stream).await.ok()?;
    if len > MAX_HOP_MESSAGE {
        return None;
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    let what = requested(&body)?;
    let answer = HopMessage {
        r#type: Some(HOP_STATUS),
        status: Some(PERMISSION_DENIED),
    }
    .encode_length_delimited_to_vec();
    stream.write_all(&answer).await.ok()?;
    stream.close().await.ok()?;
    Some(what)
}

/// What a HOP request body (without its length prefix) asks for; `None` for anything
/// that is not a well-formed RESERVE or CONNECT. Peer bytes: must never panic (fuzzed,
/// `fuzz/fuzz_targets/hop_request.rs`).
pub fn requested(body: &[u8]) -> Option<Denied> {
    match HopMessage::decode(body).ok()?.r#type {
        Some(HOP_RESERVE) => Some(Denied::Reservation),
        Some(HOP_CONNECT) => Some(Denied::Circuit),
        _ => None,
    }
}

impl ConnectionHandler for DeniedHandler {
    type FromBehaviour = std::convert::Infallible;
    type ToBehaviour = DeniedHandlerEvent;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(relay::HOP_PROTOCOL_NAME), ())
    }

    fn connection_keep_alive(&self) -> bool {
        false
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        libp2p::core::util::unreachable(event)
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            if self.answers.len() < MAX_DENIALS_IN_FLIGHT {
                let answer = tokio::time::timeout(DENIED_GRACE, deny(stream))
                    .map(|answered| answered.ok().flatten());
                self.answers.push(answer.boxed());
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        while let Poll::Ready(Some(answered)) = self.answers.poll_next_unpin(cx) {
            if let Some(what) = answered {
                let linger = tokio::time::Instant::now() + DENIED_LINGER;
                if linger < self.grace.deadline() {
                    self.grace.as_mut().reset(linger);
                }
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                    DeniedHandlerEvent::Answered(what),
                ));
            }
        }
        if !self.grace_reported && self.grace.as_mut().poll(cx).is_ready() {
            self.grace_reported = true;
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                DeniedHandlerEvent::GraceOver,
            ));
        }
        Poll::Pending
    }
}
