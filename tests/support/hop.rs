//! Raw circuit relay v2 frames (the spec's `HopMessage` and `StopMessage`), for what
//! libp2p's relay client cannot send or does not show: a status code as sent, a STOP
//! message as received, malformed frames.

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use prost::Message as _;

use super::{within, Client, EVENT_TIMEOUT};

pub const HOP: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");
pub const STOP: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/stop");

pub const RESERVE: i32 = 0;
pub const CONNECT: i32 = 1;
pub const HOP_STATUS: i32 = 2;
pub const STOP_CONNECT: i32 = 0;
pub const STOP_STATUS: i32 = 1;

pub const OK: i32 = 100;
pub const RESOURCE_LIMIT_EXCEEDED: i32 = 201;
pub const PERMISSION_DENIED: i32 = 202;
pub const NO_RESERVATION: i32 = 204;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Reservation {
    #[prost(uint64, required, tag = "1")]
    pub expire: u64,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub voucher: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Limit {
    #[prost(uint32, optional, tag = "1")]
    pub duration: Option<u32>,
    #[prost(uint64, optional, tag = "2")]
    pub data: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HopMessage {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub peer: Option<Peer>,
    #[prost(message, optional, tag = "3")]
    pub reservation: Option<Reservation>,
    #[prost(message, optional, tag = "4")]
    pub limit: Option<Limit>,
    #[prost(int32, optional, tag = "5")]
    pub status: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StopMessage {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub peer: Option<Peer>,
    #[prost(message, optional, tag = "3")]
    pub limit: Option<Limit>,
    #[prost(int32, optional, tag = "4")]
    pub status: Option<i32>,
}

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

/// A length-prefixed frame as the relay reads them.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut len = unsigned_varint::encode::usize_buffer();
    let mut out = unsigned_varint::encode::usize(body.len(), &mut len).to_vec();
    out.extend_from_slice(body);
    out
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
