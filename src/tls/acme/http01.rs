//! The HTTP-01 responder: `/.well-known/acme-challenge/<token>` on a plain HTTP port,
//! usually the public port 80, so anyone can connect to it.
//!
//! The CA needs one tiny `GET` answered; everything else a client can do is an attack
//! on the relay's file descriptors. So connections are capped ([`HttpResponderLimits`]),
//! each serves one request (no keep-alive), must send its head within a timeout into a
//! small buffer, and is cut at a deadline whatever it is doing (a slow body, a reader
//! that never reads). What is left for a hostile client is occupying the cap, which
//! costs the relay at most `max_connections` descriptors for at most the deadline each.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::challenge::Challenges;
use crate::server::log_throttle::{folded_suffix, LogThrottle};

/// hyper's read buffer per connection, which bounds the request head. The CA's request
/// is a request line with a 43-character token and a few headers, well under 1 KiB;
/// 8 KiB is also the smallest buffer hyper accepts (it panics below).
const MAX_BUF_SIZE: usize = 8 * 1024;

/// Pause after a failed `accept` that is not about one connection (EMFILE, ENFILE,
/// ENOBUFS): retrying at once would spin a core while descriptors are exhausted.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// How much of the relay the HTTP-01 responder may hold, at worst.
#[derive(Debug, Clone, Copy)]
pub struct HttpResponderLimits {
    /// Connections served at once, over all the responder's addresses; beyond it new
    /// ones are closed as soon as accepted. 256: a validation is a handful of
    /// connections (Let's Encrypt checks from a few vantage points), and 256
    /// descriptors are a small share of the relay's limit.
    pub max_connections: usize,
    /// Time from the first read until the request head is complete. 5 s: the CA sends
    /// its head in one packet; a client slower than that is holding a slot on purpose.
    pub header_read_timeout: Duration,
    /// Lifetime of a connection, whatever it is doing. 10 s: the CA's whole exchange is
    /// one round trip; this cuts slow bodies and clients that never read the response,
    /// which the head timeout does not cover.
    pub connection_deadline: Duration,
}

impl Default for HttpResponderLimits {
    fn default() -> Self {
        HttpResponderLimits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            connection_deadline: Duration::from_secs(10),
        }
    }
}

/// Serves `/.well-known/acme-challenge/<token>` on `addrs` until dropped. Dropping stops
/// accepting; connections already open end by their deadline.
pub struct HttpResponder {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    slots: Arc<Semaphore>,
    max_connections: usize,
    pub local_addrs: Vec<SocketAddr>,
}

impl HttpResponder {
    pub async fn bind(
        addrs: &[SocketAddr],
        challenges: Arc<Challenges>,
        limits: HttpResponderLimits,
    ) -> Result<Self, (SocketAddr, io::Error)> {
        let app = Router::new()
            .route("/.well-known/acme-challenge/{token}", get(http_challenge))
            .with_state(challenges);
        // Semaphore::new panics above MAX_PERMITS; no responder needs that many anyway.
        let max_connections = limits.max_connections.min(Semaphore::MAX_PERMITS);
        // One cap for every address: the descriptors are the process's, not a listener's.
        let slots = Arc::new(Semaphore::new(max_connections));
        let mut tasks = Vec::new();
        let mut local_addrs = Vec::new();
        for addr in addrs {
            let listener = TcpListener::bind(addr).await.map_err(|e| (*addr, e))?;
            local_addrs.push(listener.local_addr().map_err(|e| (*addr, e))?);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                app.clone(),
                slots.clone(),
                limits,
            )));
        }
        Ok(HttpResponder {
            tasks,
            slots,
            max_connections,
            local_addrs,
        })
    }

    /// Connections being served now; never more than `max_connections`.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }
}

impl Drop for HttpResponder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    slots: Arc<Semaphore>,
    limits: HttpResponderLimits,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(false)
        .max_buf_size(MAX_BUF_SIZE);
    let mut log = LogThrottle::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            // That one connection went away before we took it: nothing to wait for.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                if let Some(folded) = log.admit("accept", Instant::now()) {
                    warn!(
                        %error,
                        "the ACME HTTP-01 responder cannot accept connections; retrying{}",
                        folded_suffix(folded)
                    );
                }
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        // Full: close the new connection at once rather than stop accepting. Left in
        // the kernel's listen queue, a flood would keep the queue full (the CA's SYN
        // dropped behind it) and each queued connection would be served seconds later,
        // after its client has gone. Closed, every excess client is answered at once
        // (the CA retries), the queue stays empty and the cost is one accept and close.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            if let Some(folded) = log.admit("full", Instant::now()) {
                warn!(
                    max_connections = limits.max_connections,
                    "the ACME HTTP-01 responder is full; closing new connections{}",
                    folded_suffix(folded)
                );
            }
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            builder.clone(),
            app.clone(),
            permit,
            limits.connection_deadline,
        ));
    }
}

/// Serves one request on `stream`, holding `permit` (a slot of the cap) until the
/// connection is closed or its deadline passes.
async fn serve_connection(
    stream: TcpStream,
    builder: http1::Builder,
    app: Router,
    permit: OwnedSemaphorePermit,
    deadline: Duration,
) {
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    match tokio::time::timeout(deadline, connection).await {
        Ok(Ok(())) => {}
        // Timeouts, oversized heads, resets: the client's problem, not the operator's.
        Ok(Err(error)) => debug!(%error, "ACME HTTP-01 connection ended"),
        Err(_) => debug!("ACME HTTP-01 connection cut at its deadline"),
    }
    // The stream is closed by now (dropped with the connection future above).
    drop(permit);
}

/// Errors about the connection being accepted, not the listener (as axum::serve treats them).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn http_challenge(
    State(challenges): State<Arc<Challenges>>,
    Path(token): Path<String>,
) -> Result<String, StatusCode> {
    if let Some(found) = challenges.http_response(&token) {
        return Ok(found);
    }
    // Another node of the fleet may have ordered with this token.
    match challenges.shared() {
        Some(shared) => shared.lookup(&token).await.ok_or(StatusCode::NOT_FOUND),
        None => Err(StatusCode::NOT_FOUND),
    }
}
