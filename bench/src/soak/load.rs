//! The soak's load: reservations churning, circuits opening, carrying data both ways and
//! closing, rendezvous registering, discovering and unregistering, all at once over TCP
//! and at a steady pace, until told to stop. Every identity is fresh, so the relay's
//! per-peer rates never apply, and the per-IP ones the bench config keeps (rendezvous)
//! are far above the pace: any refusal is one the caps allow, and counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use libp2p::Multiaddr;
use tokio::sync::watch;

use crate::peers::{within, BenchEnv, Client, Pair, Tls, Transport, EVENT_TIMEOUT};
use crate::relay_child::RelayChild;
use crate::reserver::Reserver;
use crate::scenarios::{send_and_receive, transfer_limit};

/// Fresh identities that connect, reserve and later disconnect, per second: a few, as
/// dusk users coming and going, far below the ~860/s the churn scenario saturates at.
pub const RESERVATIONS_PER_SEC: f64 = 4.0;
/// How long each churned reservation is held before its connection closes: about 60
/// reservations held at any time.
pub const RESERVATION_HOLD: Duration = Duration::from_secs(15);
/// Circuits at once: one worker each, every circuit between two fresh client swarms.
pub const CIRCUIT_WORKERS: usize = 3;
/// Each circuit worker starts a circuit this often (at once if the last took longer).
pub const CIRCUIT_EVERY: Duration = Duration::from_secs(2);
/// Each circuit carries 1, 2, … up to this many MiB each way, in turn.
pub const CIRCUIT_MIB_MAX: u64 = 4;
/// A circuit stays open, idle, this long after its transfer, so samples see some open.
pub const CIRCUIT_HOLD: Duration = Duration::from_secs(1);
/// Rendezvous rounds at once, each on its own namespace.
pub const RENDEZVOUS_WORKERS: usize = 2;
/// Each rendezvous worker starts a round (a fresh identity reserves, registers,
/// discovers itself, unregisters and checks it is gone) this often.
pub const RENDEZVOUS_EVERY: Duration = Duration::from_secs(1);
/// The shortest TTL the relay grants: should an UNREGISTER be lost, the registration
/// still goes within a minute.
pub const REGISTRATION_TTL_SECS: u64 = dusk_relay::config::defaults::RENDEZVOUS_MIN_TTL_SECS;
/// How long an UNREGISTER may take to show in DISCOVER before it counts as failed.
const UNREGISTER_LIMIT: Duration = Duration::from_secs(5);

/// What the load has done so far: added to by its workers, read by the sampler.
#[derive(Default)]
pub struct Done {
    reservations: AtomicU64,
    circuits: AtomicU64,
    bytes: AtomicU64,
    registers: AtomicU64,
    discovers: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, Failures>>,
}

/// The failures of one kind: how many, and the first one's error.
#[derive(Clone)]
pub struct Failures {
    pub count: u64,
    pub first: String,
}

/// [`Done`]'s counts at one moment.
#[derive(Clone, Copy, Default)]
pub struct Snapshot {
    /// Reservations granted: churned, circuit destinations and rendezvous clients.
    pub reservations: u64,
    /// Circuits that carried their bytes both ways.
    pub circuits: u64,
    /// Bytes that arrived through circuits, both directions counted.
    pub bytes: u64,
    pub registers: u64,
    pub discovers: u64,
    pub failures: u64,
}

impl Done {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn fail(&self, kind: &'static str, error: anyhow::Error) {
        // A worker that panicked holding the lock left counts that are still counts.
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = failures.entry(kind).or_insert_with(|| Failures {
            count: 0,
            first: format!("{error:#}").replace('\n', " "),
        });
        entry.count += 1;
    }

    pub fn failures(&self) -> BTreeMap<&'static str, Failures> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            reservations: load(&self.reservations),
            circuits: load(&self.circuits),
            bytes: load(&self.bytes),
            registers: load(&self.registers),
            discovers: load(&self.discovers),
            failures: self.failures().values().map(|f| f.count).sum(),
        }
    }
}

/// A step of a round that failed, by kind (the key of the failure counts).
struct Failed {
    kind: &'static str,
    error: anyhow::Error,
}

trait Kind<T> {
    fn kind(self, kind: &'static str) -> Result<T, Failed>;
}

impl<T> Kind<T> for anyhow::Result<T> {
    fn kind(self, kind: &'static str) -> Result<T, Failed> {
        self.map_err(|error| Failed { kind, error })
    }
}

/// Runs every worker until `stop` turns true (or its sender goes); each round under
/// way then finishes, bounded by its own timeouts.
pub async fn run(
    env: &BenchEnv,
    relay: &RelayChild,
    done: &Arc<Done>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let addr = relay.addr(Transport::Tcp)?;
    let churn = churn_reservations(addr, done.clone(), stop.clone());
    // Workers of a kind start spread over their period, so that whenever the relay is
    // sampled some of their circuits and clients are open, not all or none.
    let circuits = (0..CIRCUIT_WORKERS).map(|worker| {
        let stop = stop.clone();
        let offset = CIRCUIT_EVERY * worker as u32 / CIRCUIT_WORKERS as u32;
        paced(stop, CIRCUIT_EVERY, offset, async |n| {
            if let Err(f) = circuit_round(env, relay, done, n).await {
                done.fail(f.kind, f.error);
            }
        })
    });
    let rendezvous = (0..RENDEZVOUS_WORKERS).map(|worker| {
        let stop = stop.clone();
        let offset = RENDEZVOUS_EVERY * worker as u32 / RENDEZVOUS_WORKERS as u32;
        paced(stop, RENDEZVOUS_EVERY, offset, async move |_| {
            if let Err(f) = rendezvous_round(env, relay, done, worker).await {
                done.fail(f.kind, f.error);
            }
        })
    });
    futures::join!(
        churn,
        futures::future::join_all(circuits),
        futures::future::join_all(rendezvous)
    );
    Ok(())
}

/// Runs `round(0)`, `round(1)`, … one `every` apart (or back to back when a round takes
/// longer), the first after `offset`, until `stop`.
async fn paced(
    mut stop: watch::Receiver<bool>,
    every: Duration,
    offset: Duration,
    mut round: impl AsyncFnMut(u64),
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        if *stop.borrow() {
            break;
        }
        round(n).await;
    }
}

/// [`RESERVATIONS_PER_SEC`] fresh lightweight reservers, each holding its reservation
/// for [`RESERVATION_HOLD`] (or until `stop`) and then closing its connection.
async fn churn_reservations(addr: Multiaddr, done: Arc<Done>, stop: watch::Receiver<bool>) {
    let mut holders = tokio::task::JoinSet::new();
    let every = Duration::from_secs_f64(1.0 / RESERVATIONS_PER_SEC);
    paced(stop.clone(), every, Duration::ZERO, async |_| {
        let (addr, done, mut stop) = (addr.clone(), done.clone(), stop.clone());
        holders.spawn(async move {
            match within(EVENT_TIMEOUT, "a reservation", Reserver::reserve(&addr)).await {
                Ok(Ok(reserver)) => {
                    Done::add(&done.reservations, 1);
                    tokio::select! {
                        _ = tokio::time::sleep(RESERVATION_HOLD) => {}
                        _ = stop.wait_for(|stop| *stop) => {}
                    }
                    drop(reserver);
                }
                Ok(Err(e)) | Err(e) => done.fail("reservation", e),
            }
        });
        while holders.try_join_next().is_some() {}
    })
    .await;
    while let Some(joined) = holders.join_next().await {
        if let Err(e) = joined {
            done.fail("reservation", anyhow!("reserver task: {e}"));
        }
    }
}

/// A fresh pair of client swarms: one reserves, the other dials it through the relay;
/// both send 1..=[`CIRCUIT_MIB_MAX`] MiB at once, then the dialer closes the circuit and
/// both leave.
async fn circuit_round(
    env: &BenchEnv,
    relay: &RelayChild,
    done: &Done,
    n: u64,
) -> Result<(), Failed> {
    let len = (1 + n % CIRCUIT_MIB_MAX) << 20;
    let mut pair = Pair::relayed(env, relay, Transport::Tcp)
        .await
        .kind("circuit setup")?;
    Done::add(&done.reservations, 1);
    let received = AtomicU64::new(0);
    let transfer = async {
        let (a, b) = pair.stream().await?;
        futures::try_join!(
            send_and_receive(a, len, &received),
            send_and_receive(b, len, &received)
        )?;
        anyhow::Ok(())
    };
    let moved = within(transfer_limit(len), "the circuit's transfer", transfer).await;
    Done::add(&done.bytes, received.load(Ordering::Relaxed));
    moved.and_then(|r| r).kind("circuit transfer")?;
    Done::add(&done.circuits, 1);
    tokio::time::sleep(CIRCUIT_HOLD).await;
    let listener = pair.listener.peer_id;
    pair.dialer.disconnect(listener).await.kind("circuit close")
}

/// A fresh client reserves (its circuit address is what it registers), registers in
/// `dusk-soak/<worker>`, finds itself there, unregisters, and checks it is gone.
async fn rendezvous_round(
    env: &BenchEnv,
    relay: &RelayChild,
    done: &Done,
    worker: usize,
) -> Result<(), Failed> {
    let namespace = format!("dusk-soak/{worker}");
    let relay_peer = relay.peer_id;
    let mut client = Client::new(Tls::Trust(env.cert_der.clone())).kind("rendezvous client")?;
    let addr = relay.addr(Transport::Tcp).kind("rendezvous reservation")?;
    client.reserve(&addr).await.kind("rendezvous reservation")?;
    Done::add(&done.reservations, 1);
    client.publishable().await.kind("register")?;
    client
        .register(relay_peer, &namespace, REGISTRATION_TTL_SECS)
        .await
        .kind("register")?;
    Done::add(&done.registers, 1);
    let found = client
        .discover(relay_peer, &namespace)
        .await
        .kind("discover")?;
    Done::add(&done.discovers, 1);
    if !found.contains(&client.peer_id) {
        return Err(anyhow!("its own registration was not in {namespace}")).kind("discover");
    }
    client
        .unregister(relay_peer, &namespace)
        .await
        .kind("unregister")?;
    // UNREGISTER has no answer: DISCOVER until the registration is gone.
    let gone = async {
        loop {
            let found = client.discover(relay_peer, &namespace).await?;
            Done::add(&done.discovers, 1);
            if !found.contains(&client.peer_id) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    within(UNREGISTER_LIMIT, "the registration to go", gone)
        .await
        .and_then(|r| r)
        .kind("unregister")
}
