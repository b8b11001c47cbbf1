//! Request rates per peer and per source IP: token buckets of `rate` requests a minute,
//! a full minute's worth as the burst (libp2p-relay's limiters, which these replace,
//! refill the same way). Idle keys are forgotten, so a flood of fresh peer ids costs
//! memory only while its buckets are not yet full again.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p::PeerId;

/// One kind of request's limiters; each `None` when its rate is 0.
pub struct Rates {
    per_peer: Option<DefaultKeyedRateLimiter<PeerId>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Rates {
    /// `per_peer` and `per_ip` requests a minute; 0 turns that one off.
    pub fn per_minute(per_peer: u32, per_ip: u32) -> Self {
        let quota = |rate| NonZeroU32::new(rate).map(Quota::per_minute);
        Rates {
            per_peer: quota(per_peer).map(RateLimiter::keyed),
            per_ip: quota(per_ip).map(RateLimiter::keyed),
        }
    }

    /// Spends one request of the peer's rate, then one of its IP's; `false` if either is
    /// spent out. The peer's comes first: a peer over its own rate costs its IP (its
    /// NAT neighbours) nothing.
    pub fn admit(&self, peer: PeerId, ip: Option<IpAddr>) -> bool {
        if let Some(limiter) = &self.per_peer {
            if limiter.check_key(&peer).is_err() {
                return false;
            }
        }
        match (&self.per_ip, ip) {
            (Some(limiter), Some(ip)) => limiter.check_key(&ip).is_ok(),
            _ => true,
        }
    }

    /// Forgets buckets that are full again (as if never used).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.per_peer {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_over_its_rate_is_refused_without_spending_its_ips() {
        let rates = Rates::per_minute(2, 3);
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        let (greedy, other) = (PeerId::random(), PeerId::random());
        assert!(rates.admit(greedy, ip) && rates.admit(greedy, ip));
        assert!(!rates.admit(greedy, ip), "over the peer's 2 a minute");
        assert!(rates.admit(other, ip), "the IP's third");
        assert!(!rates.admit(other, ip), "over the IP's 3 a minute");
        assert!(
            rates.admit(PeerId::random(), None),
            "no IP: only the peer's rate"
        );
    }
}
