//! Where a connection comes from, for per-source ceilings: its IP address and, for IPv6,
//! its /64 (one subscriber's allocation, so a host cannot dodge a per-IP cap by rotating
//! through its own addresses) and its /48 (a whole site's, so one that owns a /48 cannot
//! dodge the /64 cap by rotating through 65,536 /64s; go-libp2p caps /48 as well).
//!
//! Nothing here is logged or exported: counts are kept per address in memory only.

use std::collections::HashMap;
use std::net::IpAddr;

/// The /64 an IPv6 address belongs to.
fn range_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(ip) => Some((u128::from(ip) >> 64) as u64),
    }
}

/// The /48 an IPv6 address belongs to.
fn site_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(ip) => Some((u128::from(ip) >> 80) as u64),
    }
}

/// Which per-source cap said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCap {
    PerIp,
    /// One IPv6 /64.
    PerIpv6Range,
    /// One IPv6 /48.
    PerIpv6Site,
}

impl SourceCap {
    /// The metric label and log word: one of a fixed set, never derived from an address.
    pub fn name(self) -> &'static str {
        match self {
            SourceCap::PerIp => "per_ip",
            SourceCap::PerIpv6Range => "per_ipv6_64",
            SourceCap::PerIpv6Site => "per_ipv6_48",
        }
    }

    /// The source as a refusal names it: "too many connections from one IPv6 /64".
    pub fn scope(self) -> &'static str {
        match self {
            SourceCap::PerIp => "one IP address",
            SourceCap::PerIpv6Range => "one IPv6 /64",
            SourceCap::PerIpv6Site => "one IPv6 /48",
        }
    }
}

/// Counts of something (connections, handshakes, reservations, circuit legs) per IP, per
/// IPv6 /64 and per IPv6 /48, each with a cap. 0 as a cap means no limit.
#[derive(Debug, Default)]
pub struct Tally {
    per_ip: usize,
    per_range: usize,
    per_site: usize,
    ips: HashMap<IpAddr, usize>,
    ranges: HashMap<u64, usize>,
    sites: HashMap<u64, usize>,
}

impl Tally {
    /// Caps per IP, per IPv6 /64 and per IPv6 /48; 0: no limit.
    pub fn new(per_ip: usize, per_ipv6_64: usize, per_ipv6_48: usize) -> Self {
        Tally {
            per_ip,
            per_range: per_ipv6_64,
            per_site: per_ipv6_48,
            ..Tally::default()
        }
    }

    /// Counts one more for `ip` unless that would pass a cap.
    pub fn try_add(&mut self, ip: IpAddr) -> Result<(), SourceCap> {
        if let Some(cap) = self.would_exceed(ip, 1) {
            return Err(cap);
        }
        self.add(ip);
        Ok(())
    }

    /// Which cap `ip` would pass with `more` on top of its current count.
    pub fn would_exceed(&self, ip: IpAddr, more: usize) -> Option<SourceCap> {
        if self.per_ip > 0 && self.at_ip(ip) + more > self.per_ip {
            return Some(SourceCap::PerIp);
        }
        if let Some(range) = range_of(ip) {
            let held = self.ranges.get(&range).copied().unwrap_or(0);
            if self.per_range > 0 && held + more > self.per_range {
                return Some(SourceCap::PerIpv6Range);
            }
        }
        if let Some(site) = site_of(ip) {
            let held = self.sites.get(&site).copied().unwrap_or(0);
            if self.per_site > 0 && held + more > self.per_site {
                return Some(SourceCap::PerIpv6Site);
            }
        }
        None
    }

    /// Counts one more for `ip`, caps or not.
    pub fn add(&mut self, ip: IpAddr) {
        *self.ips.entry(ip).or_default() += 1;
        if let Some(range) = range_of(ip) {
            *self.ranges.entry(range).or_default() += 1;
        }
        if let Some(site) = site_of(ip) {
            *self.sites.entry(site).or_default() += 1;
        }
    }

    pub fn remove(&mut self, ip: IpAddr) {
        decrement(&mut self.ips, ip);
        if let Some(range) = range_of(ip) {
            decrement(&mut self.ranges, range);
        }
        if let Some(site) = site_of(ip) {
            decrement(&mut self.sites, site);
        }
    }

    pub fn at_ip(&self, ip: IpAddr) -> usize {
        self.ips.get(&ip).copied().unwrap_or(0)
    }

    /// How many distinct IPs hold at least one.
    pub fn ips(&self) -> usize {
        self.ips.len()
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(count) = map.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_per_ipv6_range() {
        let mut tally = Tally::new(2, 3, 0);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(tally.try_add(v4).is_ok());
        assert!(tally.try_add(v4).is_ok());
        assert_eq!(tally.try_add(v4), Err(SourceCap::PerIp));
        assert!(tally.try_add("192.0.2.2".parse().unwrap()).is_ok());

        // Three addresses of one /64: the third is the range's last slot.
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
            assert!(tally.try_add(host.parse().unwrap()).is_ok(), "{host}");
        }
        assert_eq!(
            tally.try_add("2001:db8::4".parse().unwrap()),
            Err(SourceCap::PerIpv6Range)
        );
        assert!(tally.try_add("2001:db8:0:1::1".parse().unwrap()).is_ok());

        tally.remove(v4);
        tally.remove(v4);
        assert_eq!(tally.at_ip(v4), 0);
        assert!(tally.try_add(v4).is_ok());
    }

    #[test]
    fn caps_per_ipv6_site_across_its_64s() {
        // Per-IP and per-/64 caps far away: only the /48 decides.
        let mut tally = Tally::new(100, 100, 3);
        // One address in each of three /64s of 2001:db8:7::/48.
        let hosts = ["2001:db8:7:1::1", "2001:db8:7:2::1", "2001:db8:7:ffff::1"];
        for host in hosts {
            assert!(tally.try_add(host.parse().unwrap()).is_ok(), "{host}");
        }
        // A fourth /64 of the same /48 meets the site's cap.
        let fourth: IpAddr = "2001:db8:7:3::1".parse().unwrap();
        assert_eq!(tally.try_add(fourth), Err(SourceCap::PerIpv6Site));
        assert_eq!(
            tally.would_exceed(fourth, 1).map(SourceCap::name),
            Some("per_ipv6_48")
        );
        // The neighbouring /48 has its own count, and IPv4 has none.
        assert!(tally.try_add("2001:db8:8:1::1".parse().unwrap()).is_ok());
        assert!(tally.try_add("192.0.2.1".parse().unwrap()).is_ok());

        // A slot freed anywhere in the /48 is usable from any of its /64s.
        tally.remove(hosts[1].parse().unwrap());
        assert!(tally.try_add(fourth).is_ok());
        for host in [hosts[0], hosts[2], "2001:db8:7:3::1"] {
            tally.remove(host.parse().unwrap());
        }
        assert!(!tally.sites.contains_key(&site_of(fourth).unwrap()));
    }

    #[test]
    fn the_narrowest_cap_reached_is_named() {
        // A /64 at its cap inside a /48 with room: the /64 is named.
        let mut tally = Tally::new(0, 1, 10);
        assert!(tally.try_add("2001:db8:7:1::1".parse().unwrap()).is_ok());
        assert_eq!(
            tally.try_add("2001:db8:7:1::2".parse().unwrap()),
            Err(SourceCap::PerIpv6Range)
        );
    }
}
