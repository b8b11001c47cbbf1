//! The rendezvous protocol's messages (libp2p/specs `rendezvous/README.md`, proto2),
//! declared with prost's derive instead of generated, so the build needs no `protoc`.
//! Field numbers and types follow the spec's `rpc.proto` exactly.

#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(enumeration = "MessageType", optional, tag = "1")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub register: Option<Register>,
    #[prost(message, optional, tag = "3")]
    pub register_response: Option<RegisterResponse>,
    #[prost(message, optional, tag = "4")]
    pub unregister: Option<Unregister>,
    #[prost(message, optional, tag = "5")]
    pub discover: Option<Discover>,
    #[prost(message, optional, tag = "6")]
    pub discover_response: Option<DiscoverResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Register {
    #[prost(string, optional, tag = "1")]
    pub ns: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signed_peer_record: Option<Vec<u8>>,
    /// Seconds.
    #[prost(uint64, optional, tag = "3")]
    pub ttl: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterResponse {
    #[prost(enumeration = "ResponseStatus", optional, tag = "1")]
    pub status: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub status_text: Option<String>,
    /// Seconds.
    #[prost(uint64, optional, tag = "3")]
    pub ttl: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Unregister {
    #[prost(string, optional, tag = "1")]
    pub ns: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub id: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Discover {
    #[prost(string, optional, tag = "1")]
    pub ns: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub limit: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub cookie: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DiscoverResponse {
    #[prost(message, repeated, tag = "1")]
    pub registrations: Vec<Register>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub cookie: Option<Vec<u8>>,
    #[prost(enumeration = "ResponseStatus", optional, tag = "3")]
    pub status: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub status_text: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    Register = 0,
    RegisterResponse = 1,
    Unregister = 2,
    Discover = 3,
    DiscoverResponse = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseStatus {
    Ok = 0,
    EInvalidNamespace = 100,
    EInvalidSignedPeerRecord = 101,
    EInvalidTtl = 102,
    EInvalidCookie = 103,
    ENotAuthorized = 200,
    EInternalError = 300,
    EUnavailable = 400,
}

impl ResponseStatus {
    /// The spec's name, used as the metrics label and in logs.
    pub fn name(self) -> &'static str {
        match self {
            ResponseStatus::Ok => "OK",
            ResponseStatus::EInvalidNamespace => "E_INVALID_NAMESPACE",
            ResponseStatus::EInvalidSignedPeerRecord => "E_INVALID_SIGNED_PEER_RECORD",
            ResponseStatus::EInvalidTtl => "E_INVALID_TTL",
            ResponseStatus::EInvalidCookie => "E_INVALID_COOKIE",
            ResponseStatus::ENotAuthorized => "E_NOT_AUTHORIZED",
            ResponseStatus::EInternalError => "E_INTERNAL_ERROR",
            ResponseStatus::EUnavailable => "E_UNAVAILABLE",
        }
    }
}
