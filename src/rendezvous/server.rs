//! The rendezvous server: `/rendezvous/1.0.0` over `request_response`, answering
//! REGISTER and DISCOVER from a [`Store`] and applying dusk's policy:
//!
//! - **No IP leaks through discovery**: a REGISTER whose signed record holds an address
//!   that is not a circuit address through THIS relay ([`is_circuit_via`]: its peer id
//!   right before the one `/p2p-circuit`, nothing or one of its own addresses before
//!   that) is refused (`E_INVALID_SIGNED_PEER_RECORD`, status text says why) unless the
//!   operator allows direct addresses. A circuit through another relay, or through an
//!   attacker's IP followed by our id, would send every dialer to the attacker.
//! - **Bounded records**: at most `max_record_bytes` (checked before the record is
//!   parsed, so a big one costs no signature check) and `max_record_addrs` addresses;
//!   requests are read only up to what the largest valid REGISTER needs (see
//!   [`Policy::max_request_bytes`]), so one stream cannot make the relay allocate 1 MiB.
//! - **No registration hides another**: a stored record that could not be sent (one
//!   stored before these bounds, e.g. by an older relay sharing the store) is skipped
//!   and the cookie moves past it, instead of an empty page that never moves on.
//! - **Per-source caps and rates** ([`super::sources`]): registrations per IP, IPv6 /64
//!   and /48 (counted on this relay only) and REGISTERs per minute per peer and per IP,
//!   refused with `E_UNAVAILABLE` and the limit's name.
//! - **No DISCOVER of everything by default**: a DISCOVER without a namespace would list
//!   every registration of every community to anyone: who is in which community, and
//!   who is online. It is refused with `E_INVALID_NAMESPACE` (it is the namespace that
//!   is missing, and rust-libp2p's client reports it as `InvalidNamespace`; not
//!   `E_NOT_AUTHORIZED`, which would suggest another identity could do it, nor
//!   `E_UNAVAILABLE`, which invites retries) unless `allow_discover_all` is set.
//! - Spec limits: namespaces 1–255 bytes, TTL within the configured bounds (2 h when
//!   the client sends none, never above one year whatever the configuration says),
//!   registrant = record's peer, discover pages of at most 1000 that also fit the 1 MiB
//!   frame, cookies that name their namespace.
//! - Caps per peer and in total (count and bytes), and `E_UNAVAILABLE` while draining
//!   or while the store cannot answer: the relay keeps relaying whatever happens to the
//!   store. Store error text goes to the log only; peers get a generic reason.
//!
//! Store operations run concurrently (Redis round trips must not stall the swarm), at
//! most [`MAX_PENDING`] at once, each bounded by [`STORE_TIMEOUT`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, PeerRecord, SignedEnvelope};
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tracing::debug;

mod requests;
mod responses;

pub use super::addresses::{is_circuit_via, OwnAddresses};
use super::codec::{Codec, MAX_MESSAGE_BYTES, PROTOCOL};
use super::proto::{self, MessageType, ResponseStatus};
use super::sources::{self, Slot, SourceLimits, Sources};
use super::store::{
    entry_bytes, Caps, NewRegistration, PageQuery, RegisterOutcome, Store, StoredRegistration,
};
use crate::access::AccessControl;
use crate::config::defaults::RENDEZVOUS_TTL_CEILING_SECS;
use crate::config::RendezvousLimits;
pub(crate) use requests::check_namespace;
pub use requests::check_record;
use requests::{busy, count};
pub(crate) use responses::Cookie;
use responses::{discover_error, discover_ok, register_response, Frame};

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

/// Room in a request for everything but the signed record: a namespace (at most 255
/// bytes), a TTL or a cookie (8 bytes + a namespace), a limit, tags and lengths.
const REQUEST_OVERHEAD: usize = 1024;

/// Store reads one DISCOVER may make when the pages it gets hold only records it must
/// skip (see [`Frame::fill`]): each read is bounded by one frame, so this bounds the
/// work; it is reached only with several unsendable records stored back to back.
const MAX_DISCOVER_READS: usize = 4;

/// What a peer is told when the store fails; the store's own text (hosts, reasons) goes
/// to the log only.
const STORE_UNAVAILABLE: &str = "the registration store is unavailable; retry later";

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
    /// The store did not answer the periodic count (Redis down or stuck).
    CountFailed,
}

/// The server's settings, from the relay configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub min_ttl: u64,
    /// Above [`RENDEZVOUS_TTL_CEILING_SECS`], the ceiling applies instead.
    pub max_ttl: u64,
    pub caps: Caps,
    /// Largest signed record, in bytes, and most addresses in one.
    pub max_record_bytes: usize,
    pub max_record_addrs: usize,
    /// Per-source caps (this relay only) and REGISTER rates.
    pub sources: SourceLimits,
    /// Accept records with addresses that are not circuits through this relay (off by
    /// default: they would tell every discoverer the registrant's IP, or send dialers
    /// to an address of the registrant's choosing).
    pub allow_direct_addresses: bool,
    /// Answer a DISCOVER without a namespace (off by default: it lists every community's
    /// members to anyone).
    pub allow_discover_all: bool,
}

impl Policy {
    pub fn from_limits(limits: &RendezvousLimits) -> Self {
        Policy {
            min_ttl: limits.min_ttl_secs,
            max_ttl: limits.max_ttl_secs,
            caps: Caps {
                per_peer: limits.max_registrations_per_peer,
                total: limits.max_registrations,
                per_peer_bytes: limits.max_bytes_per_peer,
                total_bytes: limits.max_bytes,
            },
            max_record_bytes: limits.max_record_bytes,
            max_record_addrs: limits.max_record_addrs,
            sources: SourceLimits {
                per_ip: limits.max_registrations_per_ip,
                per_ipv6_64: limits.max_registrations_per_ipv6_64,
                per_ipv6_48: limits.max_registrations_per_ipv6_48,
                rate_per_peer: limits.register_rate_per_peer,
                rate_per_ip: limits.register_rate_per_ip,
            },
            allow_direct_addresses: limits.allow_direct_addresses,
            allow_discover_all: limits.allow_discover_all,
        }
    }

    /// The largest request the server reads: a REGISTER whose record is up to twice
    /// the record limit still gets a status saying how large it may be (a client with
    /// a few addresses too many learns why); anything larger is no REGISTER a client
    /// would send, and its stream is closed without reading it. Never above the frame.
    pub fn max_request_bytes(&self) -> usize {
        self.max_record_bytes
            .saturating_mul(2)
            .saturating_add(REQUEST_OVERHEAD)
            .min(MAX_MESSAGE_BYTES)
    }

    /// The largest TTL granted: the configured one, never above the ceiling (so expiry
    /// arithmetic cannot overflow whatever an embedder puts in the struct).
    fn max_ttl(&self) -> u64 {
        self.max_ttl.min(RENDEZVOUS_TTL_CEILING_SECS)
    }
}

/// An answer being prepared by the store.
struct Pending {
    channel: Option<ResponseChannel<proto::Message>>,
    response: Option<proto::Message>,
    event: Option<Event>,
    /// What the per-source counts learn from the store's answer.
    sources: Bookkeeping,
}

enum Bookkeeping {
    None,
    /// A REGISTER's slot: kept if the registration was stored.
    Settle {
        slot: Slot,
        stored: bool,
    },
    /// An unregistration the store carried out.
    Release(sources::Key),
}

type PendingFuture = BoxFuture<'static, Pending>;

pub struct Server {
    inner: request_response::Behaviour<Codec>,
    store: Arc<dyn Store>,
    policy: Policy,
    /// This relay's peer id and addresses: the only relay records may name.
    local_peer_id: PeerId,
    own_addrs: OwnAddresses,
    /// Remote IPs of connections, registrations per source, REGISTER rates.
    sources: Sources,
    draining: Arc<AtomicBool>,
    access: AccessControl,
    pending: FuturesUnordered<PendingFuture>,
    counting: Option<BoxFuture<'static, Option<usize>>>,
    count_timer: tokio::time::Interval,
    events: VecDeque<Event>,
}

impl Server {
    /// `local_peer_id` is the relay's own: records may only hold circuit addresses
    /// through it. While `draining` is true, REGISTER is answered `E_UNAVAILABLE`.
    /// Connections `access` denies are served nothing: their requests' streams are
    /// closed (the access gate closes the connection itself moments later).
    pub fn new(
        store: Arc<dyn Store>,
        policy: Policy,
        local_peer_id: PeerId,
        draining: Arc<AtomicBool>,
        access: AccessControl,
    ) -> Self {
        let inner = request_response::Behaviour::with_codec(
            Codec::new(policy.max_request_bytes()),
            [(PROTOCOL, ProtocolSupport::Inbound)],
            request_response::Config::default(),
        );
        Server {
            inner,
            store,
            sources: Sources::new(policy.sources),
            policy,
            local_peer_id,
            own_addrs: OwnAddresses::default(),
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
        connection: ConnectionId,
        request: proto::Message,
        channel: ResponseChannel<proto::Message>,
    ) {
        let kind = request.r#type.and_then(|t| MessageType::try_from(t).ok());
        let answer = match kind {
            Some(MessageType::Register) => MessageType::RegisterResponse,
            Some(MessageType::Discover) => MessageType::DiscoverResponse,
            Some(MessageType::Unregister) => MessageType::Unregister,
            // Not a request: no answer fits; dropping the channel closes the stream.
            _ => return,
        };
        // Before any work (and before a registration takes a slot it would then hold
        // without a store operation to settle it).
        if self.pending.len() >= MAX_PENDING {
            self.finish(Pending {
                channel: Some(channel),
                ..busy(answer)
            });
            return;
        }
        let work = match (kind, request) {
            (
                Some(MessageType::Register),
                proto::Message {
                    register: Some(register),
                    ..
                },
            ) => {
                let ip = self.sources.ip(connection);
                self.register(peer, ip, register)
            }
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
            // A request without its body: no answer fits; dropping the channel closes
            // the stream.
            _ => return,
        };
        self.pending.push(
            async move {
                let mut done = work.future.await;
                done.channel = Some(channel);
                done
            }
            .boxed(),
        );
    }

    fn finish(&mut self, done: Pending) {
        match done.sources {
            Bookkeeping::None => {}
            Bookkeeping::Settle { slot, stored } => self.sources.settle(slot, stored),
            Bookkeeping::Release(key) => self.sources.release(&key),
        }
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
    future: PendingFuture,
}

impl Work {
    fn ready(pending: Pending) -> Self {
        Work {
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
            sources: Bookkeeping::None,
        }
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
        let handler = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        self.sources
            .connection_established(connection_id, remote_addr);
        Ok(handler)
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
        match &event {
            FromSwarm::ConnectionClosed(closed) => {
                self.sources.connection_closed(closed.connection_id)
            }
            // Another behaviour denied the connection after this one accepted it.
            FromSwarm::ListenFailure(failure) => {
                self.sources.connection_closed(failure.connection_id)
            }
            _ => self.own_addrs.on_swarm_event(&event),
        }
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
                    self.events.push_back(match total {
                        Some(total) => Event::Counted(total),
                        None => Event::CountFailed,
                    });
                    continue;
                }
            } else if self.count_timer.poll_tick(cx).is_ready() {
                // Also when nobody registers: expired slots and idle rate state go.
                self.sources.sweep(Instant::now());
                self.sources.forget_idle_rates();
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
                        self.on_request(peer, connection_id, request, channel)
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

    fn stored(seq: u64, record_bytes: usize) -> StoredRegistration {
        StoredRegistration {
            namespace: "dusk/peer/victim".into(),
            peer: PeerId::random(),
            record: vec![0; record_bytes],
            ttl_secs: 60,
            seq,
        }
    }

    #[test]
    fn a_record_that_cannot_be_sent_is_skipped_and_the_cookie_moves_past_it() {
        // Alone on its page, the cookie must still move on.
        let mut frame = Frame::new(7, MAX_DISCOVER_LIMIT, 4096);
        assert_eq!(frame.fill(vec![stored(8, MAX_MESSAGE_BYTES)]), 1);
        assert!(frame.kept.is_empty());
        assert_eq!(frame.last, 8);
        assert!(!frame.is_full(), "the next read may fill the page");

        // Before and after sendable ones: both of those are kept.
        let mut frame = Frame::new(0, MAX_DISCOVER_LIMIT, 4096);
        let skipped = frame.fill(vec![
            stored(1, 100),
            stored(2, MAX_MESSAGE_BYTES),
            stored(3, 5000),
            stored(4, 100),
        ]);
        assert_eq!(
            skipped, 2,
            "the frame-sized one and the one over the record limit"
        );
        assert_eq!(
            frame.kept.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(frame.last, 4);
    }

    #[test]
    fn a_page_ends_where_the_frame_is_full_and_resumes_there() {
        let mut frame = Frame::new(0, MAX_DISCOVER_LIMIT, 4096);
        let page: Vec<_> = (1..=400).map(|seq| stored(seq, 4000)).collect();
        assert_eq!(frame.fill(page), 0);
        assert!(frame.is_full());
        let kept = frame.kept.len();
        assert!(kept > 200 && kept < 400, "{kept}");
        assert_eq!(
            frame.last, kept as u64,
            "the next page starts after the last kept"
        );

        let mut frame = Frame::new(0, 3, 4096);
        frame.fill((1..=10).map(|seq| stored(seq, 10)).collect());
        assert_eq!((frame.kept.len(), frame.last), (3, 3));
    }

    #[test]
    fn requests_are_read_up_to_twice_the_record_limit() {
        let mut policy = Policy::from_limits(&crate::config::Config::default().rendezvous);
        policy.max_record_bytes = 4096;
        assert_eq!(policy.max_request_bytes(), 2 * 4096 + REQUEST_OVERHEAD);
        policy.max_record_bytes = usize::MAX;
        assert_eq!(policy.max_request_bytes(), MAX_MESSAGE_BYTES);
        policy.max_ttl = u64::MAX;
        assert_eq!(policy.max_ttl(), RENDEZVOUS_TTL_CEILING_SECS);
    }
}
