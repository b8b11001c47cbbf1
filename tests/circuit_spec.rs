//! The circuit relay v2 spec (libp2p/specs `relay/circuit-v2.md`), message by message and
//! status by status, against the relay over real sockets. The peers here speak HOP and
//! STOP by hand (raw streams over TCP, noise and yamux), so every field the relay sends
//! is seen as sent: a reservation's addresses, expiry, voucher and limit; STOP CONNECT's
//! source and limit; each status code where the spec puts it.

mod support;

use std::time::{Duration, Instant, SystemTime};

use dusk_relay::circuit::proto::{ReservationVoucher, Status, STOP_STATUS};
use dusk_relay::RelayEvent;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::SignedEnvelope;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{yamux, PeerId, Stream};
use prost::Message as _;
use support::hop::*;
use support::*;
use tokio::sync::oneshot;

/// A peer that speaks HOP and STOP by hand: TCP, noise, yamux and raw streams only.
struct RawPeer {
    id: PeerId,
    control: libp2p_stream::Control,
    stops: libp2p_stream::IncomingStreams,
    /// Fires when its connection to the relay closes.
    closed: Option<oneshot::Receiver<()>>,
    /// Dropping it stops the swarm, which closes its connection.
    _stop: oneshot::Sender<()>,
}

impl RawPeer {
    /// Connected to `relay` over TCP.
    async fn connected(relay: &TestRelay) -> RawPeer {
        let mut swarm = tcp_swarm(yamux::Config::default, |_| libp2p_stream::Behaviour::new());
        let id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().new_control();
        let stops = control.accept(STOP).expect("accept STOP");
        swarm
            .dial(relay.addr(Transport::Tcp))
            .expect("dial the relay");
        let (connected_tx, connected) = oneshot::channel();
        let (closed_tx, closed) = oneshot::channel();
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut connected_tx, mut closed_tx) = (Some(connected_tx), Some(closed_tx));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { .. } => {
                            if let Some(tx) = connected_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        SwarmEvent::ConnectionClosed { .. } => {
                            if let Some(tx) = closed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        _ => {}
                    }
                }
            }
        });
        within(EVENT_TIMEOUT, "connection to the relay", connected)
            .await
            .expect("the swarm runs");
        RawPeer {
            id,
            control,
            stops,
            closed: Some(closed),
            _stop: stop,
        }
    }

    async fn hop(&self, relay: PeerId) -> Stream {
        let mut control = self.control.clone();
        within(EVENT_TIMEOUT, "HOP stream", control.open_stream(relay, HOP))
            .await
            .expect("HOP stream")
    }

    /// Sends `request` on a fresh HOP stream and returns the stream and the answer.
    async fn ask(&self, relay: PeerId, request: HopMessage) -> (Stream, HopMessage) {
        let mut stream = self.hop(relay).await;
        stream
            .write_all(&frame(&request.encode_to_vec()))
            .await
            .expect("HOP request");
        let answer = read_hop(&mut stream).await;
        (stream, answer)
    }

    /// The next STOP stream the relay opens, and the STOP CONNECT on it.
    async fn next_stop(&mut self, relay: PeerId) -> (Stream, StopMessage) {
        let (from, mut stream) = within(EVENT_TIMEOUT, "STOP stream", self.stops.next())
            .await
            .expect("STOP streams");
        assert_eq!(from, relay, "STOP comes from the relay");
        let body = within(EVENT_TIMEOUT, "STOP CONNECT", read_frame(&mut stream))
            .await
            .expect("a STOP message");
        (
            stream,
            StopMessage::decode(body.as_slice()).expect("a StopMessage"),
        )
    }
}

/// A relay, A holding a reservation on it (its HOP stream kept), and B connected.
struct Scene {
    relay: TestRelay,
    relay_id: PeerId,
    events: tokio::sync::broadcast::Receiver<RelayEvent>,
    a: RawPeer,
    b: RawPeer,
    reserved: Stream,
}

impl Scene {
    async fn a_reserved_and_b() -> Scene {
        let relay = TestRelay::start().await;
        let relay_id = relay.peer_id();
        let events = relay.subscribe();
        let a = RawPeer::connected(&relay).await;
        let b = RawPeer::connected(&relay).await;
        let (reserved, answer) = a.ask(relay_id, reserve()).await;
        assert_eq!(answer.status, Some(OK), "A's reservation");
        Scene {
            relay,
            relay_id,
            events,
            a,
            b,
            reserved,
        }
    }
}

async fn read_hop(stream: &mut Stream) -> HopMessage {
    let body = within(EVENT_TIMEOUT, "HOP answer", read_frame(stream))
        .await
        .expect("a HOP answer");
    HopMessage::decode(body.as_slice()).expect("a HopMessage")
}

async fn stop_answer(stream: &mut Stream, status: Status) {
    let answer = StopMessage {
        r#type: STOP_STATUS,
        status: Some(status as i32),
        ..StopMessage::default()
    };
    stream
        .write_all(&frame(&answer.encode_to_vec()))
        .await
        .expect("STOP answer");
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// What the relay promises with every accepted request (README, the limits table): the
/// default configuration's circuits have a 24 h duration and no byte limit.
fn expected_limit() -> Limit {
    let limits = dusk_relay::Config::default().relay;
    Limit {
        duration: Some(
            limits
                .max_circuit_duration
                .map_or(u32::MAX, |d| d.as_secs() as u32),
        ),
        data: Some(limits.max_circuit_bytes),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_carries_the_relays_addresses_its_expiry_a_limit_and_a_voucher_libp2p_verifies(
) {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();
    let a = RawPeer::connected(&relay).await;
    let before = unix_now();
    let (_stream, answer) = a.ask(relay_id, reserve()).await;
    assert_eq!(answer.r#type, HOP_STATUS);
    assert_eq!(answer.status, Some(OK));
    assert_eq!(answer.limit, Some(expected_limit()));
    let reservation = answer.reservation.expect("a reservation");

    let addrs: Vec<libp2p::Multiaddr> = reservation
        .addrs
        .iter()
        .map(|a| libp2p::Multiaddr::try_from(a.clone()).expect("a multiaddr"))
        .collect();
    assert!(
        addrs.contains(&relay.addr(Transport::Tcp)),
        "the relay's TCP address with its peer id: {addrs:?}"
    );
    assert!(
        addrs
            .iter()
            .all(|a| a.iter().last() == Some(Protocol::P2p(relay_id))),
        "every address ends in the relay's peer id: {addrs:?}"
    );

    let hour = dusk_relay::Config::default()
        .relay
        .reservation_duration
        .as_secs();
    assert!(
        (before + hour..=unix_now() + hour).contains(&reservation.expire),
        "expires in {hour} s: {} (now {before})",
        reservation.expire
    );

    // The voucher, checked with libp2p's own envelope code, not ours.
    let envelope = SignedEnvelope::from_protobuf_encoding(
        &reservation.voucher.expect("a voucher with the reservation"),
    )
    .expect("a signed envelope");
    let (payload, signer) = envelope
        .payload_and_signing_key("libp2p-relay-rsvp".into(), &[0x03, 0x02])
        .expect("domain libp2p-relay-rsvp, payload type 0x0302, a valid signature");
    assert_eq!(signer.to_peer_id(), relay_id, "signed by the relay");
    let voucher = ReservationVoucher::decode(payload).expect("a ReservationVoucher");
    assert_eq!(PeerId::from_bytes(&voucher.relay).ok(), Some(relay_id));
    assert_eq!(PeerId::from_bytes(&voucher.peer).ok(), Some(a.id));
    assert_eq!(voucher.expiration, reservation.expire);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reserve_on_the_same_connection_renews_the_reservation() {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();
    let mut events = relay.subscribe();
    let a = RawPeer::connected(&relay).await;
    let (_first, first) = a.ask(relay_id, reserve()).await;
    let renewed = relay_event(&mut events, |e| match e {
        RelayEvent::ReservationAccepted { peer, renewed } if *peer == a.id => Some(*renewed),
        _ => None,
    })
    .await;
    assert!(!renewed, "the first reservation is new");

    let (_second, second) = a.ask(relay_id, reserve()).await;
    assert_eq!(second.status, Some(OK));
    let renewed = relay_event(&mut events, |e| match e {
        RelayEvent::ReservationAccepted { peer, renewed } if *peer == a.id => Some(*renewed),
        _ => None,
    })
    .await;
    assert!(renewed, "the second RESERVE renews it");
    let expiry = |m: &HopMessage| m.reservation.as_ref().map(|r| r.expire);
    assert!(
        expiry(&second) >= expiry(&first),
        "the renewal expires no earlier"
    );
}

/// CONNECT is turned into STOP CONNECT to the destination, naming the source and the
/// limit and nothing else; once the destination answers OK, the source gets OK with the
/// same limit and the bytes flow both ways, half-closes included.
#[tokio::test(flavor = "multi_thread")]
async fn connect_becomes_stop_connect_with_the_source_and_the_limit_and_bytes_flow_both_ways() {
    let Scene {
        relay: _relay,
        relay_id,
        mut events,
        mut a,
        b,
        reserved: _reserved,
    } = Scene::a_reserved_and_b().await;

    let mut hop = b.hop(relay_id).await;
    hop.write_all(&frame(&connect(a.id).encode_to_vec()))
        .await
        .expect("CONNECT");
    let (mut stop, connect_message) = a.next_stop(relay_id).await;
    assert_eq!(connect_message.r#type, STOP_CONNECT);
    let source = connect_message.peer.expect("the source");
    assert_eq!(PeerId::from_bytes(&source.id).ok(), Some(b.id));
    assert!(
        source.addrs.is_empty(),
        "no source address: {:?}",
        source.addrs
    );
    assert_eq!(connect_message.limit, Some(expected_limit()));
    stop_answer(&mut stop, Status::Ok).await;

    let answer = read_hop(&mut hop).await;
    assert_eq!((answer.r#type, answer.status), (HOP_STATUS, Some(OK)));
    assert_eq!(answer.limit, Some(expected_limit()));
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitOpened { src, dst } if *src == b.id && *dst == a.id)
            .then_some(())
    })
    .await;

    hop.write_all(b"from B").await.expect("B writes");
    hop.close().await.expect("B half-closes");
    assert_eq!(
        read_to_end_within(&mut stop, "B's bytes at A").await,
        b"from B"
    );
    stop.write_all(b"from A").await.expect("A writes");
    stop.close().await.expect("A half-closes");
    assert_eq!(
        read_to_end_within(&mut hop, "A's bytes at B").await,
        b"from A"
    );
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitClosed { src, dst } if *src == b.id && *dst == a.id)
            .then_some(())
    })
    .await;
}

/// A destination that refuses the STOP (a status other than OK, or a dropped stream) is
/// answered to the source as `CONNECTION_FAILED`, and the circuit is not counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_the_destination_refuses_is_answered_connection_failed() {
    let Scene {
        relay,
        relay_id,
        mut events,
        mut a,
        b,
        reserved: _reserved,
    } = Scene::a_reserved_and_b().await;

    for refusal in ["a RESOURCE_LIMIT_EXCEEDED answer", "a dropped STOP stream"] {
        let mut hop = b.hop(relay_id).await;
        hop.write_all(&frame(&connect(a.id).encode_to_vec()))
            .await
            .expect("CONNECT");
        let (mut stop, _) = a.next_stop(relay_id).await;
        if refusal == "a RESOURCE_LIMIT_EXCEEDED answer" {
            stop_answer(&mut stop, Status::ResourceLimitExceeded).await;
        }
        drop(stop);
        let answer = read_hop(&mut hop).await;
        assert_eq!(
            answer.status,
            Some(Status::ConnectionFailed as i32),
            "after {refusal}"
        );
        relay_event(&mut events, |e| {
            matches!(e, RelayEvent::CircuitDenied { src, .. } if *src == b.id).then_some(())
        })
        .await;
    }
    let metrics = scrape(relay.handle.http_addr.expect("metrics on")).await;
    assert_eq!(
        metric_sum(&metrics, "dusk_relay_circuits", &[]),
        0.0,
        "no circuit counted"
    );
}

/// Bytes that are not a HOP message are `MALFORMED_MESSAGE`; a STATUS sent as a
/// request is `UNEXPECTED_MESSAGE`; and the connection serves on.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_is_malformed_message_and_a_status_request_is_unexpected_message() {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();
    let a = RawPeer::connected(&relay).await;
    let malformed = Some(Status::MalformedMessage as i32);
    let cases: [(&str, Vec<u8>, Option<i32>); 5] = [
        ("not protobuf", frame(&[0xff; 32]), malformed),
        ("an unknown type", frame(&[0x08, 0x07]), malformed),
        (
            "CONNECT without a peer",
            frame(&[0x08, CONNECT as u8]),
            malformed,
        ),
        ("a length over 4096", frame(&vec![0x08; 5000]), malformed),
        (
            "STATUS as a request",
            frame(&wire_status_ok()),
            Some(Status::UnexpectedMessage as i32),
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut stream = a.hop(relay_id).await;
        stream.write_all(&bytes).await.expect("write");
        let answer = read_hop(&mut stream).await;
        assert_eq!(answer.r#type, HOP_STATUS, "{what}");
        assert_eq!(answer.status, expected, "{what}");
        assert!(
            answer.reservation.is_none() && answer.limit.is_none(),
            "{what}"
        );
        let mut rest = Vec::new();
        let _ = within(
            EVENT_TIMEOUT,
            "the stream's end",
            stream.read_to_end(&mut rest),
        )
        .await;
        assert!(rest.is_empty(), "{what}: one answer, then the end");
    }
    let (_, answer) = a.ask(relay_id, reserve()).await;
    assert_eq!(answer.status, Some(OK), "the connection still serves");
}

fn wire_status_ok() -> Vec<u8> {
    HopMessage {
        r#type: HOP_STATUS,
        status: Some(OK),
        ..HopMessage::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_ends_with_its_connection_and_connect_then_gets_no_reservation() {
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();
    let mut events = relay.subscribe();
    let a = RawPeer::connected(&relay).await;
    let a_id = a.id;
    let b = RawPeer::connected(&relay).await;
    a.ask(relay_id, reserve()).await;
    let http = relay.handle.http_addr.expect("metrics on");
    let reservations =
        |metrics: prometheus_parse::Scrape| metric_sum(&metrics, "dusk_relay_reservations", &[]);
    assert_eq!(reservations(scrape(http).await), 1.0);
    drop(a);
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::ReservationEnded { peer } if *peer == a_id).then_some(())
    })
    .await;
    assert_eq!(reservations(scrape(http).await), 0.0);
    let (_, answer) = b.ask(relay_id, connect(a_id)).await;
    assert_eq!(answer.status, Some(NO_RESERVATION));
}

/// While draining, RESERVE is `RESERVATION_REFUSED` (the relay takes no reservations),
/// and the open circuit keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn a_draining_relay_answers_reserve_with_reservation_refused() {
    let relay = TestRelay::start_with(|c| c.drain_timeout = Duration::from_secs(3600)).await;
    let relay_id = relay.peer_id();
    let (mut a, mut b) = open_circuit(&relay, Transport::Tcp).await;
    let mut events = relay.subscribe();
    relay.handle.signal();
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::Draining).then_some(())
    })
    .await;
    let late = RawPeer::connected(&relay).await;
    let (_, answer) = late.ask(relay_id, reserve()).await;
    assert_eq!(answer.status, Some(Status::ReservationRefused as i32));
    exchange_both_ways(&mut b, &mut a, 64 * 1024).await;
}

/// A reservation keeps its connection open past the relay's idle timeout until it
/// expires; then the idle connection is closed. (The raw peer itself keeps idle
/// connections 300 s, so only the relay can close it.)
#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_keeps_its_connection_alive_until_it_expires() {
    const RESERVATION: Duration = Duration::from_secs(3);
    let relay = TestRelay::start_with(|c| {
        c.idle_connection_timeout = Duration::from_millis(500);
        c.relay.reservation_duration = RESERVATION;
    })
    .await;
    let relay_id = relay.peer_id();
    let mut events = relay.subscribe();
    let mut a = RawPeer::connected(&relay).await;
    let (_, answer) = a.ask(relay_id, reserve()).await;
    assert_eq!(answer.status, Some(OK));
    let reserved = Instant::now();
    let closed = a.closed.take().expect("not awaited yet");
    within(EVENT_TIMEOUT, "the idle connection's close", closed)
        .await
        .expect("the swarm runs until the close");
    assert!(
        reserved.elapsed() >= RESERVATION,
        "closed {:?} after the reservation, before it expired",
        reserved.elapsed()
    );
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::ReservationEnded { peer } if *peer == a.id).then_some(())
    })
    .await;
}
