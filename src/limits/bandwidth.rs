//! Bandwidth caps on circuits. Circuits have no byte limit (dusk's chat path), so a
//! relay without rate caps is a free, unlimited proxy. Three token buckets, each off at
//! 0: one per circuit direction, one per peer (the bytes that peer sends into all its
//! circuits), one for the whole relay. A flow over its rate is slowed, not cut: the relay
//! stops reading that circuit stream until the buckets refill, so the stream's
//! flow-control window fills and the sender waits (backpressure end to end).
//!
//! Peers on the exempt list (the operator's own bridges or bots) are not throttled.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use libp2p::PeerId;

use crate::config::BandwidthLimits;
use crate::metrics::{ScopeLabel, ThrottledSeconds};

type Bucket = RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>;

/// The smallest burst a bucket allows, so small caps still move whole frames.
const MIN_BURST: u32 = 16 * 1024;

struct Capped {
    scope: &'static str,
    bucket: Arc<Bucket>,
    burst: u32,
}

fn quota(bytes_per_sec: u32) -> Option<(Quota, u32)> {
    let rate = NonZeroU32::new(bytes_per_sec)?;
    let burst = (bytes_per_sec / 10).max(MIN_BURST);
    let quota = Quota::per_second(rate).allow_burst(NonZeroU32::new(burst)?);
    Some((quota, burst))
}

/// The relay's bandwidth caps; hands out a [`Throttle`] per circuit stream.
pub struct Bandwidth {
    circuit: Option<(Quota, u32)>,
    peer: Option<(Quota, u32)>,
    total: Option<(Arc<Bucket>, u32)>,
    exempt: HashSet<PeerId>,
    /// Alive while any of the peer's circuit streams is.
    peers: Mutex<HashMap<PeerId, Weak<Bucket>>>,
    clock: DefaultClock,
    throttled: ThrottledSeconds,
}

impl Bandwidth {
    pub fn new(limits: &BandwidthLimits, throttled: ThrottledSeconds) -> Arc<Self> {
        Arc::new(Bandwidth {
            circuit: quota(limits.circuit_bytes_per_sec),
            peer: quota(limits.peer_bytes_per_sec),
            total: quota(limits.total_bytes_per_sec)
                .map(|(quota, burst)| (Arc::new(RateLimiter::direct(quota)), burst)),
            exempt: limits.exempt.iter().copied().collect(),
            peers: Mutex::default(),
            clock: DefaultClock::default(),
            throttled,
        })
    }

    /// No caps at all (tests of other things).
    #[cfg(test)]
    pub fn unlimited() -> Arc<Self> {
        Self::new(&BandwidthLimits::unlimited(), ThrottledSeconds::default())
    }

    /// The throttle for a new circuit stream on a connection of `peer`; `None` when
    /// nothing caps it.
    pub fn throttle(&self, peer: PeerId) -> Option<Throttle> {
        if self.exempt.contains(&peer) {
            return None;
        }
        let mut caps = Vec::new();
        if let Some((quota, burst)) = self.circuit {
            caps.push(Capped {
                scope: "circuit",
                bucket: Arc::new(RateLimiter::direct(quota)),
                burst,
            });
        }
        if let Some((quota, burst)) = self.peer {
            caps.push(Capped {
                scope: "peer",
                bucket: self.peer_bucket(peer, quota),
                burst,
            });
        }
        if let Some((bucket, burst)) = &self.total {
            caps.push(Capped {
                scope: "total",
                bucket: bucket.clone(),
                burst: *burst,
            });
        }
        if caps.is_empty() {
            return None;
        }
        Some(Throttle {
            max_read: caps.iter().map(|c| c.burst).min().unwrap_or(MIN_BURST) as usize,
            caps,
            debt: 0,
            paid: 0,
            wait: None,
            clock: self.clock.clone(),
            throttled: self.throttled.clone(),
        })
    }

    fn peer_bucket(&self, peer: PeerId, quota: Quota) -> Arc<Bucket> {
        // A poisoned lock only means another stream panicked mid-insert; the map is
        // still usable.
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = peers.get(&peer).and_then(Weak::upgrade) {
            return bucket;
        }
        peers.retain(|_, bucket| bucket.strong_count() > 0);
        let bucket = Arc::new(RateLimiter::direct(quota));
        peers.insert(peer, Arc::downgrade(&bucket));
        bucket
    }
}

/// One circuit stream's share of the buckets. A read is paid for after it happened
/// (its size is only known then): the next read waits until every bucket has taken it.
pub struct Throttle {
    caps: Vec<Capped>,
    /// Reads never take more than the smallest burst, so a payment always fits a bucket.
    max_read: usize,
    /// Bytes of the last read not yet paid for, and how many buckets have taken them.
    debt: u32,
    paid: usize,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    clock: DefaultClock,
    throttled: ThrottledSeconds,
}

impl Throttle {
    /// The most the next read may take.
    pub fn max_read(&self) -> usize {
        self.max_read
    }

    /// Records a read of `bytes`.
    pub fn charge(&mut self, bytes: usize) {
        self.debt = self
            .debt
            .saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
        self.paid = 0;
    }

    /// Ready once the previous reads are paid for.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some(wait) = self.wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                self.wait = None;
            }
            let Some(debt) = NonZeroU32::new(self.debt) else {
                return Poll::Ready(());
            };
            while let Some(cap) = self.caps.get(self.paid) {
                // The debt can exceed a burst only through `charge` with a large read
                // (a caller ignoring `max_read`): pay what fits, never block forever.
                let n = NonZeroU32::new(debt.get().min(cap.burst)).unwrap_or(debt);
                match cap.bucket.check_n(n) {
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        self.throttled
                            .get_or_create(&ScopeLabel { scope: cap.scope })
                            .inc_by(wait.as_secs_f64());
                        self.wait = Some(Box::pin(tokio::time::sleep(wait)));
                        break;
                    }
                    Ok(Ok(())) | Err(_) => self.paid += 1,
                }
            }
            if self.wait.is_none() {
                self.debt = 0;
                self.paid = 0;
                return Poll::Ready(());
            }
        }
    }
}
