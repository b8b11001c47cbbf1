//! The Redis registration store against a real `redis-server` (one per test): it keeps
//! the in-memory store's semantics exactly (caps, replacement, pagination by sequence
//! number, all-namespace discover, unregister, expiry), stores records byte for byte,
//! shares registrations and one sequence between relays, pages through thousands of
//! registrations without loss or duplicates, cleans expired entries out of its indexes,
//! and while Redis is down fails fast with `StoreError`, then works again without being
//! rebuilt once Redis is back.
//!
//! Skipped, with a loud message, when `redis-server` is not installed.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use dusk_relay::rendezvous::redis::RedisStore;
use dusk_relay::rendezvous::store::{
    entry_bytes, Caps, NewRegistration, Page, RegisterOutcome, Store, StoredRegistration,
};
use libp2p::PeerId;
use support::redis::RedisServer;

/// A redis-server for this test, or return (skip) if none is installed.
macro_rules! redis_or_skip {
    () => {
        match RedisServer::start() {
            Some(server) => server,
            None => return,
        }
    };
}

const CAPS: Caps = Caps {
    per_peer: 2,
    total: 3,
    per_peer_bytes: usize::MAX,
    total_bytes: usize::MAX,
};
const ROOMY: Caps = Caps {
    per_peer: 1000,
    total: 100_000,
    per_peer_bytes: usize::MAX,
    total_bytes: usize::MAX,
};
const OK: RegisterOutcome = RegisterOutcome::Registered;
/// The byte budget of one discover page: the frame size.
const FRAME: usize = 1024 * 1024;
/// Bound on waiting for something that takes a second or two.
const DEADLINE: Duration = Duration::from_secs(20);

fn registration(ns: &str, peer: PeerId, ttl: Duration) -> NewRegistration {
    NewRegistration {
        namespace: ns.into(),
        peer,
        // Not valid UTF-8, with bytes a text protocol would mangle.
        record: [b"rec\0\r\n\xff".as_slice(), peer.to_bytes().as_slice()].concat(),
        ttl,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn connect(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url())
        .await
        .expect("connect to redis-server")
}

async fn register(
    store: &RedisStore,
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

async fn discover(
    store: &RedisStore,
    ns: Option<&str>,
    after: u64,
    limit: usize,
) -> Vec<StoredRegistration> {
    store
        .discover(ns.map(str::to_owned), after, limit, FRAME)
        .await
        .expect("discover")
        .registrations
}

fn keys_of(page: &[StoredRegistration]) -> Vec<(String, PeerId)> {
    page.iter().map(|r| (r.namespace.clone(), r.peer)).collect()
}

/// All but the TTL, which may tick down between two reads.
fn essentials(page: &[StoredRegistration]) -> Vec<(String, PeerId, Vec<u8>, u64)> {
    page.iter()
        .map(|r| (r.namespace.clone(), r.peer, r.record.clone(), r.seq))
        .collect()
}

fn assert_increasing(page: &[StoredRegistration]) {
    for pair in page.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "sequence numbers out of order: {} then {}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

/// The store's keys in Redis, sorted, read with a separate client.
async fn redis_keys(server: &RedisServer) -> Vec<String> {
    let mut connection = raw(server).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("dusk:rdv:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// Polls `check` until it returns true; panics after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
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

#[tokio::test]
async fn caps_replacement_and_pagination() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());

    assert_eq!(register(&store, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(register(&store, "y", a, secs(60), CAPS).await, OK);
    assert_eq!(
        register(&store, "z", a, secs(60), CAPS).await,
        RegisterOutcome::PeerFull
    );
    // A re-registration fits even at the cap, and moves to the end of the order.
    assert_eq!(register(&store, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(register(&store, "x", b, secs(60), CAPS).await, OK);
    assert_eq!(
        register(&store, "x", c, secs(60), CAPS).await,
        RegisterOutcome::StoreFull
    );
    // At both caps, the peer cap is the reason given (as in the memory store).
    assert_eq!(
        register(&store, "w", a, secs(60), CAPS).await,
        RegisterOutcome::PeerFull
    );
    // A re-registration fits at the total cap too.
    assert_eq!(register(&store, "x", b, secs(60), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 3);

    let page = discover(&store, Some("x"), 0, 1).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), a)]);
    assert_eq!(page[0].record, registration("x", a, secs(60)).record);
    assert!(
        (55..=60).contains(&page[0].ttl_secs),
        "ttl {}",
        page[0].ttl_secs
    );
    // Sequence numbers are the (Redis server's) time in microseconds.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        page[0].seq.abs_diff(now_us) < 60_000_000,
        "seq {} is not the time in µs ({now_us})",
        page[0].seq
    );
    let after = page[0].seq;
    let page = discover(&store, Some("x"), after, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b)]);
    assert!(page[0].seq > after);
    assert!(discover(&store, Some("x"), page[0].seq, 10)
        .await
        .is_empty());
    assert!(discover(&store, Some("nothing"), 0, 10).await.is_empty());

    // All namespaces, in registration order: y/a, then the re-registered x/a, then x/b.
    let all = discover(&store, None, 0, 10).await;
    assert_eq!(
        keys_of(&all),
        [
            ("y".to_owned(), a),
            ("x".to_owned(), a),
            ("x".to_owned(), b)
        ]
    );
    assert_increasing(&all);
    let rest = discover(&store, None, all[0].seq, 10).await;
    assert_eq!(essentials(&rest), essentials(&all[1..]));
    assert!(discover(&store, None, 0, 0).await.is_empty());

    store.unregister("x".into(), a).await.unwrap();
    store.unregister("x".into(), a).await.unwrap(); // no error if there is none
    assert_eq!(store.count().await.unwrap(), 2);
    let page = discover(&store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b)]);
    // The freed slot is usable: for the peer and in the store.
    assert_eq!(register(&store, "z", a, secs(60), CAPS).await, OK);
    assert_eq!(
        register(&store, "x", c, secs(60), CAPS).await,
        RegisterOutcome::StoreFull
    );
    assert_eq!(store.count().await.unwrap(), 3);
}

#[tokio::test]
async fn expired_registrations_are_gone() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let (a, b) = (PeerId::random(), PeerId::random());

    // A zero TTL is expired at once, and replaces (removes) an earlier registration.
    assert_eq!(register(&store, "x", a, secs(0), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(discover(&store, Some("x"), 0, 10).await.is_empty());
    assert_eq!(register(&store, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(register(&store, "x", a, secs(0), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(discover(&store, None, 0, 10).await.is_empty());

    // A short TTL: it counts, and is discovered, until it expires; then it neither
    // counts towards the caps nor shows up.
    let caps = Caps {
        per_peer: 1,
        total: 2,
        per_peer_bytes: usize::MAX,
        total_bytes: usize::MAX,
    };
    // (Two seconds, so that a stalled test machine does not expire it too soon.)
    assert_eq!(register(&store, "x", a, secs(2), caps).await, OK);
    assert_eq!(register(&store, "x", b, secs(60), caps).await, OK);
    assert_eq!(store.count().await.unwrap(), 2);
    let page = discover(&store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), a), ("x".to_owned(), b)]);
    assert!(
        (1..=2).contains(&page[0].ttl_secs),
        "ttl {}",
        page[0].ttl_secs
    );
    assert_eq!(
        register(&store, "y", a, secs(60), caps).await,
        RegisterOutcome::PeerFull
    );
    assert_eq!(
        register(&store, "y", PeerId::random(), secs(60), caps).await,
        RegisterOutcome::StoreFull
    );
    eventually("the short registration to expire", || async {
        store.count().await.unwrap() == 1
    })
    .await;
    let page = discover(&store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b)]);
    assert_eq!(
        keys_of(&discover(&store, None, 0, 10).await),
        keys_of(&page)
    );
    assert_eq!(register(&store, "y", a, secs(60), caps).await, OK);
    store.unregister("y".into(), a).await.unwrap();

    // Nothing of the expired registration is left in Redis: only b's keys and the
    // counter, and once b is gone, only the counter.
    let b58 = b.to_base58();
    assert_eq!(
        redis_keys(&server).await,
        [
            "dusk:rdv:all".to_owned(),
            "dusk:rdv:bytes".to_owned(),
            "dusk:rdv:exp".to_owned(),
            "dusk:rdv:ns:x".to_owned(),
            format!("dusk:rdv:peer:{b58}"),
            format!("dusk:rdv:reg:{b58}:x"),
            "dusk:rdv:seq".to_owned(),
            "dusk:rdv:size".to_owned(),
        ]
    );
    store.unregister("x".into(), b).await.unwrap();
    assert_eq!(redis_keys(&server).await, ["dusk:rdv:seq"]);
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn discover_skips_expired_entries_and_fills_the_page() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let long: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
    let short: Vec<PeerId> = (0..250).map(|_| PeerId::random()).collect();
    for &peer in &long[..3] {
        assert_eq!(register(&store, "mix", peer, secs(60), ROOMY).await, OK);
    }
    for &peer in &short {
        assert_eq!(register(&store, "mix", peer, secs(1), ROOMY).await, OK);
    }
    for &peer in &long[3..] {
        assert_eq!(register(&store, "mix", peer, secs(60), ROOMY).await, OK);
    }
    // Wait for Redis to expire the short records, without running any store operation
    // (each one sweeps a batch of expired entries; discover must cope with the rest).
    let mut connection = raw(&server).await;
    let last = format!("dusk:rdv:reg:{}:mix", short[249].to_base58());
    eventually("Redis to expire the short records", || {
        let mut connection = connection.clone();
        let last = last.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&last)
                .query_async(&mut connection)
                .await
                .expect("EXISTS");
            !exists
        }
    })
    .await;

    // The first page steps over the 250 dead entries (more than one sweep takes) to return four live ones.
    let page = discover(&store, Some("mix"), 0, 4).await;
    let want: Vec<_> = long[..4].iter().map(|&p| ("mix".to_owned(), p)).collect();
    assert_eq!(keys_of(&page), want);
    assert_increasing(&page);
    // And that one discover removed the dead entries from the indexes, not only
    // skipped them (its sweep takes some, it must drop those it steps over).
    let (in_namespace, in_all, in_expiry): (usize, usize, usize) = redis::pipe()
        .zcard("dusk:rdv:ns:mix")
        .zcard("dusk:rdv:all")
        .zcard("dusk:rdv:exp")
        .query_async(&mut connection)
        .await
        .expect("ZCARD");
    assert_eq!((in_namespace, in_all, in_expiry), (6, 6, 6));
    let rest = discover(&store, Some("mix"), page[3].seq, 10).await;
    let want: Vec<_> = long[4..].iter().map(|&p| ("mix".to_owned(), p)).collect();
    assert_eq!(keys_of(&rest), want);
    assert_eq!(store.count().await.unwrap(), 6);
    assert_eq!(discover(&store, None, 0, 100).await.len(), 6);
}

#[tokio::test]
async fn records_are_binary_safe_and_namespaces_distinct() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let (p, q) = (PeerId::random(), PeerId::random());
    let long_ns = "é".repeat(127) + "x"; // 255 bytes
    let namespaces = ["a", "a:b", "", ":", "ünï/cødé:x y", long_ns.as_str()];
    let all_bytes: Vec<u8> = (0..=255).collect();
    let mut expected = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        for (j, peer) in [p, q].into_iter().enumerate() {
            let record = [all_bytes.as_slice(), &[i as u8, j as u8]].concat();
            let outcome = store
                .register(
                    NewRegistration {
                        namespace: (*ns).to_owned(),
                        peer,
                        record: record.clone(),
                        ttl: secs(60),
                    },
                    ROOMY,
                )
                .await
                .unwrap();
            assert_eq!(outcome, OK);
            expected.push(((*ns).to_owned(), peer, record));
        }
    }
    // An empty record too.
    let r = PeerId::random();
    let outcome = store
        .register(
            NewRegistration {
                namespace: "a".into(),
                peer: r,
                record: Vec::new(),
                ttl: secs(60),
            },
            ROOMY,
        )
        .await
        .unwrap();
    assert_eq!(outcome, OK);
    expected.push(("a".into(), r, Vec::new()));
    assert_eq!(store.count().await.unwrap(), expected.len());

    for ns in namespaces {
        let page = discover(&store, Some(ns), 0, 100).await;
        let got: Vec<_> = page
            .iter()
            .map(|s| (s.namespace.clone(), s.peer, s.record.clone()))
            .collect();
        let want: Vec<_> = expected.iter().filter(|e| e.0 == ns).cloned().collect();
        assert_eq!(got, want, "namespace {ns:?}");
    }
    let all = discover(&store, None, 0, 100).await;
    assert_increasing(&all);
    let got: Vec<_> = all
        .iter()
        .map(|s| (s.namespace.clone(), s.peer, s.record.clone()))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn two_relays_share_registrations_and_one_sequence() {
    let server = redis_or_skip!();
    let one = connect(&server).await;
    let two = connect(&server).await;
    let (a, b, c, d) = (
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
    );
    assert_eq!(register(&one, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(register(&two, "x", b, secs(60), CAPS).await, OK);
    let page = discover(&two, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), a), ("x".to_owned(), b)]);
    assert_increasing(&page);
    assert_eq!(one.count().await.unwrap(), 2);
    // A cookie from relay two paginates on relay one.
    let rest = discover(&one, Some("x"), page[0].seq, 10).await;
    assert_eq!(essentials(&rest), essentials(&page[1..]));

    // Relay two's re-registration of a replaces relay one's, after b in the order.
    assert_eq!(register(&two, "x", a, secs(60), CAPS).await, OK);
    let page = discover(&one, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b), ("x".to_owned(), a)]);
    assert_increasing(&page);

    // The caps count both relays' registrations.
    assert_eq!(register(&one, "y", c, secs(60), CAPS).await, OK);
    assert_eq!(
        register(&two, "x", d, secs(60), CAPS).await,
        RegisterOutcome::StoreFull
    );
    two.unregister("x".into(), b).await.unwrap();
    assert_eq!(one.count().await.unwrap(), 2);
    assert_eq!(register(&one, "x", d, secs(60), CAPS).await, OK);

    // Concurrent registrations on both relays draw distinct numbers from one counter.
    let peers: Vec<PeerId> = (0..200).map(|_| PeerId::random()).collect();
    let registrations = peers.iter().enumerate().map(|(i, &peer)| {
        let store = if i % 2 == 0 { &one } else { &two };
        register(store, "busy", peer, secs(60), ROOMY)
    });
    let outcomes = futures::future::join_all(registrations).await;
    assert!(outcomes.iter().all(|o| *o == OK));
    let page = discover(&two, Some("busy"), 0, 1000).await;
    assert_eq!(page.len(), 200);
    assert_increasing(&page);
    let seen: HashSet<PeerId> = page.iter().map(|r| r.peer).collect();
    assert_eq!(seen, peers.iter().copied().collect());
}

fn sized(ns: &str, peer: PeerId, bytes: usize, ttl: Duration) -> NewRegistration {
    NewRegistration {
        namespace: ns.into(),
        peer,
        record: vec![7; bytes],
        ttl,
    }
}

const BYTE_CAPS: Caps = Caps {
    per_peer: 100,
    total: 1000,
    per_peer_bytes: 10_000,
    total_bytes: 25_000,
};

async fn register_sized(
    store: &RedisStore,
    ns: &str,
    peer: PeerId,
    bytes: usize,
) -> RegisterOutcome {
    store
        .register(sized(ns, peer, bytes, secs(60)), BYTE_CAPS)
        .await
        .expect("register")
}

/// The store's byte counter, read with a separate client (0 when the key is absent).
async fn byte_counter(server: &RedisServer) -> u64 {
    let mut connection = raw(server).await;
    let bytes: Option<u64> = redis::cmd("GET")
        .arg("dusk:rdv:bytes")
        .query_async(&mut connection)
        .await
        .expect("GET");
    bytes.unwrap_or(0)
}

#[tokio::test]
async fn a_peer_cannot_hold_more_record_bytes_than_its_cap() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let (a, b) = (PeerId::random(), PeerId::random());
    assert_eq!(register_sized(&store, "x", a, 6_000).await, OK);
    assert_eq!(register_sized(&store, "y", a, 4_000).await, OK);
    // One byte more than the cap, in another namespace: refused.
    assert_eq!(
        register_sized(&store, "z", a, 1).await,
        RegisterOutcome::PeerBytesFull
    );
    // A re-registration counts its new record instead of its old one: 6,000 -> 6,002
    // does not fit (and the old record stays), 6,000 -> 5,999 does.
    assert_eq!(
        register_sized(&store, "x", a, 6_002).await,
        RegisterOutcome::PeerBytesFull
    );
    assert_eq!(
        discover(&store, Some("x"), 0, 10).await[0].record.len(),
        6_000
    );
    assert_eq!(register_sized(&store, "x", a, 5_999).await, OK);
    assert_eq!(register_sized(&store, "z", a, 1).await, OK);
    // Another peer has a cap of its own.
    assert_eq!(register_sized(&store, "x", b, 10_000).await, OK);
    // Unregistering releases the peer's bytes.
    store.unregister("y".into(), a).await.unwrap();
    assert_eq!(register_sized(&store, "w", a, 4_000).await, OK);
    assert_eq!(byte_counter(&server).await, 5_999 + 1 + 4_000 + 10_000);
}

#[tokio::test]
async fn the_store_cannot_hold_more_record_bytes_than_its_cap() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
    for &peer in &peers[..2] {
        assert_eq!(register_sized(&store, "x", peer, 10_000).await, OK);
    }
    assert_eq!(
        register_sized(&store, "x", peers[2], 5_001).await,
        RegisterOutcome::StoreBytesFull
    );
    assert_eq!(register_sized(&store, "x", peers[2], 5_000).await, OK);
    assert_eq!(
        register_sized(&store, "x", peers[3], 1).await,
        RegisterOutcome::StoreBytesFull
    );
    // A smaller re-registration frees the difference.
    assert_eq!(register_sized(&store, "x", peers[0], 9_000).await, OK);
    assert_eq!(register_sized(&store, "x", peers[3], 1_000).await, OK);
    assert_eq!(
        register_sized(&store, "y", peers[3], 1).await,
        RegisterOutcome::StoreBytesFull
    );
    assert_eq!(byte_counter(&server).await, 25_000);

    // Unregistering and a zero-TTL re-registration release bytes.
    store.unregister("x".into(), peers[3]).await.unwrap();
    let zero = sized("x", peers[2], 5_000, Duration::ZERO);
    assert_eq!(store.register(zero, BYTE_CAPS).await.unwrap(), OK);
    assert_eq!(byte_counter(&server).await, 19_000);

    // A record that Redis expires by itself, while no operation runs, releases its
    // bytes too: the counter must not stay high for ever.
    // (Two seconds, so that a stalled test machine does not expire it too soon.)
    let short = sized("x", peers[4], 6_000, secs(2));
    assert_eq!(store.register(short, BYTE_CAPS).await.unwrap(), OK);
    assert_eq!(
        register_sized(&store, "y", peers[3], 1).await,
        RegisterOutcome::StoreBytesFull
    );
    let connection = raw(&server).await;
    let key = format!("dusk:rdv:reg:{}:x", peers[4].to_base58());
    eventually("Redis to expire the short record", || {
        let mut connection = connection.clone();
        let key = key.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("EXISTS");
            !exists
        }
    })
    .await;
    assert_eq!(register_sized(&store, "y", peers[3], 6_000).await, OK);
    assert_eq!(byte_counter(&server).await, 25_000);

    // Once everything is gone, so is the counter (no key leaks).
    for (ns, peer) in [("x", peers[0]), ("x", peers[1]), ("y", peers[3])] {
        store.unregister(ns.into(), peer).await.unwrap();
    }
    assert_eq!(redis_keys(&server).await, ["dusk:rdv:seq"]);
}

#[tokio::test]
async fn the_byte_total_stays_exact_across_many_expiries() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let caps = Caps {
        per_peer: 10,
        total: 10_000,
        per_peer_bytes: usize::MAX,
        total_bytes: 500 * 100,
    };
    // 500 records of 100 bytes fill the store, then expire on their own: more than one
    // sweep batch (100) but less than a register sweeps before refusing.
    let peers: Vec<PeerId> = (0..500).map(|_| PeerId::random()).collect();
    for chunk in peers.chunks(100) {
        let outcomes = futures::future::join_all(
            chunk
                .iter()
                .map(|&peer| store.register(sized("x", peer, 100, secs(3)), caps)),
        )
        .await;
        assert!(outcomes.into_iter().all(|o| o.unwrap() == OK));
    }
    assert_eq!(byte_counter(&server).await, 50_000);
    let late = PeerId::random();
    assert_eq!(
        store
            .register(sized("y", late, 100, secs(60)), caps)
            .await
            .unwrap(),
        RegisterOutcome::StoreBytesFull
    );
    let mut connection = raw(&server).await;
    eventually("Redis to expire the records", || {
        let mut connection = connection.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("dusk:rdv:reg:*")
                .query_async(&mut connection)
                .await
                .expect("KEYS");
            keys.is_empty()
        }
    })
    .await;
    // One register sweeps what it needs (three batches besides its own) and fits; the
    // next operation sweeps the last batch, and the counter is the live bytes exactly.
    let big = sized("y", late, 40_000, secs(60));
    assert_eq!(store.register(big, caps).await.unwrap(), OK);
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(byte_counter(&server).await, 40_000);
    let in_expiry: usize = redis::cmd("ZCARD")
        .arg("dusk:rdv:exp")
        .query_async(&mut connection)
        .await
        .expect("ZCARD");
    assert_eq!(in_expiry, 1);
}

#[tokio::test]
async fn a_discover_over_large_records_returns_at_most_the_frame_budget() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    // 40 records of 100 KiB: 4 MiB in the store, four frames' worth.
    for _ in 0..40 {
        let registration = sized("x", PeerId::random(), 100 * 1024, secs(60));
        assert_eq!(store.register(registration, ROOMY).await.unwrap(), OK);
    }
    for namespace in [Some("x"), None] {
        let pages = page_through(&store, namespace, 1000).await;
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
    // A record larger than the whole budget is still returned, alone, so it cannot
    // stop a client from paging past it.
    let page = store.discover(None, 0, 1000, 1000).await.unwrap();
    assert_eq!(page.registrations.len(), 1);
}

#[tokio::test]
async fn a_huge_ttl_is_clamped_not_a_failure() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let a = PeerId::random();
    let forever = sized("x", a, 10, Duration::MAX);
    assert_eq!(store.register(forever, CAPS).await.unwrap(), OK);
    let page = discover(&store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), a)]);
    assert!(
        page[0].ttl_secs > 365 * 24 * 3600,
        "ttl {}",
        page[0].ttl_secs
    );
}

/// Pages `namespace` `limit` at a time from the start; returns the pages.
async fn page_through(store: &RedisStore, namespace: Option<&str>, limit: usize) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .discover(namespace.map(str::to_owned), after, limit, FRAME)
            .await
            .expect("discover");
        let Some(last) = page.registrations.last() else {
            return pages;
        };
        after = last.seq;
        pages.push(page);
    }
}

#[tokio::test]
async fn pages_through_2500_registrations() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let peers: Vec<PeerId> = (0..2500).map(|_| PeerId::random()).collect();
    for chunk in peers.chunks(500) {
        let outcomes = futures::future::join_all(
            chunk
                .iter()
                .map(|&peer| register(&store, "big", peer, secs(60), ROOMY)),
        )
        .await;
        assert!(outcomes.iter().all(|o| *o == OK));
    }
    // Another namespace, which a namespaced discover must not return.
    assert_eq!(
        register(&store, "other", peers[0], secs(60), ROOMY).await,
        OK
    );
    assert_eq!(store.count().await.unwrap(), 2501);

    for (namespace, total) in [(Some("big"), 2500), (None, 2501)] {
        let pages = page_through(&store, namespace, 1000).await;
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

/// Runs `op`, which must fail with `StoreError` within 3 s; returns how long it took.
async fn fails_fast<T: std::fmt::Debug>(
    what: &str,
    op: impl Future<Output = Result<T, dusk_relay::rendezvous::StoreError>>,
) -> Duration {
    let start = Instant::now();
    let result = tokio::time::timeout(secs(10), op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung with Redis down"));
    let took = start.elapsed();
    let error = result.expect_err(&format!("{what} must fail with Redis down"));
    eprintln!("{what} with Redis down: {took:?}: {error}");
    assert!(took < secs(3), "{what} took {took:?} to fail");
    took
}

async fn all_operations_fail_fast(store: &RedisStore, peer: PeerId) {
    // In a namespace of its own: a write that timed out may still be applied later.
    fails_fast(
        "register",
        store.register(registration("down", peer, secs(60)), CAPS),
    )
    .await;
    fails_fast("unregister", store.unregister("down".into(), peer)).await;
    fails_fast("discover", store.discover(Some("x".into()), 0, 10, FRAME)).await;
    fails_fast("discover all", store.discover(None, 0, 10, FRAME)).await;
    fails_fast("count", store.count()).await;
}

#[tokio::test]
async fn redis_down_fails_fast_and_the_same_store_recovers() {
    let mut server = redis_or_skip!();
    let store = connect(&server).await;
    let (a, b) = (PeerId::random(), PeerId::random());
    assert_eq!(register(&store, "x", a, secs(60), CAPS).await, OK);
    let before = discover(&store, Some("x"), 0, 10).await[0].seq;

    server.stop();
    // Twice: failed reconnects must not leave the store slower, or stuck.
    all_operations_fail_fast(&store, b).await;
    all_operations_fail_fast(&store, b).await;

    // Redis is back (empty: it persists nothing); the same store works at once.
    server.start_again();
    assert_eq!(register(&store, "x", b, secs(60), CAPS).await, OK);
    assert_eq!(store.count().await.unwrap(), 1);
    let page = discover(&store, Some("x"), 0, 10).await;
    assert_eq!(keys_of(&page), [("x".to_owned(), b)]);
    // Redis lost its data, counter included, yet numbers go on increasing: a cookie
    // from before the loss still shows the new registration.
    assert!(page[0].seq > before, "{} after {before}", page[0].seq);
    assert_eq!(
        keys_of(&discover(&store, Some("x"), before, 10).await),
        [("x".to_owned(), b)]
    );
    // A clone shares the recovered connection.
    assert_eq!(store.clone().count().await.unwrap(), 1);
}

#[tokio::test]
async fn stuck_redis_fails_fast_and_the_same_store_recovers() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let a = PeerId::random();
    assert_eq!(register(&store, "x", a, secs(60), CAPS).await, OK);

    // Frozen: the open connection gets no answers, and a new store's connection is
    // accepted by the kernel but never greeted.
    server.pause();
    all_operations_fail_fast(&store, PeerId::random()).await;
    let start = Instant::now();
    let fresh = tokio::time::timeout(secs(10), RedisStore::connect(&server.url()))
        .await
        .expect("connect must not hang")
        .expect("a relay starts while Redis is stuck");
    assert!(
        start.elapsed() < secs(3),
        "connect took {:?}",
        start.elapsed()
    );
    all_operations_fail_fast(&fresh, PeerId::random()).await;

    // Thawed: both stores answer, and answers are not mixed up with the late replies
    // to the requests that timed out. (Those requests may have been applied: only the
    // "down" namespace holds their effects.)
    server.resume();
    let b = PeerId::random();
    eventually("the stores to answer again", || async {
        store.count().await.is_ok() && fresh.count().await.is_ok()
    })
    .await;
    assert_eq!(register(&store, "y", b, secs(60), ROOMY).await, OK);
    for s in [&store, &fresh] {
        let page = discover(s, Some("x"), 0, 10).await;
        assert_eq!(keys_of(&page), [("x".to_owned(), a)]);
        let page = discover(s, Some("y"), 0, 10).await;
        assert_eq!(keys_of(&page), [("y".to_owned(), b)]);
    }
}

#[tokio::test]
async fn connect_succeeds_while_redis_is_down_and_works_once_it_is_up() {
    let mut server = redis_or_skip!();
    server.stop();
    let start = Instant::now();
    let store = tokio::time::timeout(secs(10), RedisStore::connect(&server.url()))
        .await
        .expect("connect must not hang")
        .expect("a relay starts while Redis is down");
    assert!(
        start.elapsed() < secs(3),
        "connect took {:?}",
        start.elapsed()
    );
    all_operations_fail_fast(&store, PeerId::random()).await;

    server.start_again();
    assert_eq!(store.count().await.unwrap(), 0);
    let a = PeerId::random();
    assert_eq!(register(&store, "x", a, secs(60), CAPS).await, OK);
    assert_eq!(
        keys_of(&discover(&store, None, 0, 10).await),
        [("x".to_owned(), a)]
    );
}

#[tokio::test]
async fn connect_rejects_bad_urls_and_refused_configurations_without_leaking_passwords() {
    for url in [
        "redis://user:hunter2@127.0.0.1:notaport/0",
        "http://user:hunter2@127.0.0.1:6379/",
        "redis:/user:hunter2@127.0.0.1:6379",
    ] {
        let error = RedisStore::connect(url)
            .await
            .expect_err("an unparsable URL is rejected");
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "password leaked: {message}");
        if url.contains("@") {
            assert!(
                message.contains("***"),
                "the URL is named, redacted: {message}"
            );
        }
    }

    // A password this Redis does not accept is configuration, not an outage.
    let server = redis_or_skip!();
    let url = format!("redis://user:hunter2@127.0.0.1:{}/", server.port());
    let error = tokio::time::timeout(secs(10), RedisStore::connect(&url))
        .await
        .expect("connect must not hang")
        .expect_err("a refused password is an error");
    let message = error.to_string();
    eprintln!("refused password: {message}");
    assert!(!message.contains("hunter2"), "password leaked: {message}");
    assert!(
        message.contains("user:***@"),
        "the URL is named, redacted: {message}"
    );
}
