//! Test support: a relay on loopback with OS-assigned ports, and real libp2p client
//! swarms (relay client, rendezvous client, identify, ping, raw streams) that drive it
//! over any of its transports. Every wait is on an event, bounded by a timeout that
//! only turns a hang into a failure. By topic: `test_relay` (a relay in this process),
//! `test_client` (client swarms), `exchange` (verified bytes through circuits),
//! `rendezvous_requests`, `http` (/metrics), `hop` (raw HOP/STOP), `process` (the
//! binary as a child), `redis` (a redis-server per test), `fleet` (nodes of one
//! fleet against it), `js` (js-libp2p peers), `browser` (one in headless Chromium),
//! `swarm` (bare TCP swarms for peers the client cannot play).
#![allow(dead_code, unused_imports, unused_macros)] // each test file uses part of this module

pub mod browser;
pub mod dusk_client;
mod exchange;
pub mod fleet;
pub mod hop;
pub mod hostile;
mod http;
pub mod js;
pub mod pebble;
pub mod process;
pub mod redis;
mod rendezvous_requests;
mod swarm;
mod test_client;
mod test_relay;

pub use exchange::*;
pub use http::*;
pub use rendezvous_requests::*;
pub use swarm::*;
pub use test_client::*;
pub use test_relay::*;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use dusk_relay::{Config, Relay, RelayEvent, RelayHandle};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, noise, ping, relay, rendezvous, websocket, yamux, Multiaddr, PeerId, StreamProtocol,
    Swarm,
};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Generous bound for anything that should take well under a second on loopback.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The protocol test clients exchange bytes on.
pub const DATA_PROTOCOL: StreamProtocol = StreamProtocol::new("/dusk-test/data/1.0.0");

pub use dusk_relay::testing::{Transport, ALL_TRANSPORTS};

/// Waits for the first relay event `f` maps to `Some`.
pub async fn relay_event<T>(
    events: &mut broadcast::Receiver<RelayEvent>,
    mut f: impl FnMut(&RelayEvent) -> Option<T>,
) -> T {
    within(EVENT_TIMEOUT, "relay event", async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = f(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("missed {n} relay events"),
                Err(broadcast::error::RecvError::Closed) => panic!("relay stopped"),
            }
        }
    })
    .await
}

pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Everything `stream` sends until it closes, within [`EVENT_TIMEOUT`]; `what` names it.
pub async fn read_to_end_within(
    stream: &mut (impl futures::AsyncRead + Unpin),
    what: &str,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    within(EVENT_TIMEOUT, what, stream.read_to_end(&mut bytes))
        .await
        .unwrap_or_else(|e| panic!("read {what}: {e}"));
    bytes
}

/// One `#[tokio::test]` per row, each running a scenario with its own arguments, so a
/// scenario over several transports reads as a table:
///
/// ```ignore
/// transport_tests! {
///     relay_8_mib;
///     circuit_over_tcp_carries_8_mib_both_ways => (Transport::Tcp, Transport::Tcp),
/// }
/// ```
///
/// makes `async fn circuit_over_tcp_carries_8_mib_both_ways()` (multi-threaded runtime)
/// that awaits `relay_8_mib(Transport::Tcp, Transport::Tcp)`.
macro_rules! transport_tests {
    ($scenario:ident; $($test:ident => ($($arg:expr),* $(,)?)),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                $scenario($($arg),*).await;
            }
        )+
    };
}
pub(crate) use transport_tests;
