//! Where registrations live: behind a small trait so one relay keeps them in memory
//! and a fleet of relays shares them in Redis/Valkey.
//!
//! Every registration gets a sequence number, increasing across the whole store (and so
//! across every relay sharing it) and across restarts: it is the time in microseconds,
//! or one more than the last number if that is larger. A discover returns registrations with a sequence
//! number above the one in the client's cookie, in order: pagination works on any relay
//! of the fleet, and a re-registration (new number) shows up again to cookie holders.

use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::PeerId;

/// A registration the server has validated and wants stored.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    pub namespace: String,
    pub peer: PeerId,
    /// The signed peer record, as the client sent it (protobuf `SignedEnvelope`).
    pub record: Vec<u8>,
    pub ttl: Duration,
}

/// A registration as a discover returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRegistration {
    pub namespace: String,
    pub peer: PeerId,
    pub record: Vec<u8>,
    /// Seconds left before it expires (at least 1).
    pub ttl_secs: u64,
    /// Its place in the store's order; cookies carry the last one a client has seen.
    pub seq: u64,
}

/// Registration caps, checked by the store because only it knows the counts.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Registrations of one peer, all namespaces together.
    pub per_peer: usize,
    /// Registrations in the whole store.
    pub total: usize,
    /// Record bytes of one peer's registrations, all namespaces together.
    pub per_peer_bytes: usize,
    /// Record bytes in the whole store.
    pub total_bytes: usize,
}

impl Caps {
    /// Why `outcome` refused a registration, for the peer and the log; `None` when it
    /// was stored.
    pub fn refusal(&self, outcome: RegisterOutcome) -> Option<String> {
        let Caps {
            per_peer,
            total,
            per_peer_bytes,
            total_bytes,
        } = *self;
        use RegisterOutcome::*;
        Some(match outcome {
            Registered => return None,
            PeerFull => format!("this peer already holds {per_peer} registrations"),
            StoreFull => format!("the relay holds its maximum of {total} registrations"),
            PeerBytesFull => format!("this peer's records would pass {per_peer_bytes} bytes"),
            StoreBytesFull => {
                format!("the relay holds its maximum of {total_bytes} bytes of records")
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Stored; replaces the peer's earlier registration in the namespace, if any.
    Registered,
    /// The peer holds `Caps::per_peer` registrations (a re-registration always fits).
    PeerFull,
    /// The store holds `Caps::total` registrations.
    StoreFull,
    /// The peer's records would pass `Caps::per_peer_bytes` (a re-registration counts
    /// its new record instead of its old one).
    PeerBytesFull,
    /// The store's records would pass `Caps::total_bytes`.
    StoreBytesFull,
}

/// What a registration adds to a DISCOVER response besides its namespace and record:
/// the TTL and the protobuf tags and lengths (an upper bound).
pub const ENTRY_OVERHEAD: usize = 32;

/// The bytes a registration takes in a DISCOVER response, as discover's `max_bytes`
/// counts them (the server's frame budget counts the same way).
pub fn entry_bytes(namespace: &str, record: &[u8]) -> usize {
    namespace
        .len()
        .saturating_add(record.len())
        .saturating_add(ENTRY_OVERHEAD)
}

/// One page of a discover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// In increasing `seq` order; at most the limit and byte budget asked for.
    pub registrations: Vec<StoredRegistration>,
}

/// The store cannot answer now (Redis down or slow). The server answers
/// `E_UNAVAILABLE`; the relay keeps relaying.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rendezvous store unavailable: {0}")]
pub struct StoreError(pub String);

/// What one [`Store::discover`] call reads: live registrations in `namespace` (all
/// namespaces if `None`) with `seq > after`, in `seq` order, at most `limit`, and no more
/// than fit in `max_bytes` as counted by [`entry_bytes`]. The store stops reading at the
/// first registration that would pass the budget, so one call's work and copy stay
/// within one frame whatever the store holds. The first registration is returned even if
/// it alone passes the budget (a record stored before a smaller bound), so a page is
/// never empty while registrations remain and the cookie always moves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub namespace: Option<String>,
    pub after: u64,
    pub limit: usize,
    pub max_bytes: usize,
}

/// A registration store. Futures are `'static` so the server can poll many at once
/// without borrowing the store.
pub trait Store: Send + Sync + 'static {
    /// Stores `registration`, replacing the peer's registration in that namespace.
    fn register(
        &self,
        registration: NewRegistration,
        caps: Caps,
    ) -> BoxFuture<'static, Result<RegisterOutcome, StoreError>>;

    /// Removes the peer's registration in `namespace`; no error if there is none.
    fn unregister(
        &self,
        namespace: String,
        peer: PeerId,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// One page of live registrations, as [`PageQuery`] describes it.
    fn discover(&self, query: PageQuery) -> BoxFuture<'static, Result<Page, StoreError>>;

    /// Live registrations in the store.
    fn count(&self) -> BoxFuture<'static, Result<usize, StoreError>>;
}
