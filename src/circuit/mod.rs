//! Circuits the relay carries: their wire messages, reservation vouchers, and their
//! streams, counted, throttled and tallied.

pub mod proto;
pub(crate) mod streams;
pub mod voucher;
