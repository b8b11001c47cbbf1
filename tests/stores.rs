//! The registration stores. One suite (`stores/suite.rs`) runs against the in-memory
//! store and the Redis store alike: caps, replacement, pagination by sequence number,
//! all-namespace discover, unregister, expiry, byte caps, frame-bounded pages, binary
//! records. Against a real `redis-server` (one per test) the Redis store must also
//! leave no keys behind, keep its byte counter exact, share registrations and one
//! sequence between relays, and while Redis is down fail fast with `StoreError`, then
//! work again without being rebuilt once Redis is back.
//!
//! The Redis tests skip, with a loud message, when `redis-server` is not installed
//! (`./run-tests` installs it and makes a skip a failure).

mod stores {
    pub mod suite;
}
mod support;

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use dusk_relay::rendezvous::redis::RedisStore;
use dusk_relay::rendezvous::store::{Caps, RegisterOutcome, Store};
use dusk_relay::rendezvous::MemoryStore;
use libp2p::PeerId;
use stores::suite::{self, *};
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

/// One `#[tokio::test]` per named suite function, each on a fresh store from `$make`
/// (evaluated inside the test; a `return` there skips it). `$make` gives a value whose
/// `store()` is the store under test and which keeps what it needs alive.
macro_rules! store_suite {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let fixture = $make;
                let _ = crate::stores::suite::$name(fixture.store()).await;
            }
        )*
    };
}

/// What the suite runs against.
trait Fixture {
    fn store(&self) -> &dyn Store;
}

impl Fixture for MemoryStore {
    fn store(&self) -> &dyn Store {
        self
    }
}

/// A Redis store with its server, which stops when this drops.
impl Fixture for (RedisServer, RedisStore) {
    fn store(&self) -> &dyn Store {
        &self.1
    }
}

mod memory {
    use super::*;

    store_suite!(MemoryStore::new();
        caps_replacement_and_pagination,
        expired_registrations_are_gone,
        records_are_binary_safe_and_namespaces_distinct,
        a_peer_cannot_hold_more_record_bytes_than_its_cap,
        the_store_cannot_hold_more_record_bytes_than_its_cap,
        a_discover_over_large_records_returns_at_most_the_frame_budget,
        a_huge_ttl_is_clamped_not_a_failure,
        pages_through_2500_registrations,
    );
}

/// The suite against Redis; the functions that Redis checks further are run by the
/// tests below instead.
mod redis_suite {
    use super::*;

    store_suite!({
            let server = redis_or_skip!();
            let store = connect(&server).await;
            (server, store)
        };
        records_are_binary_safe_and_namespaces_distinct,
        a_discover_over_large_records_returns_at_most_the_frame_budget,
        a_huge_ttl_is_clamped_not_a_failure,
        pages_through_2500_registrations,
    );
}

#[tokio::test]
async fn redis_caps_replacement_and_pagination_with_sequence_numbers_from_the_server_clock() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let first = suite::caps_replacement_and_pagination(&store).await;
    // Sequence numbers are the (Redis server's) time in microseconds.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(
        first[0].seq.abs_diff(now_us) < 60_000_000,
        "seq {} is not the time in µs ({now_us})",
        first[0].seq
    );
}

#[tokio::test]
async fn redis_expired_registrations_leave_no_keys() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let b = suite::expired_registrations_are_gone(&store).await;
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
async fn redis_counts_a_peers_record_bytes_exactly() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    suite::a_peer_cannot_hold_more_record_bytes_than_its_cap(&store).await;
    assert_eq!(byte_counter(&server).await, 5_999 + 1 + 4_000 + 10_000);
}

#[tokio::test]
async fn redis_releases_record_bytes_on_expiry_and_leaves_no_counter() {
    let server = redis_or_skip!();
    let store = connect(&server).await;
    let peers = suite::the_store_cannot_hold_more_record_bytes_than_its_cap(&store).await;
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

async fn connect(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url())
        .await
        .expect("connect to redis-server")
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

/// A store connected within 3 s whatever state Redis is in: the relay's start never
/// waits on Redis.
async fn connect_at_once(server: &RedisServer, why: &str) -> RedisStore {
    let start = Instant::now();
    let store = tokio::time::timeout(secs(10), RedisStore::connect(&server.url()))
        .await
        .expect("connect must not hang")
        .expect(why);
    assert!(
        start.elapsed() < secs(3),
        "connect took {:?}",
        start.elapsed()
    );
    store
}

async fn all_operations_fail_fast(store: &RedisStore, peer: PeerId) {
    // In a namespace of its own: a write that timed out may still be applied later.
    fails_fast(
        "register",
        store.register(registration("down", peer, secs(60)), CAPS),
    )
    .await;
    fails_fast("unregister", store.unregister("down".into(), peer)).await;
    let (one, all) = (page_query(Some("x"), 0, 10), page_query(None, 0, 10));
    fails_fast("discover", store.discover(one)).await;
    fails_fast("discover all", store.discover(all)).await;
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
    let fresh = connect_at_once(&server, "a relay starts while Redis is stuck").await;
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
    let store = connect_at_once(&server, "a relay starts while Redis is down").await;
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
