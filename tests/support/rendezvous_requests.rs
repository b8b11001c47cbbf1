//! Rendezvous as rust-libp2p's client does it, and raw rendezvous frames.

use dusk_relay::rendezvous::{proto, ResponseStatus};

use super::*;

/// Discovers `namespace` at the relay with the rendezvous client dusk ships.
pub async fn discover(
    client: &mut Client,
    relay: PeerId,
    namespace: &str,
) -> Vec<rendezvous::Registration> {
    let ns = rendezvous::Namespace::new(namespace.to_owned()).expect("namespace fits");
    client
        .call(move |s| {
            s.behaviour_mut()
                .rendezvous
                .discover(Some(ns), None, None, relay)
        })
        .await;
    client
        .next("discover response", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Discovered { registrations, .. },
            )) => Some(registrations),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::DiscoverFailed { error, .. },
            )) => panic!("discover failed: {error:?}"),
            _ => None,
        })
        .await
}

/// Registers `client` under `namespace` at the relay with the rendezvous client dusk
/// ships; the granted TTL, or the error code the relay answered.
pub async fn register(
    client: &mut Client,
    relay: PeerId,
    namespace: &str,
    ttl: Option<u64>,
) -> Result<u64, rendezvous::ErrorCode> {
    let ns = rendezvous::Namespace::new(namespace.to_owned()).expect("namespace fits");
    client
        .call(move |s| s.behaviour_mut().rendezvous.register(ns, relay, ttl))
        .await
        .expect("the client has an address to register");
    client
        .next("register response", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::Registered { ttl, .. },
            )) => Some(Ok(ttl)),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(
                rendezvous::client::Event::RegisterFailed { error, .. },
            )) => Some(Err(error)),
            _ => None,
        })
        .await
}

/// Writes one raw `/rendezvous/1.0.0` message (length prefix and protobuf) on a new
/// stream and closes its write side; the stream is returned for the answer, if any.
pub async fn raw_send(
    client: &Client,
    relay: PeerId,
    message: dusk_relay::rendezvous::proto::Message,
) -> libp2p::Stream {
    use prost::Message as _;
    let mut control = client.control.clone();
    let mut stream = within(
        EVENT_TIMEOUT,
        "rendezvous stream",
        control.open_stream(relay, dusk_relay::rendezvous::PROTOCOL),
    )
    .await
    .expect("open rendezvous stream");
    let body = message.encode_to_vec();
    let mut len = unsigned_varint::encode::usize_buffer();
    stream
        .write_all(unsigned_varint::encode::usize(body.len(), &mut len))
        .await
        .unwrap();
    stream.write_all(&body).await.unwrap();
    stream.close().await.unwrap();
    stream
}

/// One raw request/response on `/rendezvous/1.0.0`, for what the crate's client cannot
/// send (someone else's record, an over-long namespace) and to read status texts.
pub async fn raw_request(
    client: &Client,
    relay: PeerId,
    request: dusk_relay::rendezvous::proto::Message,
) -> dusk_relay::rendezvous::proto::Message {
    use prost::Message as _;
    let mut stream = raw_send(client, relay, request).await;
    let response = read_to_end_within(&mut stream, "rendezvous response").await;
    let mut body = response.as_slice();
    let (len, rest) = unsigned_varint::decode::usize(body).expect("length prefix");
    body = &rest[..len];
    dusk_relay::rendezvous::proto::Message::decode(body).expect("a rendezvous message")
}

/// The status and status text of a REGISTER_RESPONSE.
pub fn register_status(
    response: &dusk_relay::rendezvous::proto::Message,
) -> (dusk_relay::rendezvous::ResponseStatus, String) {
    let r = response
        .register_response
        .as_ref()
        .expect("a REGISTER_RESPONSE");
    (
        dusk_relay::rendezvous::ResponseStatus::try_from(r.status.unwrap_or_default())
            .expect("a known status"),
        r.status_text.clone().unwrap_or_default(),
    )
}

// Raw requests as an attacker writes them (no rendezvous client).

pub fn raw_register(namespace: &str, record: Vec<u8>, ttl: u64) -> proto::Message {
    proto::Message {
        r#type: Some(proto::MessageType::Register as i32),
        register: Some(proto::Register {
            ns: Some(namespace.to_owned()),
            signed_peer_record: Some(record),
            ttl: Some(ttl),
        }),
        ..Default::default()
    }
}

pub fn raw_unregister(namespace: &str) -> proto::Message {
    proto::Message {
        r#type: Some(proto::MessageType::Unregister as i32),
        unregister: Some(proto::Unregister {
            ns: Some(namespace.to_owned()),
            id: None,
        }),
        ..Default::default()
    }
}

pub fn raw_discover(namespace: Option<&str>) -> proto::Message {
    proto::Message {
        r#type: Some(proto::MessageType::Discover as i32),
        discover: Some(proto::Discover {
            ns: namespace.map(str::to_owned),
            limit: None,
            cookie: None,
        }),
        ..Default::default()
    }
}

pub fn discover_status(response: &proto::Message) -> (ResponseStatus, String, usize) {
    let r = response
        .discover_response
        .as_ref()
        .expect("a DISCOVER_RESPONSE");
    (
        ResponseStatus::try_from(r.status.unwrap_or_default()).expect("a known status"),
        r.status_text.clone().unwrap_or_default(),
        r.registrations.len(),
    )
}

/// `client`'s circuit address through `relay`, as the relay client builds it from a
/// reservation: `<relay address>/p2p/<relay>/p2p-circuit/p2p/<client>`.
pub fn circuit_through(relay: &TestRelay, client: &Client) -> Multiaddr {
    circuit_addr(&relay.addr(Transport::Tcp), client.peer_id)
}

/// Registers `client` under `namespace` with a raw REGISTER carrying `addrs`; the status
/// and its text.
pub async fn raw_register_with(
    relay: &TestRelay,
    client: &Client,
    namespace: &str,
    addrs: Vec<Multiaddr>,
) -> (ResponseStatus, String) {
    let record = client.signed_record(addrs);
    register_status(
        &raw_request(
            client,
            relay.peer_id(),
            raw_register(namespace, record, 120),
        )
        .await,
    )
}

/// [`raw_register_with`] carrying the client's own circuit address through `relay`, the
/// one address a dusk client registers.
pub async fn raw_register_own_circuit(
    relay: &TestRelay,
    client: &Client,
    namespace: &str,
) -> (ResponseStatus, String) {
    raw_register_with(
        relay,
        client,
        namespace,
        vec![circuit_through(relay, client)],
    )
    .await
}

/// A client connected to `relay` whose connection comes from `ip` (QUIC dials leave
/// from the client's listening socket).
pub async fn client_from(relay: &TestRelay, ip: std::net::Ipv4Addr) -> Client {
    let mut client = relay.client().await;
    client.quic_from(ip).await;
    client.connect(&relay.addr(Transport::Quic)).await;
    client
}
