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

pub use super::addresses::{is_circuit_via, OwnAddresses};
use super::codec::{Codec, MAX_MESSAGE_BYTES, PROTOCOL};
use super::proto::{self, MessageType, ResponseStatus};
use super::sources::{self, Slot, SourceLimits, Sources};
use super::store::{
    entry_bytes, Caps, NewRegistration, RegisterOutcome, Store, StoredRegistration,
};
use crate::access::AccessControl;
use crate::config::defaults::RENDEZVOUS_TTL_CEILING_SECS;
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

    fn register(&mut self, peer: PeerId, ip: Option<IpAddr>, register: proto::Register) -> Work {
        let namespace = register.ns.clone();
        let refuse = |status: ResponseStatus, reason: String| {
            Work::ready(Pending {
                response: Some(register_response(status, &reason, None)),
                event: Some(Event::RegisterRefused {
                    peer,
                    namespace: namespace.clone(),
                    status,
                    reason,
                }),
                ..Pending::silent()
            })
        };
        // First, before anything costs the relay: a refused request is cheap.
        if let Err(reason) = self.sources.check_rate(peer, ip) {
            return refuse(ResponseStatus::EUnavailable, reason);
        }
        let ns = match check_namespace(register.ns.as_deref()) {
            Ok(ns) => ns.to_owned(),
            Err(reason) => return refuse(ResponseStatus::EInvalidNamespace, reason),
        };
        let ttl = register.ttl.unwrap_or(DEFAULT_TTL_SECS);
        let max_ttl = self.policy.max_ttl();
        if ttl < self.policy.min_ttl || ttl > max_ttl {
            return refuse(
                ResponseStatus::EInvalidTtl,
                format!("ttl {ttl}s is outside {}..={max_ttl}s", self.policy.min_ttl),
            );
        }
        let Some(bytes) = register.signed_peer_record else {
            return refuse(
                ResponseStatus::EInvalidSignedPeerRecord,
                "no signed peer record".into(),
            );
        };
        if let Err((status, reason)) = check_record(
            &self.policy,
            self.local_peer_id,
            &self.own_addrs,
            peer,
            &bytes,
        ) {
            return refuse(status, reason);
        }
        if self.draining.load(Ordering::Relaxed) {
            return refuse(
                ResponseStatus::EUnavailable,
                "the relay is shutting down; register with another relay".into(),
            );
        }
        // Last: a slot is taken only by a request the store will see.
        let now = Instant::now();
        let expires = now.checked_add(Duration::from_secs(ttl)).unwrap_or(now);
        let slot = match self.sources.reserve((ns.clone(), peer), ip, expires, now) {
            Ok(slot) => slot,
            Err(reason) => return refuse(ResponseStatus::EUnavailable, reason),
        };

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
                    Ok(Err(e)) => Err((STORE_UNAVAILABLE, format!("{STORE_UNAVAILABLE}: {e}"))),
                    Err(_) => {
                        let text = "the registration store did not answer in time";
                        Err((text, text.to_owned()))
                    }
                };
            let stored = matches!(outcome, Ok(RegisterOutcome::Registered));
            // `told` goes to the peer, `logged` to the log (it may name store internals).
            let refused = |status: ResponseStatus, told: &str, logged: String| Pending {
                response: Some(register_response(status, told, None)),
                event: Some(Event::RegisterRefused {
                    peer,
                    namespace: Some(ns.clone()),
                    status,
                    reason: logged,
                }),
                ..Pending::silent()
            };
            let limit =
                |reason: String| refused(ResponseStatus::EUnavailable, &reason, reason.clone());
            let mut done = match outcome {
                Ok(RegisterOutcome::Registered) => {
                    let total = count(&*store).await;
                    Pending {
                        response: Some(register_response(ResponseStatus::Ok, "", Some(ttl))),
                        event: Some(Event::Registered {
                            peer,
                            namespace: ns,
                            ttl,
                            total,
                        }),
                        ..Pending::silent()
                    }
                }
                Ok(RegisterOutcome::PeerFull) => limit(format!(
                    "this peer already holds {} registrations",
                    caps.per_peer
                )),
                Ok(RegisterOutcome::StoreFull) => limit(format!(
                    "the relay holds its maximum of {} registrations",
                    caps.total
                )),
                Ok(RegisterOutcome::PeerBytesFull) => limit(format!(
                    "this peer's records would pass {} bytes",
                    caps.per_peer_bytes
                )),
                Ok(RegisterOutcome::StoreBytesFull) => limit(format!(
                    "the relay holds its maximum of {} bytes of records",
                    caps.total_bytes
                )),
                Err((told, logged)) => refused(ResponseStatus::EUnavailable, told, logged),
            };
            done.sources = Bookkeeping::Settle { slot, stored };
            done
        };
        Work {
            future: future.boxed(),
        }
    }

    fn unregister(&self, peer: PeerId, unregister: proto::Unregister) -> Work {
        // UNREGISTER has no response: the channel is dropped either way.
        let Ok(ns) = check_namespace(unregister.ns.as_deref()).map(str::to_owned) else {
            return Work::ready(Pending::silent());
        };
        let store = self.store.clone();
        let future = async move {
            match tokio::time::timeout(STORE_TIMEOUT, store.unregister(ns.clone(), peer)).await {
                Ok(Ok(())) => Pending {
                    event: Some(Event::Unregistered {
                        peer,
                        namespace: ns.clone(),
                        total: count(&*store).await,
                    }),
                    sources: Bookkeeping::Release((ns, peer)),
                    ..Pending::silent()
                },
                _ => Pending::silent(),
            }
        };
        Work {
            future: future.boxed(),
        }
    }

    fn discover(&self, peer: PeerId, discover: proto::Discover) -> Work {
        let refuse = |status: ResponseStatus, reason: String| {
            Work::ready(Pending {
                response: Some(discover_error(status, &reason)),
                event: Some(Event::DiscoverRefused {
                    peer,
                    status,
                    reason,
                }),
                ..Pending::silent()
            })
        };
        let namespace = match discover.ns.as_deref() {
            None if !self.policy.allow_discover_all => {
                return refuse(
                    ResponseStatus::EInvalidNamespace,
                    "this relay answers DISCOVER for one namespace at a time; name one".into(),
                )
            }
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
        let max_record_bytes = self.policy.max_record_bytes;
        let future = async move {
            let mut frame = Frame::new(after, limit, max_record_bytes);
            // One read, and more only while records had to be skipped and there is room:
            // a skipped record must not leave the page short of what follows it.
            for _ in 0..MAX_DISCOVER_READS {
                let page = match tokio::time::timeout(
                    STORE_TIMEOUT,
                    store.discover(namespace.clone(), frame.last, frame.room(), frame.budget()),
                )
                .await
                {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        return refused_discover(peer, format!("{STORE_UNAVAILABLE}: {e}"))
                    }
                    Err(_) => {
                        return refused_discover(
                            peer,
                            "the registration store did not answer in time".into(),
                        )
                    }
                };
                let read = page.registrations.len();
                let skipped = frame.fill(page.registrations);
                if skipped == 0 || read == 0 || frame.is_full() {
                    break;
                }
            }
            if frame.skipped > 0 {
                debug!(
                    skipped = frame.skipped,
                    max_record_bytes, "DISCOVER skipped stored records too large to send"
                );
            }
            let returned = frame.kept.len();
            let cookie = Cookie {
                after: frame.last,
                namespace: namespace.unwrap_or_default(),
            };
            Pending {
                response: Some(discover_ok(frame.kept, cookie.encode())),
                event: Some(Event::Discovered { peer, returned }),
                ..Pending::silent()
            }
        };
        Work {
            future: future.boxed(),
        }
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

/// The answer when too many store operations are in flight.
fn busy(answer: MessageType) -> Pending {
    let reason = "the relay is busy; retry shortly";
    let response = match answer {
        MessageType::RegisterResponse => Some(register_response(
            ResponseStatus::EUnavailable,
            reason,
            None,
        )),
        MessageType::DiscoverResponse => Some(discover_error(ResponseStatus::EUnavailable, reason)),
        _ => None,
    };
    Pending {
        response,
        ..Pending::silent()
    }
}

/// A store failure: the peer is told [`STORE_UNAVAILABLE`] or that it timed out, the
/// log gets `reason`.
fn refused_discover(peer: PeerId, reason: String) -> Pending {
    let told = if reason.starts_with(STORE_UNAVAILABLE) {
        STORE_UNAVAILABLE
    } else {
        &reason
    };
    Pending {
        response: Some(discover_error(ResponseStatus::EUnavailable, told)),
        event: Some(Event::DiscoverRefused {
            peer,
            status: ResponseStatus::EUnavailable,
            reason,
        }),
        ..Pending::silent()
    }
}

async fn count(store: &dyn Store) -> Option<usize> {
    tokio::time::timeout(STORE_TIMEOUT, store.count())
        .await
        .ok()
        .and_then(Result::ok)
}

/// Whether `bytes`, the signed peer record of a REGISTER from `peer`, may be stored: its
/// size, signature, owner, number of addresses and (unless direct addresses are allowed)
/// that each address is a circuit through this relay. Peer bytes: fuzzed
/// (`fuzz/fuzz_targets/rendezvous_request.rs`).
pub fn check_record(
    policy: &Policy,
    relay: PeerId,
    own_addrs: &OwnAddresses,
    peer: PeerId,
    bytes: &[u8],
) -> Result<(), (ResponseStatus, String)> {
    // Before parsing: a big record costs no signature check.
    if bytes.len() > policy.max_record_bytes {
        return Err((
            ResponseStatus::EInvalidSignedPeerRecord,
            format!(
                "the signed peer record is {} bytes, over this relay's limit of {} bytes",
                bytes.len(),
                policy.max_record_bytes
            ),
        ));
    }
    let record = SignedEnvelope::from_protobuf_encoding(bytes)
        .map_err(|e| e.to_string())
        .and_then(|envelope| PeerRecord::from_signed_envelope(envelope).map_err(|e| e.to_string()))
        .map_err(|e| {
            (
                ResponseStatus::EInvalidSignedPeerRecord,
                format!("invalid signed peer record: {e}"),
            )
        })?;
    if record.peer_id() != peer {
        return Err((
            ResponseStatus::ENotAuthorized,
            "the signed peer record is not the registrant's".into(),
        ));
    }
    let addrs = record.addresses();
    if addrs.len() > policy.max_record_addrs {
        return Err((
            ResponseStatus::EInvalidSignedPeerRecord,
            format!(
                "the record holds {} addresses, over this relay's limit of {}",
                addrs.len(),
                policy.max_record_addrs
            ),
        ));
    }
    if !policy.allow_direct_addresses {
        let foreign = addrs
            .iter()
            .filter(|a| !is_circuit_via(a, relay, own_addrs, peer))
            .count();
        if foreign > 0 {
            // The addresses themselves stay out of the reason: it is logged, and they
            // are the peer's text.
            return Err((
                ResponseStatus::EInvalidSignedPeerRecord,
                format!(
                    "the record holds {foreign} address(es) that are not circuit addresses \
                     through this relay (/p2p/{relay}/p2p-circuit, after nothing or one of \
                     this relay's own addresses); this relay publishes relayed addresses \
                     through itself only, so no peer learns another's IP"
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_namespace(ns: Option<&str>) -> Result<&str, String> {
    match ns {
        None | Some("") => Err("no namespace".into()),
        Some(ns) if ns.len() > MAX_NAMESPACE_BYTES => Err(format!(
            "namespace of {} bytes is over the {MAX_NAMESPACE_BYTES}-byte limit",
            ns.len()
        )),
        Some(ns) => Ok(ns),
    }
}

/// A DISCOVER response being filled from store pages: registrations (in order) while
/// the response stays under the frame limit and the client's limit.
struct Frame {
    kept: Vec<StoredRegistration>,
    /// The cookie position: after the last registration kept or skipped.
    last: u64,
    limit: usize,
    used: usize,
    /// Records larger than this are skipped (see [`Frame::fill`]).
    max_record_bytes: usize,
    skipped: usize,
    /// A registration did not fit: the page ends here.
    full: bool,
}

impl Frame {
    const BUDGET: usize = MAX_MESSAGE_BYTES - RESPONSE_OVERHEAD;

    fn new(after: u64, limit: usize, max_record_bytes: usize) -> Self {
        Frame {
            kept: Vec::new(),
            last: after,
            limit,
            used: 0,
            max_record_bytes,
            skipped: 0,
            full: false,
        }
    }

    /// Registrations still wanted.
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.kept.len())
    }

    /// Response bytes still free.
    fn budget(&self) -> usize {
        Self::BUDGET.saturating_sub(self.used)
    }

    fn is_full(&self) -> bool {
        self.full || self.room() == 0
    }

    /// Adds `registrations` (in `seq` order) until one does not fit; returns how many
    /// were skipped. A record that could never be sent (larger than the whole frame) or
    /// that this relay would refuse today (over the record limit: stored by an older
    /// relay sharing the store) is skipped and the cookie moves past it. Kept, it
    /// would end every page before what follows it: one registration under
    /// `dusk/peer/<victim>` would hide the victim from everyone.
    fn fill(&mut self, registrations: Vec<StoredRegistration>) -> usize {
        let mut skipped = 0;
        for registration in registrations {
            if self.is_full() {
                break;
            }
            let size = entry_bytes(&registration.namespace, &registration.record);
            if registration.record.len() > self.max_record_bytes || size > Self::BUDGET {
                skipped += 1;
                self.last = registration.seq;
                continue;
            }
            if self.used + size > Self::BUDGET {
                self.full = true;
                break;
            }
            self.used += size;
            self.last = registration.seq;
            self.kept.push(registration);
        }
        self.skipped += skipped;
        skipped
    }
}

/// The cookie rust-libp2p's client expects: 8 bytes big-endian, then the namespace
/// (empty for all namespaces). Ours carries the last sequence number the client has
/// seen, so it is valid on every relay sharing the store and needs no server state.
pub(crate) struct Cookie {
    after: u64,
    namespace: String,
}

impl Cookie {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = self.after.to_be_bytes().to_vec();
        bytes.extend_from_slice(self.namespace.as_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Cookie> {
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
                    if let Some(total) = total {
                        self.events.push_back(Event::Counted(total));
                    }
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
