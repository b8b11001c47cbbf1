//! Hostile peers on the relay's other streams (issue "abuse resistance"): garbage and
//! oversized rendezvous frames, handshakes that never finish, and multistream
//! negotiations padded to hide a circuit. Each gets a closed stream or connection, the
//! relay never panics (each test on a runtime of its own, `support::hostile`), and it
//! keeps serving. HOP and STOP frames: `tests/hostile.rs`.

mod support;

use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::muxing::{StreamMuxerBox, StreamMuxerExt, SubstreamBox};
use libp2p::{Multiaddr, PeerId};
use prost::Message as _;
use support::hop::*;
use support::hostile::*;
use support::*;

/// A hostile rendezvous input: (what, bytes, half-close after writing, DISCOVER
/// responses expected).
type RendezvousCase = (&'static str, Vec<u8>, bool, usize);

/// An input the server drops without an answer, the stream left open after it.
fn unanswered(what: &'static str, bytes: Vec<u8>) -> RendezvousCase {
    (what, bytes, false, 0)
}

/// An input the server drops without an answer once the stream is half-closed after it
/// (for inputs it can only judge at the end).
fn unanswered_at_end(what: &'static str, bytes: Vec<u8>) -> RendezvousCase {
    (what, bytes, true, 0)
}

/// The rendezvous server (`src/rendezvous/`): frames it cannot read, and messages that
/// are not requests, get a closed stream without an answer; the connection stays
/// usable and a well-formed DISCOVER is answered afterwards.
#[test]
fn hostile_rendezvous_frames_get_a_closed_stream_and_the_server_still_answers() {
    run_isolated(async {
        use dusk_relay::rendezvous::proto::{self, MessageType, ResponseStatus};
        use dusk_relay::rendezvous::{MAX_MESSAGE_BYTES, PROTOCOL};
        let (relay, client, mut witness) = relay_with_witness(Transport::Tcp).await;
        let relay_id = relay.peer_id();

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
        let of_type = |t: MessageType| rendezvous_frame(message(Some(t)));
        let cases = vec![
            unanswered_at_end(
                "truncated frame: 100 bytes announced, 10 sent, then end of stream",
                truncated(100, 10),
            ),
            unanswered(
                "length prefix over 1 MiB, no body",
                prefix(MAX_MESSAGE_BYTES + 1),
            ),
            unanswered("overlong varint (11 bytes)", vec![0xff; 11]),
            unanswered_at_end("garbage bytes, then end of stream", garbage(64, 2)),
            unanswered("a frame that is not protobuf", frame(&[0xff; 32])),
            unanswered("an empty frame (no type)", frame(&[])),
            unanswered("unknown message type 42", rendezvous_frame(unknown_type)),
            unanswered(
                "REGISTER_RESPONSE as a request",
                of_type(MessageType::RegisterResponse),
            ),
            unanswered(
                "DISCOVER_RESPONSE as a request",
                of_type(MessageType::DiscoverResponse),
            ),
            unanswered("REGISTER without its body", of_type(MessageType::Register)),
            unanswered("DISCOVER without its body", of_type(MessageType::Discover)),
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
                let response = proto::Message::decode(f.as_slice()).expect("a rendezvous message");
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
        relay_survived(
            &relay,
            Transport::Tcp,
            &mut witness,
            "after the hostile rendezvous frames",
        )
        .await;
    });
}

/// Raw sockets that connect and then stall the handshake: a partial multistream-select
/// header on TCP, half an HTTP upgrade request on WS, the first bytes of a TLS record on
/// WSS, and one silent socket each. With `handshake_timeout` at 2 s the relay closes all
/// of them within 10 s (its default timeout is 20 s, so a relay that ignored the setting
/// fails), and serves a normal circuit while they hang.
#[test]
fn handshakes_that_never_finish_are_closed_after_the_handshake_timeout() {
    run_isolated(async {
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
    });
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

/// The status of the HOP message read next on `stream`.
async fn hop_status(stream: &mut SubstreamBox) -> Option<i32> {
    let answer = read_message(stream).await;
    HopMessage::decode(answer.as_slice())
        .expect("a HopMessage")
        .status
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
    run_isolated(async {
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
        assert_eq!(hop_status(&mut reserve_stream).await, Some(OK));

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
        assert_eq!(hop_status(&mut hop_stream).await, Some(OK));

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
    });
}
