//! One connection's share of the circuit relay: it reads the HOP requests the peer
//! opens and hands each up to [`super::Server`], which decides; it opens the STOP
//! streams the server asks for (this peer is a circuit's destination); and it keeps
//! the connection alive while the peer holds a reservation on it.
//!
//! A peer the access list denies gets the same reading, and every well-formed request
//! answered `PERMISSION_DENIED` here, without the server. Its connection is closed
//! [`DENIED_LINGER`] after the answer, or after [`DENIED_GRACE`] if it asks nothing.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, SubstreamProtocol,
};
use libp2p::PeerId;
use tokio::time::Instant;

use super::proto::{stop_message, Limit, Peer, Status, StopMessage, HOP, STOP};
use super::wire::{self, HopRequest, ReadError};
use crate::access::Denied;

/// How long a peer has to send its HOP request once the stream is open, and the
/// destination to answer a STOP CONNECT (libp2p-relay allows 60 s for both; a chat
/// client answers in milliseconds).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// HOP streams of one connection read at once; more are reset (libp2p-relay's 10).
const MAX_REQUESTS_IN_FLIGHT: usize = 10;

/// How long a denied peer's connection stays open when it asks nothing: long enough to
/// send the HOP request it connected for and read the answer.
pub const DENIED_GRACE: Duration = Duration::from_secs(5);

/// How long a denied connection stays open after an answer: closing at once would race
/// the answer, and libp2p's relay client then reports a cancelled request instead of
/// `PERMISSION_DENIED`.
pub const DENIED_LINGER: Duration = Duration::from_secs(1);

/// A circuit being set up, named by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircuitId(pub(super) u64);

/// What the server asks of a connection.
#[derive(Debug)]
pub enum FromServer {
    /// The peer holds a reservation on this connection until then.
    Reserved { until: Instant },
    /// It holds none (any more).
    Released,
    /// Open a STOP stream to this peer for a circuit from `src`.
    OpenStop {
        id: CircuitId,
        src: PeerId,
        limit: Limit,
    },
}

/// What a connection reports to the server.
#[derive(Debug)]
pub enum ToServer {
    /// A well-formed HOP request, its stream waiting for the answer.
    Request { stream: Stream, request: HopRequest },
    /// The destination accepted the circuit (its STOP stream, ready to splice) or not.
    Stop {
        id: CircuitId,
        stream: Result<Stream, String>,
    },
    /// A denied peer asked for `Denied` and was answered `PERMISSION_DENIED`.
    Denied(Denied),
    /// A denied connection's time is up.
    GraceOver,
}

type Reading = BoxFuture<'static, Option<ToServer>>;
type Stopping = BoxFuture<'static, ToServer>;

pub struct Handler {
    /// The access list denies this peer.
    denied: bool,
    reading: FuturesUnordered<Reading>,
    stops_to_open: VecDeque<(CircuitId, PeerId, Limit)>,
    stopping: FuturesUnordered<Stopping>,
    reserved_until: Option<Instant>,
    /// A denied connection's deadline.
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Handler {
    pub fn serving() -> Self {
        Handler {
            denied: false,
            reading: FuturesUnordered::new(),
            stops_to_open: VecDeque::new(),
            stopping: FuturesUnordered::new(),
            reserved_until: None,
            grace: None,
        }
    }

    pub fn denied() -> Self {
        Handler {
            denied: true,
            grace: Some(Box::pin(tokio::time::sleep(DENIED_GRACE))),
            ..Handler::serving()
        }
    }
}

/// Answers `status` on a HOP stream and closes it.
pub async fn answer(mut stream: Stream, status: Status) {
    let message = wire::hop_status(status, None);
    let answered = async {
        wire::write_message(&mut stream, &message).await?;
        stream.close().await
    };
    // A peer that stopped reading loses its answer, nothing else.
    let _ = tokio::time::timeout(STREAM_TIMEOUT, answered).await;
}

/// Reads one HOP request. Anything but a well-formed request is answered here
/// (`MALFORMED_MESSAGE`, `UNEXPECTED_MESSAGE`) or, if the stream ended first, dropped.
async fn read_request(mut stream: Stream, denied: bool) -> Option<ToServer> {
    let message = match wire::read_message(&mut stream).await {
        Ok(message) => message,
        Err(ReadError::Malformed(why)) => {
            tracing::debug!(why, "malformed HOP request");
            answer(stream, Status::MalformedMessage).await;
            return None;
        }
        Err(ReadError::Closed(_)) => return None,
    };
    let request = match wire::hop_request(&message) {
        Ok(request) => request,
        Err(status) => {
            tracing::debug!(?status, "HOP request refused unread");
            answer(stream, status).await;
            return None;
        }
    };
    if denied {
        answer(stream, Status::PermissionDenied).await;
        return Some(ToServer::Denied(match request {
            HopRequest::Reserve => Denied::Reservation,
            HopRequest::Connect { .. } => Denied::Circuit,
        }));
    }
    Some(ToServer::Request { stream, request })
}

/// STOP CONNECT on a fresh STOP stream, and the destination's answer.
async fn stop_connect(mut stream: Stream, src: PeerId, limit: Limit) -> Result<Stream, String> {
    let connect = StopMessage {
        r#type: stop_message::Type::Connect as i32,
        peer: Some(Peer {
            // No addresses: the destination learns the source's peer id, never its IP.
            id: src.to_bytes(),
            addrs: Vec::new(),
        }),
        limit: Some(limit),
        status: None,
    };
    wire::write_message(&mut stream, &connect)
        .await
        .map_err(|e| format!("STOP CONNECT not sent: {e}"))?;
    let reply: StopMessage = wire::read_message(&mut stream)
        .await
        .map_err(|e| format!("no STOP answer: {e}"))?;
    if reply.r#type != stop_message::Type::Status as i32 {
        return Err("the STOP answer is not a STATUS".into());
    }
    match reply.status.map(Status::try_from) {
        Some(Ok(Status::Ok)) => Ok(stream),
        other => Err(format!("the destination answered {other:?}")),
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = FromServer;
    type ToBehaviour = ToServer;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = (CircuitId, PeerId, Limit);

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(HOP), ())
    }

    fn connection_keep_alive(&self) -> bool {
        if self.denied {
            return false;
        }
        self.reserved_until.is_some_and(|t| t > Instant::now())
            || !self.reading.is_empty()
            || !self.stopping.is_empty()
            || !self.stops_to_open.is_empty()
    }

    fn on_behaviour_event(&mut self, event: FromServer) {
        match event {
            FromServer::Reserved { until } => self.reserved_until = Some(until),
            FromServer::Released => self.reserved_until = None,
            FromServer::OpenStop { id, src, limit } => {
                self.stops_to_open.push_back((id, src, limit))
            }
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            (),
            Self::OutboundOpenInfo,
        >,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: stream,
                ..
            }) => {
                if self.reading.len() >= MAX_REQUESTS_IN_FLIGHT {
                    tracing::debug!("too many HOP requests in flight on one connection");
                    return;
                }
                let read = tokio::time::timeout(STREAM_TIMEOUT, read_request(stream, self.denied))
                    .map(|read| read.ok().flatten());
                self.reading.push(read.boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                info: (id, src, limit),
            }) => {
                let stop = tokio::time::timeout(STREAM_TIMEOUT, stop_connect(stream, src, limit))
                    .map(move |stopped| ToServer::Stop {
                        id,
                        stream: stopped.unwrap_or_else(|_| Err("no STOP answer in time".into())),
                    });
                self.stopping.push(stop.boxed());
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError {
                info: (id, _, _),
                error,
            }) => {
                let failed = ToServer::Stop {
                    id,
                    stream: Err(format!("no STOP stream: {error}")),
                };
                self.stopping.push(futures::future::ready(failed).boxed());
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, ToServer>>
    {
        if let Some((id, src, limit)) = self.stops_to_open.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(STOP), (id, src, limit))
                    .with_timeout(STREAM_TIMEOUT),
            });
        }
        if let Poll::Ready(Some(stopped)) = self.stopping.poll_next_unpin(cx) {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(stopped));
        }
        while let Poll::Ready(Some(read)) = self.reading.poll_next_unpin(cx) {
            let Some(read) = read else { continue };
            if let (ToServer::Denied(_), Some(grace)) = (&read, self.grace.as_mut()) {
                let linger = Instant::now() + DENIED_LINGER;
                if linger < grace.deadline() {
                    grace.as_mut().reset(linger);
                }
            }
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(read));
        }
        if let Some(grace) = self.grace.as_mut() {
            if grace.as_mut().poll(cx).is_ready() {
                self.grace = None;
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ToServer::GraceOver));
            }
        }
        Poll::Pending
    }
}
