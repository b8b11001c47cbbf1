//! Reservation and circuit caps per source IP, IPv6 /64 and IPv6 /48, beside libp2p's
//! per-peer ones: fresh identities cost nothing, so without them one host could hold every
//! reservation slot, and one site every slot through its 65,536 /64s (go-libp2p caps
//! reservations per IP, per /64 and per /48 for the same reason).
//!
//! The circuit server ([`crate::circuit::server`]) asks these last, after every other
//! check passed; a refusal is `RESOURCE_LIMIT_EXCEEDED`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use libp2p::PeerId;

use crate::config::RelayLimits;
use crate::limits::ip_tally::{SourceCap, Tally};
use crate::metrics::{SourceCapDenials, SourceCapLabel};

#[derive(Default)]
struct Reservations {
    tally: Tally,
    /// Peers counted, with the IP they reserved from: a peer counts once however many
    /// connections it reserves on.
    holders: HashMap<PeerId, IpAddr>,
}

#[derive(Clone, Default)]
pub struct IpCaps {
    reservations: Arc<Mutex<Reservations>>,
    /// Open circuit ends (the source's at its IP, the destination's at its), counted by
    /// [`crate::circuit::splice`].
    circuit_legs: Arc<Mutex<Tally>>,
    denials: SourceCapDenials,
}

/// A lock that a panicking holder poisoned still guards consistent counts (every update
/// is a single insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl IpCaps {
    pub fn new(limits: &RelayLimits, denials: SourceCapDenials) -> Self {
        IpCaps {
            reservations: Arc::new(Mutex::new(Reservations {
                tally: Tally::new(
                    limits.max_reservations_per_ip,
                    limits.max_reservations_per_ipv6_64,
                    limits.max_reservations_per_ipv6_48,
                ),
                holders: HashMap::new(),
            })),
            circuit_legs: Arc::new(Mutex::new(Tally::new(
                limits.max_circuits_per_ip,
                limits.max_circuits_per_ipv6_64,
                limits.max_circuits_per_ipv6_48,
            ))),
            denials,
        }
    }

    fn denied(&self, what: &'static str, cap: SourceCap) -> bool {
        self.denials
            .get_or_create(&SourceCapLabel {
                what,
                cap: cap.name(),
            })
            .inc();
        false
    }

    /// Asked last (after every other check passed, so `true` means the reservation is
    /// accepted). `ip`: the connection's; `None` for one without (never capped).
    pub fn admit_reservation(&self, peer: PeerId, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else {
            return true;
        };
        let mut reservations = lock(&self.reservations);
        if reservations.holders.contains_key(&peer) {
            return true;
        }
        if let Err(cap) = reservations.tally.try_add(ip) {
            drop(reservations);
            return self.denied("reservation", cap);
        }
        reservations.holders.insert(peer, ip);
        true
    }

    /// `peer` holds no reservation any more.
    pub fn reservation_ended(&self, peer: PeerId) {
        let mut reservations = lock(&self.reservations);
        if let Some(ip) = reservations.holders.remove(&peer) {
            reservations.tally.remove(ip);
        }
    }

    /// Whether one more circuit from `ip` fits (its ends are counted once it opens).
    pub fn admit_circuit(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else {
            return true;
        };
        let over = lock(&self.circuit_legs).would_exceed(ip, 1);
        match over {
            Some(cap) => self.denied("circuit", cap),
            None => true,
        }
    }

    /// Counts a circuit stream at `ip` until the returned guard drops.
    pub fn circuit_leg(&self, ip: IpAddr) -> CircuitLeg {
        lock(&self.circuit_legs).add(ip);
        CircuitLeg {
            legs: self.circuit_legs.clone(),
            ip,
        }
    }
}

pub struct CircuitLeg {
    legs: Arc<Mutex<Tally>>,
    ip: IpAddr,
}

impl Drop for CircuitLeg {
    fn drop(&mut self) {
        lock(&self.legs).remove(self.ip);
    }
}
