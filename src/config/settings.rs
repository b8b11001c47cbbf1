//! Every setting, declared once: its file key, environment variable, flag, help line
//! and how it is read and printed. [`super::layers`] merges the layers by these names;
//! [`crate::config`] parses and validates them once.
//!
//! One table, [`SETTINGS`], is the source of truth: the flag is the environment variable
//! without its `DUSK_RELAY_`/`DUSK_` prefix, in kebab case (`DUSK_RELAY_MAX_CIRCUITS` is
//! `--max-circuits`), and the file key is the dotted TOML path (`relay.max_circuits`).

/// One configuration value, as the operator can name it in each layer.
#[derive(Debug)]
pub struct Setting {
    pub id: Id,
    /// Dotted TOML key: `port`, `relay.max_circuits`.
    pub key: &'static str,
    /// Environment variable, kept from the original relay where it had one.
    pub env: &'static str,
    /// One line for `--help` and the README.
    pub help: &'static str,
}

impl Setting {
    /// `--max-circuits` for `DUSK_RELAY_MAX_CIRCUITS`.
    pub fn flag(&self) -> String {
        let bare = self
            .env
            .strip_prefix("DUSK_RELAY_")
            .or_else(|| self.env.strip_prefix("DUSK_"))
            .unwrap_or(self.env);
        bare.to_ascii_lowercase().replace('_', "-")
    }
}

/// Declares every setting once: [`Id`] (how code names a setting, so a mistyped name
/// does not compile and a `match` over it must handle every setting) and [`SETTINGS`]
/// (its file key, environment variable and help line), in the same order.
///
/// A row that ends in `=> field.path: reader` is read into that [`Config`] field by the
/// named reader of `parse::Vars` (`parse`, `positive`, `secs`, `positive_secs`, `items`)
/// over the field's default, and printed from it: such a setting needs nothing but its
/// row and its default. A row that ends in `=> (by hand: why)` needs more than one field
/// or depends on another setting; `parse.rs` and `print.rs` handle it by name.
///
/// [`Config`]: super::Config
macro_rules! settings {
    ($(
        $id:ident = $key:literal, $env:literal, $help:literal
        => $($($field:ident).+ : $reader:ident)? $(($($by_hand:tt)*))?;
    )*) => {
        /// A setting, as code names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Id {
            $($id,)*
        }

        /// Every setting, in the order `--help`, `--print-config` and the example config use.
        pub const SETTINGS: &[Setting] = &[
            $(Setting { id: Id::$id, key: $key, env: $env, help: $help },)*
        ];

        impl super::Config {
            /// Reads every setting that is one field (its row names the field) over
            /// the value already there, the default.
            pub(super) fn read_fields(
                &mut self,
                vars: &super::parse::Vars,
            ) -> Result<(), super::ConfigError> {
                $($(self.$($field).+ = vars.$reader(Id::$id, &self.$($field).+)?;)?)*
                Ok(())
            }

            /// The value of a setting that is one field; `None` for the others.
            pub(super) fn field_value(&self, id: Id) -> Option<toml::Value> {
                match id {
                    $($(Id::$id => Some(super::print::ToToml::to_toml(&self.$($field).+)),)?)*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

impl Id {
    pub fn setting(self) -> &'static Setting {
        // `settings!` lists the enum and the table in the same order.
        &SETTINGS[self as usize]
    }

    /// The environment variable, which also names the setting in the layers.
    pub fn env(self) -> &'static str {
        self.setting().env
    }
}

settings! {
    Port = "port", "DUSK_RELAY_PORT",
        "TCP port, and UDP port of QUIC v1"
            => port: parse;
    WsPort = "ws_port", "DUSK_RELAY_WS_PORT",
        "WebSocket port; unset: port + 10000; 0 or off disables"
            => (by hand: unset follows port);
    WssPort = "wss_port", "DUSK_RELAY_WSS_PORT",
        "secure WebSocket port; unset: port + 20000; 0 or off disables"
            => (by hand: unset follows port);
    ListenIps = "listen_ips", "DUSK_RELAY_LISTEN_IPS",
        "IPs every listener binds to (comma-separated in env and flags)"
            => listen_ips: items;
    ExternalAddr = "external_addrs", "DUSK_RELAY_EXTERNAL_ADDR",
        "public multiaddrs put in reservations, e.g. /dns4/relay.example.com/tcp/4001"
            => external_addrs: items;
    Keypair = "keypair", "DUSK_RELAY_KEYPAIR",
        "the relay's ed25519 identity file"
            => keypair_path: parse;
    DataDir = "data_dir", "DUSK_RELAY_DATA_DIR",
        "directory for the files the relay makes itself (the self-signed WSS certificate); unset: the keypair's directory"
            => (by hand: unset follows keypair);
    LogFormat = "log_format", "DUSK_RELAY_LOG_FORMAT",
        "text (the human lines) or json (one object per line)"
            => log_format: parse;
    MetricsAddr = "metrics_addr", "DUSK_RELAY_METRICS_ADDR",
        "IP:port of /metrics, /healthz, /readyz; unset: 127.0.0.1:(port + 5000); off disables"
            => (by hand: unset follows port);
    DrainSecs = "drain_secs", "DUSK_RELAY_DRAIN_SECS",
        "how long circuits may keep flowing after the first SIGTERM/SIGINT; 0 stops at once"
            => drain_timeout: secs;
    TlsCert = "tls.cert", "DUSK_RELAY_TLS_CERT",
        "WSS certificate chain (PEM); reloaded on SIGHUP and when the file changes"
            => (by hand: set with tls.key);
    TlsKey = "tls.key", "DUSK_RELAY_TLS_KEY",
        "WSS private key (PEM); set with tls.cert, or neither for a self-signed certificate"
            => (by hand: set with tls.cert);
    TlsHostnames = "tls.hostnames", "DUSK_RELAY_TLS_HOSTNAMES",
        "extra names for the self-signed certificate"
            => tls.hostnames: items;
    AcmeDomains = "acme.domains", "DUSK_RELAY_ACME_DOMAINS",
        "names (or IPs) to get a WSS certificate for by ACME, comma-separated; set: ACME on"
            => (by hand: turns ACME on; excludes tls.cert/tls.key);
    AcmeDirectory = "acme.directory", "DUSK_RELAY_ACME_DIRECTORY",
        "ACME directory URL, or letsencrypt / letsencrypt-staging"
            => (by hand: ACME only; names expand to URLs);
    AcmeEmail = "acme.email", "DUSK_RELAY_ACME_EMAIL",
        "contact address of the ACME account (expiry notices); optional"
            => (by hand: ACME only);
    AcmeCa = "acme.ca", "DUSK_RELAY_ACME_CA",
        "extra CA (PEM) trusted for the ACME directory's HTTPS (private or test CAs)"
            => (by hand: ACME only);
    AcmeHttpPort = "acme.http_port", "DUSK_RELAY_ACME_HTTP_PORT",
        "port of an HTTP-01 responder (80 behind NAT); unset or off: TLS-ALPN-01 on the WSS port"
            => (by hand: ACME only, off disables);
    MaxConnections = "connections.max", "DUSK_MAX_CONNECTIONS",
        "established connections, all peers together"
            => connection_limits.max_established: positive;
    MaxConnectionsPerPeer = "connections.max_per_peer", "DUSK_RELAY_MAX_CONNECTIONS_PER_PEER",
        "established connections of one peer"
            => connection_limits.max_established_per_peer: positive;
    MaxPendingIncoming = "connections.max_pending_incoming", "DUSK_RELAY_MAX_PENDING_INCOMING",
        "incoming connections still in their handshake"
            => connection_limits.max_pending_incoming: positive;
    MaxPendingPerIp = "connections.max_pending_per_ip", "DUSK_RELAY_MAX_PENDING_PER_IP",
        "incoming connections still in their handshake from one IP address; 0 = no limit"
            => connection_limits.max_pending_per_ip: parse;
    MaxPendingPerIpv6Prefix64 = "connections.max_pending_per_ipv6_64", "DUSK_RELAY_MAX_PENDING_PER_IPV6_64",
        "handshakes in flight from one IPv6 /64; 0 = no limit"
            => connection_limits.max_pending_per_ipv6_64: parse;
    MaxPendingPerIpv6Prefix48 = "connections.max_pending_per_ipv6_48", "DUSK_RELAY_MAX_PENDING_PER_IPV6_48",
        "handshakes in flight from one IPv6 /48; 0 = no limit"
            => connection_limits.max_pending_per_ipv6_48: parse;
    MaxConnectionsPerIp = "connections.max_per_ip", "DUSK_RELAY_MAX_CONNECTIONS_PER_IP",
        "connections (pending or established) from one IP address; 0 = no limit"
            => connection_limits.max_per_ip: parse;
    MaxConnectionsPerIpv6Prefix64 = "connections.max_per_ipv6_64", "DUSK_RELAY_MAX_CONNECTIONS_PER_IPV6_64",
        "connections from one IPv6 /64; 0 = no limit"
            => connection_limits.max_per_ipv6_64: parse;
    MaxConnectionsPerIpv6Prefix48 = "connections.max_per_ipv6_48", "DUSK_RELAY_MAX_CONNECTIONS_PER_IPV6_48",
        "connections from one IPv6 /48; 0 = no limit"
            => connection_limits.max_per_ipv6_48: parse;
    MaxMemoryMib = "connections.max_memory_mib", "DUSK_RELAY_MAX_MEMORY_MIB",
        "refuse new connections while resident memory is above this (MiB); 0 = off"
            => (by hand: MiB into bytes, 0 = off);
    HandshakeTimeoutSecs = "connections.handshake_timeout_secs", "DUSK_RELAY_HANDSHAKE_TIMEOUT_SECS",
        "a connection must finish TCP/WS/TLS, noise and yamux within this"
            => handshake_timeout: positive_secs;
    MaxNegotiatingStreams = "connections.max_negotiating_streams", "DUSK_RELAY_MAX_NEGOTIATING_STREAMS",
        "streams of one connection still negotiating their protocol"
            => connection_limits.max_negotiating_streams: positive;
    IdleTimeoutSecs = "connections.idle_timeout_secs", "DUSK_RELAY_IDLE_TIMEOUT_SECS",
        "close connections with no reservation, circuit or stream after this"
            => idle_connection_timeout: positive_secs;
    MaxReservations = "relay.max_reservations", "DUSK_RELAY_MAX_RESERVATIONS",
        "reservations, all peers together"
            => relay.max_reservations: positive;
    MaxReservationsPerPeer = "relay.max_reservations_per_peer", "DUSK_RELAY_MAX_RESERVATIONS_PER_PEER",
        "reservations of one peer"
            => relay.max_reservations_per_peer: positive;
    MaxReservationsPerIp = "relay.max_reservations_per_ip", "DUSK_RELAY_MAX_RESERVATIONS_PER_IP",
        "peers holding a reservation from one IP address; 0 = no limit"
            => relay.max_reservations_per_ip: parse;
    MaxReservationsPerIpv6Prefix64 = "relay.max_reservations_per_ipv6_64", "DUSK_RELAY_MAX_RESERVATIONS_PER_IPV6_64",
        "peers holding a reservation from one IPv6 /64; 0 = no limit"
            => relay.max_reservations_per_ipv6_64: parse;
    MaxReservationsPerIpv6Prefix48 = "relay.max_reservations_per_ipv6_48", "DUSK_RELAY_MAX_RESERVATIONS_PER_IPV6_48",
        "peers holding a reservation from one IPv6 /48; 0 = no limit"
            => relay.max_reservations_per_ipv6_48: parse;
    ReservationDurationSecs = "relay.reservation_duration_secs", "DUSK_RELAY_RESERVATION_DURATION_SECS",
        "how long a reservation lasts before the client renews it"
            => relay.reservation_duration: positive_secs;
    MaxCircuits = "relay.max_circuits", "DUSK_RELAY_MAX_CIRCUITS",
        "circuits, all peers together"
            => relay.max_circuits: positive;
    MaxCircuitsPerPeer = "relay.max_circuits_per_peer", "DUSK_RELAY_MAX_CIRCUITS_PER_PEER",
        "circuits from or to one peer"
            => relay.max_circuits_per_peer: positive;
    MaxCircuitsPerIp = "relay.max_circuits_per_ip", "DUSK_RELAY_MAX_CIRCUITS_PER_IP",
        "open circuit ends (source or destination) at one IP address; 0 = no limit"
            => relay.max_circuits_per_ip: parse;
    MaxCircuitsPerIpv6Prefix64 = "relay.max_circuits_per_ipv6_64", "DUSK_RELAY_MAX_CIRCUITS_PER_IPV6_64",
        "open circuit ends at one IPv6 /64; 0 = no limit"
            => relay.max_circuits_per_ipv6_64: parse;
    MaxCircuitsPerIpv6Prefix48 = "relay.max_circuits_per_ipv6_48", "DUSK_RELAY_MAX_CIRCUITS_PER_IPV6_48",
        "open circuit ends at one IPv6 /48; 0 = no limit"
            => relay.max_circuits_per_ipv6_48: parse;
    MaxCircuitDurationSecs = "relay.max_circuit_duration_secs", "DUSK_RELAY_MAX_CIRCUIT_DURATION_SECS",
        "lifetime of one circuit; 0 = no limit"
            => (by hand: 0 = no limit);
    MaxCircuitBytes = "relay.max_circuit_bytes", "DUSK_RELAY_MAX_CIRCUIT_BYTES",
        "bytes one circuit may carry; 0 = no limit"
            => relay.max_circuit_bytes: parse;
    ReservationRatePerPeer = "relay.reservation_rate_per_peer", "DUSK_RELAY_RESERVATION_RATE_PER_PEER",
        "reservation requests per minute per peer; 0 = no limit"
            => relay.reservation_rate_per_peer: parse;
    ReservationRatePerIp = "relay.reservation_rate_per_ip", "DUSK_RELAY_RESERVATION_RATE_PER_IP",
        "reservation requests per minute per IP; 0 = no limit"
            => relay.reservation_rate_per_ip: parse;
    CircuitRatePerPeer = "relay.circuit_rate_per_peer", "DUSK_RELAY_CIRCUIT_RATE_PER_PEER",
        "circuit requests per minute per peer; 0 = no limit"
            => relay.circuit_rate_per_peer: parse;
    CircuitRatePerIp = "relay.circuit_rate_per_ip", "DUSK_RELAY_CIRCUIT_RATE_PER_IP",
        "circuit requests per minute per IP; 0 = no limit"
            => relay.circuit_rate_per_ip: parse;
    CircuitBytesPerSec = "bandwidth.circuit_bytes_per_sec", "DUSK_RELAY_CIRCUIT_BYTES_PER_SEC",
        "bytes/s of one direction of one circuit; slowed, not cut; 0 = no limit"
            => bandwidth.circuit_bytes_per_sec: parse;
    PeerBytesPerSec = "bandwidth.peer_bytes_per_sec", "DUSK_RELAY_PEER_BYTES_PER_SEC",
        "bytes/s one peer sends into all its circuits; 0 = no limit"
            => bandwidth.peer_bytes_per_sec: parse;
    TotalBytesPerSec = "bandwidth.total_bytes_per_sec", "DUSK_RELAY_TOTAL_BYTES_PER_SEC",
        "bytes/s through all circuits together; 0 = no limit"
            => bandwidth.total_bytes_per_sec: parse;
    BandwidthExempt = "bandwidth.exempt", "DUSK_RELAY_BANDWIDTH_EXEMPT",
        "peer ids never throttled (your own bridges or bots)"
            => bandwidth.exempt: items;
    Allow = "access.allow", "DUSK_RELAY_ALLOW",
        "if set, only these peer ids and IP ranges (CIDR) are served; reloaded on SIGHUP"
            => access.allow: items;
    Deny = "access.deny", "DUSK_RELAY_DENY",
        "peer ids and IP ranges (CIDR) refused with PERMISSION_DENIED; reloaded on SIGHUP"
            => access.deny: items;
    ProxyProtocolFrom = "proxy_protocol.from", "DUSK_RELAY_PROXY_PROTOCOL_FROM",
        "load balancers (IPs, CIDR ranges) whose TCP/WS/WSS connections start with a PROXY v1/v2 header naming the client; empty: off"
            => proxy_protocol_from: items;
    RendezvousMinTtlSecs = "rendezvous.min_ttl_secs", "DUSK_RELAY_RENDEZVOUS_MIN_TTL_SECS",
        "shortest registration TTL accepted"
            => rendezvous.min_ttl_secs: positive;
    RendezvousMaxTtlSecs = "rendezvous.max_ttl_secs", "DUSK_RELAY_RENDEZVOUS_MAX_TTL_SECS",
        "longest registration TTL accepted"
            => rendezvous.max_ttl_secs: positive;
    RendezvousMaxRegistrationsPerPeer = "rendezvous.max_registrations_per_peer", "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_PEER",
        "registrations of one peer"
            => rendezvous.max_registrations_per_peer: positive;
    RendezvousMaxRegistrations = "rendezvous.max_registrations", "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS",
        "registrations, all peers together"
            => rendezvous.max_registrations: positive;
    RendezvousMaxRegistrationsPerIp = "rendezvous.max_registrations_per_ip", "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IP",
        "registrations made from one IP address (on this relay); 0 = no limit"
            => rendezvous.max_registrations_per_ip: parse;
    RendezvousMaxRegistrationsPerIpv6Prefix64 = "rendezvous.max_registrations_per_ipv6_64", "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_64",
        "registrations made from one IPv6 /64; 0 = no limit"
            => rendezvous.max_registrations_per_ipv6_64: parse;
    RendezvousMaxRegistrationsPerIpv6Prefix48 = "rendezvous.max_registrations_per_ipv6_48", "DUSK_RELAY_RENDEZVOUS_MAX_REGISTRATIONS_PER_IPV6_48",
        "registrations made from one IPv6 /48; 0 = no limit"
            => rendezvous.max_registrations_per_ipv6_48: parse;
    RendezvousRegisterRatePerPeer = "rendezvous.register_rate_per_peer", "DUSK_RELAY_RENDEZVOUS_REGISTER_RATE_PER_PEER",
        "REGISTER requests per minute per peer; 0 = no limit"
            => rendezvous.register_rate_per_peer: parse;
    RendezvousRegisterRatePerIp = "rendezvous.register_rate_per_ip", "DUSK_RELAY_RENDEZVOUS_REGISTER_RATE_PER_IP",
        "REGISTER requests per minute per IP; 0 = no limit"
            => rendezvous.register_rate_per_ip: parse;
    RendezvousMaxRecordBytes = "rendezvous.max_record_bytes", "DUSK_RELAY_RENDEZVOUS_MAX_RECORD_BYTES",
        "largest signed peer record accepted (bytes)"
            => rendezvous.max_record_bytes: positive;
    RendezvousMaxRecordAddrs = "rendezvous.max_record_addrs", "DUSK_RELAY_RENDEZVOUS_MAX_RECORD_ADDRS",
        "most addresses one signed peer record may hold"
            => rendezvous.max_record_addrs: positive;
    RendezvousMaxBytesPerPeer = "rendezvous.max_bytes_per_peer", "DUSK_RELAY_RENDEZVOUS_MAX_BYTES_PER_PEER",
        "record bytes one peer's registrations may hold, all namespaces together"
            => rendezvous.max_bytes_per_peer: positive;
    RendezvousMaxBytes = "rendezvous.max_bytes", "DUSK_RELAY_RENDEZVOUS_MAX_BYTES",
        "record bytes the whole store may hold"
            => rendezvous.max_bytes: positive;
    RendezvousAllowDiscoverAll = "rendezvous.allow_discover_all", "DUSK_RELAY_RENDEZVOUS_ALLOW_DISCOVER_ALL",
        "true: answer DISCOVER without a namespace (lists every community's members)"
            => rendezvous.allow_discover_all: parse;
    RendezvousAllowDirectAddrs = "rendezvous.allow_direct_addrs", "DUSK_RELAY_RENDEZVOUS_ALLOW_DIRECT_ADDRS",
        "true: accept records with non-/p2p-circuit addresses, revealing registrants' IPs"
            => rendezvous.allow_direct_addresses: parse;
    RendezvousStore = "rendezvous.store", "DUSK_RELAY_RENDEZVOUS_STORE",
        "memory, or redis://[:password@]host:6379 shared by a fleet of relays"
            => rendezvous.store: parse;
    Fleet = "fleet.redis", "DUSK_RELAY_FLEET",
        "fleet mode: redis://host:6379/db of the fleet's Redis/Valkey (reservation directory, and rendezvous store unless set)"
            => (by hand: needs the mesh settings);
    MeshAddr = "fleet.mesh_addr", "DUSK_RELAY_MESH_ADDR",
        "IP:port of this node's mesh listener (fleet mode; keep it on a private network)"
            => (by hand: fleet mode only);
    MeshAnnounceAddr = "fleet.mesh_announce_addr", "DUSK_RELAY_MESH_ANNOUNCE_ADDR",
        "host:port the other nodes dial this node's mesh at; unset: the mesh address"
            => (by hand: fleet mode only);
    MeshKeyFile = "fleet.mesh_key_file", "DUSK_RELAY_MESH_KEY_FILE",
        "the fleet secret: a file of at least 32 random bytes (openssl rand -hex 32), the same on every node"
            => (by hand: fleet mode only);
}

/// Read by the binary to find the file layer; not itself a setting.
pub const CONFIG_ENV: &str = "DUSK_RELAY_CONFIG";

pub fn by_env(env: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.env == env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_names_its_own_row() {
        for (index, setting) in SETTINGS.iter().enumerate() {
            assert_eq!(setting.id as usize, index, "{}", setting.env);
            assert_eq!(setting.id.setting().env, setting.env);
        }
    }

    #[test]
    fn every_setting_has_distinct_names() {
        let mut seen = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.key), "{}", s.key);
            assert!(seen.insert(s.env), "{}", s.env);
            assert!(s.env.starts_with("DUSK_"), "{}", s.env);
        }
        assert_eq!(
            by_env(Id::MaxConnections.env()).map(Setting::flag),
            Some("max-connections".into())
        );
        assert_eq!(
            by_env(Id::MaxCircuits.env()).map(Setting::flag),
            Some("max-circuits".into())
        );
    }
}
