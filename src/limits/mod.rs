//! Every ceiling that keeps one source from exhausting the relay, and where to find it.
//!
//! | ceiling | enforced in | setting (`deploy/dusk-relay.toml`) | metric (label) | `info` line (folded per 10 s) |
//! |---|---|---|---|---|
//! | connections, all / per peer / in handshake | [`connection_caps`] (libp2p `connection_limits`' ceilings, without its per-peer leak) | `connections.max`, `.max_per_peer`, `.max_pending_incoming` | `dusk_relay_connections_refused_total{reason=max_connections\|max_per_peer\|max_pending}` | `connection refused: … (DUSK_MAX_CONNECTIONS=…, …)` |
//! | memory | libp2p `memory_connection_limits` ([`crate::behaviour`]) | `connections.max_memory_mib` | `…connections_refused_total{reason=memory}`; usage `dusk_relay_memory_resident_bytes` against `dusk_relay_memory_limit_bytes` | `connection refused: … (DUSK_RELAY_MAX_MEMORY_MIB)` |
//! | connections per IP, IPv6 /64, /48 | [`connections`] over [`ip_tally`] | `connections.max_per_ip`, `.max_per_ipv6_64`, `.max_per_ipv6_48` | `…connections_refused_total{reason=per_ip\|per_ipv6_64\|per_ipv6_48}` | `connection refused: too many connections from one IP address (…)` |
//! | handshakes in flight per IP, /64, /48 | [`connections`] | `connections.max_pending_per_ip`, `…_ipv6_64`, `…_ipv6_48` | `…{reason=pending_per_ip\|pending_per_ipv6_64\|pending_per_ipv6_48}` | `connection refused: too many handshakes in flight …` |
//! | open files | [`file_descriptors`] (budget), [`connections`] (refusal) | none: 80 % of `RLIMIT_NOFILE` − 64 | `…{reason=file_descriptors}`; usage `dusk_relay_file_descriptors_open` against `dusk_relay_file_descriptors_limit` | `connection refused: the relay is near its open-file limit …` |
//! | streams being negotiated, handshake and idle time | swarm config ([`crate::server`]) | `connections.max_negotiating_streams`, `.handshake_timeout_secs`, `.idle_timeout_secs` | none | none |
//! | WebSocket frame, yamux streams | [`crate::net::transport`], [`crate::net::wss`] | none: [`crate::config::defaults`] | none | none |
//! | reservations, all / per peer; circuits, all / per peer; rates per peer and IP | libp2p relay config ([`crate::behaviour`]) | `relay.max_reservations`, `.max_reservations_per_peer`, `.max_circuits`, `.max_circuits_per_peer`, `relay.*_rate_per_*` | `dusk_relay_reservation_denials_total{status}`, `dusk_relay_circuit_denials_total{status}` | `relay reservation denied for peer …`, `circuit denied: …` |
//! | reservations and circuits per IP, /64, /48 | [`relay_per_ip`] over [`ip_tally`] | `relay.max_reservations_per_ip`, `…_ipv6_64`, `…_ipv6_48`, `relay.max_circuits_per_ip`, … | `dusk_relay_source_cap_denials_total{what,cap}` (and the denial counters above) | as above |
//! | circuit lifetime and bytes | libp2p relay config | `relay.max_circuit_duration_secs`, `.max_circuit_bytes` | `dusk_relay_circuits_closed_total` | `circuit closed: …` |
//! | bandwidth per circuit direction, per peer, in total | [`bandwidth`], applied in [`crate::circuit::splice`] | `bandwidth.circuit_bytes_per_sec`, `.peer_bytes_per_sec`, `.total_bytes_per_sec`, `.exempt` | `dusk_relay_throttled_seconds_total{scope}` | none (it waits, never refuses) |
//! | who may reserve or open circuits | [`crate::access`] | `access.allow`, `access.deny` | `dusk_relay_access_denials_total{what}` | `access denied for peer …` |
//! | registrations per peer, in total, bytes per peer and in total | the store ([`crate::rendezvous::store`]) | `rendezvous.max_registrations_per_peer`, `.max_registrations`, `.max_bytes_per_peer`, `.max_bytes` | `dusk_relay_rendezvous_register_requests_total{status}` | `rendezvous registration refused for peer …` |
//! | registrations per IP, /64, /48; REGISTER rates per peer and IP | [`crate::rendezvous::sources`] | `rendezvous.max_registrations_per_ip`, …, `.register_rate_per_peer`, `.register_rate_per_ip` | as above | as above |
//! | record size and addresses, TTL | [`crate::rendezvous::server`] | `rendezvous.max_record_bytes`, `.max_record_addrs`, `.min_ttl_secs`, `.max_ttl_secs` | as above | as above |
//!
//! "IP" in every row is the address in the connection's `ConnectedPoint`: the TCP (or
//! QUIC) peer's, or, for a TCP/WS/WSS connection from a load balancer listed in
//! `proxy_protocol.from`, the client its PROXY header names ([`crate::net::proxy_protocol`]).
//!
//! Each limit releases what it counted itself: connections and handshakes on the
//! swarm's close events ([`connections`]), circuit legs when their stream drops
//! ([`relay_per_ip::CircuitLeg`]), registrations with the store's expiry.

pub(crate) mod bandwidth;
pub mod connection_caps;
pub mod connections;
pub(crate) mod file_descriptors;
pub(crate) mod ip_tally;
pub mod relay_per_ip;
