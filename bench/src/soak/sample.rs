//! What the soak reads of the relay child, from outside it: resident memory, open
//! descriptors and threads from `/proc/<pid>`, and its own gauges and refusal counters
//! from its `/metrics` endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::load::Snapshot;
use crate::peers::within;
use crate::relay_child::status_number;

/// The relay's counters of requests and connections it refused: with the soak's load
/// inside every cap, each should stay at 0. (metric, label and value of the one sample
/// that is not a refusal.)
const REFUSALS: [(&str, Option<(&str, &str)>); 7] = [
    ("dusk_relay_reservation_denials_total", None),
    ("dusk_relay_circuit_denials_total", None),
    (
        "dusk_relay_rendezvous_register_requests_total",
        Some(("outcome", "OK")),
    ),
    (
        "dusk_relay_rendezvous_discover_requests_total",
        Some(("outcome", "OK")),
    ),
    ("dusk_relay_connections_refused_total", None),
    ("dusk_relay_source_cap_denials_total", None),
    ("dusk_relay_access_denials_total", None),
];

/// The gauge of tokio's alive tasks in the relay; older relays have none.
const TASKS: &str = "dusk_relay_runtime_tasks";

/// The relay's gauges at one moment, and its refusal counters so far.
#[derive(Clone, Default)]
pub struct Gauges {
    pub reservations: f64,
    pub circuits: f64,
    /// Summed over the `transport` label.
    pub connections: f64,
    pub registrations: f64,
    pub tasks: Option<f64>,
    pub refusals: BTreeMap<&'static str, f64>,
}

impl Gauges {
    /// Reservations, circuits, connections and registrations all 0: nothing of the
    /// load is left.
    pub fn idle(&self) -> bool {
        [
            self.reservations,
            self.circuits,
            self.connections,
            self.registrations,
        ]
        .iter()
        .all(|v| *v == 0.0)
    }

    /// The gauges that are not 0, named, for the report.
    pub fn left(&self) -> Vec<String> {
        [
            ("reservations", self.reservations),
            ("circuits", self.circuits),
            ("connections", self.connections),
            ("registrations", self.registrations),
        ]
        .iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(name, v)| format!("{v} {name}"))
        .collect()
    }
}

/// When a sample was taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the load started.
    Idle,
    Load,
    /// Once the load stopped and the gauges settled (or the wait for them ran out).
    After,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Load => "load",
            Phase::After => "after",
        }
    }
}

/// One row of the soak's table.
#[derive(Clone)]
pub struct Sample {
    pub phase: Phase,
    /// Since the load started (0 for the idle sample).
    pub elapsed: Duration,
    pub rss_kib: u64,
    /// RssAnon: what the relay allocated. VmRSS also counts the binary's code pages,
    /// which grow as rarer paths run for the first time, with no leak behind them.
    pub anon_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub gauges: Gauges,
    pub done: Snapshot,
}

/// The relay child under the soak: its pid and metrics endpoint.
pub struct Probe {
    pid: String,
    metrics: SocketAddr,
}

impl Probe {
    pub fn new(pid: u32, metrics: SocketAddr) -> Probe {
        Probe {
            pid: pid.to_string(),
            metrics,
        }
    }

    pub async fn sample(
        &self,
        phase: Phase,
        elapsed: Duration,
        done: Snapshot,
    ) -> anyhow::Result<Sample> {
        let gauges = self.gauges().await?;
        Ok(Sample {
            phase,
            elapsed,
            rss_kib: status_number(&self.pid, "VmRSS")?,
            anon_kib: status_number(&self.pid, "RssAnon")?,
            fds: self.descriptors()?,
            threads: status_number(&self.pid, "Threads")?,
            gauges,
            done,
        })
    }

    /// Entries of `/proc/<pid>/fd`: every socket, listener, epoll and pipe it holds.
    fn descriptors(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/fd", self.pid);
        let entries = std::fs::read_dir(&path).with_context(|| format!("cannot read {path}"))?;
        Ok(entries.count() as u64)
    }

    pub async fn gauges(&self) -> anyhow::Result<Gauges> {
        let scrape = self.scrape().await?;
        let sum = |name: &str, except: Option<(&str, &str)>| -> f64 {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == name)
                .filter(|s| except.is_none_or(|(k, v)| s.labels.get(k) != Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => 0.0,
                })
                // An empty float sum is -0.0, which would print as "-0".
                .sum::<f64>()
                + 0.0
        };
        let tasks = scrape
            .samples
            .iter()
            .any(|s| s.metric == TASKS)
            .then(|| sum(TASKS, None));
        Ok(Gauges {
            reservations: sum("dusk_relay_reservations", None),
            circuits: sum("dusk_relay_circuits", None),
            connections: sum("dusk_relay_connections", None),
            registrations: sum("dusk_relay_rendezvous_registrations", None),
            tasks,
            refusals: REFUSALS
                .iter()
                .map(|(name, except)| (*name, sum(name, *except)))
                .collect(),
        })
    }

    /// `GET /metrics`, parsed.
    async fn scrape(&self) -> anyhow::Result<prometheus_parse::Scrape> {
        let body = within(Duration::from_secs(10), "/metrics", self.get("/metrics"))
            .await?
            .with_context(|| format!("cannot read http://{}/metrics", self.metrics))?;
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .context("cannot parse /metrics")
    }

    /// A minimal HTTP/1.1 GET on loopback: the body of a 200 answer.
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("not an HTTP response"))?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            bail!("status {status}");
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            bail!("a chunked answer (this reader expects a Content-Length)");
        }
        Ok(body.to_owned())
    }
}
