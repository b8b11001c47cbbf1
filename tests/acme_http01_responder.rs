//! The ACME HTTP-01 responder on a public port 80 (README, `DUSK_RELAY_ACME_HTTP_PORT`):
//! it answers the CA, and a hostile client cannot make it hold more than
//! `max_connections` descriptors, nor any of them beyond the head timeout or the
//! connection deadline. Real loopback sockets; every wait is on a socket event, bounded
//! by [`HANG`] only to turn a hang into a failure.
//!
//! The tests run on tokio's current-thread runtime (the `#[tokio::test]` default), so
//! the responder and the clients take turns on one thread: the order the clients connect
//! in is the order the responder accepts in, and by the time a client sees its connection
//! closed the responder has also given back its slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dusk_relay::tls::acme::challenge::Challenges;
use dusk_relay::tls::acme::http01::{HttpResponder, HttpResponderLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any limit under test; reaching it means the responder held on.
const HANG: Duration = Duration::from_secs(5);
/// Far beyond [`HANG`]: a limit set to this is, for the test, not there.
const NEVER: Duration = Duration::from_secs(60);

const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
const KEY_AUTHORIZATION: &str =
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";

async fn responder(limits: HttpResponderLimits) -> (HttpResponder, SocketAddr) {
    let challenges = Arc::new(Challenges::default());
    challenges.add_http(TOKEN, KEY_AUTHORIZATION);
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let responder = HttpResponder::bind(&[loopback], challenges, limits)
        .await
        .expect("bind the responder");
    let addr = responder.local_addrs[0];
    (responder, addr)
}

/// Everything the responder sends until it closes the connection (EOF or reset).
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(HANG, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the responder still held {what} after {HANG:?}"));
    received
}

/// A keep-alive `GET` as the CA sends it; the status and body, once the responder closed.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: relay.example.com\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let response = String::from_utf8(read_until_closed(&mut stream, "a served connection").await)
        .expect("a UTF-8 response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A connection that has sent `head` (perhaps nothing) and will send no more.
async fn stalled(addr: SocketAddr, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send a partial head");
    stream
}

/// The responder has neither closed `stream` nor sent anything on it.
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test]
async fn the_ca_gets_the_key_authorization_and_one_response_per_connection() {
    // No head timeout or deadline to speak of: each response arriving and its
    // connection closing well within HANG is keep-alive being off, not a limit firing.
    let (_responder, addr) = responder(HttpResponderLimits {
        max_connections: 4,
        header_read_timeout: NEVER,
        connection_deadline: NEVER,
    })
    .await;

    let (status, body) = get(addr, &format!("/.well-known/acme-challenge/{TOKEN}")).await;
    assert_eq!((status, body.as_str()), (200, KEY_AUTHORIZATION));

    let (status, _) = get(addr, "/.well-known/acme-challenge/not-a-pending-token").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn slowloris_connections_are_cut_and_those_beyond_the_cap_closed_at_once() {
    // The head timeout alone must cut them: the deadline is out of reach.
    let (responder, addr) = responder(HttpResponderLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(300),
        connection_deadline: NEVER,
    })
    .await;

    // Fill the cap: two send half a request line, two send nothing at all.
    let mut slow = Vec::new();
    for head in ["GET /.well-known/acme-chall", "G", "", ""] {
        slow.push(stalled(addr, head).await);
    }
    // Beyond the cap: accepted after the four above (the listen queue is in order) and
    // closed at once. Were they held instead, they would last as long as the first four
    // (the head timeout), which the check below tells apart.
    for _ in 0..4 {
        let mut excess = stalled(addr, "GET /.well-known/acme-chall").await;
        let response = read_until_closed(&mut excess, "a connection beyond the cap").await;
        assert!(response.is_empty(), "{response:?}");
    }
    assert_eq!(responder.open_connections(), 4);
    for stream in &slow {
        assert!(
            still_open(stream),
            "a connection within the cap was closed before those beyond it"
        );
    }

    // The head timeout cuts every one of them, including those that never sent a byte.
    for stream in &mut slow {
        read_until_closed(stream, "a connection that never finished its head").await;
    }
    assert_eq!(responder.open_connections(), 0);

    // And the CA is answered again.
    let (status, body) = get(addr, &format!("/.well-known/acme-challenge/{TOKEN}")).await;
    assert_eq!((status, body.as_str()), (200, KEY_AUTHORIZATION));
}

#[tokio::test]
async fn a_connection_is_cut_at_its_deadline_whatever_the_head_timeout() {
    let (responder, addr) = responder(HttpResponderLimits {
        max_connections: 4,
        header_read_timeout: NEVER,
        connection_deadline: Duration::from_millis(300),
    })
    .await;

    let mut stream = stalled(addr, "GET /.well-known/acme-challenge/").await;
    read_until_closed(&mut stream, "a connection past its deadline").await;
    assert_eq!(responder.open_connections(), 0);
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let (_responder, addr) = responder(HttpResponderLimits {
        max_connections: 4,
        header_read_timeout: NEVER,
        connection_deadline: NEVER,
    })
    .await;

    // A valid request for a pending token, but with a 16 KiB header: twice the buffer.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: relay.example.com\r\n\
         X-Padding: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    // The responder may close before reading it all; then the write fails, which is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let response = String::from_utf8_lossy(
        &read_until_closed(&mut stream, "a connection with an oversized head").await,
    )
    .into_owned();
    // Closed without a word, or a 4xx (hyper sends 431), but never the answer.
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 4"),
        "{response:?}"
    );
}
