//! Hostile peers (issue "abuse resistance"): raw streams on the HOP, STOP and rendezvous
//! protocol ids carrying truncated, oversized, garbage and out-of-order frames, a
//! CONNECT to a peer with no reservation, a circuit to the relay through itself, and
//! handshakes that never finish. Each gets its status code or a closed stream, the
//! relay never panics, the hostile peer's connection survives its bad streams, and a
//! normal client completes a circuit afterwards.
//!
//! What libp2p-relay 0.22 does with a bad HOP frame (`protocol/inbound_hop.rs`): every
//! decode or validation error (stream ended early, length over its 4096-byte cap, not
//! protobuf, STATUS or an unknown type first, CONNECT without a peer or with a bad peer
//! id) drops the stream without an answer; it never sends MALFORMED_MESSAGE (400) or
//! UNEXPECTED_MESSAGE (401). A valid request is answered once and the stream closed;
//! anything after it is ignored. Reservations over relayed connections are covered by
//! `tests/relay_over_relay.rs` (libp2p gives them a handler without HOP).

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dusk_relay::access::{AccessList, Entry};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt, SubstreamBox};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use prost::Message as _;
use support::hop::*;
use support::*;

/// How long the relay may take to answer or close a hostile stream. Well under
/// libp2p-relay's 60 s and request-response's 10 s stream timeouts: a close seen in
/// time comes from the relay handling the frame, not from a timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on each test's total time (they take 0.1 to 3 s).
const TEST_TIME: Duration = Duration::from_secs(90);

/// Bytes each way through the circuit that shows the relay still serves.
const CIRCUIT_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Panics anywhere in the relay: libp2p runs each connection on its own tokio task, so a
// handler that panicked would only lose that connection and the relay would look fine.
// A panic hook is the only place such a panic shows, and it is process-wide: tests
// running side by side in one process would blame each other's panics. So each test
// runs on a runtime of its own whose threads carry the test's name, the hook records
// panics by thread name, and a test fails only on panics of its own threads (its
// relay's and its clients' tasks; its own assertions run on the test thread).

/// Prefix of the runtime threads of a test (the test's name follows it).
const THREAD_PREFIX: &str = "hostile:";

/// Panics on test runtime threads: (thread name, panic message).
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn record_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if let Some(name) = thread.name().filter(|n| n.starts_with(THREAD_PREFIX)) {
                PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((name.to_owned(), info.to_string()));
            }
            default(info);
        }));
    });
}

/// The panics recorded on the runtime threads of test `name`.
fn panics_of(name: &str) -> Vec<String> {
    let thread = format!("{THREAD_PREFIX}{name}");
    PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(t, _)| *t == thread)
        .map(|(_, message)| message.clone())
        .collect()
}

/// Runs test `name` within [`TEST_TIME`] on a runtime of its own, stops every task it
/// left, then fails if any of its tasks panicked.
fn run_isolated(name: &str, test: impl std::future::Future<Output = ()>) {
    record_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("{THREAD_PREFIX}{name}"))
        .build()
        .expect("a tokio runtime");
    runtime.block_on(within(TEST_TIME, "the whole test", test));
    // Tasks still running (connections, the relay) stop here; a panic while they stop
    // is theirs too.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let panics = panics_of(name);
    assert!(panics.is_empty(), "tasks of {name} panicked: {panics:?}");
}

// ---------------------------------------------------------------------------------------
// Raw streams.

/// What the relay did with one hostile stream: the frames it answered, then how the
/// stream ended.
struct Outcome {
    frames: Vec<Vec<u8>>,
    /// `"closed"` (end of stream), `"reset"` (read or write failed) and when.
    end: String,
}

/// Writes `bytes` on a fresh `protocol` stream, half-closes it if `close`, then reads
/// everything the relay sends until it closes or resets the stream.
async fn send_raw(
    client: &Client,
    relay: PeerId,
    protocol: libp2p::StreamProtocol,
    bytes: &[u8],
    close: bool,
) -> Outcome {
    let mut control = client.control.clone();
    let mut stream = within(
        EVENT_TIMEOUT,
        "stream to the relay",
        control.open_stream(relay, protocol.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("{protocol} stream: {e}"));
    let written = async {
        stream.write_all(bytes).await?;
        stream.flush().await?;
        if close {
            stream.close().await?;
        }
        Ok::<_, std::io::Error>(())
    }
    .await;
    if let Err(e) = written {
        // The relay gave up on the stream while we wrote: that is an answer too.
        return Outcome {
            frames: Vec::new(),
            end: format!("reset while writing ({:?})", e.kind()),
        };
    }
    let mut received = Vec::new();
    let end = within(ANSWER_TIMEOUT, "the relay's answer or close", async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return "closed".to_owned(),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => return format!("reset ({:?})", e.kind()),
            }
        }
    })
    .await;
    let mut frames = Vec::new();
    let mut rest = received.as_slice();
    while !rest.is_empty() {
        let (len, after) =
            unsigned_varint::decode::usize(rest).expect("the relay sends length prefixes");
        assert!(after.len() >= len, "the relay sent a truncated frame");
        frames.push(after[..len].to_vec());
        rest = &after[len..];
    }
    Outcome { frames, end }
}

/// The HOP statuses the relay answered `bytes` with (none: it dropped the stream).
async fn hop_statuses(client: &Client, relay: PeerId, bytes: &[u8], close: bool) -> Vec<i32> {
    let outcome = send_raw(client, relay, HOP, bytes, close).await;
    println!("  -> {} frames, then {}", outcome.frames.len(), outcome.end);
    outcome
        .frames
        .iter()
        .map(|f| {
            let message = HopMessage::decode(f.as_slice()).expect("the relay sends HopMessages");
            assert_eq!(message.r#type, HOP_STATUS, "the relay answers with STATUS");
            message.status.expect("a STATUS carries a status")
        })
        .collect()
}

fn encode(message: HopMessage) -> Vec<u8> {
    frame(&message.encode_to_vec())
}

/// A length prefix announcing `len` bytes, and nothing else.
fn prefix(len: usize) -> Vec<u8> {
    let mut buf = unsigned_varint::encode::usize_buffer();
    unsigned_varint::encode::usize(len, &mut buf).to_vec()
}

/// `announced` as the length prefix, followed by only `sent` bytes.
fn truncated(announced: usize, sent: usize) -> Vec<u8> {
    let mut bytes = prefix(announced);
    bytes.extend(std::iter::repeat_n(0x08, sent));
    bytes
}

fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    Pattern::new(seed).fill(&mut bytes);
    bytes
}

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
    const MAX_HOP_MESSAGE: usize = 4096; // libp2p-relay's MAX_MESSAGE_SIZE
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
            &[],
        ),
        case(
            "oversized length prefix only (1 GiB)",
            prefix(1 << 30),
            false,
            &[],
        ),
        case("10-byte varint length (2^63)", huge_varint, false, &[]),
        case("overlong varint (11 bytes)", vec![0xff; 11], false, &[]),
        case(
            "garbage bytes, then end of stream",
            garbage(64, 1),
            true,
            &[],
        ),
        case(
            "a frame that is not protobuf",
            frame(&[0xff; 32]),
            false,
            &[],
        ),
        case(
            "STATUS as the first message",
            encode(status_first),
            false,
            &[],
        ),
        case("unknown message type 7", encode(unknown_type), false, &[]),
        case(
            "CONNECT without a peer",
            encode(connect_without_peer),
            false,
            &[],
        ),
        case(
            "CONNECT with a garbage peer id",
            encode(connect_to_garbage_id),
            false,
            &[],
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
            "STATUS then RESERVE back to back: dropped at the first",
            status_then_reserve,
            false,
            &[],
        ),
        // prost does not enforce proto2's `required`: an empty message is type 0.
        case("an empty frame (read as RESERVE)", frame(&[]), false, &[OK]),
    ]
}

/// The relay still serves: a new pair of clients completes a circuit over `transport`
/// and moves bytes both ways, and nothing panicked.
async fn relay_still_serves(relay: &TestRelay, transport: Transport) {
    let (mut a, mut b) = open_circuit(relay, transport).await;
    exchange_both_ways(&mut b, &mut a, CIRCUIT_BYTES).await;
    if let Some(endpoint) = relay.handle.http_addr {
        assert_eq!(http(endpoint, "GET", "/healthz").await.0, 200, "healthz");
    }
}

async fn hostile_hop_frames(transport: Transport) {
    let started = Instant::now();
    let relay = TestRelay::start().await;
    let relay_id = relay.peer_id();
    let mut hostile = relay.client().await;
    hostile.connect(&relay.addr(transport)).await;
    // Opened before the hostile streams and used after them: it only works if the
    // connection they ran on survived.
    let mut witness = open_hop(&hostile, relay_id).await.expect("HOP stream");

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

    witness
        .write_all(&encode(reserve()))
        .await
        .expect("the hostile peer's connection is still open");
    let answer = within(
        ANSWER_TIMEOUT,
        "reservation answer",
        read_frame(&mut witness),
    )
    .await
    .expect("an answer on the witness stream");
    assert_eq!(
        HopMessage::decode(answer.as_slice()).unwrap().status,
        Some(OK),
        "a RESERVE after the hostile frames is accepted on the same connection"
    );

    relay_still_serves(&relay, transport).await;
    println!("{transport:?}: {:?}", started.elapsed());
}

#[test]
fn hostile_hop_frames_over_tcp_get_a_status_or_a_closed_stream_and_the_relay_still_serves() {
    run_isolated(
        "hostile_hop_frames_over_tcp_get_a_status_or_a_closed_stream_and_the_relay_still_serves",
        async {
            hostile_hop_frames(Transport::Tcp).await;
        },
    );
}

#[test]
fn hostile_hop_frames_over_quic_get_a_status_or_a_closed_stream_and_the_relay_still_serves() {
    run_isolated(
        "hostile_hop_frames_over_quic_get_a_status_or_a_closed_stream_and_the_relay_still_serves",
        async {
            hostile_hop_frames(Transport::Quic).await;
        },
    );
}

/// A denied peer's HOP streams are served by the access gate's own small parser
/// (`src/access/gate.rs`), not libp2p's: the same hostile frames get a closed stream,
/// and a well-formed request still gets PERMISSION_DENIED.
#[test]
fn hostile_hop_frames_from_a_denied_peer_get_a_closed_stream_and_requests_permission_denied() {
    run_isolated(
        "hostile_hop_frames_from_a_denied_peer_get_a_closed_stream_and_requests_permission_denied",
        async {
            let denied = Client::new(None).await;
            let denied_id = denied.peer_id;
            let relay = TestRelay::start_with(|c| {
                c.access = AccessList {
                    allow: Vec::new(),
                    deny: vec![Entry::Peer(denied_id)],
                }
            })
            .await;
            let relay_id = relay.peer_id();
            let mut denied = denied;
            denied.connect(&relay.addr(Transport::Tcp)).await;

            // The gate closes a denied connection after its first answer or its grace period
            // (5 s): these are sent at once and take milliseconds.
            let cases = [
                case("truncated frame", truncated(100, 10), true, &[]),
                case("oversized length prefix", prefix(4097), false, &[]),
                case("overlong varint", vec![0xff; 11], false, &[]),
                case("not protobuf", frame(&[0xff; 32]), false, &[]),
                case(
                    "STATUS first",
                    encode(HopMessage {
                        r#type: HOP_STATUS,
                        ..HopMessage::default()
                    }),
                    false,
                    &[],
                ),
                // libp2p reads this as RESERVE (see `hop_cases`); the gate drops it.
                case("an empty frame", frame(&[]), false, &[]),
                case("RESERVE", encode(reserve()), false, &[PERMISSION_DENIED]),
            ];
            for case in cases {
                println!("denied peer: {}", case.what);
                let answers = hop_statuses(&denied, relay_id, &case.bytes, case.close).await;
                assert_eq!(answers, case.answers, "{}", case.what);
            }
            denied.disconnected_from(relay_id).await;

            relay_still_serves(&relay, Transport::Tcp).await;
        },
    );
}

/// The relay serves STOP to nobody (it only opens STOP streams): opening one towards it
/// fails the protocol negotiation, and the connection stays usable.
#[test]
fn a_stop_stream_towards_the_relay_is_refused_and_the_connection_stays_usable() {
    run_isolated(
        "a_stop_stream_towards_the_relay_is_refused_and_the_connection_stays_usable",
        async {
            let relay = TestRelay::start().await;
            let relay_id = relay.peer_id();
            let mut client = relay.client().await;
            client.connect(&relay.addr(Transport::Tcp)).await;
            let mut witness = open_hop(&client, relay_id).await.expect("HOP stream");

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

            witness
                .write_all(&encode(reserve()))
                .await
                .expect("the connection is still open");
            let answer = within(
                ANSWER_TIMEOUT,
                "reservation answer",
                read_frame(&mut witness),
            )
            .await
            .expect("an answer on the witness stream");
            assert_eq!(
                HopMessage::decode(answer.as_slice()).unwrap().status,
                Some(OK)
            );
            relay_still_serves(&relay, Transport::Tcp).await;
        },
    );
}

/// The rendezvous server (`src/rendezvous/`): frames it cannot read, and messages that
/// are not requests, get a closed stream without an answer; the connection stays
/// usable and a well-formed DISCOVER is answered afterwards.
#[test]
fn hostile_rendezvous_frames_get_a_closed_stream_and_the_server_still_answers() {
    run_isolated(
        "hostile_rendezvous_frames_get_a_closed_stream_and_the_server_still_answers",
        async {
            use dusk_relay::rendezvous::proto::{self, MessageType, ResponseStatus};
            use dusk_relay::rendezvous::{MAX_MESSAGE_BYTES, PROTOCOL};
            let relay = TestRelay::start().await;
            let relay_id = relay.peer_id();
            let mut client = relay.client().await;
            client.connect(&relay.addr(Transport::Tcp)).await;
            let mut witness = open_hop(&client, relay_id).await.expect("HOP stream");

            let message = |r#type: Option<MessageType>| proto::Message {
                r#type: r#type.map(|t| t as i32),
                ..proto::Message::default()
            };
            let rendezvous_frame = |m: proto::Message| frame(&m.encode_to_vec());
            let discover = || proto::Message {
                discover: Some(proto::Discover {
                    ns: Some("dusk/peers".into()),
                    limit: None,
                    cookie: None,
                }),
                ..message(Some(MessageType::Discover))
            };
            let mut two_discovers = rendezvous_frame(discover());
            two_discovers.extend(rendezvous_frame(discover()));
            let unknown_type = proto::Message {
                r#type: Some(42),
                ..proto::Message::default()
            };
            // (what, bytes, half-close, DISCOVER responses expected)
            let cases: Vec<(&str, Vec<u8>, bool, usize)> = vec![
                (
                    "truncated frame: 100 bytes announced, 10 sent, then end of stream",
                    truncated(100, 10),
                    true,
                    0,
                ),
                (
                    "length prefix over 1 MiB, no body",
                    prefix(MAX_MESSAGE_BYTES + 1),
                    false,
                    0,
                ),
                ("overlong varint (11 bytes)", vec![0xff; 11], false, 0),
                ("garbage bytes, then end of stream", garbage(64, 2), true, 0),
                ("a frame that is not protobuf", frame(&[0xff; 32]), false, 0),
                ("an empty frame (no type)", frame(&[]), false, 0),
                (
                    "unknown message type 42",
                    rendezvous_frame(unknown_type),
                    false,
                    0,
                ),
                (
                    "REGISTER_RESPONSE as a request",
                    rendezvous_frame(message(Some(MessageType::RegisterResponse))),
                    false,
                    0,
                ),
                (
                    "DISCOVER_RESPONSE as a request",
                    rendezvous_frame(message(Some(MessageType::DiscoverResponse))),
                    false,
                    0,
                ),
                (
                    "REGISTER without its body",
                    rendezvous_frame(message(Some(MessageType::Register))),
                    false,
                    0,
                ),
                (
                    "DISCOVER without its body",
                    rendezvous_frame(message(Some(MessageType::Discover))),
                    false,
                    0,
                ),
                (
                    "two DISCOVERs back to back: only the first is answered",
                    two_discovers,
                    false,
                    1,
                ),
            ];
            let mut wrong = Vec::new();
            for (what, bytes, close, responses) in cases {
                println!("rendezvous: {what}");
                let outcome = send_raw(&client, relay_id, PROTOCOL, &bytes, close).await;
                println!("  -> {} frames, then {}", outcome.frames.len(), outcome.end);
                for f in &outcome.frames {
                    let response =
                        proto::Message::decode(f.as_slice()).expect("a rendezvous message");
                    assert_eq!(
                        response.r#type,
                        Some(MessageType::DiscoverResponse as i32),
                        "{what}"
                    );
                }
                if outcome.frames.len() != responses {
                    wrong.push(format!(
                        "{what}: {} responses, expected {responses}",
                        outcome.frames.len()
                    ));
                }
            }
            assert!(wrong.is_empty(), "{wrong:#?}");

            let response = raw_request(&client, relay_id, discover()).await;
            let status = response
                .discover_response
                .and_then(|d| d.status)
                .map(ResponseStatus::try_from);
            assert_eq!(
                status,
                Some(Ok(ResponseStatus::Ok)),
                "a well-formed DISCOVER"
            );
            witness
                .write_all(&encode(reserve()))
                .await
                .expect("the connection is still open");
            within(
                ANSWER_TIMEOUT,
                "reservation answer",
                read_frame(&mut witness),
            )
            .await
            .expect("an answer on the witness stream");
            relay_still_serves(&relay, Transport::Tcp).await;
        },
    );
}

/// A circuit to the relay through the relay itself (the only way a peer could reach it
/// over a relayed connection and then ask it for HOP): refused with NO_RESERVATION,
/// whether asked for with a raw CONNECT or by libp2p's relay client dialing
/// `<relay>/p2p-circuit/p2p/<relay>`.
#[test]
fn a_circuit_to_the_relay_through_itself_is_refused_with_no_reservation() {
    run_isolated(
        "a_circuit_to_the_relay_through_itself_is_refused_with_no_reservation",
        async {
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
        },
    );
}

/// Raw sockets that connect and then stall the handshake: a partial multistream-select
/// header on TCP, half an HTTP upgrade request on WS, the first bytes of a TLS record on
/// WSS, and one silent socket each. With `handshake_timeout` at 2 s the relay closes all
/// of them within 10 s (its default timeout is 20 s, so a relay that ignored the setting
/// fails), and serves a normal circuit while they hang.
#[test]
fn handshakes_that_never_finish_are_closed_after_the_handshake_timeout() {
    run_isolated(
        "handshakes_that_never_finish_are_closed_after_the_handshake_timeout",
        async {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

            const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
            const CLOSED_WITHIN: Duration = Duration::from_secs(10);
            let relay = TestRelay::start_with(|c| c.handshake_timeout = HANDSHAKE_TIMEOUT).await;
            let socket_of = |transport: Transport| -> std::net::SocketAddr {
                let addr: Multiaddr = relay.addr(transport);
                let mut ip = None;
                let mut port = None;
                for p in addr.iter() {
                    match p {
                        libp2p::multiaddr::Protocol::Ip4(a) => ip = Some(a),
                        libp2p::multiaddr::Protocol::Tcp(p) => port = Some(p),
                        _ => {}
                    }
                }
                (ip.expect("an IPv4 listener"), port.expect("a TCP port")).into()
            };
            let stalls: Vec<(&str, Transport, &[u8])> = vec![
                (
                    "TCP: partial multistream header",
                    Transport::Tcp,
                    b"\x13/multistream/1.0",
                ),
                ("TCP: silent", Transport::Tcp, b""),
                (
                    "WS: half an HTTP upgrade request",
                    Transport::Ws,
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
                ),
                ("WS: silent", Transport::Ws, b""),
                (
                    "WSS: the start of a TLS record",
                    Transport::Wss,
                    b"\x16\x03\x01\x02",
                ),
                ("WSS: silent", Transport::Wss, b""),
            ];
            let start = Instant::now();
            let mut sockets = Vec::new();
            for (what, transport, bytes) in &stalls {
                let mut socket = tokio::net::TcpStream::connect(socket_of(*transport))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
                socket.write_all(bytes).await.expect("write");
                sockets.push((*what, socket));
            }

            // While they hang, the relay serves.
            let (mut a, mut b) = open_circuit(&relay, Transport::Tcp).await;
            exchange_both_ways(&mut b, &mut a, CIRCUIT_BYTES).await;

            let closes = sockets.into_iter().map(|(what, mut socket)| async move {
                let ended = tokio::time::timeout_at((start + CLOSED_WITHIN).into(), async {
                    let mut buf = [0u8; 1024];
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) => return "closed".to_owned(),
                            Ok(_) => continue, // an alert or HTTP error before the close
                            Err(e) => return format!("reset ({:?})", e.kind()),
                        }
                    }
                })
                .await;
                (what, ended, start.elapsed())
            });
            let mut open = Vec::new();
            for (what, ended, after) in futures::future::join_all(closes).await {
                println!("{what}: {ended:?} after {after:?}");
                if ended.is_err() {
                    open.push(what);
                }
            }
            assert!(
                open.is_empty(),
                "still open {CLOSED_WITHIN:?} after connecting: {open:?}"
            );
            relay_still_serves(&relay, Transport::Tcp).await;
        },
    );
}

// ---------------------------------------------------------------------------------------
// Raw connections: TCP + noise + yamux from libp2p's transport upgrade, and nothing
// above it, so a test writes multistream-select's bytes itself (libp2p's clients
// negotiate one protocol per stream and never re-propose).

/// One yamux connection to the relay, its muxer driven on a task of its own.
struct RawConnection {
    peer_id: PeerId,
    open: tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<SubstreamBox>>,
    inbound: tokio::sync::mpsc::UnboundedReceiver<SubstreamBox>,
}

impl RawConnection {
    async fn connect(relay_addr: &Multiaddr) -> RawConnection {
        use libp2p::core::transport::{DialOpts, PortUse};
        use libp2p::core::upgrade::Version;
        use libp2p::core::Endpoint;
        use libp2p::Transport as _;

        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer_id = key.public().to_peer_id();
        let mut transport = libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::new())
            .upgrade(Version::V1)
            .authenticate(libp2p::noise::Config::new(&key).expect("noise config"))
            .multiplex(libp2p::yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed();
        let dial = transport
            .dial(
                relay_addr.clone(),
                DialOpts {
                    role: Endpoint::Dialer,
                    port_use: PortUse::New,
                },
            )
            .expect("a TCP address");
        let (_, muxer) = within(EVENT_TIMEOUT, "raw connection", dial)
            .await
            .expect("raw connection to the relay");
        let (open, mut requests) =
            tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<SubstreamBox>>();
        let (inbound_tx, inbound) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut muxer = muxer;
            let mut waiting = std::collections::VecDeque::new();
            futures::future::poll_fn(|cx| {
                use std::task::Poll;
                loop {
                    match requests.poll_recv(cx) {
                        Poll::Ready(Some(reply)) => waiting.push_back(reply),
                        // The RawConnection is gone: close the connection.
                        Poll::Ready(None) => return Poll::Ready(()),
                        Poll::Pending => break,
                    }
                }
                while !waiting.is_empty() {
                    match muxer.poll_outbound_unpin(cx) {
                        Poll::Ready(Ok(stream)) => {
                            if let Some(reply) = waiting.pop_front() {
                                let _ = reply.send(stream);
                            }
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Pending => break,
                    }
                }
                loop {
                    match muxer.poll_inbound_unpin(cx) {
                        Poll::Ready(Ok(stream)) => {
                            let _ = inbound_tx.send(stream);
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Pending => break,
                    }
                }
                loop {
                    match muxer.poll_unpin(cx) {
                        Poll::Ready(Ok(_)) => continue,
                        Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await;
        });
        RawConnection {
            peer_id,
            open,
            inbound,
        }
    }

    /// A new outbound stream, before any negotiation.
    async fn open_stream(&self) -> SubstreamBox {
        let (reply, stream) = tokio::sync::oneshot::channel();
        self.open.send(reply).expect("connection task alive");
        within(EVENT_TIMEOUT, "raw outbound stream", stream)
            .await
            .expect("connection alive")
    }

    /// Waits for the relay to open a stream proposing `protocol`; refuses ("na") the
    /// others it opens meanwhile (identify, ping).
    async fn accept(&mut self, protocol: &str) -> SubstreamBox {
        loop {
            let mut stream = within(EVENT_TIMEOUT, protocol, self.inbound.recv())
                .await
                .expect("connection alive");
            assert_eq!(read_message(&mut stream).await, MULTISTREAM);
            let proposed = read_message(&mut stream).await;
            let accepted = proposed == format!("{protocol}\n").as_bytes();
            let answer = if accepted { proposed } else { b"na\n".to_vec() };
            stream
                .write_all(&[message(MULTISTREAM), message(&answer)].concat())
                .await
                .expect("answer a proposal");
            if accepted {
                return stream;
            }
        }
    }
}

const MULTISTREAM: &[u8] = b"/multistream/1.0.0\n";

/// One multistream-select message: unsigned-varint length, then `text`.
fn message(text: &[u8]) -> Vec<u8> {
    prefix(text.len())
        .into_iter()
        .chain(text.iter().copied())
        .collect()
}

/// Reads one length-prefixed message or frame (multistream-select's, HOP's, STOP's).
async fn read_message(stream: &mut SubstreamBox) -> Vec<u8> {
    let len = within(
        ANSWER_TIMEOUT,
        "a length prefix",
        unsigned_varint::aio::read_usize(&mut *stream),
    )
    .await
    .expect("a length prefix");
    let mut body = vec![0; len];
    within(ANSWER_TIMEOUT, "a message", stream.read_exact(&mut body))
        .await
        .expect("a whole message");
    body
}

/// Negotiates `protocol` on a fresh raw stream the plain way: header and proposal, then
/// the relay's header and echo.
async fn negotiate(connection: &RawConnection, protocol: &str) -> SubstreamBox {
    let mut stream = connection.open_stream().await;
    let proposal = format!("{protocol}\n");
    stream
        .write_all(&[message(MULTISTREAM), message(proposal.as_bytes())].concat())
        .await
        .expect("propose");
    assert_eq!(read_message(&mut stream).await, MULTISTREAM);
    assert_eq!(read_message(&mut stream).await, proposal.as_bytes());
    stream
}

/// The bandwidth caps and the per-IP circuit count apply to streams multistream-select
/// negotiated as HOP or STOP. An attacker who proposes a ~200-byte unknown protocol
/// first, takes the relay's "na" and then proposes HOP must get a circuit that is
/// throttled, counted in `dusk_relay_relayed_bytes_total` and tallied at its IP like
/// any other (before: the relay sniffed the first 128 bytes read for the circuit
/// protocol id, found padding, and let the stream through unmetered).
#[test]
fn a_circuit_negotiated_after_a_refused_padded_proposal_is_throttled_counted_and_tallied() {
    run_isolated(
        "a_circuit_negotiated_after_a_refused_padded_proposal_is_throttled_counted_and_tallied",
        async {
            const CAP: usize = 64 * 1024;
            const SENT: usize = 256 * 1024;
            let relay = TestRelay::start_with(|c| {
                c.bandwidth.circuit_bytes_per_sec = CAP as u32;
                c.bandwidth.peer_bytes_per_sec = 0;
                c.bandwidth.total_bytes_per_sec = 0;
                c.relay.max_circuits_per_ip = 2;
            })
            .await;
            let tcp = relay.addr(Transport::Tcp);

            // A: the destination, reserved with raw bytes.
            let mut a = RawConnection::connect(&tcp).await;
            let mut reserve_stream = negotiate(&a, HOP.as_ref()).await;
            reserve_stream
                .write_all(&encode(reserve()))
                .await
                .expect("RESERVE");
            let answer = read_message(&mut reserve_stream).await;
            assert_eq!(
                HopMessage::decode(answer.as_slice()).unwrap().status,
                Some(OK)
            );

            // B: a padded unknown protocol first, HOP after the relay's "na".
            let b = RawConnection::connect(&tcp).await;
            let mut hop_stream = b.open_stream().await;
            let padded = format!("/{}\n", "x".repeat(200));
            hop_stream
                .write_all(&[message(MULTISTREAM), message(padded.as_bytes())].concat())
                .await
                .expect("padded proposal");
            assert_eq!(read_message(&mut hop_stream).await, MULTISTREAM);
            assert_eq!(read_message(&mut hop_stream).await, b"na\n");
            let hop = format!("{HOP}\n");
            hop_stream
                .write_all(&message(hop.as_bytes()))
                .await
                .expect("HOP proposal");
            assert_eq!(read_message(&mut hop_stream).await, hop.as_bytes());
            hop_stream
                .write_all(&encode(connect(a.peer_id)))
                .await
                .expect("CONNECT");

            // The relay's STOP to A, answered OK; then B's CONNECT is answered OK.
            let mut stop_stream = a.accept(STOP.as_ref()).await;
            let request = read_message(&mut stop_stream).await;
            assert_eq!(
                StopMessage::decode(request.as_slice()).unwrap().r#type,
                STOP_CONNECT
            );
            let ok = StopMessage {
                r#type: STOP_STATUS,
                status: Some(OK),
                ..StopMessage::default()
            };
            stop_stream
                .write_all(&frame(&ok.encode_to_vec()))
                .await
                .expect("STOP status");
            let answer = read_message(&mut hop_stream).await;
            assert_eq!(
                HopMessage::decode(answer.as_slice()).unwrap().status,
                Some(OK)
            );

            // B uploads through the circuit; A reads it all.
            let started = Instant::now();
            let upload = async {
                hop_stream
                    .write_all(&vec![7u8; SENT])
                    .await
                    .expect("upload");
                hop_stream.flush().await.expect("flush");
            };
            let download = async {
                let mut got = vec![0u8; SENT];
                stop_stream
                    .read_exact(&mut got)
                    .await
                    .expect("every byte arrives");
            };
            within(
                Duration::from_secs(30),
                "the upload",
                futures::future::join(upload, download),
            )
            .await;
            let took = started.elapsed();
            let scrape = scrape(relay.handle.http_addr.expect("metrics on")).await;
            let relayed = metric_sum(&scrape, "dusk_relay_relayed_bytes_total", &[]);
            let throttled = metric_sum(
                &scrape,
                "dusk_relay_throttled_seconds_total",
                &[("scope", "circuit")],
            );
            println!(
                "{SENT} bytes through a circuit capped at {CAP} B/s in {took:?}; relayed bytes \
                 counted: {relayed}; throttled: {throttled:.2} s"
            );
            // 16 KiB of burst, the rest at 64 KiB/s: 3.75 s; unthrottled it takes
            // milliseconds.
            assert!(
                took >= Duration::from_millis(2500),
                "{SENT} bytes at {CAP} B/s took only {took:?}: the circuit was not throttled"
            );
            assert!(
                relayed >= SENT as f64,
                "relayed bytes counted: {relayed}, sent: {SENT}"
            );
            assert!(throttled > 1.0, "time throttled: {throttled} s");

            // Its two ends are tallied at 127.0.0.1 (cap 2): one more circuit from there is
            // refused.
            let mut c = relay.client().await;
            c.connect(&tcp).await;
            assert_eq!(
                hop_request(&c, relay.peer_id(), connect(a.peer_id)).await,
                Some(RESOURCE_LIMIT_EXCEEDED)
            );
            drop((a, b));
        },
    );
}
