//! The one place a circuit's bytes move: between the source's HOP stream and the
//! destination's STOP stream, each way, in its own task.
//!
//! - **Backpressure end to end.** Each direction reads into one fixed buffer and reads
//!   again only once the other stream took all of it, so a slow reader stops the relay
//!   reading, its flow-control window fills and the sender waits. A circuit costs its
//!   two buffers ([`BUFFER_BYTES`] each) whatever the peers do.
//! - **Counted and capped here.** Every byte read is counted once
//!   (`dusk_relay_relayed_bytes_total`), waits for the bandwidth buckets
//!   ([`crate::limits::bandwidth`]) and counts towards the circuit's byte limit; the
//!   circuit's two ends are tallied per IP ([`crate::limits::relay_per_ip`]) for as long
//!   as the task runs.
//! - **Half-close carried over.** When one side finishes sending, the other side's
//!   stream is closed for writing, and the circuit ends when both have.

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
use tokio_util::compat::FuturesAsyncReadCompatExt;

use crate::limits::bandwidth::{Bandwidth, Throttle};
use crate::limits::relay_per_ip::CircuitLeg;

/// Each direction's buffer. Measured with `dusk-relay-bench throughput` (BENCHMARKS.md,
/// "Splice buffer"): yamux splits writes into 16 KiB frames, so a larger buffer saves
/// wake-ups but costs every idle circuit its size twice.
pub const BUFFER_BYTES: usize = 16 * 1024;

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
    let mut src = Metered::new(src, &services, budget.clone()).compat();
    let mut dst = Metered::new(dst, &services, budget).compat();
    let copy =
        tokio::io::copy_bidirectional_with_sizes(&mut src, &mut dst, BUFFER_BYTES, BUFFER_BYTES);
    match limits.duration {
        Some(duration) => match tokio::time::timeout(duration, copy).await {
            Ok(copied) => copied.map(drop),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "circuit duration limit reached",
            )),
        },
        None => copy.await.map(drop),
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
