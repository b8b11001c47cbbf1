//! Rendezvous discover throughput: registrations served per second from a namespace of
//! 1000, by the in-memory store and by the Redis store, measured side by side in one run
//! against an in-process relay over loopback TCP, with a real libp2p client.
//!
//!     cargo bench --bench discover_throughput
//!
//! The Redis row needs `redis-server` installed (a private instance is started on a free
//! loopback port). Each DISCOVER asks for 1000 registrations and gets all of them.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dusk_relay::rendezvous::proto;
use dusk_relay::rendezvous::redis::RedisStore;
use dusk_relay::rendezvous::store::{Caps, NewRegistration, RegisterOutcome};
use dusk_relay::rendezvous::{MemoryStore, Store};
use dusk_relay::Relay;
use libp2p::core::PeerRecord;
use libp2p::{Multiaddr, PeerId};
use support::redis::RedisServer;
use support::{raw_request, relay_addr, test_config, Client, Transport};

const NAMESPACE: &str = "dusk/community/bench";
const ENTRIES: usize = 1000;
/// Sequential DISCOVERs per measurement, after a warm-up.
const REQUESTS: usize = 200;
/// Concurrent streams in the parallel measurement.
const PARALLEL: usize = 8;

async fn fill(store: &dyn Store) {
    let relay = PeerId::random();
    for _ in 0..ENTRIES {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}")
            .parse()
            .unwrap();
        let record = PeerRecord::new(&key, vec![addr])
            .unwrap()
            .into_signed_envelope()
            .into_protobuf_encoding();
        let outcome = store
            .register(
                NewRegistration {
                    namespace: NAMESPACE.into(),
                    peer,
                    record,
                    ttl: Duration::from_secs(3600),
                },
                Caps {
                    per_peer: 10,
                    total: 100_000,
                    per_peer_bytes: usize::MAX,
                    total_bytes: usize::MAX,
                },
            )
            .await
            .unwrap();
        assert_eq!(outcome, RegisterOutcome::Registered);
    }
}

fn discover() -> proto::Message {
    proto::Message {
        r#type: Some(proto::MessageType::Discover as i32),
        discover: Some(proto::Discover {
            ns: Some(NAMESPACE.into()),
            limit: Some(ENTRIES as u64),
            cookie: None,
        }),
        ..Default::default()
    }
}

fn served(response: &proto::Message) -> usize {
    let r = response
        .discover_response
        .as_ref()
        .expect("a DISCOVER_RESPONSE");
    assert_eq!(
        r.status,
        Some(proto::ResponseStatus::Ok as i32),
        "{:?}",
        r.status_text
    );
    r.registrations.len()
}

/// (sequential, parallel) registrations per second.
async fn measure(store: Arc<dyn Store>) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let handle = Relay::bind_with_store(test_config(dir.path()), store)
        .await
        .unwrap()
        .spawn();
    let mut client = Client::new(None).await;
    client.connect(&relay_addr(&handle, Transport::Tcp)).await;
    let relay = handle.peer_id;
    for _ in 0..10 {
        assert_eq!(
            served(&raw_request(&client, relay, discover()).await),
            ENTRIES
        );
    }

    let start = Instant::now();
    let mut total = 0;
    for _ in 0..REQUESTS {
        total += served(&raw_request(&client, relay, discover()).await);
    }
    let sequential = total as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let per_task = REQUESTS / PARALLEL;
    let client = Arc::new(client);
    let tasks: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let client = client.clone();
            async move {
                let mut n = 0;
                for _ in 0..per_task {
                    n += served(&raw_request(&client, relay, discover()).await);
                }
                n
            }
        })
        .collect();
    let total: usize = futures::future::join_all(tasks).await.into_iter().sum();
    let parallel = total as f64 / start.elapsed().as_secs_f64();
    handle.shutdown().await;
    (sequential, parallel)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("discover throughput: namespace of {ENTRIES}, {REQUESTS} DISCOVERs of {ENTRIES} each, loopback TCP, {cores} cores");

    let memory = Arc::new(MemoryStore::new());
    fill(&*memory).await;
    let (mem_seq, mem_par) = measure(memory).await;
    println!("| store | sequential (registrations/s) | {PARALLEL} streams (registrations/s) |");
    println!("|-------|------------------:|------------------:|");
    println!("| memory | {mem_seq:.0} | {mem_par:.0} |");

    match RedisServer::start() {
        Some(redis) => {
            let store = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
            fill(&*store).await;
            let (redis_seq, redis_par) = measure(store).await;
            println!("| redis | {redis_seq:.0} | {redis_par:.0} |");
            println!(
                "redis / memory: {:.2} sequential, {:.2} with {PARALLEL} streams",
                redis_seq / mem_seq,
                redis_par / mem_par
            );
        }
        None => println!("| redis | (redis-server not installed) | |"),
    }
}
