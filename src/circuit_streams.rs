//! The relay's circuit streams: counted, throttled and tallied per IP.
//!
//! libp2p's relay copies bytes between a circuit's two streams (the source's HOP stream
//! and the destination's STOP stream) inside its own handler, with no byte counts and no
//! rate limit. So the relay's connections are wrapped: every substream is watched until
//! its first bytes read show which protocol multistream-select negotiated on it, and on
//! circuit streams
//! - every byte read is counted (each forwarded byte is read exactly once: from the HOP
//!   stream going one way, from the STOP stream going the other), so the count is the
//!   relayed traffic plus the few hundred bytes of each circuit's and reservation's
//!   handshake;
//! - reads wait for the bandwidth buckets ([`crate::bandwidth`]);
//! - the stream counts as a circuit leg at its connection's IP ([`crate::ip_caps`]).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox};
use libp2p::core::transport::Boxed;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Transport};
use prometheus_client::metrics::counter::Counter;
use std::net::IpAddr;
use std::sync::Arc;

use crate::bandwidth::{Bandwidth, Throttle};
use crate::ip_caps::{CircuitLeg, IpCaps};
use crate::source::ip_of;

/// The prefix shared by HOP and STOP protocol ids; it shows up in the first bytes read
/// on both legs (the source proposes HOP; the destination echoes STOP).
const CIRCUIT_PROTOCOL_PREFIX: &[u8] = b"/libp2p/circuit/relay/0.2.0/";

/// multistream-select's header and the protocol id fit in this; a stream that has not
/// shown a circuit protocol id by then is something else.
const SNIFF_LIMIT: usize = 128;

/// Writes on a circuit stream are gathered up to this before they go to the muxer.
/// libp2p-relay copies a circuit through an 8 KiB `BufReader`, so each write it makes is
/// at most 8 KiB; yamux turns every write into a frame and a wake-up of the connection
/// task. Gathering them (flushed whenever the copy finds its source empty, as it always
/// flushes then) halves the frames at yamux's 16 KiB split size: ~10 % less relay CPU
/// per byte over TCP, WS and WSS. Only on yamux connections: a QUIC stream buffers
/// writes itself, and there gathering measured no difference, so it would only add a
/// copy (BENCHMARKS.md, "Tuning kept").
const CIRCUIT_WRITE_BUFFER: usize = 64 * 1024;

/// What a circuit stream needs from the relay.
#[derive(Clone)]
pub struct CircuitServices {
    pub relayed: Counter,
    pub bandwidth: Arc<Bandwidth>,
    pub ip_caps: IpCaps,
}

/// Wraps every connection of `transport` so its circuit streams are counted, throttled
/// and tallied.
pub fn instrument(
    transport: Boxed<(PeerId, StreamMuxerBox)>,
    services: CircuitServices,
) -> Boxed<(PeerId, StreamMuxerBox)> {
    transport
        .map(move |(peer, muxer), endpoint| {
            let muxer = CountingMuxer {
                inner: muxer,
                connection: Arc::new(Connection {
                    peer,
                    ip: ip_of(endpoint.get_remote_address()),
                    gather_writes: !is_quic(endpoint.get_remote_address()),
                    services: services.clone(),
                }),
            };
            (peer, StreamMuxerBox::new(muxer))
        })
        .boxed()
}

fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

struct Connection {
    peer: PeerId,
    ip: Option<IpAddr>,
    /// Whether circuit writes are gathered ([`CIRCUIT_WRITE_BUFFER`]).
    gather_writes: bool,
    services: CircuitServices,
}

struct CountingMuxer {
    inner: StreamMuxerBox,
    connection: Arc<Connection>,
}

impl StreamMuxer for CountingMuxer {
    type Substream = CountingStream;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let inner = ready!(Pin::new(&mut self.inner).poll_inbound(cx))?;
        Poll::Ready(Ok(CountingStream::new(inner, self.connection.clone())))
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let inner = ready!(Pin::new(&mut self.inner).poll_outbound(cx))?;
        Poll::Ready(Ok(CountingStream::new(inner, self.connection.clone())))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

enum Kind {
    /// Still reading the negotiation: the first bytes read so far.
    Unknown(Vec<u8>),
    Circuit {
        throttle: Option<Throttle>,
        _leg: Option<CircuitLeg>,
    },
    Other,
}

struct CountingStream {
    inner: SubstreamBox,
    kind: Kind,
    connection: Arc<Connection>,
    /// Circuit writes not yet given to the muxer, from `unwritten` on.
    pending: Vec<u8>,
    unwritten: usize,
}

impl CountingStream {
    fn new(inner: SubstreamBox, connection: Arc<Connection>) -> Self {
        CountingStream {
            inner,
            kind: Kind::Unknown(Vec::new()),
            connection,
            pending: Vec::new(),
            unwritten: 0,
        }
    }

    /// Gives every gathered byte to the muxer.
    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.unwritten < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.unwritten..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unwritten += n;
        }
        self.pending.clear();
        self.unwritten = 0;
        Poll::Ready(Ok(()))
    }

    fn count(&mut self, read: &[u8]) {
        let services = &self.connection.services;
        match &mut self.kind {
            Kind::Circuit { throttle, .. } => {
                services.relayed.inc_by(read.len() as u64);
                if let Some(throttle) = throttle {
                    throttle.charge(read.len());
                }
            }
            Kind::Other => {}
            Kind::Unknown(seen) => {
                let room = SNIFF_LIMIT.saturating_sub(seen.len());
                seen.extend_from_slice(&read[..read.len().min(room)]);
                if contains(seen, CIRCUIT_PROTOCOL_PREFIX) {
                    services
                        .relayed
                        .inc_by((seen.len() + read.len().saturating_sub(room)) as u64);
                    self.kind = Kind::Circuit {
                        throttle: services.bandwidth.throttle(self.connection.peer),
                        _leg: self
                            .connection
                            .ip
                            .map(|ip| services.ip_caps.circuit_leg(ip)),
                    };
                } else if seen.len() >= SNIFF_LIMIT {
                    self.kind = Kind::Other;
                }
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut len = buf.len();
        if let Kind::Circuit {
            throttle: Some(throttle),
            ..
        } = &mut self.kind
        {
            ready!(throttle.poll_ready(cx));
            len = len.min(throttle.max_read());
        }
        let n = ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf[..len]))?;
        self.count(&buf[..n]);
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let gather = this.connection.gather_writes && matches!(this.kind, Kind::Circuit { .. });
        if !gather && this.pending.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.pending.len() + buf.len() > CIRCUIT_WRITE_BUFFER {
            ready!(this.poll_write_pending(cx))?;
        }
        if buf.len() >= CIRCUIT_WRITE_BUFFER {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_pending(cx))?;
        // The copy flushes when its source has nothing more to read: the burst is over.
        // Give the buffer back, or every circuit that ever moved a burst would hold
        // 64 KiB per direction for as long as it lives (hours, for a chat).
        self.pending = Vec::new();
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_pending(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(reads: &[&[u8]]) -> u64 {
        let relayed = Counter::default();
        let connection = Arc::new(Connection {
            peer: PeerId::random(),
            ip: None,
            gather_writes: true,
            services: CircuitServices {
                relayed: relayed.clone(),
                bandwidth: Bandwidth::unlimited(),
                ip_caps: IpCaps::default(),
            },
        });
        let inner = SubstreamBox::new(futures::io::Cursor::new(Vec::new()));
        let mut stream = CountingStream::new(inner, connection);
        for read in reads {
            stream.count(read);
        }
        relayed.get()
    }

    #[test]
    fn only_streams_that_negotiate_a_circuit_protocol_are_counted() {
        let hop: &[u8] = b"\x13/multistream/1.0.0\n\x20/libp2p/circuit/relay/0.2.0/hop\n";
        let data = [7u8; 1000];
        assert_eq!(counted(&[hop, &data]), (hop.len() + data.len()) as u64);
        // The protocol id split across reads, and data in the same read.
        let (a, b) = hop.split_at(30);
        let b_and_data = [b, &data[..]].concat();
        assert_eq!(counted(&[a, &b_and_data]), (hop.len() + data.len()) as u64);

        let ping: &[u8] = b"\x13/multistream/1.0.0\n\x11/ipfs/ping/1.0.0\n";
        assert_eq!(counted(&[ping, &data, hop]), 0);
    }
}
