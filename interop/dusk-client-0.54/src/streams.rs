//! The two test protocols the client speaks with other clients through the relay: a
//! chat message with an ack (`CHAT`), and a bulk transfer of pattern bytes that the
//! receiver checks byte by byte (`BULK`). Milestones go to stdout as JSON lines.

use std::time::Instant;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use serde_json::json;

use crate::emit;

pub(crate) const CHAT: StreamProtocol = StreamProtocol::new("/dusk-interop/chat/1.0.0");
pub(crate) const BULK: StreamProtocol = StreamProtocol::new("/dusk-interop/bulk/1.0.0");
/// Largest chat message accepted.
const MAX_CHAT_BYTES: u64 = 64 * 1024;

pub(crate) async fn send_chat(mut control: libp2p_stream::Control, peer: PeerId, text: String) {
    let result = async {
        let mut stream = control
            .open_stream(peer, CHAT)
            .await
            .map_err(std::io::Error::other)?;
        stream.write_all(text.as_bytes()).await?;
        stream.close().await?;
        let mut ack = Vec::new();
        stream.read_to_end(&mut ack).await?;
        if ack != b"ok" {
            return Err(std::io::Error::other("no ack"));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => emit(json!({"event": "sent", "to": peer.to_string(), "text": text})),
        Err(e) => {
            emit(json!({"event": "send_failed", "to": peer.to_string(), "error": e.to_string()}))
        }
    }
}

pub(crate) async fn receive_chat(peer: PeerId, mut stream: libp2p::Stream) -> std::io::Result<()> {
    let mut text = Vec::new();
    (&mut stream)
        .take(MAX_CHAT_BYTES)
        .read_to_end(&mut text)
        .await?;
    emit(
        json!({"event": "message", "from": peer.to_string(), "text": String::from_utf8_lossy(&text)}),
    );
    stream.write_all(b"ok").await?;
    stream.close().await
}

/// Bulk stream: the sender writes `len` and `seed` (u64, big-endian), then `len`
/// pattern bytes, and half-closes; the receiver checks every byte and answers the
/// count it verified (u64).
pub(crate) async fn send_bulk(mut control: libp2p_stream::Control, peer: PeerId, len: u64) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let start = Instant::now();
    let result = async {
        let mut stream = control
            .open_stream(peer, BULK)
            .await
            .map_err(std::io::Error::other)?;
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&seed.to_be_bytes()).await?;
        let mut pattern = Pattern::new(seed);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            pattern.fill(&mut buf[..n]);
            stream.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        stream.close().await?;
        let mut verified = [0u8; 8];
        stream.read_exact(&mut verified).await?;
        let verified = u64::from_be_bytes(verified);
        if verified != len {
            return Err(std::io::Error::other(format!(
                "peer verified {verified} of {len} bytes"
            )));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let secs = start.elapsed().as_secs_f64();
            let mib = len as f64 / (1024.0 * 1024.0);
            emit(
                json!({"event": "stream_ok", "to": peer.to_string(), "bytes": len, "secs": secs, "mib_per_s": mib / secs}),
            );
        }
        Err(e) => {
            emit(json!({"event": "stream_failed", "to": peer.to_string(), "error": e.to_string()}))
        }
    }
}

pub(crate) async fn receive_bulk(peer: PeerId, mut stream: libp2p::Stream) -> std::io::Result<()> {
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).await?;
    let len = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
    let mut pattern = Pattern::new(u64::from_be_bytes(header[8..].try_into().expect("8 bytes")));
    let mut buf = vec![0u8; 64 * 1024];
    let mut expected = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        stream.read_exact(&mut buf[..n]).await?;
        pattern.fill(&mut expected[..n]);
        if buf[..n] != expected[..n] {
            return Err(std::io::Error::other(format!(
                "bytes differ at offset {done}"
            )));
        }
        done += n as u64;
    }
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    if !rest.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} bytes past the announced length",
            rest.len()
        )));
    }
    stream.write_all(&done.to_be_bytes()).await?;
    stream.close().await?;
    emit(json!({"event": "stream_received", "from": peer.to_string(), "bytes": done}));
    Ok(())
}

/// Deterministic, non-repeating bytes (xorshift64), as the relay's tests use.
struct Pattern(u64);

impl Pattern {
    fn new(seed: u64) -> Self {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}
