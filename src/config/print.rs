//! The effective configuration printed back: `--print-config` (a file the relay accepts
//! as it is) and the defaults `--help` shows. Every setting has an arm in
//! `Config::value_of`, so a setting that cannot be printed does not compile.

use super::*;

impl Config {
    /// The effective configuration as a config file: every key, in [`settings::SETTINGS`]
    /// order, so `--print-config > relay.toml` is a file the relay accepts as it is.
    /// Certificate and identity *paths* are printed; no key material is.
    pub fn to_toml(&self) -> String {
        let mut root = toml::Table::new();
        for setting in settings::SETTINGS {
            let Some(value) = self.value_of(setting.id) else {
                continue;
            };
            let mut table = &mut root;
            let mut parts: Vec<&str> = setting.key.split('.').collect();
            let leaf = parts.pop().unwrap_or(setting.key);
            for part in parts {
                table = match table
                    .entry(part)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                {
                    toml::Value::Table(inner) => inner,
                    _ => unreachable!("setting keys never use a leaf as a section"),
                };
            }
            table.insert(leaf.to_owned(), value);
        }
        root.to_string()
    }

    /// One setting's effective value as the environment would spell it (`--help` shows
    /// the defaults this way); `None` when unset.
    pub fn value_text(&self, id: Id) -> Option<String> {
        Some(match self.value_of(id)? {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        })
    }

    /// One setting's effective value; `None` for an unset optional path.
    fn value_of(&self, id: Id) -> Option<toml::Value> {
        use toml::Value;
        let int = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let list =
            |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
        let port = |p: Option<u16>| match p {
            Some(p) => Value::Integer(p.into()),
            None => Value::String("off".into()),
        };
        let r = &self.relay;
        let c = &self.connection_limits;
        let z = &self.rendezvous;
        Some(match id {
            Id::Port => int(self.port.into()),
            Id::WsPort => port(self.ws_port),
            Id::WssPort => port(self.wss_port),
            Id::ListenIps => list(self.listen_ips.iter().map(ToString::to_string).collect()),
            Id::ExternalAddr if self.external_addrs.is_empty() => return None,
            Id::ExternalAddr => list(
                self.external_addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            Id::Keypair => Value::String(self.keypair_path.display().to_string()),
            Id::LogFormat => Value::String(self.log_format.as_str().into()),
            Id::MetricsAddr => match self.metrics_addr {
                Some(addr) => Value::String(addr.to_string()),
                None => Value::String("off".into()),
            },
            Id::DrainSecs => int(self.drain_timeout.as_secs()),
            Id::TlsCert => Value::String(self.tls.cert_and_key.as_ref()?.0.display().to_string()),
            Id::TlsKey => Value::String(self.tls.cert_and_key.as_ref()?.1.display().to_string()),
            Id::TlsHostnames if self.tls.hostnames.is_empty() => return None,
            Id::TlsHostnames => list(self.tls.hostnames.clone()),
            Id::MaxConnections => int(c.max_established.into()),
            Id::MaxConnectionsPerPeer => int(c.max_established_per_peer.into()),
            Id::MaxPendingIncoming => int(c.max_pending_incoming.into()),
            Id::MaxConnectionsPerIp => int(c.max_per_ip as u64),
            Id::MaxConnectionsPerIpv6Prefix64 => int(c.max_per_ipv6_64 as u64),
            Id::MaxConnectionsPerIpv6Prefix48 => int(c.max_per_ipv6_48 as u64),
            Id::MaxPendingPerIp => int(c.max_pending_per_ip as u64),
            Id::MaxPendingPerIpv6Prefix64 => int(c.max_pending_per_ipv6_64 as u64),
            Id::MaxPendingPerIpv6Prefix48 => int(c.max_pending_per_ipv6_48 as u64),
            Id::MaxMemoryMib => int(c.max_memory_bytes.map_or(0, |b| b as u64 / (1024 * 1024))),
            Id::HandshakeTimeoutSecs => int(self.handshake_timeout.as_secs()),
            Id::MaxNegotiatingStreams => int(c.max_negotiating_streams as u64),
            Id::IdleTimeoutSecs => int(self.idle_connection_timeout.as_secs()),
            Id::MaxReservations => int(r.max_reservations as u64),
            Id::MaxReservationsPerPeer => int(r.max_reservations_per_peer as u64),
            Id::MaxReservationsPerIp => int(r.max_reservations_per_ip as u64),
            Id::MaxReservationsPerIpv6Prefix64 => int(r.max_reservations_per_ipv6_64 as u64),
            Id::MaxReservationsPerIpv6Prefix48 => int(r.max_reservations_per_ipv6_48 as u64),
            Id::ReservationDurationSecs => int(r.reservation_duration.as_secs()),
            Id::MaxCircuits => int(r.max_circuits as u64),
            Id::MaxCircuitsPerPeer => int(r.max_circuits_per_peer as u64),
            Id::MaxCircuitsPerIp => int(r.max_circuits_per_ip as u64),
            Id::MaxCircuitsPerIpv6Prefix64 => int(r.max_circuits_per_ipv6_64 as u64),
            Id::MaxCircuitsPerIpv6Prefix48 => int(r.max_circuits_per_ipv6_48 as u64),
            Id::MaxCircuitDurationSecs => int(r.max_circuit_duration.map_or(0, |d| d.as_secs())),
            Id::MaxCircuitBytes => int(r.max_circuit_bytes),
            Id::ReservationRatePerPeer => int(r.reservation_rate_per_peer.into()),
            Id::ReservationRatePerIp => int(r.reservation_rate_per_ip.into()),
            Id::CircuitRatePerPeer => int(r.circuit_rate_per_peer.into()),
            Id::CircuitRatePerIp => int(r.circuit_rate_per_ip.into()),
            Id::CircuitBytesPerSec => int(self.bandwidth.circuit_bytes_per_sec.into()),
            Id::PeerBytesPerSec => int(self.bandwidth.peer_bytes_per_sec.into()),
            Id::TotalBytesPerSec => int(self.bandwidth.total_bytes_per_sec.into()),
            Id::BandwidthExempt => list(
                self.bandwidth
                    .exempt
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            Id::Allow => list(self.access.allow.iter().map(ToString::to_string).collect()),
            Id::Deny => list(self.access.deny.iter().map(ToString::to_string).collect()),
            Id::RendezvousMinTtlSecs => int(z.min_ttl_secs),
            Id::RendezvousMaxTtlSecs => int(z.max_ttl_secs),
            Id::RendezvousMaxRegistrationsPerPeer => int(z.max_registrations_per_peer as u64),
            Id::RendezvousMaxRegistrations => int(z.max_registrations as u64),
            Id::RendezvousMaxRegistrationsPerIp => int(z.max_registrations_per_ip as u64),
            Id::RendezvousMaxRegistrationsPerIpv6Prefix64 => {
                int(z.max_registrations_per_ipv6_64 as u64)
            }
            Id::RendezvousMaxRegistrationsPerIpv6Prefix48 => {
                int(z.max_registrations_per_ipv6_48 as u64)
            }
            Id::RendezvousRegisterRatePerPeer => int(z.register_rate_per_peer.into()),
            Id::RendezvousRegisterRatePerIp => int(z.register_rate_per_ip.into()),
            Id::RendezvousMaxRecordBytes => int(z.max_record_bytes as u64),
            Id::RendezvousMaxRecordAddrs => int(z.max_record_addrs as u64),
            Id::RendezvousMaxBytesPerPeer => int(z.max_bytes_per_peer as u64),
            Id::RendezvousMaxBytes => int(z.max_bytes as u64),
            Id::RendezvousAllowDiscoverAll => Value::Boolean(z.allow_discover_all),
            Id::RendezvousAllowDirectAddrs => Value::Boolean(z.allow_direct_addresses),
            // A Redis URL may carry a password: printed redacted.
            Id::RendezvousStore => Value::String(match &z.store {
                RendezvousStore::Memory => "memory".into(),
                RendezvousStore::Redis(url) => crate::rendezvous::redis::redact(url),
            }),
        })
    }
}
