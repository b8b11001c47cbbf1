//! Circuits the relay carries: their wire messages and their streams, counted,
//! throttled and tallied.

pub mod proto;
pub(crate) mod streams;
