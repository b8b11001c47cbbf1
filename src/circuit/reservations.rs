//! Who holds a reservation, on which connection, until when. A reservation lives with
//! its connection: it ends when that connection closes or when it expires, whichever
//! comes first, and a RESERVE on the same connection renews it. A peer may hold one on
//! each of several connections (up to the per-peer cap); circuits to it go over the
//! newest.

use std::collections::{BTreeSet, HashMap};

use libp2p::swarm::ConnectionId;
use libp2p::PeerId;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Held {
    connection: ConnectionId,
    expires: Instant,
}

/// What a RESERVE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// The peer's first reservation.
    New,
    /// Another connection of a peer that already holds one.
    Another,
    /// The same connection's reservation, renewed.
    Renewed,
}

#[derive(Default)]
pub struct Reservations {
    /// Per peer, oldest first.
    held: HashMap<PeerId, Vec<Held>>,
    /// Every reservation by expiry, for [`Reservations::expire`].
    expiries: BTreeSet<(Instant, PeerId, ConnectionId)>,
}

impl Reservations {
    /// Peers holding a reservation.
    pub fn peers(&self) -> usize {
        self.held.len()
    }

    /// Reservations held, a peer's on several connections counted each.
    pub fn total(&self) -> usize {
        self.expiries.len()
    }

    pub fn of_peer(&self, peer: &PeerId) -> usize {
        self.held.get(peer).map_or(0, Vec::len)
    }

    pub fn holds(&self, peer: &PeerId, connection: ConnectionId) -> bool {
        self.held
            .get(peer)
            .is_some_and(|held| held.iter().any(|h| h.connection == connection))
    }

    /// The connection a circuit to `peer` goes over: its newest reservation's.
    pub fn connection_of(&self, peer: &PeerId) -> Option<ConnectionId> {
        self.held.get(peer)?.last().map(|h| h.connection)
    }

    /// Records a reservation of `peer` on `connection` until `expires`.
    pub fn reserve(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        expires: Instant,
    ) -> Reserved {
        let held = self.held.entry(peer).or_default();
        let outcome = if let Some(i) = held.iter().position(|h| h.connection == connection) {
            let old = held.remove(i);
            self.expiries.remove(&(old.expires, peer, connection));
            Reserved::Renewed
        } else if held.is_empty() {
            Reserved::New
        } else {
            Reserved::Another
        };
        held.push(Held {
            connection,
            expires,
        });
        self.expiries.insert((expires, peer, connection));
        outcome
    }

    /// Ends the reservation on `connection`, if it held one; `true` if that was the
    /// peer's last.
    pub fn release(&mut self, peer: PeerId, connection: ConnectionId) -> Option<bool> {
        let held = self.held.get_mut(&peer)?;
        let i = held.iter().position(|h| h.connection == connection)?;
        let gone = held.remove(i);
        self.expiries.remove(&(gone.expires, peer, connection));
        let last = held.is_empty();
        if last {
            self.held.remove(&peer);
        }
        Some(last)
    }

    /// When the next reservation expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _, _)| *at)
    }

    /// Ends every reservation expired at `now`: (peer, connection, whether it was the
    /// peer's last).
    pub fn expire(&mut self, now: Instant) -> Vec<(PeerId, ConnectionId, bool)> {
        let mut ended = Vec::new();
        while let Some(&(at, peer, connection)) = self.expiries.first() {
            if at > now {
                break;
            }
            if let Some(last) = self.release(peer, connection) {
                ended.push((peer, connection, last));
            } else {
                self.expiries.pop_first();
            }
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reservation_is_renewed_on_its_connection_and_ends_with_it_or_at_expiry() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let peer = PeerId::random();
        let (first, second) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        let mut reservations = Reservations::default();
        assert_eq!(reservations.reserve(peer, first, now + hour), Reserved::New);
        assert_eq!(
            reservations.reserve(peer, first, now + 2 * hour),
            Reserved::Renewed
        );
        assert_eq!(
            reservations.reserve(peer, second, now + hour),
            Reserved::Another
        );
        assert_eq!((reservations.peers(), reservations.total()), (1, 2));
        assert_eq!(reservations.connection_of(&peer), Some(second));

        assert_eq!(reservations.expire(now + hour), vec![(peer, second, false)]);
        assert_eq!(
            reservations.connection_of(&peer),
            Some(first),
            "renewed: still held"
        );
        assert_eq!(reservations.release(peer, second), None, "already ended");
        assert_eq!(reservations.release(peer, first), Some(true));
        assert_eq!((reservations.peers(), reservations.total()), (0, 0));
        assert_eq!(reservations.next_expiry(), None);
    }
}
