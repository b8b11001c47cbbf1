//! Every default and limit of the relay, each with the reason for its value.
//!
//! dusk has no hole punching: the relayed connection *is* the chat path, so the relay
//! limits here are sized for circuits that live for hours and carry real traffic, for
//! thousands of users on one relay. Every value can be overridden (see [`crate::config`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// TCP port, and the UDP port for QUIC: the seed's `4001`, which dusk clients pin.
pub const PORT: u16 = 4001;

/// The WebSocket port is `DUSK_RELAY_PORT + WS_PORT_OFFSET` (4001 -> 14001). An offset
/// instead of a fixed port so that two relays started with different `DUSK_RELAY_PORT`
/// values on one host (4001 and 4002, say) do not collide on their WS/WSS ports.
pub const WS_PORT_OFFSET: u16 = 10_000;

/// The secure WebSocket port is `DUSK_RELAY_PORT + WSS_PORT_OFFSET` (4001 -> 24001).
/// Deployments publish it on 443 (see DOCKER.md).
pub const WSS_PORT_OFFSET: u16 = 20_000;

/// IPv4 and IPv6 wildcards; IPv6 is skipped with a warning where the host has none.
pub const LISTEN_IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
];

/// `DUSK_MAX_CONNECTIONS` of the original relay: established connections, all peers.
pub const MAX_CONNECTIONS: u32 = 10_000;

/// A dusk client holds one connection per transport it uses; 8 leaves room for
/// reconnects overlapping the old connection without letting one peer hog slots.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 8;

/// Handshakes in flight. Bounds the memory a flood of half-open connections can take.
pub const MAX_PENDING_INCOMING: u32 = 1_024;

/// Handshakes in flight from one IP address. A client opens one connection per transport
/// it tries (four at most) and a few NAT-shared users may reconnect at once after a relay
/// restart; 16 leaves room for both while 64 source addresses are needed, not 16, to hold
/// every one of the [`MAX_PENDING_INCOMING`] slots.
pub const MAX_PENDING_PER_IP: usize = 16;

/// Handshakes in flight from one IPv6 /64 (one subscriber).
pub const MAX_PENDING_PER_IPV6_64: usize = 64;

/// Handshakes in flight from one IPv6 /48 (one site; go-libp2p also limits /48).
pub const MAX_PENDING_PER_IPV6_48: usize = 128;

/// Connections from one IP address, pending or established. A dusk client holds one or
/// two; carrier-grade and office NATs put many users behind one address, so far above
/// that, yet one host cannot take more than a sliver of `MAX_CONNECTIONS`.
pub const MAX_CONNECTIONS_PER_IP: usize = 64;

/// Connections from one IPv6 /64, a single subscriber's allocation: a host rotating
/// through its own addresses meets this instead of the per-IP cap.
pub const MAX_CONNECTIONS_PER_IPV6_64: usize = 256;

/// Connections from one IPv6 /48, the usual allocation of a whole site: a host that owns
/// a /48 could otherwise rotate through 65,536 /64s. Four /64s at their cap.
pub const MAX_CONNECTIONS_PER_IPV6_48: usize = 1_024;

/// New connections are refused while the relay's resident memory is above this (MiB).
/// A relay at its caps uses far less (BENCHMARKS.md); a leak or a flood past every other
/// ceiling stops here instead of at the OOM killer. 0 turns it off.
pub const MAX_MEMORY_MIB: u64 = 1_024;

/// Streams still negotiating their protocol, per connection (libp2p: 128). Opening a
/// community sends a HOP request per member, but each negotiates in one round trip.
pub const MAX_NEGOTIATING_STREAMS: usize = 32;

/// Close connections that carry no reservation, circuit or open stream after this.
/// The dusk client pings every 30 s and keeps its own 300 s idle timeout; a rendezvous-only
/// connection has nothing to do once its request is answered.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Whole transport upgrade (TCP/WS/TLS + noise + yamux) must finish within this.
pub const CONNECTION_UPGRADE_TIMEOUT: Duration = Duration::from_secs(20);

/// Reservation slots for the whole relay (libp2p: 128). One per dusk user, with headroom
/// for thousands of users on one relay.
pub const MAX_RESERVATIONS: usize = 10_000;

/// Reservations per peer (libp2p's 4): one per connection the peer reserves on, renewals
/// replace rather than add.
pub const MAX_RESERVATIONS_PER_PEER: usize = 4;

/// How long a reservation lasts before the client must renew it (libp2p's default; the
/// rust and js clients renew on their own before it ends).
pub const RESERVATION_DURATION: Duration = Duration::from_secs(60 * 60);

/// Circuits for the whole relay (libp2p: 16, which would stop dusk at 16 chats).
pub const MAX_CIRCUITS: usize = 10_000;

/// Circuits per peer, counted as source or destination (libp2p: 4). A dusk user talks to
/// every peer of their communities over its own circuit, so this is the number of peers
/// one user can chat with at once.
pub const MAX_CIRCUITS_PER_PEER: usize = 256;

/// A circuit lives at most this long (libp2p: 2 min). The relayed connection is the chat
/// path, so 24 h; clients re-dial after that. 0 in config means "no time limit".
pub const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Bytes per circuit, both directions together (libp2p: 128 KiB). 0 = no limit: chat,
/// files and history sync all go through the circuit. Abuse is bounded by connection caps.
pub const MAX_CIRCUIT_BYTES: u64 = 0;

/// Peers holding a reservation from one IP (go-libp2p: 8). Above go-libp2p's because
/// dusk users behind one NAT each hold one; far below what a flood of fresh identities
/// would take.
pub const MAX_RESERVATIONS_PER_IP: usize = 32;

/// Peers holding a reservation from one IPv6 /64 (go-libp2p: 32 per /64 or /48).
pub const MAX_RESERVATIONS_PER_IPV6_64: usize = 128;

/// Peers holding a reservation from one IPv6 /48 (go-libp2p caps /48 as well as /64).
pub const MAX_RESERVATIONS_PER_IPV6_48: usize = 256;

/// Open circuit ends at one IP (a circuit counts at its source's IP and its
/// destination's). Four users behind one NAT at the per-peer cap.
pub const MAX_CIRCUITS_PER_IP: usize = 1_024;

/// Open circuit ends at one IPv6 /64.
pub const MAX_CIRCUITS_PER_IPV6_64: usize = 4_096;

/// Open circuit ends at one IPv6 /48.
pub const MAX_CIRCUITS_PER_IPV6_48: usize = 8_192;

/// Bytes per second one direction of one circuit may carry (16 MiB/s, 134 Mbit/s):
/// more than a home uplink, so chat, files and history sync never notice it, while one
/// circuit cannot take a whole relay's link. 0 = no limit.
pub const CIRCUIT_BYTES_PER_SEC: u32 = 16 * 1024 * 1024;

/// Bytes per second one peer may send into all its circuits together (32 MiB/s).
pub const PEER_BYTES_PER_SEC: u32 = 32 * 1024 * 1024;

/// Bytes per second through all circuits together: no limit by default (the operator
/// knows the link; the per-peer cap already stops one peer from taking it all).
pub const TOTAL_BYTES_PER_SEC: u32 = 0;

/// Reservation requests per peer per minute (libp2p: 30 per 2 min). A client that restarts
/// or re-dials in a loop must not lock itself out.
pub const RESERVATION_RATE_PER_PEER: u32 = 60;

/// Reservation requests per source IP per minute (libp2p: 60). Many users share one IP
/// behind a carrier-grade or office NAT.
pub const RESERVATION_RATE_PER_IP: u32 = 600;

/// Circuit requests a peer may start per minute (libp2p: 30 per 2 min). Opening a
/// community dials every member at once.
pub const CIRCUIT_RATE_PER_PEER: u32 = 300;

/// Circuit requests per source IP per minute (libp2p: 60), NAT-shared like reservations.
pub const CIRCUIT_RATE_PER_IP: u32 = 1_200;

/// Shortest registration TTL a client may ask for (libp2p: 2 h). The dusk client
/// re-registers every 120 s, so short TTLs are legitimate and keep stale entries few.
pub const RENDEZVOUS_MIN_TTL_SECS: u64 = 60;

/// Longest registration TTL (libp2p's 72 h).
pub const RENDEZVOUS_MAX_TTL_SECS: u64 = 72 * 60 * 60;

/// Registrations per peer (libp2p: 32). A dusk user registers `dusk/peers`,
/// `dusk/peer/<id>` and one namespace per community.
pub const RENDEZVOUS_MAX_REGISTRATIONS_PER_PEER: usize = 128;

/// Registrations for the whole relay (libp2p: 10,000): a few per user for thousands of
/// users. Each holds a signed record of well under 1 KiB.
pub const RENDEZVOUS_MAX_REGISTRATIONS: usize = 50_000;

/// Registrations made from one IP address on this relay. A dusk user holds about ten
/// (`dusk/peers`, `dusk/peer/<id>`, one per community); 32 users behind one NAT fit,
/// and 98 addresses are needed to fill [`RENDEZVOUS_MAX_REGISTRATIONS`], not 391
/// throwaway identities from one.
pub const RENDEZVOUS_MAX_REGISTRATIONS_PER_IP: usize = 512;

/// Registrations made from one IPv6 /64.
pub const RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_64: usize = 2_048;

/// Registrations made from one IPv6 /48.
pub const RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_48: usize = 4_096;

/// REGISTER requests per peer per minute. The dusk client re-registers every namespace
/// every 120 s: 120 a minute is ten times what a member of 20 communities needs.
pub const RENDEZVOUS_REGISTER_RATE_PER_PEER: u32 = 120;

/// REGISTER requests per source IP per minute (NAT-shared, as reservations).
pub const RENDEZVOUS_REGISTER_RATE_PER_IP: u32 = 1_200;

/// Largest signed peer record a registration may carry. A dusk record (key, peer id,
/// sequence number, a few circuit addresses of ~100 bytes, signature) is 300-700 bytes;
/// without this bound only the 1 MiB message limit applied, so 50,000 registrations
/// could hold 50 GiB.
pub const RENDEZVOUS_MAX_RECORD_BYTES: usize = 4_096;

/// Most addresses one signed peer record may hold: a dusk peer publishes one circuit
/// address per relay transport it reserved on.
pub const RENDEZVOUS_MAX_RECORD_ADDRS: usize = 16;

/// Record bytes one peer's registrations may hold together: its whole per-peer quota of
/// registrations at twice a dusk record's size.
pub const RENDEZVOUS_MAX_BYTES_PER_PEER: usize = 256 * 1024;

/// Record bytes the whole store may hold: 50,000 registrations at ~1.3 KiB, far below
/// the memory ceiling.
pub const RENDEZVOUS_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The longest registration TTL an operator may configure (one year). A TTL is added to
/// the current time; bounding it keeps that sum far from overflow in every store.
pub const RENDEZVOUS_TTL_CEILING_SECS: u64 = 365 * 24 * 60 * 60;

/// The metrics/health HTTP endpoint listens on `DUSK_RELAY_PORT + METRICS_PORT_OFFSET`
/// (4001 -> 9001) on loopback, so two relays on one host do not collide.
pub const METRICS_PORT_OFFSET: u16 = 5_000;

/// Loopback only by default: metrics reveal load, not for the internet.
pub const METRICS_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The event loop ticks this often even when idle, so `/healthz` can tell a stalled
/// loop from a quiet one.
pub const EVENT_LOOP_TICK: Duration = Duration::from_secs(1);

/// On SIGTERM/SIGINT the relay drains: no new reservations, open circuits keep flowing
/// until they end or this passes. Below Compose's 30 s `stop_grace_period` and
/// systemd's `TimeoutStopSec=45s`, so the relay exits before it is killed.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// identify protocol version announced by the relay.
pub const IDENTIFY_PROTOCOL: &str = "/dusk/relay/1.0.0";

/// File name of the keypair inside the data directory, and the fallback in the working
/// directory when there is none (both the original relay's paths).
pub const KEYPAIR_DIR: &str = "dusk-relay";
pub const KEYPAIR_FILE: &str = "keypair";
pub const KEYPAIR_FALLBACK: &str = "relay_keypair";

/// Self-signed WSS certificate and key, written beside the keypair when no
/// certificate is configured.
pub const DEV_CERT_FILE: &str = "wss-cert.pem";
pub const DEV_KEY_FILE: &str = "wss-key.pem";

/// Let's Encrypt: the CA browsers trust that needs no account set-up. Its staging
/// directory (`letsencrypt-staging`) has far higher rate limits and untrusted roots:
/// try a new deployment there first.
pub const ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const ACME_DIRECTORY_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The agent version the relay announces over identify.
pub fn agent_version() -> String {
    format!("dusk-relay/{}", env!("CARGO_PKG_VERSION"))
}

/// A certificate renewal writes the chain and the key one after the other; the file
/// watch reloads once the files have been quiet this long, so it does not report the
/// half-written state as an error.
pub const CERT_RELOAD_SETTLE: Duration = Duration::from_millis(500);

/// Streams per yamux connection. Circuits are one stream each on the relay's side, so
/// this also bounds one client connection's circuits (256 per peer by default, far
/// below). Chosen for the js-yamux frame-size clash (see `transport.rs`): 1 GiB / 4096 =
/// 256 KiB per stream window.
pub const YAMUX_MAX_STREAMS: usize = 4096;

/// Largest WebSocket frame (and message) accepted, WS and WSS alike. libp2p-websocket's
/// default is 256 MiB, and soketto allocates and zero-fills the length a frame header
/// declares before its payload arrives: three stalled sockets took 800 MB. What libp2p
/// sends is far smaller: js-libp2p writes one noise frame per message (at most 65,535
/// bytes + 2 of length), rust-libp2p's noise output flushes its write buffer (128 KiB
/// high-water mark, plus the noise frame that crossed it: under 192 KiB) as one message.
/// 256 KiB covers both with margin; 60 stalled sockets then cost at most 15 MiB.
pub const WEBSOCKET_MAX_FRAME_BYTES: usize = 256 * 1024;
