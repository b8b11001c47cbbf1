//! Circuit relay v2, server side, our own: HOP and STOP ([`server`], [`handler`]), the
//! wire messages ([`proto`], [`wire`]), reservation vouchers, and the splice that
//! carries a circuit's bytes ([`splice`]).

pub mod handler;
pub mod proto;
pub(crate) mod rates;
pub(crate) mod reservations;
pub mod server;
pub mod splice;
pub mod voucher;
pub mod wire;

pub use server::{Event, Server, ServerParts};
