//! Everything between a socket and the swarm: the transports, the PROXY protocol of
//! trusted load balancers, the WSS listener's TLS and the QUIC socket's receive buffer.

pub mod proxy_protocol;
pub mod transport;
pub(crate) mod udp_buffer;
pub(crate) mod wss;
