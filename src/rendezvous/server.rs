//! The rendezvous server: `/rendezvous/1.0.0` over `request_response`, answering
//! REGISTER and DISCOVER from a [`Store`] and applying dusk's policy:
//!
//! - **No IP leaks through discovery**: a REGISTER whose signed record holds an address
//!   that is not a `/p2p-circuit` address is refused (`E_INVALID_SIGNED_PEER_RECORD`,
//!   status text says why) unless the operator allows direct addresses.
//! - Spec limits: namespaces 1–255 bytes, TTL within the configured bounds (2 h when
//!   the client sends none), registrant = record's peer, discover pages of at most
//!   1000 that also fit the 1 MiB frame, cookies that name their namespace.
//! - Caps per peer and in total, and `E_UNAVAILABLE` while draining or while the store
//!   cannot answer: the relay keeps relaying whatever happens to the store.
//!
//! Store operations run concurrently (Redis round trips must not stall the swarm), at
//! most [`MAX_PENDING`] at once, each bounded by [`STORE_TIMEOUT`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, PeerRecord, SignedEnvelope};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use super::codec::{Codec, MAX_MESSAGE_BYTES, PROTOCOL};
use super::proto::{self, MessageType, ResponseStatus};
use super::store::{Caps, NewRegistration, RegisterOutcome, Store, StoredRegistration};
use crate::access::AccessControl;
use crate::config::RendezvousLimits;

/// TTL of a registration whose REGISTER carries none (the spec's default).
pub const DEFAULT_TTL_SECS: u64 = 2 * 60 * 60;

/// Most registrations one DISCOVER response carries (the spec's cap).
pub const MAX_DISCOVER_LIMIT: usize = 1000;

pub const MAX_NAMESPACE_BYTES: usize = 255;

/// A store operation that takes longer is answered `E_UNAVAILABLE`, well inside the
/// client's 10 s request timeout.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Store operations in flight; more requests than this are answered `E_UNAVAILABLE`
/// at once instead of queueing without bound.
pub const MAX_PENDING: usize = 4096;

/// How often the registration gauge is refreshed from the store (expiry happens there).
const COUNT_INTERVAL: Duration = Duration::from_secs(10);

/// Room left in a DISCOVER response for everything but the registrations.
const RESPONSE_OVERHEAD: usize = 4 * 1024;

/// What the server did, for logs and metrics. Namespaces are for `debug` only.
#[derive(Debug, Clone)]
pub enum Event {
    Registered {
        peer: PeerId,
        namespace: String,
        ttl: u64,
        /// Registrations in the store after this one, if the store could say.
        total: Option<usize>,
    },
    RegisterRefused {
        peer: PeerId,
        namespace: Option<String>,
        status: ResponseStatus,
        reason: String,
    },
    Unregistered {
        peer: PeerId,
        namespace: String,
        total: Option<usize>,
    },
    Discovered {
        peer: PeerId,
        returned: usize,
    },
    DiscoverRefused {
        peer: PeerId,
        status: ResponseStatus,
        reason: String,
    },
    /// The store's registration count, refreshed periodically.
    Counted(usize),
}

/// The server's settings, from the relay configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub min_ttl: u64,
    pub max_ttl: u64,
    pub caps: Caps,
    /// Accept records with addresses that are not `/p2p-circuit` (off by default: they
    /// would tell every discoverer the registrant's IP).
    pub allow_direct_addresses: bool,
}

impl Policy {
    pub fn from_limits(limits: &RendezvousLimits) -> Self {
        Policy {
            min_ttl: limits.min_ttl_secs,
            max_ttl: limits.max_ttl_secs,
            caps: Caps {
                per_peer: limits.max_registrations_per_peer,
                total: limits.max_registrations,
            },
            allow_direct_addresses: limits.allow_direct_addresses,
        }
    }
}

/// An answer being prepared by the store.
struct Pending {
    channel: Option<ResponseChannel<proto::Message>>,
    response: Option<proto::Message>,
    event: Option<Event>,
}

type PendingFuture = BoxFuture<'static, Pending>;

pub struct Server {
    inner: request_response::Behaviour<Codec>,
    store: Arc<dyn Store>,
    policy: Policy,
    draining: Arc<AtomicBool>,
    access: AccessControl,
    pending: FuturesUnordered<PendingFuture>,
    counting: Option<BoxFuture<'static, Option<usize>>>,
    count_timer: tokio::time::Interval,
    events: VecDeque<Event>,
}

impl Server {
    /// While `draining` is true, REGISTER is answered `E_UNAVAILABLE`.
    /// Connections `access` denies are served nothing: their requests' streams are
    /// closed (the access gate closes the connection itself moments later).
    pub fn new(
        store: Arc<dyn Store>,
        policy: Policy,
        draining: Arc<AtomicBool>,
        access: AccessControl,
    ) -> Self {
        let inner = request_response::Behaviour::with_codec(
            Codec,
            [(PROTOCOL, ProtocolSupport::Inbound)],
            request_response::Config::default(),
        );
        Server {
            inner,
            store,
            policy,
            draining,
            access,
            pending: FuturesUnordered::new(),
            counting: None,
            count_timer: tokio::time::interval(COUNT_INTERVAL),
            events: VecDeque::new(),
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request: proto::Message,
        channel: ResponseChannel<proto::Message>,
    ) {
        let kind = request.r#type.and_then(|t| MessageType::try_from(t).ok());
        let work = match (kind, request) {
            (
                Some(MessageType::Register),
                proto::Message {
                    register: Some(register),
                    ..
                },
            ) => self.register(peer, register),
            (
                Some(MessageType::Unregister),
                proto::Message {
                    unregister: Some(unregister),
                    ..
                },
            ) => self.unregister(peer, unregister),
            (
                Some(MessageType::Discover),
                proto::Message {
                    discover: Some(discover),
                    ..
                },
            ) => self.discover(peer, discover),
            // Not a request, or a request without its body: no answer fits; dropping
            // the channel closes the stream.
            _ => return,
        };
        if self.pending.len() >= MAX_PENDING {
            let refused = busy(&work);
            self.finish(Pending {
                channel: Some(channel),
                ..refused
            });
            return;
        }
        self.pending.push(
            async move {
                let mut done = work.future.await;
                done.channel = Some(channel);
                done
            }
            .boxed(),
        );
    }

    fn register(&self, peer: PeerId, register: proto::Register) -> Work {
        let namespace = register.ns.clone();
        let refuse = |status: ResponseStatus, reason: String| {
            Work::ready(
                MessageType::RegisterResponse,
                Pending {
                    channel: None,
                    response: Some(register_response(status, &reason, None)),
                    event: Some(Event::RegisterRefused {
                        peer,
                        namespace: namespace.clone(),
                        status,
                        reason,
                    }),
                },
            )
        };
        let ns = match check_namespace(register.ns.as_deref()) {
            Ok(ns) => ns.to_owned(),
            Err(reason) => return refuse(ResponseStatus::EInvalidNamespace, reason),
        };
        let ttl = register.ttl.unwrap_or(DEFAULT_TTL_SECS);
        if ttl < self.policy.min_ttl || ttl > self.policy.max_ttl {
            return refuse(
                ResponseStatus::EInvalidTtl,
                format!(
                    "ttl {ttl}s is outside {}..={}s",
                    self.policy.min_ttl, self.policy.max_ttl
                ),
            );
        }
        let Some(bytes) = register.signed_peer_record else {
            return refuse(
                ResponseStatus::EInvalidSignedPeerRecord,
                "no signed peer record".into(),
            );
        };
        let record = match SignedEnvelope::from_protobuf_encoding(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|envelope| {
                PeerRecord::from_signed_envelope(envelope).map_err(|e| e.to_string())
            }) {
            Ok(record) => record,
            Err(e) => {
                return refuse(
                    ResponseStatus::EInvalidSignedPeerRecord,
                    format!("invalid signed peer record: {e}"),
                )
            }
        };
        if record.peer_id() != peer {
            return refuse(
                ResponseStatus::ENotAuthorized,
                "the signed peer record is not the registrant's".into(),
            );
        }
        if !self.policy.allow_direct_addresses {
            let direct = record.addresses().iter().filter(|a| !is_circuit(a)).count();
            if direct > 0 {
                return refuse(
                    ResponseStatus::EInvalidSignedPeerRecord,
                    format!(
                        "the record holds {direct} address(es) that are not /p2p-circuit; this relay \
                         publishes relayed addresses only, so no peer learns another's IP"
                    ),
                );
            }
        }
        if self.draining.load(Ordering::Relaxed) {
            return refuse(
                ResponseStatus::EUnavailable,
                "the relay is shutting down; register with another relay".into(),
            );
        }

        let store = self.store.clone();
        let caps = self.policy.caps;
        let registration = NewRegistration {
            namespace: ns.clone(),
            peer,
            record: bytes,
            ttl: Duration::from_secs(ttl),
        };
        let future = async move {
            let outcome =
                match tokio::time::timeout(STORE_TIMEOUT, store.register(registration, caps)).await
                {
                    Ok(Ok(outcome)) => Ok(outcome),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the registration store did not answer in time".to_owned()),
                };
            let refused = |status: ResponseStatus, reason: String| Pending {
                channel: None,
                response: Some(register_response(status, &reason, None)),
                event: Some(Event::RegisterRefused {
                    peer,
                    namespace: Some(ns.clone()),
                    status,
                    reason,
                }),
            };
            match outcome {
                Ok(RegisterOutcome::Registered) => {
                    let total = count(&*store).await;
                    Pending {
                        channel: None,
                        response: Some(register_response(ResponseStatus::Ok, "", Some(ttl))),
                        event: Some(Event::Registered {
                            peer,
                            namespace: ns,
                            ttl,
                            total,
                        }),
                    }
                }
                Ok(RegisterOutcome::PeerFull) => refused(
                    ResponseStatus::EUnavailable,
                    format!("this peer already holds {} registrations", caps.per_peer),
                ),
                Ok(RegisterOutcome::StoreFull) => refused(
                    ResponseStatus::EUnavailable,
                    format!(
                        "the relay holds its maximum of {} registrations",
                        caps.total
                    ),
                ),
                Err(reason) => refused(ResponseStatus::EUnavailable, reason),
            }
        };
        Work {
            answer: MessageType::RegisterResponse,
            future: future.boxed(),
        }
    }

    fn unregister(&self, peer: PeerId, unregister: proto::Unregister) -> Work {
        // UNREGISTER has no response: the channel is dropped either way.
        let Ok(ns) = check_namespace(unregister.ns.as_deref()).map(str::to_owned) else {
            return Work::ready(MessageType::Unregister, Pending::silent());
        };
        let store = self.store.clone();
        let future = async move {
            let event =
                match tokio::time::timeout(STORE_TIMEOUT, store.unregister(ns.clone(), peer)).await
                {
                    Ok(Ok(())) => Some(Event::Unregistered {
                        peer,
                        namespace: ns,
                        total: count(&*store).await,
                    }),
                    _ => None,
                };
            Pending {
                channel: None,
                response: None,
                event,
            }
        };
        Work {
            answer: MessageType::Unregister,
            future: future.boxed(),
        }
    }

    fn discover(&self, peer: PeerId, discover: proto::Discover) -> Work {
        let refuse = |status: ResponseStatus, reason: String| {
            Work::ready(
                MessageType::DiscoverResponse,
                Pending {
                    channel: None,
                    response: Some(discover_error(status, &reason)),
                    event: Some(Event::DiscoverRefused {
                        peer,
                        status,
                        reason,
                    }),
                },
            )
        };
        let namespace = match discover.ns.as_deref() {
            None => None,
            Some(ns) => match check_namespace(Some(ns)) {
                Ok(ns) => Some(ns.to_owned()),
                Err(reason) => return refuse(ResponseStatus::EInvalidNamespace, reason),
            },
        };
        let after = match discover.cookie.as_deref() {
            None => 0,
            Some(cookie) => match Cookie::decode(cookie) {
                Some(cookie) if cookie.namespace == namespace.clone().unwrap_or_default() => {
                    cookie.after
                }
                _ => {
                    return refuse(
                        ResponseStatus::EInvalidCookie,
                        "the cookie is malformed or belongs to another namespace".into(),
                    )
                }
            },
        };
        let limit = match discover.limit {
            None | Some(0) => MAX_DISCOVER_LIMIT,
            Some(n) => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(MAX_DISCOVER_LIMIT),
        };
        let store = self.store.clone();
        let future = async move {
            let page = match tokio::time::timeout(
                STORE_TIMEOUT,
                store.discover(namespace.clone(), after, limit),
            )
            .await
            {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return refused_discover(peer, e.to_string()),
                Err(_) => {
                    return refused_discover(
                        peer,
                        "the registration store did not answer in time".into(),
                    )
                }
            };
            let (registrations, last) = fit_in_frame(page.registrations, after);
            let returned = registrations.len();
            let cookie = Cookie {
                after: last,
                namespace: namespace.unwrap_or_default(),
            };
            Pending {
                channel: None,
                response: Some(discover_ok(registrations, cookie.encode())),
                event: Some(Event::Discovered { peer, returned }),
            }
        };
        Work {
            answer: MessageType::DiscoverResponse,
            future: future.boxed(),
        }
    }

    fn finish(&mut self, done: Pending) {
        if let (Some(channel), Some(response)) = (done.channel, done.response) {
            // Err: the peer has gone; nothing to answer.
            let _ = self.inner.send_response(channel, response);
        }
        if let Some(event) = done.event {
            self.events.push_back(event);
        }
    }
}

/// A request's answer, ready or being computed.
struct Work {
    answer: MessageType,
    future: PendingFuture,
}

impl Work {
    fn ready(answer: MessageType, pending: Pending) -> Self {
        Work {
            answer,
            future: futures::future::ready(pending).boxed(),
        }
    }
}

impl Pending {
    fn silent() -> Self {
        Pending {
            channel: None,
            response: None,
            event: None,
        }
    }
}

/// The answer when too many store operations are in flight.
fn busy(work: &Work) -> Pending {
    let reason = "the relay is busy; retry shortly";
    let response = match work.answer {
        MessageType::RegisterResponse => Some(register_response(
            ResponseStatus::EUnavailable,
            reason,
            None,
        )),
        MessageType::DiscoverResponse => Some(discover_error(ResponseStatus::EUnavailable, reason)),
        _ => None,
    };
    Pending {
        channel: None,
        response,
        event: None,
    }
}

fn refused_discover(peer: PeerId, reason: String) -> Pending {
    Pending {
        channel: None,
        response: Some(discover_error(ResponseStatus::EUnavailable, &reason)),
        event: Some(Event::DiscoverRefused {
            peer,
            status: ResponseStatus::EUnavailable,
            reason,
        }),
    }
}

async fn count(store: &dyn Store) -> Option<usize> {
    tokio::time::timeout(STORE_TIMEOUT, store.count())
        .await
        .ok()
        .and_then(Result::ok)
}

fn check_namespace(ns: Option<&str>) -> Result<&str, String> {
    match ns {
        None | Some("") => Err("no namespace".into()),
        Some(ns) if ns.len() > MAX_NAMESPACE_BYTES => Err(format!(
            "namespace of {} bytes is over the {MAX_NAMESPACE_BYTES}-byte limit",
            ns.len()
        )),
        Some(ns) => Ok(ns),
    }
}

/// A relayed address: `…/p2p/<relay>/p2p-circuit[/p2p/<peer>]`.
fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// Keeps registrations (in order) while the response stays under the frame limit;
/// returns them and the cookie position after the last one kept.
fn fit_in_frame(
    registrations: Vec<StoredRegistration>,
    after: u64,
) -> (Vec<StoredRegistration>, u64) {
    let budget = MAX_MESSAGE_BYTES - RESPONSE_OVERHEAD;
    let mut used = 0;
    let mut last = after;
    let mut kept = Vec::with_capacity(registrations.len());
    for registration in registrations {
        // ns + record + ttl + protobuf tags and lengths.
        let size = registration.namespace.len() + registration.record.len() + 32;
        if used + size > budget {
            break;
        }
        used += size;
        last = registration.seq;
        kept.push(registration);
    }
    (kept, last)
}

/// The cookie rust-libp2p's client expects: 8 bytes big-endian, then the namespace
/// (empty for all namespaces). Ours carries the last sequence number the client has
/// seen, so it is valid on every relay sharing the store and needs no server state.
struct Cookie {
    after: u64,
    namespace: String,
}

impl Cookie {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = self.after.to_be_bytes().to_vec();
        bytes.extend_from_slice(self.namespace.as_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Cookie> {
        let (seq, namespace) = bytes.split_first_chunk::<8>()?;
        Some(Cookie {
            after: u64::from_be_bytes(*seq),
            namespace: String::from_utf8(namespace.to_vec()).ok()?,
        })
    }
}

fn register_response(status: ResponseStatus, text: &str, ttl: Option<u64>) -> proto::Message {
    proto::Message {
        r#type: Some(MessageType::RegisterResponse as i32),
        register_response: Some(proto::RegisterResponse {
            status: Some(status as i32),
            status_text: (!text.is_empty()).then(|| text.to_owned()),
            ttl,
        }),
        ..Default::default()
    }
}

fn discover_ok(registrations: Vec<StoredRegistration>, cookie: Vec<u8>) -> proto::Message {
    discover_message(proto::DiscoverResponse {
        registrations: registrations
            .into_iter()
            .map(|r| proto::Register {
                ns: Some(r.namespace),
                signed_peer_record: Some(r.record),
                ttl: Some(r.ttl_secs),
            })
            .collect(),
        cookie: Some(cookie),
        status: Some(ResponseStatus::Ok as i32),
        status_text: None,
    })
}

fn discover_error(status: ResponseStatus, text: &str) -> proto::Message {
    discover_message(proto::DiscoverResponse {
        registrations: Vec::new(),
        cookie: None,
        status: Some(status as i32),
        status_text: Some(text.to_owned()),
    })
}

fn discover_message(response: proto::DiscoverResponse) -> proto::Message {
    proto::Message {
        r#type: Some(MessageType::DiscoverResponse as i32),
        discover_response: Some(response),
        ..Default::default()
    }
}

impl NetworkBehaviour for Server {
    type ConnectionHandler =
        <request_response::Behaviour<Codec> as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(ToSwarm::GenerateEvent(event));
            }
            if let Poll::Ready(Some(done)) = self.pending.poll_next_unpin(cx) {
                self.finish(done);
                continue;
            }
            if let Some(counting) = &mut self.counting {
                if let Poll::Ready(total) = counting.poll_unpin(cx) {
                    self.counting = None;
                    if let Some(total) = total {
                        self.events.push_back(Event::Counted(total));
                    }
                    continue;
                }
            } else if self.count_timer.poll_tick(cx).is_ready() {
                let store = self.store.clone();
                self.counting = Some(async move { count(&*store).await }.boxed());
                continue;
            }
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(request_response::Event::Message {
                    peer,
                    connection_id,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                })) => {
                    if !self.access.is_denied(connection_id) {
                        self.on_request(peer, request, channel)
                    }
                }
                // Responses (we send no requests), failures and sent acknowledgements:
                // nothing to do; a failed inbound stream has already been closed.
                Poll::Ready(ToSwarm::GenerateEvent(_)) => {}
                Poll::Ready(other) => {
                    return Poll::Ready(
                        other.map_out(|_| unreachable!("GenerateEvent is handled above")),
                    )
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip_and_reject_short_input() {
        let cookie = Cookie {
            after: 42,
            namespace: "dusk/peers".into(),
        };
        let decoded = Cookie::decode(&cookie.encode()).unwrap();
        assert_eq!(
            (decoded.after, decoded.namespace.as_str()),
            (42, "dusk/peers")
        );
        assert!(Cookie::decode(&[1, 2, 3]).is_none());
    }

    #[test]
    fn circuit_addresses_are_told_from_direct_ones() {
        let circuit: Multiaddr =
            "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
                .parse()
                .unwrap();
        let direct: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().unwrap();
        assert!(is_circuit(&circuit));
        assert!(!is_circuit(&direct));
    }
}
