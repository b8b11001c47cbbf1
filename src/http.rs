//! The relay's private HTTP endpoint: `/metrics` (OpenMetrics), `/healthz` (the event
//! loop is turning) and `/readyz` (listeners up, not stopping). `GET` and `HEAD`.
//! Bound to 127.0.0.1 by default: metrics describe the relay's load, not for the world.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// `/healthz` fails when the event loop has not ticked for this long (it ticks every
/// [`crate::config::defaults::EVENT_LOOP_TICK`] even when idle).
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// Liveness and readiness, written by the event loop, read by the endpoint.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    last_tick_ms: AtomicU64,
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        }
    }
}

impl Health {
    /// The event loop is turning.
    pub fn tick(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_tick_ms.store(now, Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn is_alive(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_tick_ms.load(Ordering::Relaxed))
            < STALE_AFTER.as_millis() as u64
    }
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

/// Serves the endpoint on `listener` until `stop` fires or is dropped.
pub fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { registry, health });
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    })
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &shared.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {error}\n"),
        ),
    }
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.health.is_alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "event loop stalled\n")
    }
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
