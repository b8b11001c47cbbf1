//! Verified bytes through circuits: patterns both ways, and circuits opened between
//! two clients over a transport.

use super::*;

/// Deterministic, non-repeating bytes: a reordered, dropped or duplicated chunk
/// anywhere in a transfer shows up as a mismatch.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes `len` pattern bytes seeded `send_seed` while reading and checking `len`
/// bytes seeded `recv_seed`, at once, then half-closes. Returns the time taken.
pub async fn exchange(
    stream: libp2p::Stream,
    len: usize,
    send_seed: u64,
    recv_seed: u64,
) -> Duration {
    exchange_unequal(stream, len, len, send_seed, recv_seed).await
}

/// [`exchange`] with a length per direction: writes `send_len` pattern
/// bytes seeded `send_seed` while reading and checking `recv_len` bytes seeded
/// `recv_seed`, then half-closes. Returns the time taken.
pub async fn exchange_unequal(
    stream: libp2p::Stream,
    send_len: usize,
    recv_len: usize,
    send_seed: u64,
    recv_seed: u64,
) -> Duration {
    const CHUNK: usize = 64 * 1024;
    let start = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let send = async move {
        let mut pattern = Pattern::new(send_seed);
        let mut buf = vec![0u8; CHUNK];
        let mut left = send_len;
        while left > 0 {
            let n = left.min(CHUNK);
            pattern.fill(&mut buf[..n]);
            writer.write_all(&buf[..n]).await.expect("write");
            left -= n;
        }
        writer.close().await.expect("close");
    };
    let receive = async move {
        let mut pattern = Pattern::new(recv_seed);
        let mut buf = vec![0u8; CHUNK];
        let mut expected = vec![0u8; CHUNK];
        let mut done = 0;
        while done < recv_len {
            let n = (recv_len - done).min(CHUNK);
            reader
                .read_exact(&mut buf[..n])
                .await
                .unwrap_or_else(|e| panic!("read failed after {done} of {recv_len} bytes: {e}"));
            pattern.fill(&mut expected[..n]);
            assert!(
                buf[..n] == expected[..n],
                "received bytes differ from the sent ones at offset {done}"
            );
            done += n;
        }
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.expect("read to end");
        assert!(rest.is_empty(), "{} bytes more than sent", rest.len());
    };
    within(
        Duration::from_secs(120),
        "data exchange",
        futures::future::join(send, receive),
    )
    .await;
    start.elapsed()
}

/// Client `dialer` opens a data stream to `listener` (already connected) and both send
/// `len` bytes at once, each checking what it receives. Returns MiB/s per direction.
pub async fn exchange_both_ways(dialer: &mut Client, listener: &mut Client, len: usize) -> f64 {
    let listener_id = listener.peer_id;
    let dialer_id = dialer.peer_id;
    let (outbound, inbound) = futures::future::join(
        dialer.open_data_stream(listener_id),
        listener.accept_data_stream(),
    )
    .await;
    assert_eq!(inbound.0, dialer_id);
    let (a, b) = futures::future::join(
        exchange(outbound, len, 1, 2),
        exchange(inbound.1, len, 2, 1),
    )
    .await;
    let elapsed = a.max(b).as_secs_f64();
    len as f64 / (1024.0 * 1024.0) / elapsed
}

/// A reserves on `relay` over `transport`, B connects and dials A through the relay;
/// returns (A, B) once the relay reports the circuit open.
pub async fn open_circuit(relay: &TestRelay, transport: Transport) -> (Client, Client) {
    let (mut a, mut b) = (relay.client().await, relay.client().await);
    open_circuit_between(relay, &mut a, &mut b, transport).await;
    (a, b)
}

/// [`open_circuit`] with clients of the caller's: A reserves, B dials A through the relay.
pub async fn open_circuit_between(
    relay: &TestRelay,
    a: &mut Client,
    b: &mut Client,
    transport: Transport,
) {
    let mut events = relay.subscribe();
    a.reserve(&relay.addr(transport)).await;
    b.connect(&relay.addr(transport)).await;
    b.dial_through(&relay.addr(transport), a.peer_id).await;
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitOpened { .. }).then_some(())
    })
    .await;
}
