//! One test suite for every registration store: the in-memory store and the Redis store
//! must behave the same (caps, replacement, pagination by sequence number,
//! all-namespace discover, unregister, expiry, byte caps, frame-bounded pages, binary
//! records). Each function drives one store; `tests/stores.rs` runs each against both,
//! and adds what only Redis has (keys, the byte counter, sharing between relays,
//! failing fast while Redis is down).

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use dusk_relay::rendezvous::store::{
    entry_bytes, Caps, NewRegistration, Page, PageQuery, RegisterOutcome, Store, StoredRegistration,
};
use libp2p::PeerId;

pub const CAPS: Caps = Caps {
    per_peer: 2,
    total: 3,
    per_peer_bytes: usize::MAX,
    total_bytes: usize::MAX,
};
pub const ROOMY: Caps = Caps {
    per_peer: 1000,
    total: 100_000,
    per_peer_bytes: usize::MAX,
    total_bytes: usize::MAX,
};
pub const BYTE_CAPS: Caps = Caps {
    per_peer: 100,
    total: 1000,
    per_peer_bytes: 10_000,
    total_bytes: 25_000,
};
pub const OK: RegisterOutcome = RegisterOutcome::Registered;
/// The byte budget of one discover page: the frame size.
pub const FRAME: usize = 1024 * 1024;
/// Bound on waiting for something that takes a second or two.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn registration(ns: &str, peer: PeerId, ttl: Duration) -> NewRegistration {
    NewRegistration {
        namespace: ns.into(),
        peer,
        // Not valid UTF-8, with bytes a text protocol would mangle.
        record: [b"rec\0\r\n\xff".as_slice(), peer.to_bytes().as_slice()].concat(),
        ttl,
    }
}

pub fn sized(ns: &str, peer: PeerId, bytes: usize, ttl: Duration) -> NewRegistration {
    NewRegistration {
        namespace: ns.into(),
        peer,
        record: vec![7; bytes],
        ttl,
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub async fn register(
    store: &dyn Store,
    ns: &str,
    peer: PeerId,
    ttl: Duration,
    caps: Caps,
) -> RegisterOutcome {
    store
        .register(registration(ns, peer, ttl), caps)
        .await
        .expect("register")
}

pub async fn register_sized(
    store: &dyn Store,
    ns: &str,
    peer: PeerId,
    bytes: usize,
) -> RegisterOutcome {
    store
        .register(sized(ns, peer, bytes, secs(60)), BYTE_CAPS)
        .await
        .expect("register")
}

/// A page of at most `limit` registrations in `ns` after `after`, within one frame.
pub fn page_query(ns: Option<&str>, after: u64, limit: usize) -> PageQuery {
    PageQuery {
        namespace: ns.map(str::to_owned),
        after,
        limit,
        max_bytes: FRAME,
    }
}

pub async fn discover(
    store: &dyn Store,
    ns: Option<&str>,
    after: u64,
    limit: usize,
) -> Vec<StoredRegistration> {
    store
        .discover(page_query(ns, after, limit))
        .await
        .expect("discover")
        .registrations
}

pub fn keys_of(page: &[StoredRegistration]) -> Vec<(String, PeerId)> {
    page.iter().map(|r| (r.namespace.clone(), r.peer)).collect()
}

/// All but the TTL, which may tick down between two reads.
pub fn essentials(page: &[StoredRegistration]) -> Vec<(String, PeerId, Vec<u8>, u64)> {
    page.iter()
        .map(|r| (r.namespace.clone(), r.peer, r.record.clone(), r.seq))
        .collect()
}

pub fn assert_increasing(page: &[StoredRegistration]) {
    for pair in page.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "sequence numbers out of order: {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

/// Polls `check` until it returns true; panics after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pages `namespace` `limit` at a time from the start; returns the pages.
pub async fn page_through(store: &dyn Store, namespace: Option<&str>, limit: usize) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .discover(page_query(namespace, after, limit))
            .await
            .expect("discover");
        let Some(last) = page.registrations.last() else {
            return pages;
        };
        after = last.seq;
        pages.push(page);
    }
}

/// Per-peer and total caps, re-registration, paging by sequence number and
/// unregistering. Returns the first page it read (one registration).
pub async fn caps_replacement_and_pagination(store: &dyn Store) -> Vec<StoredRegistration> {
    let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());

    assert_eq!(register(store, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(register(store, "y", a, secs(60), CAPS).await, OK);
    assert_eq!(
        register(store, "z", a, secs(60), CAPS).await,
        RegisterOutcome::PeerFull
    );
    // A re-registration fits even at the cap, and moves to the end of the order.
    assert_eq!(register(store, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(register(store, "x", b, secs(60), CAPS).await, OK);
    assert_eq!(
        register(store, "x", c, secs(60), CAPS).await,
        RegisterOutcome::StoreFull
    );
    // At both caps, the peer cap is the reason given.
    assert_eq!(
        register(store, "w", a, secs(60), CAPS).await,
        RegisterOutcome::PeerFull
    );
    // A re-registration fits at the total cap too.
    assert_eq!(register(store, "x", b, secs(60), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 3);

    let first = discover(store, Some("x"), 0, 1).await;
    assert_eq!(keys_of(&first), [("x".to_owned(), a)]);
    assert_eq!(first[0].record, registration("x", a, secs(60)).record);
    assert!(
        (55..=60).contains(&first[0].ttl_secs),
        "ttl {}",
        first[0].ttl_secs
    );
    let after = first[0].seq;
    let page = discover(store, Some("x"), after, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b)]);
    assert!(page[0].seq > after);
    assert!(discover(store, Some("x"), page[0].seq, 10).await.is_empty());
    assert!(discover(store, Some("nothing"), 0, 10).await.is_empty());

    // All namespaces, in registration order: y/a, then the re-registered x/a, then x/b.
    let all = discover(store, None, 0, 10).await;
    assert_eq!(
        keys_of(&all),
        [
            ("y".to_owned(), a),
            ("x".to_owned(), a),
            ("x".to_owned(), b)
        ]
    );
    assert_increasing(&all);
    let rest = discover(store, None, all[0].seq, 10).await;
    assert_eq!(essentials(&rest), essentials(&all[1..]));
    assert!(discover(store, None, 0, 0).await.is_empty());

    store.unregister("x".into(), a).await.unwrap();
    store.unregister("x".into(), a).await.unwrap(); // no error if there is none
    assert_eq!(store.count().await.unwrap(), 2);
    let page = discover(store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b)]);
    // The freed slot is usable: for the peer and in the store.
    assert_eq!(register(store, "z", a, secs(60), CAPS).await, OK);
    assert_eq!(
        register(store, "x", c, secs(60), CAPS).await,
        RegisterOutcome::StoreFull
    );
    assert_eq!(store.count().await.unwrap(), 3);
    first
}

/// Zero and short TTLs. Leaves only `b` registered, under `x`; returns `b`.
pub async fn expired_registrations_are_gone(store: &dyn Store) -> PeerId {
    let (a, b) = (PeerId::random(), PeerId::random());

    // A zero TTL is expired at once, and replaces (removes) an earlier registration.
    assert_eq!(register(store, "x", a, secs(0), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(discover(store, Some("x"), 0, 10).await.is_empty());
    assert_eq!(register(store, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(register(store, "x", a, secs(0), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(discover(store, None, 0, 10).await.is_empty());

    // A short TTL: it counts, and is discovered, until it expires; then it neither
    // counts towards the caps nor shows up.
    let caps = Caps {
        per_peer: 1,
        total: 2,
        per_peer_bytes: usize::MAX,
        total_bytes: usize::MAX,
    };
    // (Two seconds, so that a stalled test machine does not expire it too soon.)
    assert_eq!(register(store, "x", a, secs(2), caps).await, OK);
    assert_eq!(register(store, "x", b, secs(60), caps).await, OK);
    assert_eq!(store.count().await.unwrap(), 2);
    let page = discover(store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), a), ("x".to_owned(), b)]);
    assert!(
        (1..=2).contains(&page[0].ttl_secs),
        "ttl {}",
        page[0].ttl_secs
    );
    assert_eq!(
        register(store, "y", a, secs(60), caps).await,
        RegisterOutcome::PeerFull
    );
    assert_eq!(
        register(store, "y", PeerId::random(), secs(60), caps).await,
        RegisterOutcome::StoreFull
    );
    eventually("the short registration to expire", || async {
        store.count().await.unwrap() == 1
    })
    .await;
    let page = discover(store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b)]);
    assert_eq!(keys_of(&discover(store, None, 0, 10).await), keys_of(&page));
    assert_eq!(register(store, "y", a, secs(60), caps).await, OK);
    store.unregister("y".into(), a).await.unwrap();
    b
}

/// Any bytes in records, any UTF-8 in namespaces (up to 255 bytes), empty records.
pub async fn records_are_binary_safe_and_namespaces_distinct(store: &dyn Store) {
    let (p, q) = (PeerId::random(), PeerId::random());
    let long_ns = "é".repeat(127) + "x"; // 255 bytes
    let namespaces = ["a", "a:b", "", ":", "ünï/cødé:x y", long_ns.as_str()];
    let all_bytes: Vec<u8> = (0..=255).collect();
    let mut expected = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        for (j, peer) in [p, q].into_iter().enumerate() {
            let record = [all_bytes.as_slice(), &[i as u8, j as u8]].concat();
            let registration = NewRegistration {
                namespace: (*ns).to_owned(),
                peer,
                record: record.clone(),
                ttl: secs(60),
            };
            assert_eq!(store.register(registration, ROOMY).await.unwrap(), OK);
            expected.push(((*ns).to_owned(), peer, record));
        }
    }
    let r = PeerId::random();
    let empty = NewRegistration {
        namespace: "a".into(),
        peer: r,
        record: Vec::new(),
        ttl: secs(60),
    };
    assert_eq!(store.register(empty, ROOMY).await.unwrap(), OK);
    expected.push(("a".into(), r, Vec::new()));
    assert_eq!(store.count().await.unwrap(), expected.len());

    let contents = |page: &[StoredRegistration]| -> Vec<(String, PeerId, Vec<u8>)> {
        page.iter()
            .map(|s| (s.namespace.clone(), s.peer, s.record.clone()))
            .collect()
    };
    for ns in namespaces {
        let page = discover(store, Some(ns), 0, 100).await;
        let want: Vec<_> = expected.iter().filter(|e| e.0 == ns).cloned().collect();
        assert_eq!(contents(&page), want, "namespace {ns:?}");
    }
    let all = discover(store, None, 0, 100).await;
    assert_increasing(&all);
    assert_eq!(contents(&all), expected);
}

/// The per-peer byte cap. Leaves `a` with 5,999 + 1 + 4,000 bytes and `b` with 10,000.
pub async fn a_peer_cannot_hold_more_record_bytes_than_its_cap(store: &dyn Store) {
    let (a, b) = (PeerId::random(), PeerId::random());
    assert_eq!(register_sized(store, "x", a, 6_000).await, OK);
    assert_eq!(register_sized(store, "y", a, 4_000).await, OK);
    // One byte more than the cap, in another namespace: refused.
    assert_eq!(
        register_sized(store, "z", a, 1).await,
        RegisterOutcome::PeerBytesFull
    );
    // A re-registration counts its new record instead of its old one: 6,000 -> 6,002
    // does not fit (and the old record stays), 6,000 -> 5,999 does.
    assert_eq!(
        register_sized(store, "x", a, 6_002).await,
        RegisterOutcome::PeerBytesFull
    );
    assert_eq!(
        discover(store, Some("x"), 0, 10).await[0].record.len(),
        6_000
    );
    assert_eq!(register_sized(store, "x", a, 5_999).await, OK);
    assert_eq!(register_sized(store, "z", a, 1).await, OK);
    // Another peer has a cap of its own.
    assert_eq!(register_sized(store, "x", b, 10_000).await, OK);
    // Unregistering releases the peer's bytes.
    store.unregister("y".into(), a).await.unwrap();
    assert_eq!(register_sized(store, "w", a, 4_000).await, OK);
}

/// The store's byte cap, released by smaller re-registrations, unregistering and zero
/// TTLs. Returns the peers; leaves 19,000 bytes registered under `x` (peers 0, 1).
pub async fn the_store_cannot_hold_more_record_bytes_than_its_cap(
    store: &dyn Store,
) -> Vec<PeerId> {
    let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
    for &peer in &peers[..2] {
        assert_eq!(register_sized(store, "x", peer, 10_000).await, OK);
    }
    assert_eq!(
        register_sized(store, "x", peers[2], 5_001).await,
        RegisterOutcome::StoreBytesFull
    );
    assert_eq!(register_sized(store, "x", peers[2], 5_000).await, OK);
    assert_eq!(
        register_sized(store, "x", peers[3], 1).await,
        RegisterOutcome::StoreBytesFull
    );
    // A smaller re-registration frees the difference.
    assert_eq!(register_sized(store, "x", peers[0], 9_000).await, OK);
    assert_eq!(register_sized(store, "x", peers[3], 1_000).await, OK);
    assert_eq!(
        register_sized(store, "y", peers[3], 1).await,
        RegisterOutcome::StoreBytesFull
    );
    // Unregistering and a zero-TTL re-registration release bytes.
    store.unregister("x".into(), peers[3]).await.unwrap();
    let zero = sized("x", peers[2], 5_000, Duration::ZERO);
    assert_eq!(store.register(zero, BYTE_CAPS).await.unwrap(), OK);
    assert_eq!(register_sized(store, "y", peers[3], 6_000).await, OK);
    assert_eq!(
        register_sized(store, "y", peers[4], 1).await,
        RegisterOutcome::StoreBytesFull
    );
    store.unregister("y".into(), peers[3]).await.unwrap();
    peers
}

/// Pages stay within the frame budget however large the records, and together return
/// every registration once; a record larger than the budget is returned alone.
pub async fn a_discover_over_large_records_returns_at_most_the_frame_budget(store: &dyn Store) {
    // 40 records of 100 KiB: 4 MiB in the store, four frames' worth.
    for _ in 0..40 {
        let registration = sized("x", PeerId::random(), 100 * 1024, secs(60));
        assert_eq!(store.register(registration, ROOMY).await.unwrap(), OK);
    }
    for namespace in [Some("x"), None] {
        let pages = page_through(store, namespace, 1000).await;
        let sizes: Vec<usize> = pages.iter().map(|p| p.registrations.len()).collect();
        assert_eq!(sizes, [10, 10, 10, 10], "{namespace:?}");
        for page in &pages {
            let bytes: usize = page
                .registrations
                .iter()
                .map(|r| entry_bytes(&r.namespace, &r.record))
                .sum();
            assert!(bytes <= FRAME, "{namespace:?}: a page of {bytes} bytes");
        }
        let distinct: HashSet<PeerId> = pages
            .iter()
            .flat_map(|p| p.registrations.iter().map(|r| r.peer))
            .collect();
        assert_eq!(distinct.len(), 40);
    }
    let page = store
        .discover(PageQuery {
            max_bytes: 1000,
            ..page_query(None, 0, 1000)
        })
        .await
        .unwrap();
    assert_eq!(page.registrations.len(), 1);
}

/// A TTL past what the store can represent is clamped, not an error or a panic.
pub async fn a_huge_ttl_is_clamped_not_a_failure(store: &dyn Store) {
    let a = PeerId::random();
    let forever = sized("x", a, 10, Duration::MAX);
    assert_eq!(store.register(forever, CAPS).await.unwrap(), OK);
    let page = discover(store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), a)]);
    assert!(
        page[0].ttl_secs > 365 * 24 * 3600,
        "ttl {}",
        page[0].ttl_secs
    );
}

/// 2,500 registrations in pages of 1,000: no loss, no duplicates, in order.
pub async fn pages_through_2500_registrations(store: &dyn Store) {
    let peers: Vec<PeerId> = (0..2500).map(|_| PeerId::random()).collect();
    for chunk in peers.chunks(500) {
        let outcomes = futures::future::join_all(
            chunk
                .iter()
                .map(|&peer| register(store, "big", peer, secs(60), ROOMY)),
        )
        .await;
        assert!(outcomes.iter().all(|o| *o == OK));
    }
    // Another namespace, which a namespaced discover must not return.
    assert_eq!(
        register(store, "other", peers[0], secs(60), ROOMY).await,
        OK
    );
    assert_eq!(store.count().await.unwrap(), 2501);

    for (namespace, total) in [(Some("big"), 2500), (None, 2501)] {
        let pages = page_through(store, namespace, 1000).await;
        let sizes: Vec<usize> = pages.iter().map(|p| p.registrations.len()).collect();
        assert_eq!(sizes, [1000, 1000, total - 2000], "{namespace:?}");
        let all: Vec<StoredRegistration> =
            pages.into_iter().flat_map(|p| p.registrations).collect();
        assert_increasing(&all);
        let distinct: HashSet<(String, PeerId)> = keys_of(&all).into_iter().collect();
        assert_eq!(distinct.len(), total, "duplicates in {namespace:?}");
        let big: HashSet<PeerId> = all
            .iter()
            .filter(|r| r.namespace == "big")
            .map(|r| r.peer)
            .collect();
        assert_eq!(big, peers.iter().copied().collect());
    }
}
