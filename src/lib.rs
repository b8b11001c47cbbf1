//! dusk-relay: the edge relay of the dusk peer-to-peer chat network.
//!
//! One libp2p swarm serves circuit relay v2 and rendezvous over TCP, QUIC v1, WebSocket
//! and secure WebSocket, so dusk peers reach each other without learning each other's
//! IP address. The binary (`src/main.rs`) only reads the environment and runs a
//! [`Relay`]; everything else, including what tests need, is here.
//!
//! The docs are written for contributors: `cargo doc --document-private-items` renders
//! the links into private modules (the limits table, where each limit lives).
#![allow(rustdoc::private_intra_doc_links)]

pub mod access;
pub mod behaviour;
pub mod circuit;
pub mod cli;
pub mod config;
pub mod events;
pub mod fleet;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod multiaddr_ext;
pub mod net;
pub mod rendezvous;
pub mod server;
#[doc(hidden)]
pub mod testing;
pub mod tls;

pub use config::Config;
pub use events::RelayEvent;
pub use server::{Relay, RelayError, RelayHandle};
