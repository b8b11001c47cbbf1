//! The private HTTP endpoint: `/metrics` moves with real reservations, circuits and
//! rendezvous registrations and parses as an exposition; no label value is an IP, a
//! peer id or a namespace; `/healthz` and `/readyz` answer `GET` and `HEAD`.

mod support;

use dusk_relay::RelayEvent;
use libp2p::multiaddr::Protocol;
use libp2p::rendezvous::Namespace;
use libp2p::{Multiaddr, PeerId};
use support::*;

fn value(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                scrape.samples.iter().map(|s| &s.metric).collect::<Vec<_>>()
            )
        });
    match sample.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_reservations_circuits_and_registrations_without_private_labels() {
    let relay = TestRelay::start().await;
    let addr = relay.handle.http_addr.expect("endpoint enabled");
    let mut events = relay.subscribe();

    let before = scrape(addr).await;
    assert_eq!(value(&before, "dusk_relay_reservations"), 0.0);
    assert_eq!(value(&before, "dusk_relay_circuits"), 0.0);
    assert_eq!(value(&before, "dusk_relay_relayed_bytes_total"), 0.0);
    assert!(before
        .samples
        .iter()
        .any(|s| s.metric == "dusk_relay_build_info"));

    let mut a = relay.client().await;
    let mut b = relay.client().await;
    a.reserve(&relay.addr(Transport::Tcp)).await;
    let namespace = format!("dusk/community/{}", "secret-community");
    let ns = Namespace::new(namespace.clone()).unwrap();
    let relay_id = relay.peer_id();
    a.call(move |s| s.behaviour_mut().rendezvous.register(ns, relay_id, None))
        .await
        .unwrap();
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::Registered { .. }).then_some(())
    })
    .await;
    b.connect(&relay.addr(Transport::Wss)).await;
    b.dial_through(&relay.addr(Transport::Wss), a.peer_id).await;
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitOpened { .. }).then_some(())
    })
    .await;
    exchange_both_ways(&mut b, &mut a, 256 * 1024).await;

    let after = scrape(addr).await;
    assert_eq!(value(&after, "dusk_relay_reservations"), 1.0);
    assert_eq!(value(&after, "dusk_relay_circuits"), 1.0);
    assert_eq!(value(&after, "dusk_relay_circuits_opened_total"), 1.0);
    assert_eq!(value(&after, "dusk_relay_rendezvous_registrations"), 1.0);
    // 256 KiB each way, plus the end-to-end connection's own noise and yamux framing
    // and handshakes, which the relay forwards too.
    let relayed = value(&after, "dusk_relay_relayed_bytes_total");
    let payload = 2.0 * 256.0 * 1024.0;
    assert!(
        relayed >= payload && relayed < payload + 64.0 * 1024.0,
        "relayed {relayed} bytes for {payload} bytes of payload"
    );
    let connections: Vec<_> = after
        .samples
        .iter()
        .filter(|s| s.metric == "dusk_relay_connections")
        .collect();
    assert!(
        connections
            .iter()
            .any(|s| s.labels.get("transport") == Some("tcp")),
        "{connections:?}"
    );
    assert!(
        connections
            .iter()
            .any(|s| s.labels.get("transport") == Some("wss")),
        "{connections:?}"
    );
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric.starts_with("libp2p_")),
        "libp2p's own metrics"
    );

    // Privacy and cardinality: no label value is an IP, a multiaddr, a peer id or a namespace.
    let peers = [a.peer_id, b.peer_id, relay_id].map(|p| p.to_string());
    for sample in &after.samples {
        for (name, label) in sample.labels.iter() {
            assert!(
                label.parse::<std::net::IpAddr>().is_err(),
                "{} {name}={label}",
                sample.metric
            );
            assert!(
                label.parse::<PeerId>().is_err(),
                "{} {name}={label}",
                sample.metric
            );
            // Protocol stacks such as `/ip4/tcp` are fine; an address with an IP is not.
            let has_ip = label.parse::<Multiaddr>().is_ok_and(|a| {
                a.iter()
                    .any(|p| matches!(p, Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_)))
            });
            assert!(
                !has_ip && !label.contains("127.0.0.1"),
                "{} {name}={label}",
                sample.metric
            );
            assert!(
                !peers.iter().any(|p| label.contains(p.as_str())),
                "{} {name}={label}",
                sample.metric
            );
            assert!(
                !label.contains("secret-community"),
                "{} {name}={label}",
                sample.metric
            );
        }
    }

    for path in ["/healthz", "/readyz"] {
        assert_eq!(http(addr, "GET", path).await.0, 200, "GET {path}");
        assert_eq!(http(addr, "HEAD", path).await.0, 200, "HEAD {path}");
    }
    assert_eq!(http(addr, "GET", "/nothing").await.0, 404);
}

#[tokio::test]
async fn endpoint_is_loopback_by_default_and_can_be_disabled() {
    let (config, _) = dusk_relay::Config::from_vars(Vec::new()).unwrap();
    let addr = config.metrics_addr.expect("on by default");
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(addr.port(), 9001);
    let (config, _) =
        dusk_relay::Config::from_vars(vec![("DUSK_RELAY_METRICS_ADDR".into(), "off".into())])
            .unwrap();
    assert!(config.metrics_addr.is_none());

    let relay = TestRelay::start_with(|c| c.metrics_addr = None).await;
    assert!(relay.handle.http_addr.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn circuit_count_stays_right_when_a_destination_disconnects() {
    let relay = TestRelay::start().await;
    let metrics = relay.handle.http_addr.expect("metrics on");
    let (first_dst, mut first_src) = open_circuit(&relay, Transport::Tcp).await;
    let (_second_dst, _second_src) = open_circuit(&relay, Transport::Tcp).await;
    let mut events = relay.subscribe();
    let gone = first_dst.peer_id;
    drop(first_dst);
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitClosed { dst, .. } if *dst == gone).then_some(())
    })
    .await;
    // The source sees its relayed connection end once the relay's copy of the circuit
    // has ended, which is when libp2p-relay reports the circuit closed a second time.
    first_src
        .next("relayed connection closed", |e| match e {
            libp2p::swarm::SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == gone => {
                Some(())
            }
            _ => None,
        })
        .await;
    let after = scrape(metrics).await;
    assert_eq!(
        value(&after, "dusk_relay_circuits"),
        1.0,
        "one circuit is still open"
    );
    assert_eq!(
        metric_sum(&after, "dusk_relay_circuits_closed_total", &[]),
        1.0
    );
}
