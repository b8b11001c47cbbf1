//! The one place a circuit's bytes move: between the source's HOP stream and the
//! destination's STOP stream, each way, in the circuit's own task.
//!
//! - **Backpressure end to end.** Each direction reads into one buffer and reads again
//!   only once the other stream took all of it, so a slow reader stops the relay
//!   reading, its flow-control window fills and the sender waits.
//! - **Bounded memory, most of it only while bytes flow.** A direction's buffer starts
//!   at [`SMALL_BUFFER`] (chat messages fit); a read that fills it grows it to
//!   [`LARGE_BUFFER`] (a bulk transfer), and it shrinks back once the flow is light
//!   again. An idle circuit costs two small buffers; a circuit never more than two large.
//! - **Counted and capped here.** Every byte read is counted once
//!   (`dusk_relay_relayed_bytes_total`), waits for the bandwidth buckets
//!   ([`crate::limits::bandwidth`]) and counts towards the circuit's byte limit; the
//!   circuit's two ends are tallied per IP ([`crate::limits::relay_per_ip`]) for as long
//!   as the task runs.
//! - **Half-close carried over.** When one side finishes sending, the other side's
//!   stream is closed for writing, and the circuit ends when both have.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p::swarm::Stream;
use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;

use crate::limits::bandwidth::{Bandwidth, Throttle};
use crate::limits::relay_per_ip::CircuitLeg;

/// A direction's buffer while its flow is light: a chat message or a few.
pub const SMALL_BUFFER: usize = 4 * 1024;

/// A direction's buffer while it carries a bulk transfer. Measured with
/// `dusk-relay-bench --scenario throughput` (BENCHMARKS.md, "Tunings kept").
pub const LARGE_BUFFER: usize = 64 * 1024;

/// What every circuit shares.
#[derive(Clone)]
pub struct SpliceServices {
    pub relayed: Counter,
    pub bandwidth: Arc<Bandwidth>,
}

/// One end of a circuit: its stream, whose it is, and its place in the per-IP tally
/// (held as long as the circuit is).
pub struct End {
    pub stream: Stream,
    pub peer: PeerId,
    pub leg: Option<CircuitLeg>,
}

/// How long a circuit may live and how many bytes (both ways together) it may carry;
/// `None` and 0: no limit.
#[derive(Debug, Clone, Copy)]
pub struct CircuitLimits {
    pub duration: Option<Duration>,
    pub bytes: u64,
}

/// Moves bytes both ways until both sides finished, either fails, or a limit is hit.
pub async fn splice(
    src: End,
    dst: End,
    limits: CircuitLimits,
    services: SpliceServices,
) -> io::Result<()> {
    let budget = Arc::new(Budget {
        used: AtomicU64::new(0),
        limit: limits.bytes,
    });
    let mut src = Metered::new(src, &services, budget.clone());
    let mut dst = Metered::new(dst, &services, budget);
    let (mut forward, mut backward) = (Direction::default(), Direction::default());
    let copy = poll_fn(|cx| {
        let forward = forward.poll(cx, &mut src, &mut dst)?;
        let backward = backward.poll(cx, &mut dst, &mut src)?;
        match (forward, backward) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    });
    match limits.duration {
        Some(duration) => tokio::time::timeout(duration, copy)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "circuit duration limit reached",
                ))
            }),
        None => copy.await,
    }
}

/// One direction of a circuit: what was read and not yet written.
#[derive(Default)]
struct Direction {
    buffer: Vec<u8>,
    /// `buffer[written..filled]` is still to be written.
    written: usize,
    filled: usize,
    /// Bytes written since the last flush.
    unflushed: bool,
    /// The largest read since the reader last had nothing: whether the flow is light.
    burst_peak: usize,
    /// The reader finished and the writer was closed.
    finished: bool,
    reader_done: bool,
}

impl Direction {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut Metered,
        writer: &mut Metered,
    ) -> Poll<io::Result<()>> {
        if self.finished {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.written < self.filled {
                let n =
                    ready!(Pin::new(&mut *writer)
                        .poll_write(cx, &self.buffer[self.written..self.filled]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.unflushed = true;
            }
            if self.reader_done {
                ready!(Pin::new(&mut *writer).poll_close(cx))?;
                self.finished = true;
                self.buffer = Vec::new();
                return Poll::Ready(Ok(()));
            }
            let size = self.next_size();
            self.buffer.resize(size, 0);
            match Pin::new(&mut *reader).poll_read(cx, &mut self.buffer) {
                Poll::Ready(Ok(0)) => self.reader_done = true,
                Poll::Ready(Ok(n)) => {
                    (self.written, self.filled) = (0, n);
                    self.burst_peak = self.burst_peak.max(n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing more to read for now: what was written goes out, and a
                    // large buffer left from a burst is given back.
                    if self.unflushed {
                        ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    if self.burst_peak < SMALL_BUFFER && self.buffer.len() > SMALL_BUFFER {
                        self.buffer = Vec::new();
                    }
                    self.burst_peak = 0;
                    return Poll::Pending;
                }
            }
        }
    }

    /// A read that filled the buffer asks for the large one; a light flow keeps the
    /// small one.
    fn next_size(&self) -> usize {
        if self.buffer.len() >= SMALL_BUFFER && self.filled == self.buffer.len() {
            LARGE_BUFFER
        } else {
            self.buffer.len().max(SMALL_BUFFER)
        }
    }
}

/// The bytes a circuit may still carry, shared by its two directions.
struct Budget {
    used: AtomicU64,
    /// 0: no limit.
    limit: u64,
}

/// A circuit stream whose reads are throttled, counted and charged to the budget.
struct Metered {
    stream: Stream,
    throttle: Option<Throttle>,
    relayed: Counter,
    budget: Arc<Budget>,
    _leg: Option<CircuitLeg>,
}

impl Metered {
    fn new(end: End, services: &SpliceServices, budget: Arc<Budget>) -> Self {
        Metered {
            stream: end.stream,
            throttle: services.bandwidth.throttle(end.peer),
            relayed: services.relayed.clone(),
            budget,
            _leg: end.leg,
        }
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut len = buf.len();
        if let Some(throttle) = &mut this.throttle {
            ready!(throttle.poll_ready(cx));
            len = len.min(throttle.max_read());
        }
        let n = ready!(Pin::new(&mut this.stream).poll_read(cx, &mut buf[..len]))?;
        this.relayed.inc_by(n as u64);
        if let Some(throttle) = &mut this.throttle {
            throttle.charge(n);
        }
        let used = this.budget.used.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if this.budget.limit > 0 && used > this.budget.limit {
            return Poll::Ready(Err(io::Error::other("circuit byte limit reached")));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}
