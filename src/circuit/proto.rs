//! The circuit relay v2 wire messages (libp2p specs, `relay/circuit-v2.md`, proto2),
//! declared with prost's derive: `HopMessage` and `StopMessage` with their peer,
//! reservation and limit, the type and status codes, and the varint framing. One
//! definition for the library, the tests that speak HOP and STOP by hand, and the bench.

use libp2p::StreamProtocol;

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

/// A length-prefixed frame as the relay reads and writes them.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut len = unsigned_varint::encode::usize_buffer();
    let mut out = unsigned_varint::encode::usize(body.len(), &mut len).to_vec();
    out.extend_from_slice(body);
    out
}
