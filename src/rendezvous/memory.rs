//! The default store: registrations in this process's memory, lost on restart (clients
//! re-register well within their TTL). Bounded by the registration caps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures::future::{self, BoxFuture, FutureExt};
use libp2p::PeerId;

use super::store::{
    Caps, NewRegistration, Page, RegisterOutcome, Store, StoreError, StoredRegistration,
};

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

    fn with<T>(&self, f: impl FnOnce(&mut Registrations) -> T) -> T {
        // The state is updated in one step per operation; a panic elsewhere cannot leave
        // it half-written, so a poisoned lock is still usable.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(Instant::now());
        f(&mut inner)
    }
}

struct Entry {
    seq: u64,
    record: Vec<u8>,
    expires: Instant,
}

#[derive(Default)]
struct Registrations {
    next_seq: u64,
    entries: HashMap<(String, PeerId), Entry>,
    /// Every live registration by sequence number, for discover in order.
    by_seq: BTreeMap<u64, (String, PeerId)>,
    /// Per namespace: sequence numbers of its live registrations.
    by_namespace: HashMap<String, BTreeSet<u64>>,
    per_peer: HashMap<PeerId, usize>,
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
        if let Some(count) = self.per_peer.get_mut(&key.1) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&key.1);
            }
        }
    }

    fn register(&mut self, registration: NewRegistration, caps: Caps) -> RegisterOutcome {
        let key = (registration.namespace, registration.peer);
        let replacing = self.entries.contains_key(&key);
        if !replacing {
            if self.per_peer.get(&key.1).copied().unwrap_or(0) >= caps.per_peer {
                return RegisterOutcome::PeerFull;
            }
            if self.entries.len() >= caps.total {
                return RegisterOutcome::StoreFull;
            }
        }
        self.remove(&key);
        // Microseconds since the epoch, or one more than the last: cookies handed out
        // before a restart stay below every number handed out after it.
        self.next_seq = (self.next_seq + 1).max(unix_micros());
        let seq = self.next_seq;
        let expires = Instant::now() + registration.ttl;
        self.by_seq.insert(seq, key.clone());
        self.by_namespace
            .entry(key.0.clone())
            .or_default()
            .insert(seq);
        *self.per_peer.entry(key.1).or_default() += 1;
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

    fn discover(&self, namespace: Option<&str>, after: u64, limit: usize) -> Page {
        let now = Instant::now();
        let range = (std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded);
        let registrations = match namespace {
            Some(ns) => match self.by_namespace.get(ns) {
                Some(seqs) => seqs
                    .range(range)
                    .take(limit)
                    .filter_map(|&seq| self.stored(seq, now))
                    .collect(),
                None => Vec::new(),
            },
            None => self
                .by_seq
                .range(range)
                .take(limit)
                .filter_map(|(&seq, _)| self.stored(seq, now))
                .collect(),
        };
        Page { registrations }
    }
}

impl Store for MemoryStore {
    fn register(
        &self,
        registration: NewRegistration,
        caps: Caps,
    ) -> BoxFuture<'static, Result<RegisterOutcome, StoreError>> {
        let outcome = self.with(|r| r.register(registration, caps));
        future::ready(Ok(outcome)).boxed()
    }

    fn unregister(
        &self,
        namespace: String,
        peer: PeerId,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.with(|r| r.remove(&(namespace, peer)));
        future::ready(Ok(())).boxed()
    }

    fn discover(
        &self,
        namespace: Option<String>,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Page, StoreError>> {
        let page = self.with(|r| r.discover(namespace.as_deref(), after, limit));
        future::ready(Ok(page)).boxed()
    }

    fn count(&self) -> BoxFuture<'static, Result<usize, StoreError>> {
        let count = self.with(|r| r.entries.len());
        future::ready(Ok(count)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn registration(ns: &str, peer: PeerId, ttl_secs: u64) -> NewRegistration {
        NewRegistration {
            namespace: ns.into(),
            peer,
            record: vec![1, 2, 3],
            ttl: Duration::from_secs(ttl_secs),
        }
    }

    async fn register(
        store: &MemoryStore,
        ns: &str,
        peer: PeerId,
        ttl_secs: u64,
    ) -> RegisterOutcome {
        store
            .register(registration(ns, peer, ttl_secs), CAPS)
            .await
            .unwrap()
    }

    const CAPS: Caps = Caps {
        per_peer: 2,
        total: 3,
    };

    #[tokio::test]
    async fn caps_replacement_and_pagination() {
        let store = MemoryStore::new();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let ok = RegisterOutcome::Registered;
        assert_eq!(register(&store, "x", a, 60).await, ok);
        assert_eq!(register(&store, "y", a, 60).await, ok);
        assert_eq!(
            register(&store, "z", a, 60).await,
            RegisterOutcome::PeerFull
        );
        // A re-registration fits even at the cap, and moves to the end of the order.
        assert_eq!(register(&store, "x", a, 60).await, ok);
        assert_eq!(register(&store, "x", b, 60).await, ok);
        assert_eq!(
            register(&store, "x", c, 60).await,
            RegisterOutcome::StoreFull
        );
        assert_eq!(store.count().await.unwrap(), 3);

        let page = store.discover(Some("x".into()), 0, 1).await.unwrap();
        assert_eq!(page.registrations.len(), 1);
        assert_eq!(page.registrations[0].peer, a);
        let after = page.registrations[0].seq;
        let page = store.discover(Some("x".into()), after, 10).await.unwrap();
        assert_eq!(page.registrations.len(), 1);
        assert_eq!(page.registrations[0].peer, b);
        let all = store.discover(None, 0, 10).await.unwrap();
        assert_eq!(all.registrations.len(), 3);

        store.unregister("x".into(), a).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 2);
        let page = store.discover(Some("x".into()), 0, 10).await.unwrap();
        assert_eq!(page.registrations.len(), 1);
    }

    #[tokio::test]
    async fn expired_registrations_are_gone() {
        let store = MemoryStore::new();
        let a = PeerId::random();
        register(&store, "x", a, 0).await;
        assert_eq!(store.count().await.unwrap(), 0);
        assert!(store
            .discover(Some("x".into()), 0, 10)
            .await
            .unwrap()
            .registrations
            .is_empty());
    }
}
