//! Rendezvous under attack (issue 16, items 2-6 and 11): what a stranger can send the
//! relay's rendezvous server with a few bytes, and what it must not achieve: fill memory
//! with huge records, hide a peer behind one, take every registration slot from one IP,
//! publish circuit addresses that lead dialers to the attacker's IP, list every
//! community, crash the relay with a TTL, or read the store's error text.
//!
//! Hostile requests are raw `/rendezvous/1.0.0` messages (an attacker does not use the
//! crate's client); legitimate peers use the rendezvous client dusk ships.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dusk_relay::rendezvous::store::{
    Caps, NewRegistration, Page, PageQuery, RegisterOutcome, Store, StoreError,
};
use dusk_relay::rendezvous::{MemoryStore, ResponseStatus};
use dusk_relay::{Relay, RelayEvent};
use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use libp2p::core::PeerRecord;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use prost::Message as _;
use support::*;

/// `client` registers its own circuit address through `relay` under `namespace` with a
/// raw REGISTER; fails unless the relay accepts it.
async fn assert_registers(relay: &TestRelay, client: &Client, namespace: &str) {
    let (status, text) = raw_register_own_circuit(relay, client, namespace).await;
    assert_eq!(status, ResponseStatus::Ok, "{namespace}: {text}");
}

/// The same REGISTER as [`assert_registers`], refused with E_UNAVAILABLE: its status
/// text.
async fn refused_registration(relay: &TestRelay, client: &Client, namespace: &str) -> String {
    let (status, text) = raw_register_own_circuit(relay, client, namespace).await;
    assert_eq!(status, ResponseStatus::EUnavailable, "{namespace}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_over_the_byte_limit_is_refused_before_it_is_parsed() {
    // Addresses are not what is under test: only bytes count here.
    let relay = TestRelay::start_with(|c| c.rendezvous.max_record_addrs = 10_000).await;
    let mut a = relay.client().await;
    a.connect(&relay.addr(Transport::Tcp)).await;

    // A valid record, every address a circuit through this relay, just too big.
    let addrs = vec![circuit_through(&relay, &a); 60];
    let record = a.signed_record(addrs.clone());
    assert!(record.len() > 4096, "{} bytes", record.len());
    let (status, text) = raw_register_with(&relay, &a, "dusk/peers", addrs).await;
    assert_eq!(status, ResponseStatus::EInvalidSignedPeerRecord, "{text}");
    assert!(text.contains("4096"), "the reason names the limit: {text}");

    // Garbage of that size is refused for its size, not for failing to parse: the relay
    // did not spend a signature check on it.
    let (status, text) = register_status(
        &raw_request(
            &a,
            relay.peer_id(),
            raw_register("dusk/peers", vec![7; 5000], 120),
        )
        .await,
    );
    assert_eq!(status, ResponseStatus::EInvalidSignedPeerRecord, "{text}");
    assert!(text.contains("5000") && text.contains("4096"), "{text}");

    // A record within the limit still registers.
    assert_registers(&relay, &a, "dusk/peers").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_with_more_addresses_than_the_limit_is_refused() {
    let relay = TestRelay::start().await;
    let mut a = relay.client().await;
    a.connect(&relay.addr(Transport::Tcp)).await;
    let circuit = circuit_through(&relay, &a);

    let (status, text) =
        raw_register_with(&relay, &a, "dusk/peers", vec![circuit.clone(); 17]).await;
    assert_eq!(status, ResponseStatus::EInvalidSignedPeerRecord, "{text}");
    assert!(text.contains("17") && text.contains("16"), "{text}");

    let (status, text) = raw_register_with(&relay, &a, "dusk/peers", vec![circuit; 16]).await;
    assert_eq!(status, ResponseStatus::Ok, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_far_larger_than_any_valid_register_is_not_read() {
    let relay = TestRelay::start().await;
    let mut a = relay.client().await;
    a.connect(&relay.addr(Transport::Tcp)).await;

    // 512 KiB declared and sent: the relay reads at most what a REGISTER with the
    // largest valid record needs, then drops the stream without answering.
    let body = raw_register("dusk/peers", vec![0; 512 * 1024], 120).encode_to_vec();
    let mut control = a.control.clone();
    let mut stream = within(
        EVENT_TIMEOUT,
        "rendezvous stream",
        control.open_stream(relay.peer_id(), dusk_relay::rendezvous::PROTOCOL),
    )
    .await
    .expect("open rendezvous stream");
    let mut len = unsigned_varint::encode::usize_buffer();
    // Write errors are the relay resetting the stream: what is under test.
    let _ = stream
        .write_all(unsigned_varint::encode::usize(body.len(), &mut len))
        .await;
    let _ = stream.write_all(&body).await;
    let _ = stream.close().await;
    let mut response = Vec::new();
    let read = within(
        EVENT_TIMEOUT,
        "the stream to end",
        stream.read_to_end(&mut response),
    )
    .await;
    assert!(
        read.is_err() || response.is_empty(),
        "the relay read and answered a {} byte request ({} byte answer)",
        body.len(),
        response.len()
    );

    // The connection and the server are fine.
    assert_registers(&relay, &a, "dusk/peers").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn circuit_addresses_through_another_relay_or_an_attacker_ip_are_refused() {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();
    let mut a = relay.client().await;
    a.connect(&relay.addr(Transport::Tcp)).await;
    let other_relay = PeerId::random();
    let someone_else = PeerId::random();
    let a_id = a.peer_id;

    let hostile: Vec<(&str, Multiaddr)> = vec![
        (
            "through another relay",
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{other_relay}/p2p-circuit/p2p/{a_id}")
                .parse()
                .unwrap(),
        ),
        (
            "through another relay, no IP",
            format!("/p2p/{other_relay}/p2p-circuit").parse().unwrap(),
        ),
        (
            "the attacker's IP before this relay's id",
            format!("/ip4/203.0.113.7/tcp/4001/p2p/{relay_id}/p2p-circuit/p2p/{a_id}")
                .parse()
                .unwrap(),
        ),
        (
            "the attacker's name before this relay's id",
            format!("/dns4/evil.example/tcp/4001/p2p/{relay_id}/p2p-circuit")
                .parse()
                .unwrap(),
        ),
        (
            "this relay's port on another IP",
            relay
                .addr(Transport::Tcp)
                .replace(0, |_| Some(Protocol::Ip4([127, 0, 0, 9].into())))
                .unwrap()
                .with(Protocol::P2pCircuit),
        ),
        (
            "another peer after the circuit",
            format!("/p2p/{relay_id}/p2p-circuit/p2p/{someone_else}")
                .parse()
                .unwrap(),
        ),
        (
            "two circuits",
            format!("/p2p/{relay_id}/p2p-circuit/p2p/{other_relay}/p2p-circuit/p2p/{a_id}")
                .parse()
                .unwrap(),
        ),
        (
            "more after the registrant",
            format!("/p2p/{relay_id}/p2p-circuit/p2p/{a_id}/ip4/203.0.113.7/tcp/1")
                .parse()
                .unwrap(),
        ),
    ];
    for (what, addr) in hostile {
        // One good address next to the bad one: the bad one alone decides.
        let (status, text) = raw_register_with(
            &relay,
            &a,
            "dusk/peers",
            vec![circuit_through(&relay, &a), addr.clone()],
        )
        .await;
        assert_eq!(
            status,
            ResponseStatus::EInvalidSignedPeerRecord,
            "{what}: {addr} was accepted ({text})"
        );
    }

    // What a client of this relay registers is accepted: its relay address, the relay's
    // id alone, with or without the registrant's id.
    for addr in [
        circuit_through(&relay, &a),
        relay.addr(Transport::Quic).with(Protocol::P2pCircuit),
        format!("/p2p/{relay_id}/p2p-circuit/p2p/{a_id}")
            .parse()
            .unwrap(),
        format!("/p2p/{relay_id}/p2p-circuit").parse().unwrap(),
    ] {
        let (status, text) = raw_register_with(&relay, &a, "dusk/peers", vec![addr.clone()]).await;
        assert_eq!(status, ResponseStatus::Ok, "{addr}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_through_the_relays_announced_address_is_accepted() {
    // The relay announces a name it does not listen on (a load balancer's): reservations
    // carry it, so clients register circuit addresses through it.
    let announced: Multiaddr = "/dns4/relay.dusk.invalid/tcp/443/tls/ws".parse().unwrap();
    let external = announced.clone();
    let relay = TestRelay::start_with(move |c| c.external_addrs = vec![external]).await;
    let mut a = relay.client().await;
    a.reserve(&relay.addr(Transport::Tcp)).await;
    assert_eq!(
        register(&mut a, relay.peer_id(), "dusk/peers", None).await,
        Ok(rendezvous_default_ttl()),
        "the real client's record holds the announced address"
    );
    let (status, text) = raw_register_with(
        &relay,
        &a,
        "dusk/peers",
        vec![announced
            .with(Protocol::P2p(relay.peer_id()))
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(a.peer_id))],
    )
    .await;
    assert_eq!(status, ResponseStatus::Ok, "{text}");
}

fn rendezvous_default_ttl() -> u64 {
    libp2p::rendezvous::DEFAULT_TTL
}

/// A real signed record of a fresh identity, over `min_bytes` long, whose addresses are
/// all circuits through `relay`: what an older relay, which bounded records only by the
/// frame, could have stored.
fn huge_record(relay: PeerId, min_bytes: usize) -> (PeerId, Vec<u8>) {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let circuit: Multiaddr = format!("/p2p/{relay}/p2p-circuit/p2p/{peer}")
        .parse()
        .unwrap();
    let per_addr = circuit.len() + 3;
    let addrs = vec![circuit; min_bytes / per_addr + 1];
    let record = PeerRecord::new(&key, addrs)
        .unwrap()
        .into_signed_envelope()
        .into_protobuf_encoding();
    assert!(record.len() > min_bytes);
    (peer, record)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_old_record_does_not_hide_a_registration_after_it() {
    let store = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let handle = Relay::bind_with_store(test_config(dir.path()), store.clone())
        .await
        .unwrap()
        .spawn();
    let relay = TestRelay { handle, dir };
    let relay_id = relay.peer_id();
    let mut v = relay.client().await;
    let namespace = format!("dusk/peer/{}", v.peer_id);

    // Written straight into the store, as a relay that bounded records only by the frame
    // (sharing this store) would have: larger than a whole DISCOVER response may be.
    let (squatter, record) = huge_record(relay_id, 1024 * 1024);
    let unbounded = Caps {
        per_peer: 100,
        total: 100,
        per_peer_bytes: usize::MAX,
        total_bytes: usize::MAX,
    };
    let outcome = store
        .register(
            NewRegistration {
                namespace: namespace.clone(),
                peer: squatter,
                record,
                ttl: Duration::from_secs(3600),
            },
            unbounded,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RegisterOutcome::Registered);

    // The victim registers after it, the way dusk does.
    v.reserve(&relay.addr(Transport::Tcp)).await;
    register(&mut v, relay_id, &namespace, None).await.unwrap();

    let mut b = relay.client().await;
    b.connect(&relay.addr(Transport::Tcp)).await;
    let found = discover(&mut b, relay_id, &namespace).await;
    assert_eq!(
        found.iter().map(|r| r.record.peer_id()).collect::<Vec<_>>(),
        vec![v.peer_id],
        "the victim is found on the first page"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_from_one_ip_are_capped_while_another_ip_registers() {
    let relay = TestRelay::start_with(|c| c.rendezvous.max_registrations_per_ip = 3).await;
    let relay_id = relay.peer_id();
    let mut events = relay.subscribe();
    // Throwaway identities, all from 127.0.0.1.
    let a = client_from(&relay, [127, 0, 0, 1].into()).await;
    let b = client_from(&relay, [127, 0, 0, 1].into()).await;
    for (client, namespace) in [(&a, "one"), (&a, "two"), (&b, "one")] {
        assert_registers(&relay, client, namespace).await;
    }
    let text = refused_registration(&relay, &b, "two").await;
    assert!(text.contains("IP") && text.contains('3'), "{text}");

    // Re-registering replaces: no new slot needed.
    assert_registers(&relay, &a, "one").await;

    // Another IP is not affected.
    let c = client_from(&relay, [127, 0, 0, 2].into()).await;
    assert_registers(&relay, &c, "one").await;

    // An unregistration gives the slot back.
    raw_send(&a, relay_id, raw_unregister("two")).await;
    let a_id = a.peer_id;
    relay_event(&mut events, |e| match e {
        RelayEvent::Unregistered { peer, namespace } if *peer == a_id && namespace == "two" => {
            Some(())
        }
        _ => None,
    })
    .await;
    assert_registers(&relay, &b, "two").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn register_requests_are_rate_limited_per_peer_and_per_ip() {
    let relay = TestRelay::start_with(|c| {
        c.rendezvous.register_rate_per_peer = 3;
        c.rendezvous.register_rate_per_ip = 5;
    })
    .await;
    let a = client_from(&relay, [127, 0, 0, 1].into()).await;
    let b = client_from(&relay, [127, 0, 0, 1].into()).await;
    let c = client_from(&relay, [127, 0, 0, 2].into()).await;

    for _ in 0..3 {
        assert_registers(&relay, &a, "ns").await;
    }
    let text = refused_registration(&relay, &a, "ns").await;
    assert!(text.contains("3 per minute"), "{text}");

    // Another identity on the same IP: two more fit the IP's 5 per minute (A's refused
    // fourth was stopped by A's own limit, before it cost the IP anything), then the IP
    // is out.
    for _ in 0..2 {
        assert_registers(&relay, &b, "ns").await;
    }
    let text = refused_registration(&relay, &b, "ns").await;
    assert!(text.contains("5 per minute"), "{text}");

    // Another IP is not affected.
    assert_registers(&relay, &c, "ns").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_without_a_namespace_is_refused_unless_the_operator_allows_it() {
    for allowed in [false, true] {
        let relay = TestRelay::start_with(|c| c.rendezvous.allow_discover_all = allowed).await;
        let mut a = relay.client().await;
        a.connect(&relay.addr(Transport::Tcp)).await;
        assert_registers(&relay, &a, "dusk/community/3f2a9c").await;

        let (status, text, found) =
            discover_status(&raw_request(&a, relay.peer_id(), raw_discover(None)).await);
        if allowed {
            assert_eq!((status, found), (ResponseStatus::Ok, 1), "{text}");
        } else {
            assert_eq!(
                (status, found),
                (ResponseStatus::EInvalidNamespace, 0),
                "{text}"
            );
            assert!(text.contains("namespace"), "{text}");
        }
        // A namespace is always served.
        let (status, text, found) = discover_status(
            &raw_request(
                &a,
                relay.peer_id(),
                raw_discover(Some("dusk/community/3f2a9c")),
            )
            .await,
        );
        assert_eq!((status, found), (ResponseStatus::Ok, 1), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ttl_near_the_largest_integer_is_refused_without_harm() {
    // The config refuses such a maximum; an embedder filling the struct directly is not
    // stopped by that, and the server must not trust it either.
    let relay = TestRelay::start_with(|c| c.rendezvous.max_ttl_secs = u64::MAX).await;
    let mut a = relay.client().await;
    a.connect(&relay.addr(Transport::Tcp)).await;
    let record = a.signed_record(vec![circuit_through(&relay, &a)]);
    for ttl in [u64::MAX, u64::MAX / 1000, 400 * 24 * 60 * 60] {
        let (status, text) = register_status(
            &raw_request(
                &a,
                relay.peer_id(),
                raw_register("dusk/peers", record.clone(), ttl),
            )
            .await,
        );
        assert_eq!(status, ResponseStatus::EInvalidTtl, "ttl {ttl}: {text}");
    }
    let (status, text) = register_status(
        &raw_request(&a, relay.peer_id(), raw_register("dusk/peers", record, 120)).await,
    );
    assert_eq!(status, ResponseStatus::Ok, "{text}");
}

/// A store that is always down, with an error text only the operator should read.
struct BrokenStore;

impl Store for BrokenStore {
    fn register(
        &self,
        _: NewRegistration,
        _: Caps,
    ) -> BoxFuture<'static, Result<RegisterOutcome, StoreError>> {
        async {
            Err(StoreError(
                "secret detail: redis://:hunter2@10.1.2.3".into(),
            ))
        }
        .boxed()
    }

    fn unregister(&self, _: String, _: PeerId) -> BoxFuture<'static, Result<(), StoreError>> {
        async { Err(StoreError("secret detail".into())) }.boxed()
    }

    fn discover(&self, _: PageQuery) -> BoxFuture<'static, Result<Page, StoreError>> {
        async {
            Err(StoreError(
                "secret detail: redis://:hunter2@10.1.2.3".into(),
            ))
        }
        .boxed()
    }

    fn count(&self) -> BoxFuture<'static, Result<usize, StoreError>> {
        async { Err(StoreError("secret detail".into())) }.boxed()
    }
}

/// Log lines, captured for the one test that reads them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_never_see_the_stores_error_text_but_the_log_does() {
    let log = Captured::default();
    let writer = log.clone();
    // The only test in this binary that installs a subscriber.
    tracing_subscriber::fmt()
        .with_env_filter("dusk_relay=debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let handle = Relay::bind_with_store(test_config(dir.path()), Arc::new(BrokenStore))
        .await
        .unwrap()
        .spawn();
    let relay = TestRelay { handle, dir };
    let mut a = relay.client().await;
    a.connect(&relay.addr(Transport::Tcp)).await;

    let text = refused_registration(&relay, &a, "dusk/peers").await;
    assert!(
        !text.contains("secret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(text.contains("store"), "still says what is wrong: {text}");
    let (status, text, _) =
        discover_status(&raw_request(&a, relay.peer_id(), raw_discover(Some("dusk/peers"))).await);
    assert_eq!(status, ResponseStatus::EUnavailable);
    assert!(
        !text.contains("secret") && !text.contains("hunter2"),
        "{text}"
    );
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("secret detail"),
        "the operator's log has the detail: {logged}"
    );
}
