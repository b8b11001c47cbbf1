//! The relay's ceilings against floods over real sockets (README "Hardening"):
//! reservations and connections per source IP, the memory ceiling, bandwidth caps
//! that slow a circuit instead of cutting it (the allow and deny lists:
//! `tests/access_lists.rs`).
//!
//! Floods come from 127.0.0.1 over TCP; "another IP" is 127.0.0.2, reached by QUIC
//! clients that listen there (libp2p's QUIC dials leave from a listening socket).
//! Every flood is bounded in count and ends with its test.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dusk_relay::RelayEvent;
use futures::future::join_all;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::SwarmEvent;
use support::hop::{self, OK, RESOURCE_LIMIT_EXCEEDED};
use support::process::{relay_command, relay_command_under, RelayProcess};
use support::*;

const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// `count` fresh identities connect to `addr`, `batch` at a time; each then asks `ask`
/// (if it connected) and is kept, so its connection and what it was granted stay.
async fn flood<T>(
    count: usize,
    batch: usize,
    connect_to: &libp2p::Multiaddr,
    ask: impl Fn(&Client) -> futures::future::BoxFuture<'_, T> + Copy,
) -> Vec<(Client, Result<T, String>)> {
    let mut flood = Vec::with_capacity(count);
    for _ in 0..count.div_ceil(batch) {
        let round = join_all((0..batch.min(count - flood.len())).map(|_| async move {
            let mut client = Client::new(None).await;
            let outcome = match client.try_connect(connect_to).await {
                Ok(()) => Ok(ask(&client).await),
                Err(error) => Err(error),
            };
            (client, outcome)
        }))
        .await;
        flood.extend(round);
    }
    flood
}

#[tokio::test(flavor = "multi_thread")]
async fn reservation_flood_from_one_ip_is_capped_while_another_ip_still_reserves_and_opens_a_circuit(
) {
    const FLOOD: usize = 300;
    const PER_IP: usize = 8;
    let relay = TestRelay::start_with(|c| {
        c.relay.max_reservations_per_ip = PER_IP;
        // The reservation cap is under test: no connection or handshake cap or rate
        // limit in its way.
        c.connection_limits.max_per_ip = 0;
        c.connection_limits.max_pending_per_ip = 0;
        c.relay.reservation_rate_per_ip = 0;
    })
    .await;
    let relay_id = relay.peer_id();
    let tcp = relay.addr(Transport::Tcp);
    let started = Instant::now();
    let flooders = flood(FLOOD, 50, &tcp, |client| {
        Box::pin(hop::hop_request(client, relay_id, hop::reserve()))
    })
    .await;
    let flood_time = started.elapsed();
    let statuses: Vec<_> = flooders
        .iter()
        .map(|(_, outcome)| outcome.clone().expect("flood connections are not capped"))
        .collect();
    let granted = statuses.iter().filter(|s| **s == Some(OK)).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == Some(RESOURCE_LIMIT_EXCEEDED))
        .count();
    assert_eq!(granted, PER_IP, "reservations granted to one IP");
    assert_eq!(refused, FLOOD - PER_IP, "{statuses:?}");
    let counted = metric_sum(
        &scrape(relay.handle.http_addr.expect("metrics on")).await,
        "dusk_relay_source_cap_denials_total",
        &[("what", "reservation"), ("cap", "per_ip")],
    );
    assert_eq!(counted, (FLOOD - PER_IP) as f64, "refusals counted by cap");

    // While the flood holds its connections and reservations, clients from another IP
    // reserve and open a circuit at once.
    let quic = relay.addr(Transport::Quic);
    let (mut a, mut b) = (relay.client().await, relay.client().await);
    a.quic_from(OTHER_IP).await;
    b.quic_from(OTHER_IP).await;
    let mut events = relay.subscribe();
    let legit = Instant::now();
    a.reserve(&quic).await;
    let reserved = legit.elapsed();
    b.connect(&quic).await;
    b.dial_through(&quic, a.peer_id).await;
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CircuitOpened { .. }).then_some(())
    })
    .await;
    let circuit = legit.elapsed();
    println!(
        "{FLOOD} flood identities in {flood_time:?}: {granted} granted, {refused} refused; \
         legit reservation from {OTHER_IP} in {reserved:?}, circuit open after {circuit:?}"
    );
    assert!(
        circuit < Duration::from_secs(1),
        "a legitimate client needed {circuit:?} to reserve and open a circuit under the flood"
    );
    exchange_both_ways(&mut b, &mut a, 64 * 1024).await;
    drop(flooders);
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_flood_above_the_per_ip_cap_is_refused_memory_stays_under_the_ceiling_and_counts_return_to_zero(
) {
    const FLOOD: usize = 200;
    const PER_IP: usize = 32;
    const MEMORY_MIB: u64 = 128;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = relay_command(dir.path());
    command
        .env("DUSK_RELAY_MAX_CONNECTIONS_PER_IP", PER_IP.to_string())
        // Concurrent handshakes from one IP: the per-IP connection cap is under test,
        // not the handshakes-in-flight cap.
        .env("DUSK_RELAY_MAX_PENDING_PER_IP", "0")
        .env("DUSK_RELAY_MAX_MEMORY_MIB", MEMORY_MIB.to_string())
        .env("DUSK_RELAY_METRICS_ADDR", "127.0.0.1:0");
    let mut relay = RelayProcess::ready_without_websockets(command).await;
    let (tcp, quic) = (
        relay.listen_addr(Transport::Tcp),
        relay.listen_addr(Transport::Quic),
    );
    let metrics = relay.metrics_addr();
    let pid = relay.child.id().expect("running");
    let rss_before = peak_rss(pid);

    let flooders = flood(FLOOD, 50, &tcp, |_| Box::pin(async {})).await;
    let connected = flooders.iter().filter(|(_, o)| o.is_ok()).count();
    assert_eq!(connected, PER_IP, "connections accepted from one IP");
    let during = scrape(metrics).await;
    let refused = metric_sum(
        &during,
        "dusk_relay_connections_refused_total",
        &[("reason", "per_ip")],
    );
    assert_eq!(refused, (FLOOD - PER_IP) as f64);
    assert_eq!(metric_sum(&during, "dusk_relay_source_ips", &[]), 1.0);

    // Another IP is not affected by the one at its cap.
    let mut other = Client::new(None).await;
    other.quic_from(OTHER_IP).await;
    other.connect(&quic).await;

    let peak = peak_rss(pid);
    println!(
        "{FLOOD} connections from one IP: {connected} accepted, {refused} refused; relay peak RSS \
         {:.1} MiB before, {:.1} MiB after the flood (ceiling {MEMORY_MIB} MiB)",
        rss_before as f64 / 1048576.0,
        peak as f64 / 1048576.0
    );
    assert!(peak < MEMORY_MIB * 1024 * 1024, "peak RSS {peak} bytes");

    drop(flooders);
    drop(other);
    // The relay logs each disconnection with the count left: at 0 every connection,
    // flood and other, has been released.
    relay.line_containing("(total connections: 0)").await;
    let after = scrape(metrics).await;
    assert_eq!(metric_sum(&after, "dusk_relay_source_ips", &[]), 0.0);
    assert_eq!(metric_sum(&after, "dusk_relay_connections", &[]), 0.0);
    // Freed slots are usable again.
    let mut again = Client::new(None).await;
    again.connect(&tcp).await;
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
}

/// Reads `len` bytes from `stream`, returning how long it took from the first byte.
async fn receive(mut stream: libp2p::Stream, len: usize) -> Duration {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    let mut first = None;
    while got < len {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "stream ended after {got} of {len} bytes");
        first.get_or_insert_with(Instant::now);
        got += n;
    }
    first.map(|t| t.elapsed()).unwrap_or_default()
}

async fn send(mut stream: libp2p::Stream, len: usize) {
    let buf = vec![7u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        stream.write_all(&buf[..n]).await.expect("write");
        left -= n;
    }
    stream.close().await.expect("close");
}

/// B sends `len` bytes to A over a new data stream; returns the time A took to read it.
async fn one_way(a: &mut Client, b: &mut Client, len: usize) -> Duration {
    let a_id = a.peer_id;
    let (outbound, (_, inbound)) =
        futures::future::join(b.open_data_stream(a_id), a.accept_data_stream()).await;
    let (_, took) = within(
        Duration::from_secs(60),
        "one-way transfer",
        futures::future::join(send(outbound, len), receive(inbound, len)),
    )
    .await;
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn a_circuit_capped_at_1_mib_s_moves_8_mib_in_about_8_s_while_an_uncapped_one_runs_at_full_speed(
) {
    const MIB: usize = 1024 * 1024;
    let (mut slow_a, mut slow_b) = (Client::new(None).await, Client::new(None).await);
    let (mut fast_a, mut fast_b) = (Client::new(None).await, Client::new(None).await);
    let exempt = vec![fast_a.peer_id, fast_b.peer_id];
    let relay = TestRelay::start_with(move |c| {
        c.bandwidth.circuit_bytes_per_sec = MIB as u32;
        c.bandwidth.peer_bytes_per_sec = 0;
        c.bandwidth.exempt = exempt;
    })
    .await;
    open_circuit_between(&relay, &mut slow_a, &mut slow_b, Transport::Tcp).await;
    open_circuit_between(&relay, &mut fast_a, &mut fast_b, Transport::Tcp).await;

    let (slow, fast) = futures::future::join(
        one_way(&mut slow_a, &mut slow_b, 8 * MIB),
        one_way(&mut fast_a, &mut fast_b, 32 * MIB),
    )
    .await;
    let fast_rate = 32.0 / fast.as_secs_f64();
    println!(
        "capped circuit: 8 MiB in {:.2} s ({:.2} MiB/s); uncapped beside it: 32 MiB in {:.2} s \
         ({fast_rate:.1} MiB/s)",
        slow.as_secs_f64(),
        8.0 / slow.as_secs_f64(),
        fast.as_secs_f64()
    );
    assert!(
        (6.5..11.0).contains(&slow.as_secs_f64()),
        "8 MiB at 1 MiB/s took {slow:?}"
    );
    assert!(
        fast_rate > 4.0,
        "the uncapped circuit ran at {fast_rate:.1} MiB/s"
    );
    let scrape = scrape(relay.handle.http_addr.expect("metrics on")).await;
    let throttled = metric_sum(
        &scrape,
        "dusk_relay_throttled_seconds_total",
        &[("scope", "circuit")],
    );
    assert!(
        throttled > 4.0,
        "time spent throttled is counted: {throttled} s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn circuits_over_the_per_ip_cap_are_refused_while_another_ip_still_opens_one() {
    // One circuit is two ends at 127.0.0.1 (the source's HOP stream, the destination's
    // STOP stream): a second circuit between the same two clients passes the cap.
    let relay = TestRelay::start_with(|c| c.relay.max_circuits_per_ip = 2).await;
    let (a, b) = open_circuit(&relay, Transport::Tcp).await;
    let status = hop::hop_request(&b, relay.peer_id(), hop::connect(a.peer_id)).await;
    assert_eq!(status, Some(RESOURCE_LIMIT_EXCEEDED));
    let scrape = scrape(relay.handle.http_addr.expect("metrics on")).await;
    assert_eq!(
        metric_sum(
            &scrape,
            "dusk_relay_source_cap_denials_total",
            &[("what", "circuit"), ("cap", "per_ip")]
        ),
        1.0
    );

    // A source at another IP is counted on its own.
    let quic = relay.addr(Transport::Quic);
    let mut c = relay.client().await;
    c.quic_from(OTHER_IP).await;
    c.connect(&quic).await;
    c.dial_through(&quic, a.peer_id).await;
    let after = support::scrape(relay.handle.http_addr.expect("metrics on")).await;
    assert_eq!(
        metric_sum(
            &after,
            "dusk_relay_source_cap_denials_total",
            &[("what", "circuit"), ("cap", "per_ip")]
        ),
        1.0,
        "the circuit from {OTHER_IP} was not refused by 127.0.0.1's cap"
    );
    // 127.0.0.1 is still at its cap: B is refused again.
    let status = hop::hop_request(&b, relay.peer_id(), hop::connect(a.peer_id)).await;
    assert_eq!(status, Some(RESOURCE_LIMIT_EXCEEDED));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_open_file_budget_are_refused_and_quic_still_connects() {
    // 80 % of 200 descriptors, less 64 for the relay's own: 96 TCP connections.
    const BUDGET: usize = 96;
    const FLOOD: usize = 130;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = relay_command_under(dir.path(), &["prlimit", "--nofile=200:200"]);
    command
        .env("DUSK_RELAY_MAX_CONNECTIONS_PER_IP", "0")
        // The flood is 50 concurrent handshakes from one IP: this test is about the
        // descriptor budget, not the handshakes-in-flight cap.
        .env("DUSK_RELAY_MAX_PENDING_PER_IP", "0")
        .env("DUSK_RELAY_METRICS_ADDR", "127.0.0.1:0")
        .env("DUSK_RELAY_WS_PORT", "off")
        .env("DUSK_RELAY_WSS_PORT", "off");
    let mut relay = RelayProcess::spawn(command);
    relay
        .line_containing(&format!(
            "open-file limit: 200; connections holding a descriptor are refused above {BUDGET}"
        ))
        .await;
    relay.line_containing("dusk relay ready").await;
    let (tcp, quic) = (
        relay.listen_addr(Transport::Tcp),
        relay.listen_addr(Transport::Quic),
    );
    let metrics = relay.metrics_addr();

    let flooders = flood(FLOOD, 50, &tcp, |_| Box::pin(async {})).await;
    let connected = flooders.iter().filter(|(_, o)| o.is_ok()).count();
    assert_eq!(
        connected, BUDGET,
        "TCP connections within the descriptor budget"
    );
    let refused = metric_sum(
        &scrape(metrics).await,
        "dusk_relay_connections_refused_total",
        &[("reason", "file_descriptors")],
    );
    assert_eq!(refused, (FLOOD - BUDGET) as f64);
    // QUIC connections share the listener's socket: they cost no descriptor.
    let mut quic_client = Client::new(None).await;
    quic_client.reserve(&quic).await;
    drop(flooders);
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_memory_ceiling_every_new_connection_is_refused_and_counted() {
    // 1 MiB: the relay binary is over it from its start (10-15 MiB resident), so every
    // connection meets the ceiling (the flood test above stays far under its 128 MiB).
    const ATTEMPTS: usize = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = relay_command(dir.path());
    command
        .env("DUSK_RELAY_MAX_MEMORY_MIB", "1")
        .env("DUSK_RELAY_METRICS_ADDR", "127.0.0.1:0");
    let mut relay = RelayProcess::ready_without_websockets(command).await;
    let tcp = relay.listen_addr(Transport::Tcp);
    let metrics = relay.metrics_addr();

    for _ in 0..ATTEMPTS {
        let mut client = Client::new(None).await;
        let refused = client.try_connect(&tcp).await;
        assert!(refused.is_err(), "a connection past the memory ceiling");
    }
    let refused = metric_sum(
        &scrape(metrics).await,
        "dusk_relay_connections_refused_total",
        &[("reason", "memory")],
    );
    assert_eq!(refused, ATTEMPTS as f64, "refusals counted as `memory`");
    // The operator is told which setting refused them.
    let line = relay.line_containing("connection refused: ").await;
    assert!(line.contains("DUSK_RELAY_MAX_MEMORY_MIB"), "{line}");
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
}

/// A reservation made with a raw RESERVE (no relay client, so nothing renews it).
async fn raw_reservation(client: &Client, relay: libp2p::PeerId) -> Option<i32> {
    hop::hop_request(client, relay, hop::reserve()).await
}

/// A relay that grants 127.0.0.1 one reservation (no rate limit in the way; `adjust`
/// sets the rest), and two clients, A and B.
async fn one_reservation_per_ip(
    adjust: impl FnOnce(&mut dusk_relay::Config),
) -> (TestRelay, Client, Client) {
    let relay = TestRelay::start_with(|c| {
        c.relay.max_reservations_per_ip = 1;
        c.relay.reservation_rate_per_ip = 0;
        adjust(c);
    })
    .await;
    let (a, b) = (Client::new(None).await, Client::new(None).await);
    (relay, a, b)
}

/// B's raw RESERVE is refused: 127.0.0.1's one slot is A's.
async fn slot_taken_by_a(b: &Client, relay: libp2p::PeerId) {
    assert_eq!(
        raw_reservation(b, relay).await,
        Some(RESOURCE_LIMIT_EXCEEDED),
        "127.0.0.1's one slot is A's"
    );
}

/// Once the relay (its `events`) reports A's reservation ended: A is still connected
/// (`connected`, what keeps it so) and B's raw RESERVE gets the freed slot.
async fn slot_passes_to_b(
    events: &mut tokio::sync::broadcast::Receiver<RelayEvent>,
    a: &Client,
    b: &Client,
    relay: libp2p::PeerId,
    connected: &str,
) {
    let a_id = a.peer_id;
    relay_event(events, |e| {
        matches!(e, RelayEvent::ReservationEnded { peer } if *peer == a_id).then_some(())
    })
    .await;
    assert!(a.call(move |s| s.is_connected(&relay)).await, "{connected}");
    assert_eq!(
        raw_reservation(b, relay).await,
        Some(OK),
        "A's reservation ended: its slot is free"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_that_expires_frees_its_per_ip_slot_while_its_peer_stays_connected() {
    let (relay, mut a, mut b) =
        one_reservation_per_ip(|c| c.relay.reservation_duration = Duration::from_secs(2)).await;
    let relay_id = relay.peer_id();
    let tcp = relay.addr(Transport::Tcp);
    let mut events = relay.subscribe();
    a.connect(&tcp).await;
    b.connect(&tcp).await;
    assert_eq!(raw_reservation(&a, relay_id).await, Some(OK));
    slot_taken_by_a(&b, relay_id).await;
    slot_passes_to_b(&mut events, &a, &b, relay_id, "A is still connected").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_whose_connection_closes_frees_its_per_ip_slot_while_its_peer_keeps_another_connection(
) {
    let (relay, mut a, mut b) = one_reservation_per_ip(|_| {}).await;
    let relay_id = relay.peer_id();
    let tcp = relay.addr(Transport::Tcp);
    let mut events = relay.subscribe();
    // A new connection of A's each time (a dial without a peer id is never skipped).
    async fn new_connection(
        client: &mut Client,
        addr: &libp2p::Multiaddr,
    ) -> libp2p::swarm::ConnectionId {
        let addr = addr.clone();
        client.call(move |s| s.dial(addr)).await.expect("dial");
        client
            .next("a new connection", |e| match e {
                SwarmEvent::ConnectionEstablished { connection_id, .. } => Some(connection_id),
                _ => None,
            })
            .await
    }
    let reserved_on = new_connection(&mut a, &tcp).await;
    assert_eq!(raw_reservation(&a, relay_id).await, Some(OK));
    b.connect(&tcp).await;
    slot_taken_by_a(&b, relay_id).await;
    let _spare = new_connection(&mut a, &tcp).await;
    assert!(a.call(move |s| s.close_connection(reserved_on)).await);
    slot_passes_to_b(
        &mut events,
        &a,
        &b,
        relay_id,
        "A keeps its other connection",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_registrations_writes_one_info_line_per_interval() {
    const REFUSED: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = relay_command(dir.path());
    command.env("DUSK_RELAY_METRICS_ADDR", "off");
    let mut relay = RelayProcess::ready_without_websockets(command).await;
    let tcp = relay.listen_addr(Transport::Tcp);
    let relay_id = peer_of(&tcp);
    let mut client = Client::new(None).await;
    // Its circuit address is what it registers.
    client.reserve(&tcp).await;
    for _ in 0..REFUSED {
        // A TTL far over the relay's maximum: refused.
        let refused = register(&mut client, relay_id, "dusk/flood", Some(u32::MAX as u64)).await;
        assert!(refused.is_err(), "{refused:?}");
    }
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
    relay.rest().await;
    let info = relay
        .seen
        .iter()
        .filter(|l| l.contains("rendezvous registration refused"))
        .count();
    assert_eq!(
        info, 1,
        "{REFUSED} refusals within seconds: the first at info, the rest folded into the next \
         line (README, server/log_throttle.rs)"
    );
}
