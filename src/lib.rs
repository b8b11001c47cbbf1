//! dusk-relay: the edge relay of the dusk peer-to-peer chat network.
//!
//! One libp2p swarm serves circuit relay v2 and rendezvous over TCP, QUIC v1, WebSocket
//! and secure WebSocket, so dusk peers reach each other without learning each other's
//! IP address. The binary (`src/main.rs`) only reads the environment and runs a
//! [`Relay`]; everything else, including what tests need, is here.

pub mod access;
pub mod access_gate;
pub mod bandwidth;
pub mod behaviour;
pub mod boxed_handler;
pub mod cert_reload;
pub mod circuit_streams;
pub mod cli;
pub mod config;
pub mod defaults;
pub mod events;
pub mod fd_limit;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod healthcheck;
pub mod http;
pub mod identity;
pub mod ip_caps;
pub mod log_text;
pub mod log_throttle;
pub mod metrics;
pub mod relay;
pub mod rendezvous;
pub mod settings;
pub mod source;
pub mod source_limits;
pub mod tls;
pub mod transport;
pub mod udp_buffer;
pub mod wss;

pub use config::Config;
pub use events::RelayEvent;
pub use relay::{Relay, RelayError, RelayHandle};
