//! A relay in this process: its test config (loopback, port 0, files in a scratch dir)
//! and its addresses per transport.

use super::*;

pub use dusk_relay::testing::loopback_config as test_config;

/// A running relay and the directory holding its keypair and certificate.
pub struct TestRelay {
    pub handle: RelayHandle,
    pub dir: tempfile::TempDir,
}

impl TestRelay {
    pub async fn start() -> TestRelay {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestRelay {
        let dir = tempfile::tempdir().expect("tempdir");
        let handle = start_relay_in(dir.path(), adjust).await;
        TestRelay { handle, dir }
    }

    pub fn peer_id(&self) -> PeerId {
        self.handle.peer_id
    }

    /// The full address (with `/p2p/<relay>`) of the relay's listener for `transport`.
    pub fn addr(&self, transport: Transport) -> Multiaddr {
        relay_addr(&self.handle, transport)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.handle.subscribe()
    }

    /// Sends the relay its first stop signal and waits until it reports draining;
    /// returns its events, subscribed before the signal.
    pub async fn start_draining(&self) -> broadcast::Receiver<RelayEvent> {
        let mut events = self.subscribe();
        self.handle.signal();
        relay_event(&mut events, |e| {
            matches!(e, RelayEvent::Draining).then_some(())
        })
        .await;
        events
    }

    /// Waits for the relay to stop (`what`: which stop, for a timeout).
    pub async fn stopped(&mut self, what: &str) {
        within(EVENT_TIMEOUT, what, self.handle.stopped()).await;
    }

    /// The relay's WSS certificate, for clients to trust.
    pub fn certificate(&self) -> Vec<u8> {
        self.handle.certificate_chain[0].to_vec()
    }

    pub async fn client(&self) -> Client {
        Client::new(Some(self.certificate())).await
    }
}

/// An access list that denies `peer` and serves everyone else.
pub fn denying(peer: PeerId) -> dusk_relay::access::AccessList {
    dusk_relay::access::AccessList {
        allow: Vec::new(),
        deny: vec![dusk_relay::access::Entry::Peer(peer)],
    }
}

pub async fn start_relay_in(dir: &Path, adjust: impl FnOnce(&mut Config)) -> RelayHandle {
    let mut config = test_config(dir);
    adjust(&mut config);
    Relay::bind(config).await.expect("relay starts").spawn()
}

pub fn relay_addr(relay: &RelayHandle, transport: Transport) -> Multiaddr {
    relay
        .listen_addrs
        .iter()
        .find(|a| transport.matches(a))
        .unwrap_or_else(|| {
            panic!(
                "relay has no {transport:?} listener: {:?}",
                relay.listen_addrs
            )
        })
        .clone()
        .with(Protocol::P2p(relay.peer_id))
}
