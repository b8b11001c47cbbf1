//! Raw circuit relay v2 frames (the spec's `HopMessage` and `StopMessage`), for what
//! libp2p's relay client cannot send or does not show: a status code as sent, a STOP
//! message as received, malformed frames.

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::PeerId;
use prost::Message as _;

use std::time::Duration;

use super::{within, Client, EVENT_TIMEOUT};

pub use dusk_relay::circuit::proto::*;

pub fn reserve() -> HopMessage {
    HopMessage {
        r#type: RESERVE,
        ..HopMessage::default()
    }
}

pub fn connect(to: PeerId) -> HopMessage {
    HopMessage {
        r#type: CONNECT,
        peer: Some(Peer {
            id: to.to_bytes(),
            addrs: Vec::new(),
        }),
        ..HopMessage::default()
    }
}

/// Opens a HOP stream to the relay (already connected).
pub async fn open_hop(client: &Client, relay: PeerId) -> Result<libp2p::Stream, String> {
    let mut control = client.control.clone();
    within(EVENT_TIMEOUT, "HOP stream", control.open_stream(relay, HOP))
        .await
        .map_err(|e| e.to_string())
}

/// Reads one length-prefixed frame; `None` if the stream ends or fails first.
pub async fn read_frame(stream: &mut libp2p::Stream) -> Option<Vec<u8>> {
    let len = unsigned_varint::aio::read_usize(&mut *stream).await.ok()?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// Sends `bytes` on a fresh HOP stream and reads the answer: `Some(status)` if the
/// relay answered a status, `None` if it closed or reset the stream instead.
pub async fn hop_exchange(client: &Client, relay: PeerId, bytes: &[u8]) -> Option<i32> {
    let mut stream = open_hop(client, relay).await.ok()?;
    // A write may fail when the relay already gave up on the stream: that is an answer.
    if stream.write_all(bytes).await.is_err() || stream.flush().await.is_err() {
        return None;
    }
    let body = within(
        EVENT_TIMEOUT,
        "HOP answer or close",
        read_frame(&mut stream),
    )
    .await?;
    HopMessage::decode(body.as_slice())
        .ok()
        .and_then(|m| m.status)
}

/// The status the relay answers one well-formed HOP request with.
pub async fn hop_request(client: &Client, relay: PeerId, message: HopMessage) -> Option<i32> {
    hop_exchange(client, relay, &frame(&message.encode_to_vec())).await
}

/// Writes a RESERVE on `stream`, an open HOP stream, and returns the status the relay
/// answers within `limit`; panics naming `what` if the stream is closed.
pub async fn reserve_on(stream: &mut libp2p::Stream, limit: Duration, what: &str) -> Option<i32> {
    stream
        .write_all(&frame(&reserve().encode_to_vec()))
        .await
        .unwrap_or_else(|e| panic!("{what}: the connection is closed ({e})"));
    let answer = within(limit, "reservation answer", read_frame(stream))
        .await
        .unwrap_or_else(|| panic!("{what}: no answer on the HOP stream"));
    HopMessage::decode(answer.as_slice())
        .expect("a HopMessage")
        .status
}
