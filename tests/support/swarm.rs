//! Bare swarms over TCP with noise and yamux, for peers the test [`Client`] cannot play:
//! a raw circuit relay destination, a second relay with a relay client, a Rust peer
//! with the relay's own yamux settings.

use super::*;

/// A swarm of `behaviour` over TCP with noise and `yamux`, keeping idle connections
/// 300 s as the dusk client does.
pub fn tcp_swarm<B: NetworkBehaviour>(
    yamux: fn() -> yamux::Config,
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(libp2p::tcp::Config::default(), noise::Config::new, yamux)
        .expect("TCP transport")
        .with_behaviour(|key| behaviour(key))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build()
}

/// [`tcp_swarm`] with libp2p's relay client: its transport (noise and `yamux` on relayed
/// connections too) and its behaviour, handed to `behaviour`.
pub fn tcp_relay_client_swarm<B: NetworkBehaviour>(
    yamux: fn() -> yamux::Config,
    behaviour: impl FnOnce(&libp2p::identity::Keypair, relay::client::Behaviour) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(libp2p::tcp::Config::default(), noise::Config::new, yamux)
        .expect("TCP transport")
        .with_relay_client(noise::Config::new, yamux)
        .expect("relay client")
        .with_behaviour(|key, relay_client| behaviour(key, relay_client))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build()
}
