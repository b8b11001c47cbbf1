//! Circuits the relay carries: their streams, counted, throttled and tallied.

pub mod streams;
