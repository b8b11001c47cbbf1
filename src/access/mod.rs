//! Allow and deny lists of peer ids and IP ranges (CIDR). A peer is served when nothing
//! on the deny list matches it and, if the allow list is not empty, something on the allow
//! list does. Lists are replaced as a whole on SIGHUP ([`AccessControl::replace`]);
//! connections of peers that a new list denies are closed. The circuit server answers a
//! denied peer's requests `PERMISSION_DENIED` ([`crate::circuit::handler`]) and the
//! rendezvous server refuses them ([`AccessControl::is_denied`]).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::task::AtomicWaker;
use ipnet::IpNet;
use libp2p::swarm::ConnectionId;
use libp2p::PeerId;

/// What a denied peer asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Reservation,
    Circuit,
    /// Its connection, when a replaced list denies a peer already connected.
    Connection,
}

impl Denied {
    pub fn name(self) -> &'static str {
        match self {
            Denied::Reservation => "reservation",
            Denied::Circuit => "circuit",
            Denied::Connection => "connection",
        }
    }
}

/// One list entry: a peer id, or an IP range (`203.0.113.0/24`; a bare IP is a /32 or
/// /128).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Peer(PeerId),
    Range(IpNet),
}

impl std::str::FromStr for Entry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(range) = s.parse::<IpNet>() {
            return Ok(Entry::Range(range.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Entry::Range(IpNet::from(ip)));
        }
        s.parse::<PeerId>().map(Entry::Peer).map_err(|_| {
            "expected a peer id (12D3KooW...), an IP address or a CIDR range (203.0.113.0/24)"
                .to_owned()
        })
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Peer(peer) => write!(f, "{peer}"),
            Entry::Range(range) => write!(f, "{range}"),
        }
    }
}

impl Entry {
    fn matches(&self, peer: &PeerId, ip: Option<IpAddr>) -> bool {
        match (self, ip) {
            (Entry::Peer(listed), _) => listed == peer,
            (Entry::Range(range), Some(ip)) => range.contains(&ip),
            (Entry::Range(_), None) => false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// Not empty: only peers matching an entry are served.
    pub allow: Vec<Entry>,
    pub deny: Vec<Entry>,
}

impl AccessList {
    /// Whether `peer`, connected from `ip`, is served.
    pub fn permits(&self, peer: &PeerId, ip: Option<IpAddr>) -> bool {
        if self.deny.iter().any(|e| e.matches(peer, ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|e| e.matches(peer, ip))
    }
}

struct Shared {
    list: RwLock<Arc<AccessList>>,
    generation: AtomicU64,
    /// The gate, woken to re-check open connections after a replace.
    waker: AtomicWaker,
    /// Connections of denied peers, open until the gate closes them: other behaviours
    /// (rendezvous) serve them nothing meanwhile.
    denied: Mutex<HashSet<ConnectionId>>,
}

/// The relay's current access list, shared between the gate, rendezvous and SIGHUP.
#[derive(Clone)]
pub struct AccessControl {
    shared: Arc<Shared>,
}

/// An empty access list serves everyone.
impl Default for AccessControl {
    fn default() -> Self {
        AccessControl::new(AccessList::default())
    }
}

impl AccessControl {
    pub fn new(list: AccessList) -> Self {
        AccessControl {
            shared: Arc::new(Shared {
                list: RwLock::new(Arc::new(list)),
                generation: AtomicU64::new(0),
                waker: AtomicWaker::new(),
                denied: Mutex::default(),
            }),
        }
    }

    pub fn current(&self) -> Arc<AccessList> {
        self.shared
            .list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `list` from now on; open connections it denies are closed.
    pub fn replace(&self, list: AccessList) {
        *self.shared.list.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
        self.shared.generation.fetch_add(1, Ordering::Release);
        self.shared.waker.wake();
    }

    pub(crate) fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.shared.waker.register(waker);
    }

    /// Whether `connection` belongs to a peer the list denies.
    pub fn is_denied(&self, connection: ConnectionId) -> bool {
        self.denied_connections().contains(&connection)
    }

    pub(crate) fn set_denied(&self, connection: ConnectionId, denied: bool) {
        let mut connections = self.denied_connections();
        if denied {
            connections.insert(connection);
        } else {
            connections.remove(&connection);
        }
    }

    fn denied_connections(&self) -> std::sync::MutexGuard<'_, HashSet<ConnectionId>> {
        self.shared.denied.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_a_non_empty_allow_list_refuses_everyone_else() {
        let peer = PeerId::random();
        let other = PeerId::random();
        let inside: IpAddr = "203.0.113.9".parse().unwrap();
        let outside: IpAddr = "198.51.100.1".parse().unwrap();
        let list = AccessList {
            allow: vec!["203.0.113.0/24".parse().unwrap(), Entry::Peer(other)],
            deny: vec![format!("{peer}").parse().unwrap()],
        };
        assert!(!list.permits(&peer, Some(inside)), "deny beats allow");
        assert!(list.permits(&PeerId::random(), Some(inside)));
        assert!(list.permits(&other, Some(outside)));
        assert!(!list.permits(&PeerId::random(), Some(outside)));
        assert!(AccessList::default().permits(&peer, None));
    }

    #[test]
    fn entries_parse_and_say_what_they_expect() {
        assert_eq!(
            "10.1.2.3/8".parse::<Entry>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Entry>().unwrap().to_string(), "::1/128");
        let error = "not-a-peer".parse::<Entry>().unwrap_err();
        assert!(error.contains("CIDR"), "{error}");
    }
}
