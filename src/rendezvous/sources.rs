//! Where registrations come from: per-IP, per-IPv6-/64 and per-/48 registration caps and
//! REGISTER rates per peer and per IP, so throwaway identities from one host cannot take
//! every registration slot (391 fresh identities filled the 50,000 before these caps).
//!
//! **Counted on this relay only**, like the reservation caps: registrations a peer made
//! through another relay of a fleet sharing the store are not seen here, so with N
//! relays one IP may hold up to N times the cap fleet-wide. The store's caps (per peer,
//! total, bytes) are the fleet-wide ones.
//!
//! A registration holds its slot from the REGISTER until it expires (swept lazily, in
//! expiry order), is unregistered, or is replaced by the same peer in the same
//! namespace (then it moves to the new request's IP). A connection without an IP
//! (relayed, in-memory) is counted nowhere: the relay gives relayed connections no
//! rendezvous service in practice (it would have to be relayed by another relay).
//!
//! Nothing here is logged or exported: IPs stay in this module's memory.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Instant;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::limits::ip_tally::{SourceCap, Tally};
use crate::multiaddr_ext::ip_of;

/// A registration's key: one per peer and namespace.
pub type Key = (String, PeerId);

/// Caps and rates, from the configuration; 0 turns one off.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceLimits {
    pub per_ip: usize,
    pub per_ipv6_64: usize,
    pub per_ipv6_48: usize,
    /// REGISTER requests per minute.
    pub rate_per_peer: u32,
    pub rate_per_ip: u32,
}

#[derive(Debug, Clone)]
struct Held {
    ip: IpAddr,
    expires: Instant,
    /// Tells this holding from a later one of the same key.
    generation: u64,
}

/// A slot taken for a REGISTER the store has not answered yet: kept if it is stored,
/// given back (and the registration it replaced restored) if not.
#[derive(Debug)]
pub struct Slot {
    key: Key,
    generation: Option<u64>,
    previous: Option<Held>,
}

pub struct Sources {
    limits: SourceLimits,
    connections: HashMap<ConnectionId, IpAddr>,
    tally: Tally,
    held: HashMap<Key, Held>,
    /// `held` in expiry order, for the lazy sweep; exactly one entry per holding.
    expiries: BTreeMap<(Instant, u64), Key>,
    next_generation: u64,
    per_peer: Option<DefaultKeyedRateLimiter<PeerId>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Sources {
    pub fn new(limits: SourceLimits) -> Self {
        let quota = |rate: u32| NonZeroU32::new(rate).map(Quota::per_minute);
        Sources {
            limits,
            connections: HashMap::new(),
            tally: Tally::new(limits.per_ip, limits.per_ipv6_64, limits.per_ipv6_48),
            held: HashMap::new(),
            expiries: BTreeMap::new(),
            next_generation: 0,
            per_peer: quota(limits.rate_per_peer).map(RateLimiter::keyed),
            per_ip: quota(limits.rate_per_ip).map(RateLimiter::keyed),
        }
    }

    pub fn connection_established(&mut self, connection: ConnectionId, remote_addr: &Multiaddr) {
        if let Some(ip) = ip_of(remote_addr) {
            self.connections.insert(connection, ip);
        }
    }

    pub fn connection_closed(&mut self, connection: ConnectionId) {
        self.connections.remove(&connection);
    }

    /// The remote IP of `connection`; `None` for relayed and unknown ones.
    pub fn ip(&self, connection: ConnectionId) -> Option<IpAddr> {
        self.connections.get(&connection).copied()
    }

    /// Spends one REGISTER of the peer's rate, then one of its IP's. The peer's comes
    /// first: a peer over its own rate then costs its IP (its NAT neighbours) nothing.
    pub fn check_rate(&self, peer: PeerId, ip: Option<IpAddr>) -> Result<(), String> {
        if let Some(limiter) = &self.per_peer {
            if limiter.check_key(&peer).is_err() {
                return Err(format!(
                    "over this peer's limit of {} per minute REGISTER requests; retry later",
                    self.limits.rate_per_peer
                ));
            }
        }
        if let (Some(limiter), Some(ip)) = (&self.per_ip, ip) {
            if limiter.check_key(&ip).is_err() {
                return Err(format!(
                    "over this IP's limit of {} per minute REGISTER requests; retry later",
                    self.limits.rate_per_ip
                ));
            }
        }
        Ok(())
    }

    /// Takes a slot for `key` registered from `ip` until `expires`, unless that would
    /// pass a cap. A re-registration gives its previous slot back first, so it always fits
    /// where the previous one was.
    pub fn reserve(
        &mut self,
        key: Key,
        ip: Option<IpAddr>,
        expires: Instant,
        now: Instant,
    ) -> Result<Slot, String> {
        self.sweep(now);
        let previous = self.take(&key);
        let Some(ip) = ip else {
            return Ok(Slot {
                key,
                generation: None,
                previous,
            });
        };
        if let Some(cap) = self.tally.would_exceed(ip, 1) {
            if let Some(previous) = previous {
                self.put(key, previous);
            }
            let (what, max) = match cap {
                SourceCap::PerIp => ("IP", self.limits.per_ip),
                SourceCap::PerIpv6Range => ("IPv6 /64", self.limits.per_ipv6_64),
                SourceCap::PerIpv6Site => ("IPv6 /48", self.limits.per_ipv6_48),
            };
            return Err(format!(
                "this {what} holds its maximum of {max} registrations on this relay"
            ));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.put(
            key.clone(),
            Held {
                ip,
                expires,
                generation,
            },
        );
        Ok(Slot {
            key,
            generation: Some(generation),
            previous,
        })
    }

    /// The store answered the REGISTER `slot` was taken for: `stored` or not.
    pub fn settle(&mut self, slot: Slot, stored: bool) {
        if stored {
            return;
        }
        let current = self.held.get(&slot.key).map(|h| h.generation);
        if current != slot.generation {
            // A later REGISTER of the same key has taken over the slot: its outcome
            // decides.
            return;
        }
        self.take(&slot.key);
        if let Some(previous) = slot.previous {
            self.put(slot.key, previous);
        }
    }

    /// The registration `key` was removed (unregistered).
    pub fn release(&mut self, key: &Key) {
        self.take(key);
    }

    /// Gives back the slots of registrations expired by `now` (in expiry order: the
    /// work is the number of expired ones, not of all held).
    pub fn sweep(&mut self, now: Instant) {
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.take(&key);
        }
    }

    /// Drops rate-limiter state of keys that have not been seen for a while, so the
    /// limiters' memory follows the recent request rate.
    pub fn forget_idle_rates(&self) {
        if let Some(limiter) = &self.per_peer {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.per_ip {
            limiter.retain_recent();
        }
    }

    /// Registrations holding a slot.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn take(&mut self, key: &Key) -> Option<Held> {
        let held = self.held.remove(key)?;
        self.expiries.remove(&(held.expires, held.generation));
        self.tally.remove(held.ip);
        Some(held)
    }

    fn put(&mut self, key: Key, held: Held) {
        self.tally.add(held.ip);
        self.expiries
            .insert((held.expires, held.generation), key.clone());
        if let Some(replaced) = self.held.insert(key, held) {
            // Only reached if a caller put without taking first.
            self.expiries
                .remove(&(replaced.expires, replaced.generation));
            self.tally.remove(replaced.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn one_registration_per_ip() -> Sources {
        Sources::new(SourceLimits {
            per_ip: 1,
            ..Default::default()
        })
    }

    fn key(ns: &str, peer: PeerId) -> Key {
        (ns.to_owned(), peer)
    }

    #[test]
    fn caps_per_ip_and_prefix_count_registrations_and_release_them() {
        let mut sources = Sources::new(SourceLimits {
            per_ip: 2,
            per_ipv6_64: 3,
            per_ipv6_48: 4,
            ..Default::default()
        });
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let peer = PeerId::random();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(sources
            .reserve(key("a", peer), Some(v4), later, now)
            .is_ok());
        assert!(sources
            .reserve(key("b", peer), Some(v4), later, now)
            .is_ok());
        let refused = sources
            .reserve(key("c", peer), Some(v4), later, now)
            .unwrap_err();
        assert!(refused.contains("IP holds its maximum of 2"), "{refused}");
        // A re-registration replaces its own slot.
        assert!(sources
            .reserve(key("a", peer), Some(v4), later, now)
            .is_ok());
        assert_eq!(sources.held(), 2);
        sources.release(&key("a", peer));
        assert!(sources
            .reserve(key("c", peer), Some(v4), later, now)
            .is_ok());

        // Four addresses of one /64: the fourth passes the /64's cap of 3.
        for host in 1..=3 {
            let ip = format!("2001:db8:0:1::{host}").parse().unwrap();
            assert!(sources
                .reserve(key("x", PeerId::random()), Some(ip), later, now)
                .is_ok());
        }
        let refused = sources
            .reserve(
                key("x", PeerId::random()),
                Some("2001:db8:0:1::4".parse().unwrap()),
                later,
                now,
            )
            .unwrap_err();
        assert!(refused.contains("/64 holds its maximum of 3"), "{refused}");
        // Another /64 of the same /48 gets the /48's last slot.
        let other_64: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert!(sources
            .reserve(key("x", PeerId::random()), Some(other_64), later, now)
            .is_ok());
        let refused = sources
            .reserve(key("y", PeerId::random()), Some(other_64), later, now)
            .unwrap_err();
        assert!(refused.contains("/48 holds its maximum of 4"), "{refused}");

        // Without an IP, nothing is counted.
        assert!(sources
            .reserve(key("z", PeerId::random()), None, later, now)
            .is_ok());
    }

    #[test]
    fn expired_registrations_give_their_slot_back() {
        let mut sources = one_registration_per_ip();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // A registration of 10 s made at `at` by a new peer from `ip`.
        let register_at = |sources: &mut Sources, at: Instant| {
            let key = key("ns", PeerId::random());
            sources.reserve(key, Some(ip), at + Duration::from_secs(10), at)
        };
        register_at(&mut sources, now).unwrap();
        assert!(register_at(&mut sources, now).is_err());
        assert!(register_at(&mut sources, now + Duration::from_secs(11)).is_ok());
        assert_eq!(sources.held(), 1);
    }

    #[test]
    fn a_failed_store_gives_the_slot_back_and_restores_the_replaced_one() {
        let mut sources = one_registration_per_ip();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let (one, two): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let peer = PeerId::random();
        let first = sources
            .reserve(key("a", peer), Some(one), later, now)
            .unwrap();
        sources.settle(first, true);
        // The peer re-registers from another IP and the store refuses: the registration
        // still held by the store is counted on its first IP again.
        let second = sources
            .reserve(key("a", peer), Some(two), later, now)
            .unwrap();
        sources.settle(second, false);
        assert!(sources
            .reserve(key("b", PeerId::random()), Some(one), later, now)
            .is_err());
        assert!(sources
            .reserve(key("b", PeerId::random()), Some(two), later, now)
            .is_ok());
    }

    #[test]
    fn register_rates_per_peer_then_per_ip() {
        let sources = Sources::new(SourceLimits {
            rate_per_peer: 2,
            rate_per_ip: 3,
            ..Default::default()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert!(sources.check_rate(a, Some(ip)).is_ok());
        assert!(sources.check_rate(a, Some(ip)).is_ok());
        let refused = sources.check_rate(a, Some(ip)).unwrap_err();
        assert!(
            refused.contains("peer's limit of 2 per minute"),
            "{refused}"
        );
        assert!(sources.check_rate(b, Some(ip)).is_ok());
        let refused = sources.check_rate(b, Some(ip)).unwrap_err();
        assert!(refused.contains("IP's limit of 3 per minute"), "{refused}");
        // No IP: only the peer's rate applies.
        assert!(sources.check_rate(PeerId::random(), None).is_ok());
    }
}
