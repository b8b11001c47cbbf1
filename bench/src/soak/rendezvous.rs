//! REGISTER, DISCOVER and UNREGISTER with the rendezvous client dusk ships
//! (`libp2p::rendezvous::client`), as the bench's client swarms do them in the soak.

use anyhow::anyhow;
use libp2p::rendezvous;
use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;

use crate::peers::{Client, ClientBehaviourEvent};

fn namespace(ns: &str) -> anyhow::Result<rendezvous::Namespace> {
    rendezvous::Namespace::new(ns.to_owned()).map_err(|e| anyhow!("namespace {ns:?}: {e}"))
}

impl Client {
    /// Waits, once reserved, until the circuit address is an external address of the
    /// client: REGISTER has nothing to publish before (the client's task adds it when the
    /// listen address arrives, which may be just after the reservation's answer).
    pub async fn publishable(&mut self) -> anyhow::Result<()> {
        if self
            .call(|s| s.external_addresses().next().is_some())
            .await?
        {
            return Ok(());
        }
        self.next("a circuit address to publish", |e| match e {
            SwarmEvent::NewListenAddr { address, .. }
                if dusk_relay::multiaddr_ext::is_relayed(&address) =>
            {
                Some(())
            }
            _ => None,
        })
        .await
    }

    /// Registers this client's circuit address under `ns` at `relay` for `ttl` seconds.
    pub async fn register(&mut self, relay: PeerId, ns: &str, ttl: u64) -> anyhow::Result<()> {
        let ns = namespace(ns)?;
        self.call(move |s| s.behaviour_mut().rendezvous.register(ns, relay, Some(ttl)))
            .await?
            .map_err(|e| anyhow!("cannot register: {e}"))?;
        self.next("the REGISTER answer", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(event)) => match event {
                rendezvous::client::Event::Registered { .. } => Some(Ok(())),
                rendezvous::client::Event::RegisterFailed { error, .. } => {
                    Some(Err(anyhow!("REGISTER refused: {error:?}")))
                }
                _ => None,
            },
            _ => None,
        })
        .await?
    }

    /// The peers registered under `ns` at `relay` (the first page, which holds them
    /// all at the soak's handful per namespace).
    pub async fn discover(&mut self, relay: PeerId, ns: &str) -> anyhow::Result<Vec<PeerId>> {
        let ns = namespace(ns)?;
        self.call(move |s| {
            s.behaviour_mut()
                .rendezvous
                .discover(Some(ns), None, None, relay)
        })
        .await?;
        self.next("the DISCOVER answer", |e| match e {
            SwarmEvent::Behaviour(ClientBehaviourEvent::Rendezvous(event)) => match event {
                rendezvous::client::Event::Discovered { registrations, .. } => {
                    Some(Ok(registrations
                        .iter()
                        .map(|r| r.record.peer_id())
                        .collect()))
                }
                rendezvous::client::Event::DiscoverFailed { error, .. } => {
                    Some(Err(anyhow!("DISCOVER refused: {error:?}")))
                }
                _ => None,
            },
            _ => None,
        })
        .await?
    }

    /// Sends UNREGISTER for `ns` to `relay`. It has no answer: the caller checks with
    /// DISCOVER.
    pub async fn unregister(&self, relay: PeerId, ns: &str) -> anyhow::Result<()> {
        let ns = namespace(ns)?;
        self.call(move |s| s.behaviour_mut().rendezvous.unregister(ns, relay))
            .await
    }
}
