//! The default store: registrations in this process's memory, lost on restart (clients
//! re-register well within their TTL). Bounded by the registration caps, in number and
//! in record bytes, per peer and in total.
//!
//! The server polls store futures on the swarm task, which must never wait: every
//! operation takes the lock and does its work on tokio's blocking pool, when the future
//! is first polled, so a long operation (a sweep of many expired registrations, a
//! discover copying a page) or a contended lock delays only other store operations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use libp2p::PeerId;

use super::store::{
    entry_bytes, Caps, NewRegistration, Page, PageQuery, RegisterOutcome, Store, StoreError,
    StoredRegistration,
};

/// TTLs are clamped to this (about 100 years, as in the Redis store): `Instant + ttl`
/// then cannot overflow, whatever TTL the operator allows.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Registrations>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the registrations, with expired ones removed first, on the blocking
    /// pool once the returned future is polled (not on the polling task: see the
    /// module's doc).
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Registrations) -> T + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let inner = self.inner.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                // The state is updated in one step per operation; a panic elsewhere
                // cannot leave it half-written, so a poisoned lock is still usable.
                let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
                inner.expire(Instant::now());
                f(&mut inner)
            })
            .await
            .map_err(|e| StoreError(format!("memory store operation failed: {e}")))
        }
        .boxed()
    }
}

struct Entry {
    seq: u64,
    record: Vec<u8>,
    expires: Instant,
}

/// What one peer holds, for its caps.
#[derive(Default)]
struct Usage {
    registrations: usize,
    bytes: usize,
}

#[derive(Default)]
struct Registrations {
    next_seq: u64,
    entries: HashMap<(String, PeerId), Entry>,
    /// Every live registration by sequence number, for discover in order.
    by_seq: BTreeMap<u64, (String, PeerId)>,
    /// Per namespace: sequence numbers of its live registrations.
    by_namespace: HashMap<String, BTreeSet<u64>>,
    per_peer: HashMap<PeerId, Usage>,
    /// Record bytes of every live registration.
    bytes: usize,
    /// For expiry: (when, seq).
    expiries: BTreeSet<(Instant, u64)>,
}

impl Registrations {
    fn expire(&mut self, now: Instant) {
        while let Some(&(when, seq)) = self.expiries.first() {
            if when > now {
                break;
            }
            if let Some(key) = self.by_seq.get(&seq).cloned() {
                self.remove(&key);
            } else {
                self.expiries.remove(&(when, seq));
            }
        }
    }

    /// Removes the registration and releases what it counted against the caps.
    fn remove(&mut self, key: &(String, PeerId)) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        self.by_seq.remove(&entry.seq);
        self.expiries.remove(&(entry.expires, entry.seq));
        if let Some(seqs) = self.by_namespace.get_mut(&key.0) {
            seqs.remove(&entry.seq);
            if seqs.is_empty() {
                self.by_namespace.remove(&key.0);
            }
        }
        self.bytes = self.bytes.saturating_sub(entry.record.len());
        if let Some(usage) = self.per_peer.get_mut(&key.1) {
            usage.registrations = usage.registrations.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(entry.record.len());
            if usage.registrations == 0 {
                self.per_peer.remove(&key.1);
            }
        }
    }

    fn register(&mut self, registration: NewRegistration, caps: Caps) -> RegisterOutcome {
        let key = (registration.namespace, registration.peer);
        let old_bytes = self.entries.get(&key).map(|entry| entry.record.len());
        let usage = self.per_peer.get(&key.1);
        if old_bytes.is_none() {
            if usage.map_or(0, |u| u.registrations) >= caps.per_peer {
                return RegisterOutcome::PeerFull;
            }
            if self.entries.len() >= caps.total {
                return RegisterOutcome::StoreFull;
            }
        }
        // A re-registration counts its new record in place of its old one.
        let new_bytes = registration.record.len();
        let old_bytes = old_bytes.unwrap_or(0);
        let peer_bytes = usage.map_or(0, |u| u.bytes) - old_bytes;
        if peer_bytes.saturating_add(new_bytes) > caps.per_peer_bytes {
            return RegisterOutcome::PeerBytesFull;
        }
        if (self.bytes - old_bytes).saturating_add(new_bytes) > caps.total_bytes {
            return RegisterOutcome::StoreBytesFull;
        }
        self.remove(&key);
        // Microseconds since the epoch, or one more than the last: cookies handed out
        // before a restart stay below every number handed out after it.
        self.next_seq = self.next_seq.saturating_add(1).max(unix_micros());
        let seq = self.next_seq;
        let now = Instant::now();
        // With the clamp this cannot overflow; if a platform's clock still cannot add
        // it, the registration lives as long as the clock allows (the clamp's promise).
        let expires = now
            .checked_add(registration.ttl.min(MAX_TTL))
            .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
            .unwrap_or(now);
        self.by_seq.insert(seq, key.clone());
        self.by_namespace
            .entry(key.0.clone())
            .or_default()
            .insert(seq);
        let usage = self.per_peer.entry(key.1).or_default();
        usage.registrations += 1;
        usage.bytes += new_bytes;
        self.bytes += new_bytes;
        self.expiries.insert((expires, seq));
        self.entries.insert(
            key,
            Entry {
                seq,
                record: registration.record,
                expires,
            },
        );
        RegisterOutcome::Registered
    }

    fn stored(&self, seq: u64, now: Instant) -> Option<StoredRegistration> {
        let key = self.by_seq.get(&seq)?;
        let entry = self.entries.get(key)?;
        Some(StoredRegistration {
            namespace: key.0.clone(),
            peer: key.1,
            record: entry.record.clone(),
            ttl_secs: entry
                .expires
                .saturating_duration_since(now)
                .as_secs()
                .max(1),
            seq,
        })
    }

    /// The size of the registration `seq` in a response, without copying it.
    fn size(&self, seq: u64) -> usize {
        self.by_seq
            .get(&seq)
            .and_then(|key| Some(entry_bytes(&key.0, &self.entries.get(key)?.record)))
            .unwrap_or(0)
    }

    /// At most `limit` registrations after `after`, stopping before the first that
    /// would pass `max_bytes` (but never before the first): the work and the copy are
    /// bounded by the page, whatever the store holds.
    fn discover(&self, query: &PageQuery) -> Page {
        let now = Instant::now();
        let range = (
            std::ops::Bound::Excluded(query.after),
            std::ops::Bound::Unbounded,
        );
        let seqs: Box<dyn Iterator<Item = u64> + '_> = match query.namespace.as_deref() {
            Some(ns) => match self.by_namespace.get(ns) {
                Some(seqs) => Box::new(seqs.range(range).copied()),
                None => Box::new(std::iter::empty()),
            },
            None => Box::new(self.by_seq.range(range).map(|(&seq, _)| seq)),
        };
        let mut registrations = Vec::new();
        let mut used = 0usize;
        for seq in seqs.take(query.limit) {
            let size = self.size(seq);
            if !registrations.is_empty() && used.saturating_add(size) > query.max_bytes {
                break;
            }
            used = used.saturating_add(size);
            registrations.extend(self.stored(seq, now));
        }
        Page { registrations }
    }
}

impl Store for MemoryStore {
    fn register(
        &self,
        registration: NewRegistration,
        caps: Caps,
    ) -> BoxFuture<'static, Result<RegisterOutcome, StoreError>> {
        self.with(move |r| r.register(registration, caps))
    }

    fn unregister(
        &self,
        namespace: String,
        peer: PeerId,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.with(move |r| r.remove(&(namespace, peer)))
    }

    fn discover(&self, query: PageQuery) -> BoxFuture<'static, Result<Page, StoreError>> {
        self.with(move |r| r.discover(&query))
    }

    fn count(&self) -> BoxFuture<'static, Result<usize, StoreError>> {
        self.with(|r| r.entries.len())
    }
}

#[cfg(test)]
mod tests {
    //! What only the memory store has; the behaviour every store shares is tested by the
    //! store suite (`tests/stores.rs`), against this store and Redis alike.
    use std::time::Duration;

    use super::*;

    /// The byte budget of one page in these tests: the frame size.
    const FRAME: usize = 1024 * 1024;

    const CAPS: Caps = Caps {
        per_peer: 2,
        total: 3,
        per_peer_bytes: usize::MAX,
        total_bytes: usize::MAX,
    };

    fn sized(ns: &str, peer: PeerId, bytes: usize) -> NewRegistration {
        NewRegistration {
            namespace: ns.into(),
            peer,
            record: vec![7; bytes],
            ttl: Duration::from_secs(60),
        }
    }

    /// The server polls store futures on the swarm task: building or polling one must
    /// not wait for the store's lock (another operation may hold it for long).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_work_does_not_run_on_the_task_that_polls_it() {
        let store = MemoryStore::new();
        let a = PeerId::random();
        let registered = store.register(sized("x", a, 10), CAPS).await.unwrap();
        assert_eq!(registered, RegisterOutcome::Registered);

        // Another operation holds the lock: building and polling a discover must return
        // at once (Pending), not block the polling thread.
        let held = store.inner.lock().unwrap();
        let runtime = tokio::runtime::Handle::current();
        let (sender, receiver) = std::sync::mpsc::channel();
        let poller = store.clone();
        std::thread::spawn(move || {
            let _entered = runtime.enter();
            let mut discover = poller.discover(PageQuery {
                namespace: Some("x".into()),
                after: 0,
                limit: 10,
                max_bytes: FRAME,
            });
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            let first = discover.poll_unpin(&mut cx).is_pending();
            let _ = sender.send((first, discover));
        });
        let answer = receiver.recv_timeout(Duration::from_secs(5));
        drop(held);
        let (pending, discover) =
            answer.expect("polling a discover blocked while the store was busy");
        assert!(pending, "the discover finished while the store was locked");
        assert_eq!(discover.await.unwrap().registrations.len(), 1);
    }
}
