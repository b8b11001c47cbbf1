//! The fleet store: registrations in Redis/Valkey, shared by every relay pointed at the
//! same server, so a client registered on one relay is discovered on any other and a
//! cookie from one relay paginates on the next.
//!
//! # Key layout
//!
//! Every key starts with [`PREFIX`] so the store can share a Redis with other data.
//! A registration is identified by its *member* `<peer>:<namespace>`: peer ids are
//! base58 and never contain `:`, so the first `:` splits a member unambiguously whatever
//! the namespace holds (the encoding is injective, and the scripts can recover both
//! halves from a member without a lookup).
//!
//! | key                      | type       | content                                            |
//! |--------------------------|------------|----------------------------------------------------|
//! | `dusk:rdv:seq`           | string     | the last sequence number handed out (`INCR`)       |
//! | `dusk:rdv:reg:<member>`  | string     | the signed record, binary as sent, with `PX` = TTL |
//! | `dusk:rdv:all`           | sorted set | member → seq: discover across all namespaces       |
//! | `dusk:rdv:ns:<ns>`       | sorted set | peer → seq: discover in one namespace              |
//! | `dusk:rdv:peer:<peer>`   | set        | the peer's namespaces: the per-peer cap            |
//! | `dusk:rdv:exp`           | sorted set | member → expiry (ms): liveness, the total cap, sweep |
//! | `dusk:rdv:size`          | hash       | member → its record's bytes, until the member is dropped |
//! | `dusk:rdv:bytes`         | string     | the sum of `size`: the total byte cap              |
//!
//! Why this shape:
//! - Discover pages by sequence number, so both indexes are scored by seq and a page is
//!   one `ZRANGEBYSCORE (after +inf LIMIT`, on any relay.
//! - Redis expires the record key by itself, but sorted-set members cannot expire, so
//!   `exp` says when each member dies. It is the one source of truth for liveness (a
//!   member is live while its expiry is after the script's `TIME` and its record key
//!   exists): the live count is an O(log n) `ZCOUNT`, exact even before cleanup runs.
//! - Cleanup is lazy: every operation first drops up to [`SWEEP_BATCH`] expired members
//!   from every index (the oldest first), and discover drops any dead member it meets
//!   and keeps reading to fill the page. (A bare `ZREMRANGEBYSCORE` on `exp` would
//!   orphan the member in the other keys, so the sweep reads the expired members and
//!   drops each from all of them.) Each register adds one member and sweeps up to
//!   [`SWEEP_BATCH`], so memory stays bounded; the per-namespace and per-peer keys also
//!   carry a Redis expiry no earlier than their longest-lived member's, so an index whose
//!   members all died vanishes even if nothing sweeps it.
//! - The byte caps: a peer's bytes are the `STRLEN`s of its live records (at most
//!   `per_peer` of them), read when it registers. The store's bytes are one counter,
//!   kept by the only two places records come and go in the scripts: register adds the
//!   record's size to `bytes` and notes it in `size`; `drop` subtracts what `size` says
//!   and removes the note. Not `STRLEN` at drop time: Redis may already have expired
//!   the record key by itself (`PX`), and its length would read 0, leaving the counter
//!   too high for ever. The counter counts an expired record until a sweep drops it, so
//!   a register that would pass the total sweeps up to ten more batches before it
//!   refuses (the counts cap has no such lag: it is a `ZCOUNT` of live members).
//! - Each operation is one Lua script, so it is atomic across relays (caps cannot be
//!   overshot by two relays registering at once), and "now" is the Redis server's
//!   `TIME`, not the relays' clocks, which may differ.
//! - A sequence number is Redis's `TIME` in microseconds, or one more than the last
//!   number if that is larger (as in the memory store): one clock for the whole fleet,
//!   and a Redis that lost its data (restarted without persistence) still hands out
//!   numbers above those in clients' cookies, which would otherwise hide every new
//!   registration from them. Microseconds stay exact in Lua's doubles and in sorted-set
//!   scores (below 2^53) for another two centuries.
//!
//! Needs Redis ≥ 5 or Valkey (scripts replicate their effects, which lets them read
//! `TIME` before writing), standalone (not cluster: the scripts touch keys they find
//! while running), with `maxmemory-policy noeviction` (an evicted record reads as expired).
//!
//! # Redis down
//!
//! Every operation fails with [`StoreError`] within [`OPERATION_TIMEOUT`], never hangs or
//! panics; the rendezvous server answers `E_UNAVAILABLE` and the relay keeps relaying.
//! The [`ConnectionManager`] reconnects in the background, so the same store works again
//! as soon as Redis is back.

use std::sync::LazyLock;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use libp2p::PeerId;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, FromRedisValue, RedisError, Script, ScriptInvocation, ServerErrorKind};

mod redact;
mod scripts;

pub use redact::{redact, redact_urls_in};
use scripts::{COUNT, DISCOVER, REGISTER, UNREGISTER};

use super::store::{
    Caps, NewRegistration, Page, PageQuery, RegisterOutcome, Store, StoreError, StoredRegistration,
    ENTRY_OVERHEAD,
};

/// A Redis on the operator's network accepts a connection in milliseconds; one that
/// takes a second is unreachable, and waiting longer only delays `E_UNAVAILABLE`.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// The scripts do O(page) work and answer in milliseconds; a second means Redis is stuck.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// One retry rides out a blip during a reconnect; more would outlast the operation timeout.
const RECONNECT_RETRIES: usize = 1;
/// Backoff before that retry: short, as a refused loopback connection fails at once.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
/// Backoff cap, so retries stay within the operation timeout.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);
/// Hard bound on any operation, reconnects included: below the server's 2 s store
/// timeout, so the client hears this store's reason rather than a generic one.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(1500);

/// Every key of the store starts with this.
pub const PREFIX: &str = "dusk:rdv:";
/// Expired registrations each operation removes before its own work: enough to keep
/// up with registrations (one each), small enough not to stall Redis.
const SWEEP_BATCH: usize = 100;
/// TTLs are clamped to this (about 100 years) so expiry times stay exact in Lua's doubles.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Discover pages are clamped to this; the server asks for at most 1000.
const MAX_LIMIT: usize = 1 << 30;

/// Registrations in Redis/Valkey, shared by every relay using the same server.
/// Cloning is cheap: clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

/// Why a call failed: Redis's own error, or no answer in time.
enum Failure {
    Redis(RedisError),
    Timeout,
}

impl Failure {
    fn into_store_error(self, what: &str) -> StoreError {
        match self {
            Failure::Redis(e) => StoreError(format!("Redis {what} failed: {e}")),
            Failure::Timeout => StoreError(format!(
                "Redis {what}: no answer within {OPERATION_TIMEOUT:?}"
            )),
        }
    }

    /// Whether waiting may cure it (Redis down, starting, failing over), as opposed to a
    /// configuration Redis refuses (wrong password, no such database).
    fn is_transient(&self) -> bool {
        match self {
            Failure::Timeout => true,
            Failure::Redis(e) => {
                e.is_io_error()
                    || matches!(
                        e.kind(),
                        ErrorKind::Server(
                            ServerErrorKind::BusyLoading
                                | ServerErrorKind::MasterDown
                                | ServerErrorKind::TryAgain
                                | ServerErrorKind::ClusterDown
                        )
                    )
            }
        }
    }
}

/// Whether the connection (not the command) failed: then the manager has started a
/// fresh connection and one more try may succeed at once.
fn connection_lost(e: &RedisError) -> bool {
    e.is_connection_refusal() || e.is_connection_dropped()
}

impl RedisStore {
    /// A store on the Redis/Valkey at `url` (`redis://[user:password@]host:port[/db]`).
    ///
    /// Rejects an unparsable URL and a Redis that refuses this configuration (wrong
    /// password, no such database). A Redis that is unreachable or still loading is
    /// not an error: a relay must start even while Redis is briefly down, so this logs a
    /// warning, and operations fail with [`StoreError`] until Redis answers, then work
    /// without rebuilding the store.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let connection = lazy_connection(url).map_err(StoreError)?;
        let store = RedisStore { connection };
        let ping = redis::cmd("PING");
        let pinged = store
            .call(|mut connection| {
                let ping = ping.clone();
                async move { ping.query_async::<String>(&mut connection).await }
            })
            .await;
        match pinged {
            Ok(_) => Ok(store),
            Err(failure) if failure.is_transient() => {
                tracing::warn!(
                    "rendezvous store {} not reachable yet ({}); rendezvous requests fail until it is",
                    redact(url),
                    failure.into_store_error("PING")
                );
                Ok(store)
            }
            Err(failure) => Err(StoreError(format!(
                "Redis {} refused the connection: {}",
                redact(url),
                failure.into_store_error("PING").0
            ))),
        }
    }

    /// Runs `op` on a clone of the connection, once more if the connection was lost
    /// (the manager is reconnecting; safe as every script is idempotent but for the
    /// sequence number a repeated register takes), all within [`OPERATION_TIMEOUT`].
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let attempts = async {
            match op(self.connection.clone()).await {
                Err(e) if connection_lost(&e) => op(self.connection.clone()).await,
                result => result,
            }
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, attempts).await {
            Ok(result) => result.map_err(Failure::Redis),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Runs `script` with the common arguments (prefix, sweep batch) then `args`.
    fn invoke<T>(
        &self,
        what: &'static str,
        script: &'static LazyLock<Script>,
        args: Vec<Vec<u8>>,
    ) -> BoxFuture<'static, Result<T, StoreError>>
    where
        T: FromRedisValue + Send + 'static,
    {
        let store = self.clone();
        async move {
            let mut invocation: ScriptInvocation<'static> = script.prepare_invoke();
            invocation.arg(PREFIX).arg(SWEEP_BATCH);
            for arg in &args {
                invocation.arg(arg.as_slice());
            }
            let invocation = &invocation;
            store
                .call(|mut connection| async move {
                    invocation.invoke_async::<T>(&mut connection).await
                })
                .await
                .map_err(|failure| failure.into_store_error(what))
        }
        .boxed()
    }
}

/// A connection to the Redis/Valkey at `url` that connects on first use and
/// reconnects by itself, failing fast while Redis is away (the timeouts above). Shared
/// with the fleet's reservation directory.
pub(crate) fn lazy_connection(url: &str) -> Result<ConnectionManager, String> {
    let client =
        redis::Client::open(url).map_err(|e| format!("invalid Redis URL {}: {e}", redact(url)))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| format!("Redis {}: {e}", redact(url)))
}

fn arg(value: impl ToString) -> Vec<u8> {
    value.to_string().into_bytes()
}

impl Store for RedisStore {
    fn register(
        &self,
        registration: NewRegistration,
        caps: Caps,
    ) -> BoxFuture<'static, Result<RegisterOutcome, StoreError>> {
        let ttl_ms = u64::try_from(registration.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_TTL_MS);
        let args = vec![
            registration.namespace.into_bytes(),
            arg(registration.peer.to_base58()),
            registration.record,
            arg(ttl_ms),
            arg(caps.per_peer),
            arg(caps.total),
            arg(caps.per_peer_bytes),
            arg(caps.total_bytes),
        ];
        let outcome = self.invoke::<u8>("register", &REGISTER, args);
        async move {
            match outcome.await? {
                0 => Ok(RegisterOutcome::Registered),
                1 => Ok(RegisterOutcome::PeerFull),
                2 => Ok(RegisterOutcome::StoreFull),
                3 => Ok(RegisterOutcome::PeerBytesFull),
                4 => Ok(RegisterOutcome::StoreBytesFull),
                other => Err(StoreError(format!(
                    "Redis register answered {other}, expected 0 to 4"
                ))),
            }
        }
        .boxed()
    }

    fn unregister(
        &self,
        namespace: String,
        peer: PeerId,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let args = vec![namespace.into_bytes(), arg(peer.to_base58())];
        self.invoke::<()>("unregister", &UNREGISTER, args)
    }

    fn discover(&self, query: PageQuery) -> BoxFuture<'static, Result<Page, StoreError>> {
        let PageQuery {
            namespace,
            after,
            limit,
            max_bytes,
        } = query;
        if limit == 0 {
            return futures::future::ready(Ok(Page::default())).boxed();
        }
        let mut args = vec![
            arg(after),
            arg(limit.min(MAX_LIMIT)),
            arg(max_bytes),
            arg(ENTRY_OVERHEAD),
        ];
        args.extend(namespace.map(String::into_bytes));
        let rows =
            self.invoke::<Vec<(String, String, u64, u64, Vec<u8>)>>("discover", &DISCOVER, args);
        async move {
            let registrations = rows
                .await?
                .into_iter()
                .map(|(peer, namespace, seq, ttl_ms, record)| {
                    let peer = peer.parse::<PeerId>().map_err(|e| {
                        StoreError(format!("Redis holds an invalid peer id {peer:?}: {e}"))
                    })?;
                    Ok(StoredRegistration {
                        namespace,
                        peer,
                        record,
                        ttl_secs: (ttl_ms / 1000).max(1),
                        seq,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Page { registrations })
        }
        .boxed()
    }

    fn count(&self) -> BoxFuture<'static, Result<usize, StoreError>> {
        self.invoke::<usize>("count", &COUNT, Vec::new())
    }
}
