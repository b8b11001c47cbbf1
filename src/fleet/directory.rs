//! The reservation directory: which node of the fleet holds each peer's reservation,
//! in the fleet's Redis/Valkey.
//!
//! | key                          | value                                  | expiry              |
//! |------------------------------|----------------------------------------|---------------------|
//! | `dusk:dir:<peer>`            | the holding node's mesh multiaddr      | the reservation's   |
//! | `dusk:dir:node:<mesh peer>`  | `1`: this node has written its claims  | [`MARKER_TTL`]      |
//!
//! A reservation on another node simply overwrites the key (the last RESERVE wins,
//! which is where the peer is now). A node deletes a key only while it still names
//! that node (a compare-and-delete script), so a peer that moved is not unlisted by
//! the node it left. Peer ids and mesh addresses only: never a client's IP.
//!
//! Writes never block the relay: the circuit server hands claims and releases to one
//! task ([`write_changes`]) that batches them into a pipeline. While Redis is away the
//! task keeps what this node holds and retries each second; once Redis answers, or if
//! its marker key is gone (Redis restarted without its data), every claim this node
//! holds is written again. Lookups fail within [`LOOKUP_TIMEOUT`], so a CONNECT across
//! the fleet is answered at once while Redis is down.
//!
//! A node that stops unlists what it holds ([`Directory::withdraw`]): its reservations
//! end with it, and a key left behind would send every CONNECT to those peers to a node
//! that is gone (`CONNECTION_FAILED`, up to [`super::forward::REACH_TIMEOUT`] for a
//! vanished host) until the reservation's expiry, instead of `NO_RESERVATION` at once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use libp2p::{Multiaddr, PeerId};
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::FleetError;

/// Every key of the directory starts with this.
pub const PREFIX: &str = "dusk:dir:";

/// How long a lookup may take, a reconnect included: Redis on the operator's network
/// answers in milliseconds, and the client is waiting for its CONNECT's answer.
pub const LOOKUP_TIMEOUT: Duration = crate::rendezvous::redis::OPERATION_TIMEOUT;

/// How often the writer checks its marker and retries what failed.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The marker outlives a few checks, so one slow check does not force a full rewrite.
const MARKER_TTL: Duration = Duration::from_secs(10);

/// Releases kept while Redis is away; past this they are dropped (each key expires
/// with its reservation anyway).
const MAX_PENDING_RELEASES: usize = 100_000;

/// Deletes the key only while it names this node.
const RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

enum Change {
    Claim {
        peer: PeerId,
        ttl: Duration,
    },
    Release {
        peer: PeerId,
    },
    /// The node stops: release everything, answer, and write nothing more.
    Withdraw {
        done: oneshot::Sender<()>,
    },
}

/// The directory as one node sees it. Cloning is cheap.
#[derive(Clone)]
pub struct Directory {
    connection: ConnectionManager,
    /// This node's mesh address, the value of its claims.
    node: Multiaddr,
    changes: mpsc::UnboundedSender<Change>,
    /// 1 while the writer's last write or check reached Redis.
    up: Gauge,
}

impl Directory {
    /// Connects lazily (a relay starts while Redis is briefly down) and starts the
    /// writer task, which ends when the last clone of the directory is dropped.
    pub fn start(url: &str, node: Multiaddr) -> Result<Directory, FleetError> {
        let connection =
            crate::rendezvous::redis::lazy_connection(url).map_err(FleetError::Redis)?;
        let (changes, receiver) = mpsc::unbounded_channel();
        let up = Gauge::default();
        tokio::spawn(write_changes(
            connection.clone(),
            node.to_string(),
            receiver,
            up.clone(),
        ));
        Ok(Directory {
            connection,
            node,
            changes,
            up,
        })
    }

    /// Whether Redis answered the writer, which tries at least every [`CHECK_EVERY`]:
    /// the fleet's "Redis unreachable" signal (`dusk_relay_fleet_directory_up`).
    pub fn up(&self) -> Gauge {
        self.up.clone()
    }

    /// This node's mesh address.
    pub fn node(&self) -> &Multiaddr {
        &self.node
    }

    /// `peer` holds a reservation here for `ttl`.
    pub fn claim(&self, peer: PeerId, ttl: Duration) {
        let _ = self.changes.send(Change::Claim { peer, ttl });
    }

    /// `peer` holds no reservation here any more.
    pub fn release(&self, peer: PeerId) {
        let _ = self.changes.send(Change::Release { peer });
    }

    /// Unlists every reservation this node holds, for a node that stops; returns once
    /// Redis has answered, or within [`LOOKUP_TIMEOUT`] of the writer's turn if it does
    /// not. Claims made after this are not written.
    pub async fn withdraw(&self) {
        let (done, withdrawn) = oneshot::channel();
        if self.changes.send(Change::Withdraw { done }).is_ok() {
            let _ = withdrawn.await;
        }
    }

    /// The mesh address of the node holding `peer`'s reservation, if any does. Asks
    /// twice when the connection was lost (Redis restarted: the first try reports the
    /// dead connection and the manager reconnects for the second), all within
    /// [`LOOKUP_TIMEOUT`].
    pub fn lookup(&self, peer: PeerId) -> BoxFuture<'static, Result<Option<Multiaddr>, String>> {
        let connection = self.connection.clone();
        async move {
            let get = |mut connection: ConnectionManager| async move {
                let mut get = redis::cmd("GET");
                get.arg(key(&peer));
                get.query_async::<Option<String>>(&mut connection).await
            };
            let attempts = async {
                match get(connection.clone()).await {
                    Err(e) if e.is_connection_dropped() || e.is_connection_refusal() => {
                        get(connection).await
                    }
                    result => result,
                }
            };
            match tokio::time::timeout(LOOKUP_TIMEOUT, attempts).await {
                Err(_) => Err(format!("no answer from Redis within {LOOKUP_TIMEOUT:?}")),
                Ok(Err(e)) => Err(format!("Redis GET failed: {e}")),
                Ok(Ok(None)) => Ok(None),
                Ok(Ok(Some(node))) => node
                    .parse()
                    .map(Some)
                    .map_err(|e| format!("the directory holds a bad address {node:?}: {e}")),
            }
        }
        .boxed()
    }
}

fn key(peer: &PeerId) -> String {
    format!("{PREFIX}{}", peer.to_base58())
}

fn marker_key(node: &str) -> String {
    let id = node.rsplit('/').next().unwrap_or(node);
    format!("{PREFIX}node:{id}")
}

/// What this node holds and has not yet written.
#[derive(Default)]
struct Pending {
    /// Every reservation held here, until when.
    held: HashMap<PeerId, Instant>,
    to_write: HashSet<PeerId>,
    to_release: HashSet<PeerId>,
}

impl Pending {
    /// Applies `change`; a withdrawal's answer comes back, to send once it is written.
    fn apply(&mut self, change: Change) -> Option<oneshot::Sender<()>> {
        match change {
            Change::Claim { peer, ttl } => {
                self.held.insert(peer, Instant::now() + ttl);
                self.to_release.remove(&peer);
                self.to_write.insert(peer);
            }
            Change::Release { peer } => {
                self.held.remove(&peer);
                self.to_write.remove(&peer);
                if self.to_release.len() < MAX_PENDING_RELEASES {
                    self.to_release.insert(peer);
                }
            }
            Change::Withdraw { done } => {
                self.to_write.clear();
                self.to_release
                    .extend(self.held.drain().map(|(peer, _)| peer));
                return Some(done);
            }
        }
        None
    }

    fn rewrite_all(&mut self) {
        let now = Instant::now();
        self.held.retain(|_, until| *until > now);
        self.to_write = self.held.keys().copied().collect();
    }

    fn is_empty(&self) -> bool {
        self.to_write.is_empty() && self.to_release.is_empty()
    }

    fn pipeline(&self, node: &str) -> redis::Pipeline {
        let now = Instant::now();
        let mut pipe = redis::pipe();
        for peer in &self.to_write {
            let Some(until) = self.held.get(peer) else {
                continue;
            };
            let ttl_ms = until.saturating_duration_since(now).as_millis().max(1);
            pipe.cmd("SET")
                .arg(key(peer))
                .arg(node)
                .arg("PX")
                .arg(u64::try_from(ttl_ms).unwrap_or(u64::MAX))
                .ignore();
        }
        for peer in &self.to_release {
            pipe.cmd("EVAL")
                .arg(RELEASE_SCRIPT)
                .arg(1)
                .arg(key(peer))
                .arg(node)
                .ignore();
        }
        pipe.cmd("SET")
            .arg(marker_key(node))
            .arg(1)
            .arg("PX")
            .arg(MARKER_TTL.as_millis() as u64)
            .ignore();
        pipe
    }
}

/// The writer: applies changes as they come while Redis answers, and catches up after
/// it did not.
async fn write_changes(
    mut connection: ConnectionManager,
    node: String,
    mut changes: mpsc::UnboundedReceiver<Change>,
    up: Gauge,
) {
    let mut pending = Pending::default();
    let mut reachable = true;
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                let mut withdrawn = pending.apply(change);
                while withdrawn.is_none() {
                    let Ok(change) = changes.try_recv() else { break };
                    withdrawn = pending.apply(change);
                }
                if let Some(done) = withdrawn {
                    withdraw(&mut connection, &node, &pending).await;
                    let _ = done.send(());
                    return;
                }
                if !reachable {
                    continue; // retried on the next check
                }
            }
            _ = check.tick() => {
                if reachable && pending.is_empty() && refresh_marker(&mut connection, &node).await == Some(true) {
                    continue;
                }
                // Unreachable before, or the marker is gone: Redis may have lost our keys.
                pending.rewrite_all();
            }
        }
        let pipeline = pending.pipeline(&node);
        let written = pipeline.query_async::<()>(&mut connection);
        match tokio::time::timeout(LOOKUP_TIMEOUT, written).await {
            Ok(Ok(())) => {
                if !reachable {
                    tracing::info!(
                        "fleet directory reachable again; {} reservations listed",
                        pending.held.len()
                    );
                }
                reachable = true;
                up.set(1);
                pending.to_write.clear();
                pending.to_release.clear();
            }
            outcome => {
                if reachable {
                    let why = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {LOOKUP_TIMEOUT:?}"),
                    };
                    tracing::warn!(
                        "fleet directory not reachable ({why}); circuits to peers on other \
                         nodes fail until it is, local circuits carry on"
                    );
                }
                reachable = false;
                up.set(0);
            }
        }
    }
}

/// The last write of a node that stops: every release. Tried once, even if Redis was
/// away (it may be back); what fails expires with its reservation.
async fn withdraw(connection: &mut ConnectionManager, node: &str, pending: &Pending) {
    let pipeline = pending.pipeline(node);
    let written = pipeline.query_async::<()>(connection);
    match tokio::time::timeout(LOOKUP_TIMEOUT, written).await {
        Ok(Ok(())) => tracing::info!(
            "fleet directory: {} reservations unlisted as this node stops",
            pending.to_release.len()
        ),
        Ok(Err(e)) => tracing::warn!(
            "fleet directory: reservations not unlisted as this node stops ({e}); they \
             expire with their reservations"
        ),
        Err(_) => tracing::warn!(
            "fleet directory: reservations not unlisted as this node stops (no answer \
             within {LOOKUP_TIMEOUT:?}); they expire with their reservations"
        ),
    }
}

/// Extends the marker if it is there and says whether it was; `None` if Redis did not
/// answer.
async fn refresh_marker(connection: &mut ConnectionManager, node: &str) -> Option<bool> {
    let mut set = redis::cmd("SET");
    set.arg(marker_key(node))
        .arg(1)
        .arg("PX")
        .arg(MARKER_TTL.as_millis() as u64)
        .arg("XX");
    let refreshed = set.query_async::<Option<String>>(connection);
    let answer = tokio::time::timeout(LOOKUP_TIMEOUT, refreshed)
        .await
        .ok()?
        .ok()?;
    Some(answer.is_some())
}
