//! The relay's own rendezvous server (`/rendezvous/1.0.0`), wire-compatible with
//! rust-libp2p's rendezvous client, with dusk's privacy policy, spec-true limits and a
//! pluggable registration store.

pub mod memory;
pub mod redis;
pub mod store;

pub use memory::MemoryStore;
pub use store::{Store, StoreError};
