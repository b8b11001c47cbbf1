//! The relay's circuit streams: counted, throttled and tallied per IP.
//!
//! libp2p's relay copies bytes between a circuit's two streams (the source's HOP stream
//! and the destination's STOP stream) inside its own handler, with no byte counts and no
//! rate limit. So the relay's connections are wrapped: every substream is watched until
//! multistream-select has settled which protocol it carries, and on circuit streams
//! - every byte read is counted (each forwarded byte is read exactly once: from the HOP
//!   stream going one way, from the STOP stream going the other), so the count is the
//!   relayed traffic plus the few hundred bytes of each circuit's and reservation's
//!   handshake;
//! - reads wait for the bandwidth buckets ([`crate::limits::bandwidth`]);
//! - the stream counts as a circuit leg at its connection's IP ([`crate::limits::relay_per_ip`]).
//!
//! Which protocol a stream carries is read from what the RELAY writes on it, never from
//! what the peer sends: a peer may propose anything, any number of times (padding, then
//! "na", then HOP), but only the relay's echo of an accepted protocol (inbound) or its
//! own proposal (outbound STOP) says what was negotiated ([`Negotiation`]).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox};
use libp2p::core::transport::Boxed;
use libp2p::multiaddr::Protocol;
use libp2p::relay::{HOP_PROTOCOL_NAME, STOP_PROTOCOL_NAME};
use libp2p::{Multiaddr, PeerId, Transport};
use prometheus_client::metrics::counter::Counter;
use std::net::IpAddr;
use std::sync::Arc;

use crate::limits::bandwidth::{Bandwidth, Throttle};
use crate::limits::relay_per_ip::{CircuitLeg, IpCaps};
use crate::multiaddr_ext::ip_of;

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
    /// multistream-select is still running: what the relay wrote so far, parsed, and how
    /// many bytes were read meanwhile (charged if the stream turns out a circuit).
    Negotiating {
        negotiation: Negotiation,
        read: u64,
    },
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
            kind: Kind::Negotiating {
                negotiation: Negotiation::default(),
                read: 0,
            },
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

    /// Bytes the peer sent, read by the relay.
    fn count(&mut self, read: &[u8]) {
        let services = &self.connection.services;
        match &mut self.kind {
            Kind::Circuit { throttle, .. } => {
                services.relayed.inc_by(read.len() as u64);
                if let Some(throttle) = throttle {
                    throttle.charge(read.len());
                }
            }
            Kind::Negotiating { read: before, .. } => *before += read.len() as u64,
            Kind::Other => {}
        }
    }

    /// Bytes the relay wrote (taken by the muxer): while negotiating, they say which
    /// protocol the stream carries.
    fn wrote(&mut self, written: &[u8]) {
        let Kind::Negotiating { negotiation, read } = &mut self.kind else {
            return;
        };
        match negotiation.feed(written) {
            Verdict::Undecided => {}
            Verdict::Other => self.kind = Kind::Other,
            Verdict::Circuit => {
                let read = *read;
                let services = &self.connection.services;
                // The negotiation's bytes are the circuit's too: counted and paid for now.
                services.relayed.inc_by(read);
                let mut throttle = services.bandwidth.throttle(self.connection.peer);
                if let Some(throttle) = &mut throttle {
                    throttle.charge(usize::try_from(read).unwrap_or(usize::MAX));
                }
                self.kind = Kind::Circuit {
                    throttle,
                    _leg: self
                        .connection
                        .ip
                        .map(|ip| services.ip_caps.circuit_leg(ip)),
                };
            }
        }
    }
}

/// What the relay's writes so far say about a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Undecided,
    /// HOP (the relay echoed the peer's proposal) or STOP (the relay proposed it).
    Circuit,
    Other,
}

/// multistream-select's frames carry a length of at most two varint bytes (14 bits;
/// libp2p's `length_delimited.rs`, `MAX_LEN_BYTES`).
const MAX_LENGTH_BYTES: u8 = 2;

/// What is kept of a message: enough for the longest id compared
/// (`/libp2p/circuit/relay/0.2.0/stop\n`, 33 bytes). Longer messages are skipped over
/// without being stored.
const KEPT: usize = 40;

const HEADER: &[u8] = b"/multistream/1.0.0\n";
const NOT_AVAILABLE: &[u8] = b"na\n";

/// A reader of the multistream-select messages the relay writes on one stream
/// (`multistream-select` 0.14, `protocol.rs`): each is an unsigned-varint length and
/// that many bytes. The listener writes the header, then "na" for every proposal it
/// refuses, then the accepted protocol id; the dialer writes the header and its
/// proposal. The first protocol id written that is not the header decides. An `ls`
/// answer (a list, several newlines) is skipped. Never gives up: a peer can make the
/// relay write any number of "na"; the state is a few bytes whatever it writes.
#[derive(Debug)]
pub(crate) struct Negotiation {
    reading: Reading,
}

#[derive(Debug)]
enum Reading {
    /// The length prefix: value so far and bytes read of it.
    Length {
        value: usize,
        bytes: u8,
    },
    /// A message body: bytes still to come, its whole length, its first [`KEPT`] bytes,
    /// how many newlines it held and its last byte.
    Body {
        left: usize,
        len: usize,
        kept: [u8; KEPT],
        newlines: usize,
        last: u8,
    },
    Done(Verdict),
}

impl Default for Negotiation {
    fn default() -> Self {
        Negotiation {
            reading: Reading::Length { value: 0, bytes: 0 },
        }
    }
}

impl Negotiation {
    /// Reads `written`, the relay's next bytes on the stream.
    pub(crate) fn feed(&mut self, mut written: &[u8]) -> Verdict {
        while !written.is_empty() {
            match &mut self.reading {
                Reading::Done(verdict) => return *verdict,
                Reading::Length { value, bytes } => {
                    let byte = written[0];
                    written = &written[1..];
                    *value |= usize::from(byte & 0x7f) << (7 * *bytes);
                    *bytes += 1;
                    if byte & 0x80 == 0 {
                        let len = *value;
                        self.reading = match len {
                            0 => Reading::Length { value: 0, bytes: 0 },
                            _ => Reading::Body {
                                left: len,
                                len,
                                kept: [0; KEPT],
                                newlines: 0,
                                last: 0,
                            },
                        };
                    } else if *bytes == MAX_LENGTH_BYTES {
                        // Not multistream-select: not a stream we meter.
                        self.reading = Reading::Done(Verdict::Other);
                    }
                }
                Reading::Body {
                    left,
                    len,
                    kept,
                    newlines,
                    last,
                } => {
                    let take = (*left).min(written.len());
                    let (chunk, rest) = written.split_at(take);
                    written = rest;
                    let offset = *len - *left;
                    if offset < KEPT {
                        let n = (KEPT - offset).min(chunk.len());
                        kept[offset..offset + n].copy_from_slice(&chunk[..n]);
                    }
                    *newlines += chunk.iter().filter(|b| **b == b'\n').count();
                    if let Some(byte) = chunk.last() {
                        *last = *byte;
                    }
                    *left -= take;
                    if *left == 0 {
                        let verdict =
                            message_verdict(&kept[..(*len).min(KEPT)], *len, *newlines, *last);
                        self.reading = match verdict {
                            Verdict::Undecided => Reading::Length { value: 0, bytes: 0 },
                            decided => Reading::Done(decided),
                        };
                    }
                }
            }
        }
        match self.reading {
            Reading::Done(verdict) => verdict,
            _ => Verdict::Undecided,
        }
    }
}

/// One whole message: the header, "na", an `ls` answer or anything not a protocol id
/// leaves the stream undecided; a protocol id decides it.
fn message_verdict(kept: &[u8], len: usize, newlines: usize, last: u8) -> Verdict {
    if kept == HEADER || kept == NOT_AVAILABLE {
        return Verdict::Undecided;
    }
    // A protocol id: `/…\n`, one newline (an `ls` answer has one per id, and one more).
    let protocol_id = kept.first() == Some(&b'/') && last == b'\n' && newlines == 1;
    if !protocol_id {
        return Verdict::Undecided;
    }
    let id = &kept[..kept.len() - 1];
    let circuit = len <= KEPT
        && (id == HOP_PROTOCOL_NAME.as_ref().as_bytes()
            || id == STOP_PROTOCOL_NAME.as_ref().as_bytes());
    if circuit {
        Verdict::Circuit
    } else {
        Verdict::Other
    }
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
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
            this.wrote(&buf[..n]);
            return Poll::Ready(Ok(n));
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

    /// One multistream-select message.
    fn msg(text: &str) -> Vec<u8> {
        let mut len = unsigned_varint::encode::usize_buffer();
        let mut out = unsigned_varint::encode::usize(text.len(), &mut len).to_vec();
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn hop() -> String {
        format!("{HOP_PROTOCOL_NAME}\n")
    }

    fn stop() -> String {
        format!("{STOP_PROTOCOL_NAME}\n")
    }

    /// What the relay's writes decide, fed in one piece and split at every byte.
    fn verdict(written: &[u8]) -> Verdict {
        let whole = Negotiation::default().feed(written);
        for cut in 0..written.len() {
            let mut split = Negotiation::default();
            let first = split.feed(&written[..cut]);
            let second = split.feed(&written[cut..]);
            assert_eq!(
                if first == Verdict::Undecided {
                    second
                } else {
                    first
                },
                whole,
                "split at {cut}"
            );
        }
        whole
    }

    #[test]
    fn the_relays_echo_or_proposal_of_hop_or_stop_makes_a_circuit() {
        let header = msg("/multistream/1.0.0\n");
        // Inbound HOP: header, then the echo of the accepted proposal.
        assert_eq!(
            verdict(&[header.clone(), msg(&hop())].concat()),
            Verdict::Circuit
        );
        // Outbound STOP: header and proposal, data in the same write (V1Lazy).
        let lazy = [header.clone(), msg(&stop()), vec![0x0a, 0x08, 0x00]].concat();
        assert_eq!(verdict(&lazy), Verdict::Circuit);
        // Anything else negotiated is not a circuit, whatever comes after it.
        let ping = [header.clone(), msg("/ipfs/ping/1.0.0\n"), msg(&hop())].concat();
        assert_eq!(verdict(&ping), Verdict::Other);
        // Only the header so far: undecided.
        assert_eq!(verdict(&header), Verdict::Undecided);
    }

    #[test]
    fn refusals_and_ls_answers_never_decide_however_many() {
        let mut written = msg("/multistream/1.0.0\n");
        for _ in 0..10_000 {
            written.extend(msg("na\n"));
        }
        // An `ls` answer listing HOP (ids with their own lengths, then a newline) is a
        // list, not a negotiated protocol.
        let mut ls = Vec::new();
        for id in ["/ipfs/id/1.0.0\n".to_owned(), hop(), stop()] {
            ls.extend(msg(&id));
        }
        ls.push(b'\n');
        let ls = String::from_utf8(ls).expect("utf-8");
        written.extend(msg(&ls));
        let mut parser = Negotiation::default();
        assert_eq!(parser.feed(&written), Verdict::Undecided);
        assert_eq!(parser.feed(&msg(&hop())), Verdict::Circuit);
    }

    #[test]
    fn a_long_protocol_id_is_skipped_without_being_kept_and_is_not_a_circuit() {
        let long = format!("{HOP_PROTOCOL_NAME}{}\n", "x".repeat(5000));
        let written = [msg("/multistream/1.0.0\n"), msg(&long)].concat();
        assert_eq!(verdict(&written), Verdict::Other);
        // A length prefix longer than multistream-select's two bytes: not ours to meter.
        assert_eq!(
            Negotiation::default().feed(&[0x80, 0x80, 0x01]),
            Verdict::Other
        );
    }

    /// Bytes counted on a stream whose relay side wrote `writes[i]` before the peer's
    /// `reads[i]` arrived.
    fn counted(steps: &[(&[u8], &[u8])]) -> u64 {
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
        for (written, read) in steps {
            stream.wrote(written);
            stream.count(read);
        }
        relayed.get()
    }

    #[test]
    fn a_circuit_counts_every_byte_read_on_it_from_the_first() {
        let header = msg("/multistream/1.0.0\n");
        let padded = msg(&format!("/{}\n", "x".repeat(200)));
        let data = [7u8; 1000];
        // The peer: header and padding; the relay: header and "na"; the peer: HOP; the
        // relay: the echo; then data.
        let first = [header.clone(), padded].concat();
        let second = msg(&hop());
        let steps: [(&[u8], &[u8]); 3] = [
            (&[], &first),
            (&[header.clone(), msg("na\n")].concat(), &second),
            (&msg(&hop()), &data),
        ];
        assert_eq!(
            counted(&steps),
            (first.len() + second.len() + data.len()) as u64
        );

        let ping = msg("/ipfs/ping/1.0.0\n");
        let steps: [(&[u8], &[u8]); 2] = [
            (&[], &[header.clone(), ping.clone()].concat()),
            (&[header, ping].concat(), &data),
        ];
        assert_eq!(counted(&steps), 0);
    }
}
