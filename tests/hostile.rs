//! Hostile peers on the relay protocol (issue "abuse resistance"): raw HOP and STOP
//! streams carrying truncated, oversized, garbage and out-of-order frames, a CONNECT to
//! a peer with no reservation, and a circuit to the relay through itself. Each gets its
//! status code or a closed stream, the relay never panics, the hostile peer's
//! connection survives its bad streams, and a normal client completes a circuit
//! afterwards. Rendezvous frames, stalled handshakes and padded negotiations:
//! `tests/hostile_streams.rs`.
//!
//! What the relay's own HOP server does with a bad frame (`src/circuit/wire.rs`, as the
//! spec says): a stream that ends before a whole frame is dropped unanswered (nobody is
//! left to read an answer); a length over the 4096-byte cap, bytes that are not protobuf,
//! an unknown type, or a CONNECT without a valid peer id is answered MALFORMED_MESSAGE
//! (400); a STATUS sent as a request UNEXPECTED_MESSAGE (401). A valid request is
//! answered once and the stream closed; anything after it is ignored. (libp2p-relay
//! 0.22, which the relay used before, dropped every one of these unanswered.)
//! Reservations over relayed connections are covered by `tests/relay_over_relay.rs`.

mod support;

use std::time::Instant;

use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;
use support::hop::*;
use support::hostile::*;
use support::*;

const MALFORMED: i32 = Status::MalformedMessage as i32;
const UNEXPECTED: i32 = Status::UnexpectedMessage as i32;

/// One hostile input and what the relay must do with it.
struct Case {
    what: &'static str,
    bytes: Vec<u8>,
    /// Half-close after writing: for inputs the relay can only judge at the end.
    close: bool,
    /// The statuses the relay answers, in order, before closing the stream.
    answers: Vec<i32>,
}

fn case(what: &'static str, bytes: Vec<u8>, close: bool, answers: &[i32]) -> Case {
    Case {
        what,
        bytes,
        close,
        answers: answers.to_vec(),
    }
}

/// Every hostile HOP input. `absent` holds no reservation.
fn hop_cases(relay: PeerId, absent: PeerId) -> Vec<Case> {
    const MAX_HOP_MESSAGE: usize = 4096; // the relay's cap, as libp2p-relay's MAX_MESSAGE_SIZE
    let status_first = HopMessage {
        r#type: HOP_STATUS,
        status: Some(OK),
        ..HopMessage::default()
    };
    let unknown_type = HopMessage {
        r#type: 7,
        ..HopMessage::default()
    };
    let connect_without_peer = HopMessage {
        r#type: CONNECT,
        ..HopMessage::default()
    };
    let connect_to_garbage_id = HopMessage {
        r#type: CONNECT,
        peer: Some(Peer {
            id: garbage(38, 7),
            addrs: Vec::new(),
        }),
        ..HopMessage::default()
    };
    let connect_with_garbage_addrs = HopMessage {
        r#type: CONNECT,
        peer: Some(Peer {
            id: absent.to_bytes(),
            addrs: vec![garbage(40, 8), vec![0xff; 3]],
        }),
        ..HopMessage::default()
    };
    let mut back_to_back = encode(connect(absent));
    back_to_back.extend(encode(reserve()));
    let mut status_then_reserve = encode(status_first.clone());
    status_then_reserve.extend(encode(reserve()));
    let mut huge_varint = vec![0xff; 9];
    huge_varint.push(0x01); // 2^63 + …, a valid u64
    vec![
        case(
            "truncated frame: 100 bytes announced, 10 sent, then end of stream",
            truncated(100, 10),
            true,
            &[],
        ),
        case(
            "truncated length prefix, then end of stream",
            vec![0x80],
            true,
            &[],
        ),
        case(
            "oversized frame: 4097 bytes announced and sent",
            frame(&vec![0x08; MAX_HOP_MESSAGE + 1]),
            false,
            &[MALFORMED],
        ),
        case(
            "oversized length prefix only (1 GiB)",
            prefix(1 << 30),
            false,
            &[MALFORMED],
        ),
        case(
            "10-byte varint length (2^63)",
            huge_varint,
            false,
            &[MALFORMED],
        ),
        case(
            "overlong varint (11 bytes)",
            vec![0xff; 11],
            false,
            &[MALFORMED],
        ),
        // Its first two bytes are a length prefix over the cap.
        case(
            "garbage bytes, then end of stream",
            garbage(64, 1),
            true,
            &[MALFORMED],
        ),
        case(
            "a frame that is not protobuf",
            frame(&[0xff; 32]),
            false,
            &[MALFORMED],
        ),
        case(
            "STATUS as the first message",
            encode(status_first),
            false,
            &[UNEXPECTED],
        ),
        case(
            "unknown message type 7",
            encode(unknown_type),
            false,
            &[MALFORMED],
        ),
        case(
            "CONNECT without a peer",
            encode(connect_without_peer),
            false,
            &[MALFORMED],
        ),
        case(
            "CONNECT with a garbage peer id",
            encode(connect_to_garbage_id),
            false,
            &[MALFORMED],
        ),
        case(
            "CONNECT to a peer with no reservation",
            encode(connect(absent)),
            false,
            &[NO_RESERVATION],
        ),
        case(
            "CONNECT to a peer with no reservation, garbage addresses",
            encode(connect_with_garbage_addrs),
            false,
            &[NO_RESERVATION],
        ),
        case(
            "CONNECT to the relay itself (a circuit through itself)",
            encode(connect(relay)),
            false,
            &[NO_RESERVATION],
        ),
        case(
            "CONNECT and RESERVE back to back: only the first is answered",
            back_to_back,
            false,
            &[NO_RESERVATION],
        ),
        case(
            "STATUS then RESERVE back to back: only the first is answered",
            status_then_reserve,
            false,
            &[UNEXPECTED],
        ),
        // prost does not enforce proto2's `required`: an empty message is type 0.
        case("an empty frame (read as RESERVE)", frame(&[]), false, &[OK]),
    ]
}

async fn hostile_hop_frames(transport: Transport) {
    let started = Instant::now();
    let (relay, hostile, mut witness) = relay_with_witness(transport).await;
    let relay_id = relay.peer_id();

    let absent = PeerId::random();
    let mut wrong = Vec::new();
    for case in hop_cases(relay_id, absent) {
        println!("{transport:?}: {}", case.what);
        let answers = hop_statuses(&hostile, relay_id, &case.bytes, case.close).await;
        if answers != case.answers {
            wrong.push(format!(
                "{}: answered {answers:?}, expected {:?}",
                case.what, case.answers
            ));
        }
    }
    assert!(wrong.is_empty(), "{transport:?}: {wrong:#?}");

    relay_survived(
        &relay,
        transport,
        &mut witness,
        "a RESERVE after the hostile frames is accepted on the same connection",
    )
    .await;
    println!("{transport:?}: {:?}", started.elapsed());
}

#[test]
fn hostile_hop_frames_over_tcp_get_a_status_or_a_closed_stream_and_the_relay_still_serves() {
    run_isolated(hostile_hop_frames(Transport::Tcp));
}

#[test]
fn hostile_hop_frames_over_quic_get_a_status_or_a_closed_stream_and_the_relay_still_serves() {
    run_isolated(hostile_hop_frames(Transport::Quic));
}

/// A denied peer's HOP streams are read as everyone's (`src/circuit/handler.rs`): the
/// same hostile frames get the same answers, and a well-formed request gets
/// PERMISSION_DENIED.
#[test]
fn hostile_hop_frames_from_a_denied_peer_get_a_closed_stream_and_requests_permission_denied() {
    run_isolated(async {
        let denied = Client::new(None).await;
        let denied_id = denied.peer_id;
        let relay = TestRelay::start_with(|c| c.access = denying(denied_id)).await;
        let relay_id = relay.peer_id();
        let mut denied = denied;
        denied.connect(&relay.addr(Transport::Tcp)).await;

        // A denied connection is closed 1 s after its first PERMISSION_DENIED, or after
        // its grace period (5 s): these are sent at once and take milliseconds.
        let cases = [
            case("truncated frame", truncated(100, 10), true, &[]),
            case("oversized length prefix", prefix(4097), false, &[MALFORMED]),
            case("overlong varint", vec![0xff; 11], false, &[MALFORMED]),
            case("not protobuf", frame(&[0xff; 32]), false, &[MALFORMED]),
            case(
                "STATUS first",
                encode(HopMessage {
                    r#type: HOP_STATUS,
                    ..HopMessage::default()
                }),
                false,
                &[UNEXPECTED],
            ),
            // Read as RESERVE (see `hop_cases`), so denied.
            case("an empty frame", frame(&[]), false, &[PERMISSION_DENIED]),
            case("RESERVE", encode(reserve()), false, &[PERMISSION_DENIED]),
        ];
        for case in cases {
            println!("denied peer: {}", case.what);
            let answers = hop_statuses(&denied, relay_id, &case.bytes, case.close).await;
            assert_eq!(answers, case.answers, "{}", case.what);
        }
        denied.disconnected_from(relay_id).await;

        relay_still_serves(&relay, Transport::Tcp).await;
    });
}

/// The relay serves STOP to nobody (it only opens STOP streams): opening one towards it
/// fails the protocol negotiation, and the connection stays usable.
#[test]
fn a_stop_stream_towards_the_relay_is_refused_and_the_connection_stays_usable() {
    run_isolated(async {
        let (relay, client, mut witness) = relay_with_witness(Transport::Tcp).await;
        let relay_id = relay.peer_id();

        let mut control = client.control.clone();
        match within(
            EVENT_TIMEOUT,
            "STOP stream",
            control.open_stream(relay_id, STOP),
        )
        .await
        {
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(p)) => assert_eq!(p, STOP),
            Ok(_) => panic!("the relay accepted an inbound STOP stream"),
            Err(other) => panic!("unexpected error: {other}"),
        }

        relay_survived(
            &relay,
            Transport::Tcp,
            &mut witness,
            "after a refused STOP stream",
        )
        .await;
    });
}

/// A circuit to the relay through the relay itself (the only way a peer could reach it
/// over a relayed connection and then ask it for HOP): refused with NO_RESERVATION,
/// whether asked for with a raw CONNECT or by libp2p's relay client dialing
/// `<relay>/p2p-circuit/p2p/<relay>`.
#[test]
fn a_circuit_to_the_relay_through_itself_is_refused_with_no_reservation() {
    run_isolated(async {
        let relay = TestRelay::start().await;
        let relay_id = relay.peer_id();
        let relay_addr = relay.addr(Transport::Tcp);
        let mut client = relay.client().await;
        client.connect(&relay_addr).await;
        assert_eq!(
            hop_request(&client, relay_id, connect(relay_id)).await,
            Some(NO_RESERVATION)
        );

        let through_itself = circuit_addr(&relay_addr, relay_id);
        client
            .call(move |s| s.dial(through_itself))
            .await
            .expect("dial");
        let error = client
            .next("the circuit dial to fail", |e| match e {
                SwarmEvent::OutgoingConnectionError { error, .. } => Some(error.to_string()),
                SwarmEvent::ConnectionEstablished { endpoint, .. } if endpoint.is_relayed() => {
                    panic!("a relayed connection to the relay through itself")
                }
                _ => None,
            })
            .await;
        println!("dial error: {error}");
        relay_still_serves(&relay, Transport::Tcp).await;
    });
}
