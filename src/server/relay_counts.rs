//! The relay's open reservations and circuits, counted from libp2p-relay's events: the
//! drain waits on these counts, and the log lines and gauges print them.
//!
//! libp2p-relay 0.22 leaves two traps, both handled here: its events carry no connection
//! id (so which close ends a reservation must be worked out, [`ReservationHolders`]),
//! and it reports some circuit closes twice ([`RelayCounts::circuit_closed`]).

use std::collections::{HashMap, HashSet};

use libp2p::swarm::ConnectionId;
use libp2p::PeerId;

use crate::limits::relay_per_ip::IpCaps;

/// Open reservations (peers) and circuits.
#[derive(Default)]
pub struct RelayCounts {
    /// Peers holding a reservation. libp2p's events carry no connection id, so a peer
    /// reserving on two connections counts once.
    reservations: HashSet<PeerId>,
    holders: ReservationHolders,
    circuits: usize,
    /// Circuits (source, destination) whose second close report is still to come.
    second_reports_due: HashMap<(PeerId, PeerId), usize>,
    /// The per-IP reservation tally, released here, where a reservation's end is known.
    ip_caps: IpCaps,
}

impl RelayCounts {
    pub fn new(ip_caps: IpCaps) -> Self {
        RelayCounts {
            ip_caps,
            ..RelayCounts::default()
        }
    }

    pub fn reservations(&self) -> usize {
        self.reservations.len()
    }

    pub fn circuits(&self) -> usize {
        self.circuits
    }

    pub fn connection_established(&mut self, peer: PeerId, connection: ConnectionId) {
        self.holders.connection_established(peer, connection);
    }

    /// Whether the peer's reservation ended with this connection (see
    /// [`RelayCounts::reservation_ended`], which the caller then calls).
    pub fn connection_closed(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        remaining: u32,
    ) -> bool {
        if remaining == 0 {
            // Its handler, which would have sent the second reports, is gone.
            self.second_reports_due.retain(|(src, _), _| *src != peer);
        }
        let ended = self.holders.connection_closed(peer, connection);
        if ended || remaining == 0 {
            self.ip_caps.reservation_ended(peer);
        }
        ended
    }

    /// Whether this is the peer's first reservation (not a renewal).
    pub fn reservation_accepted(&mut self, peer: PeerId) -> bool {
        self.holders.reservation_accepted(peer);
        self.reservations.insert(peer)
    }

    pub fn reservation_timed_out(&mut self, peer: PeerId) {
        self.holders.reservation_timed_out(peer);
        self.ip_caps.reservation_ended(peer);
    }

    /// Whether the peer held a reservation we saw accepted (libp2p reports ends we
    /// never counted).
    pub fn reservation_ended(&mut self, peer: PeerId) -> bool {
        self.reservations.remove(&peer)
    }

    pub fn circuit_opened(&mut self) -> usize {
        self.circuits += 1;
        self.circuits
    }

    /// The open count after a close, or `None` for libp2p-relay's second report of a
    /// circuit already closed: it reports a circuit closed twice when its destination
    /// disconnects first, once from the connection's close (error `ConnectionAborted`)
    /// and again when the source's handler sees the copy end. Counting both would run
    /// the open count (and the drain waiting on it) ahead of the real circuits.
    /// `connected` says whether the relay is still connected to a peer.
    pub fn circuit_closed(
        &mut self,
        src: PeerId,
        dst: PeerId,
        error: Option<&std::io::Error>,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Option<usize> {
        if let Some(due) = self.second_reports_due.get_mut(&(src, dst)) {
            *due -= 1;
            if *due == 0 {
                self.second_reports_due.remove(&(src, dst));
            }
            return None;
        }
        let aborted = error.is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionAborted);
        if aborted && connected(&src) && !connected(&dst) {
            *self.second_reports_due.entry((src, dst)).or_default() += 1;
        }
        self.circuits = self.circuits.saturating_sub(1);
        Some(self.circuits)
    }
}

/// libp2p-relay's events carry no connection id: a reservation ends with its
/// connection, but `ReservationClosed` fires on the close of *any* connection of the
/// peer. A peer with one connection when its reservation was accepted holds it on that
/// connection; for a peer with several then, the end is known only at its last close.
#[derive(Default)]
struct ReservationHolders {
    /// Open connections per peer (few: libp2p caps them per peer).
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// Reservations and their connection, when known.
    holders: HashMap<PeerId, Option<ConnectionId>>,
}

impl ReservationHolders {
    fn connection_established(&mut self, peer: PeerId, connection: ConnectionId) {
        self.connections.entry(peer).or_default().push(connection);
    }

    /// Whether the peer's reservation ended with this connection.
    fn connection_closed(&mut self, peer: PeerId, connection: ConnectionId) -> bool {
        let last = match self.connections.get_mut(&peer) {
            Some(open) => {
                open.retain(|c| *c != connection);
                open.is_empty()
            }
            None => true,
        };
        if last {
            self.connections.remove(&peer);
        }
        let ended = match self.holders.get(&peer) {
            Some(Some(holder)) => *holder == connection || last,
            Some(None) => last,
            None => false,
        };
        if ended {
            self.holders.remove(&peer);
        }
        ended
    }

    fn reservation_accepted(&mut self, peer: PeerId) {
        let only = match self.connections.get(&peer).map(Vec::as_slice) {
            Some([only]) => Some(*only),
            // Accepted after its connection closed (libp2p may report it late): the
            // last close already freed everything.
            None | Some([]) => return,
            _ => None,
        };
        // A second reservation on another connection: either may outlive the other.
        let known = match self.holders.get(&peer) {
            Some(Some(holder)) => only.filter(|c| c == holder),
            Some(None) => None,
            None => only,
        };
        self.holders.insert(peer, known);
    }

    fn reservation_timed_out(&mut self, peer: PeerId) {
        self.holders.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_ends_with_the_connection_holding_it_and_not_with_a_spare_one() {
        let peer = PeerId::random();
        let (first, second, third) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        let mut holders = ReservationHolders::default();
        holders.connection_established(peer, first);
        holders.reservation_accepted(peer);
        holders.connection_established(peer, second);
        assert!(
            !holders.connection_closed(peer, second),
            "a spare connection"
        );
        holders.connection_established(peer, third);
        assert!(holders.connection_closed(peer, first), "the holder");
        assert!(
            !holders.connection_closed(peer, third),
            "nothing left to end"
        );
    }

    #[test]
    fn with_several_connections_at_the_reservation_it_ends_with_the_last_one() {
        let peer = PeerId::random();
        let (first, second) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        let mut holders = ReservationHolders::default();
        holders.connection_established(peer, first);
        holders.connection_established(peer, second);
        holders.reservation_accepted(peer);
        assert!(!holders.connection_closed(peer, first));
        assert!(holders.connection_closed(peer, second));

        // Reserved on one connection, then again on a second: either may be the one left.
        holders.connection_established(peer, first);
        holders.reservation_accepted(peer);
        holders.connection_established(peer, second);
        holders.reservation_accepted(peer);
        assert!(!holders.connection_closed(peer, first));
        assert!(holders.connection_closed(peer, second));
    }

    #[test]
    fn an_expired_reservation_is_not_ended_again_by_a_close() {
        let peer = PeerId::random();
        let only = ConnectionId::new_unchecked(1);
        let mut holders = ReservationHolders::default();
        holders.connection_established(peer, only);
        holders.reservation_accepted(peer);
        holders.reservation_timed_out(peer);
        assert!(!holders.connection_closed(peer, only));
        // Accepted after its connection closed: nothing is held.
        holders.reservation_accepted(peer);
        assert!(holders.holders.is_empty() && holders.connections.is_empty());
    }
}
