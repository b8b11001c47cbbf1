//! Hostile peers' raw streams, for `tests/hostile*.rs`: each test on a runtime of its
//! own whose panics are recorded (a handler that panics only loses its connection, so a
//! panic hook is the only place it shows), and raw frames written on a stream with
//! whatever the relay answers read back.

use std::sync::Mutex;

use prost::Message as _;

use super::hop::*;
use super::*;

/// How long the relay may take to answer or close a hostile stream. Well under
/// libp2p-relay's 60 s and request-response's 10 s stream timeouts: a close seen in
/// time comes from the relay handling the frame, not from a timeout.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on each test's total time (they take 0.1 to 3 s).
pub const TEST_TIME: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Panics anywhere in the relay: libp2p runs each connection on its own tokio task, so a
// handler that panicked would only lose that connection and the relay would look fine.
// A panic hook is the only place such a panic shows, and it is process-wide: tests
// running side by side in one process would blame each other's panics. So each test
// runs on a runtime of its own whose threads carry the test's name, the hook records
// panics by thread name, and a test fails only on panics of its own threads (its
// relay's and its clients' tasks; its own assertions run on the test thread).

/// Prefix of the runtime threads of a test (the test's name follows it).
pub const THREAD_PREFIX: &str = "hostile:";

/// Panics on test runtime threads: (thread name, panic message).
pub static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

pub fn record_panics() {
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
pub fn panics_of(name: &str) -> Vec<String> {
    let thread = format!("{THREAD_PREFIX}{name}");
    PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(t, _)| *t == thread)
        .map(|(_, message)| message.clone())
        .collect()
}

/// Runs the calling test within [`TEST_TIME`] on a runtime of its own, stops every task
/// it left, then fails if any of its tasks panicked. Call it from the test's own thread:
/// the test harness (libtest, nextest) names that thread after the test, and the
/// runtime's threads take that name after [`THREAD_PREFIX`].
pub fn run_isolated(test: impl std::future::Future<Output = ()>) {
    let thread = std::thread::current();
    let name = thread
        .name()
        .filter(|name| *name != "main")
        .expect("run_isolated runs on a test thread, named after its test");
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
pub struct Outcome {
    pub frames: Vec<Vec<u8>>,
    /// `"closed"` (end of stream), `"reset"` (read or write failed) and when.
    pub end: String,
}

/// Writes `bytes` on a fresh `protocol` stream, half-closes it if `close`, then reads
/// everything the relay sends until it closes or resets the stream.
pub async fn send_raw(
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
pub async fn hop_statuses(client: &Client, relay: PeerId, bytes: &[u8], close: bool) -> Vec<i32> {
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

pub fn encode(message: HopMessage) -> Vec<u8> {
    frame(&message.encode_to_vec())
}

/// A length prefix announcing `len` bytes, and nothing else.
pub fn prefix(len: usize) -> Vec<u8> {
    let mut buf = unsigned_varint::encode::usize_buffer();
    unsigned_varint::encode::usize(len, &mut buf).to_vec()
}

/// `announced` as the length prefix, followed by only `sent` bytes.
pub fn truncated(announced: usize, sent: usize) -> Vec<u8> {
    let mut bytes = prefix(announced);
    bytes.extend(std::iter::repeat_n(0x08, sent));
    bytes
}

pub fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    Pattern::new(seed).fill(&mut bytes);
    bytes
}

/// Bytes each way through the circuit that shows the relay still serves.
pub const CIRCUIT_BYTES: usize = 64 * 1024;

/// The relay still serves: a new pair of clients completes a circuit over `transport`
/// and moves bytes both ways, and nothing panicked.
pub async fn relay_still_serves(relay: &TestRelay, transport: Transport) {
    let (mut a, mut b) = open_circuit(relay, transport).await;
    exchange_both_ways(&mut b, &mut a, CIRCUIT_BYTES).await;
    if let Some(endpoint) = relay.handle.http_addr {
        assert_eq!(http(endpoint, "GET", "/healthz").await.0, 200, "healthz");
    }
}

/// A relay, a client connected to it over `transport` and a HOP stream the client keeps
/// open as a witness: opened before the hostile streams and used after them, it only
/// works if the connection they ran on survived.
pub async fn relay_with_witness(transport: Transport) -> (TestRelay, Client, libp2p::Stream) {
    let relay = TestRelay::start().await;
    let mut client = relay.client().await;
    client.connect(&relay.addr(transport)).await;
    let witness = open_hop(&client, relay.peer_id())
        .await
        .expect("HOP stream");
    (relay, client, witness)
}

/// The relay came through the hostile streams: a RESERVE on the witness stream is
/// accepted (`what`: the connection survived) and the relay still serves over
/// `transport`.
pub async fn relay_survived(
    relay: &TestRelay,
    transport: Transport,
    witness: &mut libp2p::Stream,
    what: &str,
) {
    assert_eq!(
        reserve_on(witness, ANSWER_TIMEOUT, what).await,
        Some(OK),
        "{what}"
    );
    relay_still_serves(relay, transport).await;
}
