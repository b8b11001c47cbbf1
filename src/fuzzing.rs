//! Entry points for the fuzz targets in `fuzz/` (README "Fuzzing"): every decoder of
//! ours that a peer's bytes reach, called exactly as the relay calls it. Each function
//! takes arbitrary bytes and must return without panicking, hanging or allocating
//! without bound; libFuzzer reports anything else.
//!
//! Not part of the relay's API: public only so the separate fuzz crate can reach
//! decoders that are private to their modules.

use std::sync::LazyLock;

use futures::executor::block_on;
use libp2p::identity::Keypair;
use libp2p::request_response::Codec as _;
use libp2p::{Multiaddr, PeerId};

use crate::config::Config;
use crate::rendezvous::codec::Codec;
use crate::rendezvous::proto;
use crate::rendezvous::server::{check_namespace, check_record, Cookie, Policy};
use crate::rendezvous::{OwnAddresses, PROTOCOL};

/// A relay identity, a registrant and the relay's own addresses, fixed for every input so
/// runs are reproducible.
struct Fixture {
    relay: PeerId,
    registrant: PeerId,
    own: OwnAddresses,
    policy: Policy,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let peer = |seed: u8| {
        Keypair::ed25519_from_bytes([seed; 32])
            .map(|k| k.public().to_peer_id())
            .unwrap_or_else(|_| PeerId::random())
    };
    let own = [
        "/ip4/127.0.0.1/tcp/4001",
        "/dns4/relay.example/tcp/443/tls/ws",
    ]
    .into_iter()
    .filter_map(|a| a.parse::<Multiaddr>().ok())
    .collect();
    Fixture {
        relay: peer(1),
        registrant: peer(2),
        own,
        policy: Policy::from_limits(&Config::default().rendezvous),
    }
});

/// One `/rendezvous/1.0.0` request as a peer writes it on a stream (varint length and
/// protobuf), through the codec and then the checks the server makes before its store
/// sees anything.
pub fn rendezvous_request(data: &[u8]) {
    let fixture = &*FIXTURE;
    let mut codec = Codec::new(fixture.policy.max_request_bytes());
    let mut io = futures::io::Cursor::new(data);
    let Ok(request) = block_on(codec.read_request(&PROTOCOL, &mut io)) else {
        return;
    };
    if let Some(register) = &request.register {
        let _ = check_namespace(register.ns.as_deref());
        if let Some(record) = &register.signed_peer_record {
            let _ = check_record(
                &fixture.policy,
                fixture.relay,
                &fixture.own,
                fixture.registrant,
                record,
            );
        }
    }
    if let Some(proto::Discover { ns, cookie, .. }) = &request.discover {
        let _ = check_namespace(ns.as_deref());
        if let Some(cookie) = cookie {
            let _ = Cookie::decode(cookie);
        }
    }
}

/// A DISCOVER cookie as a peer sends it back.
pub fn rendezvous_cookie(data: &[u8]) {
    let _ = Cookie::decode(data);
}

/// An address in a registrant's signed record (multiaddr bytes), against the rule that
/// only circuit addresses through this relay are published.
pub fn circuit_address(data: &[u8]) {
    let fixture = &*FIXTURE;
    if let Ok(addr) = Multiaddr::try_from(data.to_vec()) {
        let _ = crate::rendezvous::is_circuit_via(
            &addr,
            fixture.relay,
            &fixture.own,
            fixture.registrant,
        );
        let _ = crate::multiaddr_ext::ip_of(&addr);
    }
}

/// One HOP request as a peer writes it on a stream (varint length and protobuf), read
/// and judged exactly as the circuit server's handler does; and the same bytes read as
/// a destination's STOP answer.
pub fn hop_request(data: &[u8]) {
    let mut io = futures::io::Cursor::new(data);
    if let Ok(message) = block_on(crate::circuit::wire::read_message(&mut io)) {
        let _ = crate::circuit::wire::hop_request(&message);
    }
    let _ = crate::circuit::wire::parse_hop_request(data);
    // The same bytes as a destination's answer to STOP CONNECT.
    let mut io = futures::io::Cursor::new(data);
    let _ = block_on(crate::circuit::wire::read_message::<
        crate::circuit::proto::StopMessage,
        _,
    >(&mut io));
}

/// One forwarded-circuit request as another node writes it on a mesh stream (varint
/// length and protobuf: source and destination peer ids), read exactly as the
/// destination node reads it before acknowledging.
pub fn mesh_request(data: &[u8]) {
    let mut io = futures::io::Cursor::new(data);
    let _ = block_on(crate::fleet::forward::read_mesh_request(&mut io));
    // The cap is the point: whatever a node sends, no more than one message (and its
    // two-byte length prefix) is read.
    let cap = crate::circuit::wire::MAX_MESSAGE_BYTES + 2;
    let read = usize::try_from(io.position()).unwrap_or(usize::MAX);
    assert!(read <= cap, "read {read} bytes, more than {cap}");
}

/// A trusted source's first bytes (a load balancer's PROXY v1 or v2 header, or
/// anything), read from an in-memory stream by the reader a trusted connection goes
/// through before the swarm hears of it.
pub fn proxy_header(data: &[u8]) {
    let mut io = futures::io::Cursor::new(data);
    let _ = block_on(crate::net::proxy_protocol::read_header(&mut io));
    // What follows the header is the libp2p handshake's: the reader never takes more
    // than a header at its cap, whatever the bytes.
    let read = usize::try_from(io.position()).unwrap_or(usize::MAX);
    assert!(
        read <= crate::net::proxy_protocol::MAX_HEADER_BYTES,
        "read {read} bytes"
    );
}

#[cfg(test)]
mod seeds {
    //! The seed corpus in `fuzz/corpus/`, made from real messages:
    //! `cargo test --lib write_fuzz_seeds -- --ignored` rewrites it.

    use std::path::Path;

    use libp2p::core::PeerRecord;
    use prost::Message as _;

    use super::*;
    use crate::rendezvous::proto::MessageType;

    fn framed(message: &proto::Message) -> Vec<u8> {
        message.encode_length_delimited_to_vec()
    }

    /// PROXY headers as HAProxy and AWS NLB send them, each followed by the start of a
    /// libp2p handshake that the reader must leave alone.
    fn proxy_headers() -> Vec<(&'static str, Vec<u8>)> {
        use std::net::SocketAddr;
        let v4: (SocketAddr, SocketAddr) = (
            "203.0.113.7:50000".parse().expect("an address"),
            "10.0.0.1:4001".parse().expect("an address"),
        );
        let v6: (SocketAddr, SocketAddr) = (
            "[2001:db8::7]:50000".parse().expect("an address"),
            "[2001:db8::1]:4001".parse().expect("an address"),
        );
        let v2 = |command, addresses: (SocketAddr, SocketAddr), tlv: bool| {
            let builder = ppp::v2::Builder::with_addresses(
                ppp::v2::Version::Two | command,
                ppp::v2::Protocol::Stream,
                addresses,
            );
            let builder = if tlv {
                builder
                    .write_tlv(ppp::v2::Type::UniqueId, b"dusk-relay-seed")
                    .expect("a TLV")
            } else {
                builder
            };
            builder.build().expect("a v2 header")
        };
        let handshake = b"/multistream/1.0.0\n";
        [
            (
                "v1_tcp4",
                b"PROXY TCP4 203.0.113.7 10.0.0.1 50000 4001\r\n".to_vec(),
            ),
            (
                "v1_tcp6",
                b"PROXY TCP6 2001:db8::7 2001:db8::1 50000 4001\r\n".to_vec(),
            ),
            ("v1_unknown", b"PROXY UNKNOWN\r\n".to_vec()),
            ("v2_ipv4_tlv", v2(ppp::v2::Command::Proxy, v4, true)),
            ("v2_ipv6", v2(ppp::v2::Command::Proxy, v6, false)),
            ("v2_local", v2(ppp::v2::Command::Local, v4, false)),
        ]
        .into_iter()
        .map(|(name, header)| (name, [header.as_slice(), handshake].concat()))
        .collect()
    }

    fn mesh_request_seed() -> Vec<u8> {
        crate::fleet::forward::MeshRequest {
            src: FIXTURE.registrant.to_bytes(),
            dst: FIXTURE.relay.to_bytes(),
        }
        .encode_length_delimited_to_vec()
    }

    fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let fixture = &*FIXTURE;
        let registrant = Keypair::ed25519_from_bytes([2; 32]).expect("a fixed key");
        let relay = fixture.relay;
        let circuit: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .expect("a circuit address");
        let direct: Multiaddr = "/ip4/203.0.113.7/tcp/4001".parse().expect("an address");
        let record = |addrs: Vec<Multiaddr>| {
            PeerRecord::new(&registrant, addrs)
                .expect("signing")
                .into_signed_envelope()
                .into_protobuf_encoding()
        };
        let register = |record: Vec<u8>| proto::Message {
            r#type: Some(MessageType::Register as i32),
            register: Some(proto::Register {
                ns: Some("dusk/peers".into()),
                signed_peer_record: Some(record),
                ttl: Some(7200),
            }),
            ..Default::default()
        };
        let mut cookie = 42u64.to_be_bytes().to_vec();
        cookie.extend_from_slice(b"dusk/peers");
        let discover = proto::Message {
            r#type: Some(MessageType::Discover as i32),
            discover: Some(proto::Discover {
                ns: Some("dusk/peers".into()),
                limit: Some(100),
                cookie: Some(cookie.clone()),
            }),
            ..Default::default()
        };
        let connect = crate::circuit::proto::HopMessage {
            r#type: crate::circuit::proto::CONNECT,
            peer: Some(crate::circuit::proto::Peer {
                id: fixture.registrant.to_bytes(),
                addrs: Vec::new(),
            }),
            ..Default::default()
        };
        let mut circuit_bytes_follow = mesh_request_seed();
        circuit_bytes_follow.extend_from_slice(b"/multistream/1.0.0\n");
        let mut seeds = vec![
            (
                "rendezvous_request",
                "register_circuit",
                framed(&register(record(vec![circuit.clone()]))),
            ),
            (
                "rendezvous_request",
                "register_direct",
                framed(&register(record(vec![direct]))),
            ),
            ("rendezvous_request", "discover", framed(&discover)),
            ("rendezvous_cookie", "cookie", cookie),
            ("circuit_address", "circuit", circuit.to_vec()),
            (
                "circuit_address",
                "circuit_for_registrant",
                circuit
                    .with(libp2p::multiaddr::Protocol::P2p(fixture.registrant))
                    .to_vec(),
            ),
            ("hop_request", "reserve", vec![0x08, 0x00]),
            (
                "hop_request",
                "connect",
                vec![0x08, 0x01, 0x12, 0x02, 0x0a, 0x00],
            ),
            ("hop_request", "status", vec![0x08, 0x02, 0x28, 0xca, 0x01]),
            ("hop_request", "reserve_framed", vec![0x02, 0x08, 0x00]),
            (
                "hop_request",
                "connect_framed",
                connect.encode_length_delimited_to_vec(),
            ),
            ("mesh_request", "request", mesh_request_seed()),
            ("mesh_request", "request_then_circuit", circuit_bytes_follow),
        ];
        seeds.extend(
            proxy_headers()
                .into_iter()
                .map(|(name, bytes)| ("proxy_header", name, bytes)),
        );
        seeds
    }

    #[test]
    fn every_seed_goes_through_its_target() {
        for (target, _, bytes) in seeds() {
            match target {
                "rendezvous_request" => rendezvous_request(&bytes),
                "rendezvous_cookie" => rendezvous_cookie(&bytes),
                "circuit_address" => circuit_address(&bytes),
                "mesh_request" => mesh_request(&bytes),
                "proxy_header" => proxy_header(&bytes),
                _ => hop_request(&bytes),
            }
        }
        let register = &seeds()[0].2;
        let mut codec = Codec::new(FIXTURE.policy.max_request_bytes());
        let request = block_on(codec.read_request(
            &PROTOCOL,
            &mut futures::io::Cursor::new(register.as_slice()),
        ))
        .expect("the seed decodes");
        let record = request
            .register
            .and_then(|r| r.signed_peer_record)
            .expect("a record");
        assert_eq!(
            check_record(
                &FIXTURE.policy,
                FIXTURE.relay,
                &FIXTURE.own,
                FIXTURE.registrant,
                &record
            ),
            Ok(()),
            "the seed record passes every check, so the fuzzer starts from an accepted one"
        );
    }

    #[test]
    fn the_mesh_and_proxy_seeds_are_accepted_and_read_exactly() {
        let request = mesh_request_seed();
        let mut io = futures::io::Cursor::new(request.as_slice());
        assert_eq!(
            block_on(crate::fleet::forward::read_mesh_request(&mut io)),
            Some((FIXTURE.registrant, FIXTURE.relay))
        );
        for (name, bytes) in proxy_headers() {
            let mut io = futures::io::Cursor::new(bytes.as_slice());
            let header = block_on(crate::net::proxy_protocol::read_header(&mut io));
            assert!(header.is_ok(), "{name}: {header:?}");
            let rest = &bytes[usize::try_from(io.position()).expect("a position")..];
            assert_eq!(rest, b"/multistream/1.0.0\n", "{name}");
        }
    }

    #[test]
    #[ignore = "writes fuzz/corpus; run by hand"]
    fn write_fuzz_seeds() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (target, name, bytes) in seeds() {
            let dir = corpus.join(target);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            std::fs::write(dir.join(name), bytes).expect("seed written");
        }
    }
}
