//! The relay's own rendezvous server (`/rendezvous/1.0.0`), wire-compatible with
//! rust-libp2p's rendezvous client, with dusk's privacy policy, spec-true limits and a
//! pluggable registration store.

pub(crate) mod addresses;
pub(crate) mod codec;
pub(crate) mod memory;
pub mod proto;
pub mod redis;
pub(crate) mod server;
pub(crate) mod sources;
pub mod store;

pub use addresses::{is_circuit_via, OwnAddresses};
pub use codec::{MAX_MESSAGE_BYTES, PROTOCOL};
pub use memory::MemoryStore;
pub use proto::ResponseStatus;
pub use server::{Event, Policy, Server};
pub use store::{Store, StoreError};
