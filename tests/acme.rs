//! ACME (issue 20) against Debian's pebble and pebble-challtestsrv on loopback: the
//! relay binary obtains its WSS certificate itself, over TLS-ALPN-01 on the WSS port or
//! HTTP-01 on its own port, reuses it across restarts, keeps serving through a failed
//! order and renews with a WSS connection open; headless Chromium, trusting pebble's
//! root as a browser trusts a public CA, reserves over WSS by the domain and carries a
//! circuit. Issuance times are printed.
//!
//! Skipped (with a note) where pebble is not installed, unless DUSK_TEST_REQUIRE_PEBBLE
//! is set, as `./run-tests` does after installing it.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use dusk_relay::tls::acme::storage::CertificateFacts;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use support::browser::{chromium, open_browser_peer, BrowserTrust};
use support::js::{ensure_js_setup, rust_dials_js};
use support::pebble::{free_tcp_port, handshake, tls_client, Pebble, PebbleOptions};
use support::process::{relay_command, RelayProcess};
use support::redis::RedisServer;
use support::*;

/// Resolved by pebble-challtestsrv to the address the test chooses.
const DOMAIN: &str = "relay.dusk.test";

fn pebble_installed() -> bool {
    let found = std::process::Command::new("pebble")
        .arg("-h")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("DUSK_TEST_REQUIRE_PEBBLE").is_none(),
            "pebble is not installed, and DUSK_TEST_REQUIRE_PEBBLE says it must be"
        );
        eprintln!("pebble is not installed (apt-get install pebble); skipping");
    }
    found
}

/// The relay binary with ACME on against `pebble`, WSS on `wss_port`, files in `dir`.
fn acme_relay(dir: &Path, pebble: &Pebble, wss_port: u16) -> tokio::process::Command {
    let mut command = relay_command(dir);
    command
        .env("DUSK_RELAY_WSS_PORT", wss_port.to_string())
        .env("DUSK_RELAY_ACME_DOMAINS", DOMAIN)
        .env("DUSK_RELAY_ACME_DIRECTORY", &pebble.directory_url)
        .env("DUSK_RELAY_ACME_CA", &pebble.listener_ca);
    command
}

fn wss_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The relay's WSS address with SNI for [`DOMAIN`] (the certificate's name, not the IP).
fn wss_multiaddr_for_domain(relay: &RelayProcess) -> Multiaddr {
    relay
        .listen_addr(Transport::Wss)
        .iter()
        .flat_map(|p| match p {
            Protocol::Tls => vec![Protocol::Tls, Protocol::Sni(DOMAIN.into())],
            other => vec![other],
        })
        .collect()
}

/// The `n`th line (from 1) containing `needle`, among the lines seen or still to come:
/// the ACME task runs beside start-up, so its lines may precede "dusk relay ready".
async fn nth_line(relay: &mut RelayProcess, needle: &str, n: usize) -> String {
    loop {
        let mut matching = relay.seen.iter().filter(|l| l.contains(needle));
        if let Some(line) = matching.nth(n - 1) {
            return line.clone();
        }
        relay.line_containing(needle).await;
    }
}

/// Waits for the relay to say it issued its `n`th certificate and serves it; returns
/// the order's time as the relay measured it.
async fn issued(relay: &mut RelayProcess, n: usize) -> Duration {
    let line = nth_line(relay, "ACME certificate issued", n).await;
    let ms = line
        .split("elapsed_ms=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no elapsed_ms in {line}"));
    nth_line(relay, "WSS certificate reloaded", n).await;
    Duration::from_millis(ms)
}

async fn acme_orders(relay: &RelayProcess, outcome: &str) -> f64 {
    let metrics = scrape(relay.metrics_addr()).await;
    metric_sum(
        &metrics,
        "dusk_relay_acme_orders_total",
        &[("outcome", outcome)],
    )
}

fn leaf_of(chain: &[CertificateDer<'static>]) -> CertificateFacts {
    CertificateFacts::of(&chain[0]).expect("leaf parses")
}

#[tokio::test]
async fn first_certificate_comes_from_the_ca_over_tls_alpn_on_the_wss_port() {
    if !pebble_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let wss_port = free_tcp_port();
    let pebble = Pebble::start(dir.path(), PebbleOptions::for_tls_port(wss_port)).await;
    let started = Instant::now();
    let mut relay = RelayProcess::ready(acme_relay(dir.path(), &pebble, wss_port)).await;
    assert!(
        relay
            .seen
            .iter()
            .any(|l| l.contains("WSS serves the self-signed certificate until ACME issues one")),
        "{:#?}",
        relay.seen
    );
    let order_time = issued(&mut relay, 1).await;
    println!(
        "ACME first issuance over TLS-ALPN-01: order {order_time:?}, relay start to certificate served {:?}",
        started.elapsed()
    );

    let root = pebble.issuing_root();
    let chain = handshake(
        wss_addr(wss_port),
        DOMAIN,
        tls_client(std::slice::from_ref(&root)),
    )
    .expect("the WSS certificate chains to pebble's root");
    assert!(leaf_of(&chain).names.contains(&DOMAIN.to_owned()));

    // A libp2p client over /tls/ws trusting only pebble's root reserves.
    let mut client = Client::new(Some(root.as_ref().to_vec())).await;
    client.reserve(&wss_multiaddr_for_domain(&relay)).await;

    assert_eq!(acme_orders(&relay, "issued").await, 1.0);
    assert_eq!(acme_orders(&relay, "failed").await, 0.0);
}

#[tokio::test]
async fn restart_reuses_the_stored_certificate_without_a_new_order() {
    if !pebble_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let wss_port = free_tcp_port();
    let pebble = Pebble::start(dir.path(), PebbleOptions::for_tls_port(wss_port)).await;
    let mut relay = RelayProcess::ready(acme_relay(dir.path(), &pebble, wss_port)).await;
    issued(&mut relay, 1).await;
    let client = tls_client(&[pebble.issuing_root()]);
    let first = handshake(wss_addr(wss_port), DOMAIN, client.clone()).expect("issued");
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());

    let mut relay = RelayProcess::ready(acme_relay(dir.path(), &pebble, wss_port)).await;
    assert!(
        relay
            .seen
            .iter()
            .any(|l| l.contains("WSS serves the stored ACME certificate")),
        "{:#?}",
        relay.seen
    );
    let again = handshake(wss_addr(wss_port), DOMAIN, client).expect("stored certificate");
    assert_eq!(again[0], first[0], "the same certificate, served at once");
    nth_line(&mut relay, "ACME certificate valid; renewal scheduled", 1).await;
    assert!(!relay.seen.iter().any(|l| l.contains("ACME order started")));
    assert_eq!(acme_orders(&relay, "issued").await, 0.0);
    assert_eq!(acme_orders(&relay, "failed").await, 0.0);
}

#[tokio::test]
async fn a_failing_challenge_keeps_the_certificate_in_use_and_logs_the_cas_reason() {
    if !pebble_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let wss_port = free_tcp_port();
    // The CA looks for the relay where nothing listens.
    let options = PebbleOptions {
        resolve_to: std::net::Ipv4Addr::new(127, 0, 0, 2),
        ..PebbleOptions::for_tls_port(wss_port)
    };
    let pebble = Pebble::start(dir.path(), options).await;
    let mut relay = RelayProcess::ready(acme_relay(dir.path(), &pebble, wss_port)).await;
    let failure = nth_line(&mut relay, "ACME order failed", 1).await;
    println!("the relay's log of the failed order: {failure}");
    assert!(failure.contains("urn:ietf:params:acme:error"), "{failure}");
    assert!(
        failure.contains("keeps its current certificate"),
        "{failure}"
    );

    // Still the self-signed certificate, and still serving.
    let self_signed =
        CertificateDer::from_pem_file(dir.path().join("wss-cert.pem")).expect("self-signed");
    assert!(handshake(
        wss_addr(wss_port),
        DOMAIN,
        tls_client(&[pebble.issuing_root()])
    )
    .is_err());
    let served = handshake(
        wss_addr(wss_port),
        "localhost",
        tls_client(std::slice::from_ref(&self_signed)),
    )
    .expect("the self-signed certificate");
    assert_eq!(served[0], self_signed);
    let mut client = Client::new(Some(self_signed.as_ref().to_vec())).await;
    client.reserve(&relay.listen_addr(Transport::Wss)).await;
    assert_eq!(acme_orders(&relay, "issued").await, 0.0);
    assert!(acme_orders(&relay, "failed").await >= 1.0);
}

#[tokio::test]
async fn renewal_swaps_the_certificate_with_a_wss_connection_open_across_it() {
    if !pebble_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let wss_port = free_tcp_port();
    let options = PebbleOptions {
        validity_secs: Some(24),
        ..PebbleOptions::for_tls_port(wss_port)
    };
    let pebble = Pebble::start(dir.path(), options).await;
    let mut relay = RelayProcess::ready(acme_relay(dir.path(), &pebble, wss_port)).await;
    issued(&mut relay, 1).await;
    let root = pebble.issuing_root();
    let first = handshake(
        wss_addr(wss_port),
        DOMAIN,
        tls_client(std::slice::from_ref(&root)),
    )
    .expect("first");

    let mut client = Client::new(Some(root.as_ref().to_vec())).await;
    let relay_addr = wss_multiaddr_for_domain(&relay);
    client.reserve(&relay_addr).await;
    let relay_peer = peer_of(&relay_addr);

    let line = nth_line(&mut relay, "ACME certificate valid; renewal scheduled", 1).await;
    println!("renewal of a 24 s certificate: {line}");
    let waited = Instant::now();
    let order_time = issued(&mut relay, 2).await;
    println!(
        "ACME renewal: order {order_time:?}, {:?} after the renewal was scheduled",
        waited.elapsed()
    );
    let renewed = handshake(
        wss_addr(wss_port),
        DOMAIN,
        tls_client(std::slice::from_ref(&root)),
    )
    .expect("renewed");
    assert_ne!(leaf_of(&renewed).serial, leaf_of(&first).serial);

    // The connection opened under the first certificate is the one still there.
    let (connected, established) = client
        .call(move |swarm| {
            (
                swarm.is_connected(&relay_peer),
                swarm.network_info().connection_counters().num_established(),
            )
        })
        .await;
    assert!(connected);
    assert_eq!(established, 1);
    assert_eq!(acme_orders(&relay, "issued").await, 2.0);
}

#[tokio::test]
async fn http_01_on_its_own_port_issues_the_certificate() {
    if !pebble_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let wss_port = free_tcp_port();
    let options = PebbleOptions::for_tls_port(wss_port);
    let http_port = options.http_port;
    let pebble = Pebble::start(dir.path(), options).await;
    let mut command = acme_relay(dir.path(), &pebble, wss_port);
    command.env("DUSK_RELAY_ACME_HTTP_PORT", http_port.to_string());
    let started = Instant::now();
    let mut relay = RelayProcess::ready(command).await;
    let order_time = issued(&mut relay, 1).await;
    println!(
        "ACME first issuance over HTTP-01: order {order_time:?}, relay start to certificate served {:?}",
        started.elapsed()
    );
    let chain = handshake(
        wss_addr(wss_port),
        DOMAIN,
        tls_client(&[pebble.issuing_root()]),
    )
    .expect("the WSS certificate chains to pebble's root");
    assert!(leaf_of(&chain).names.contains(&DOMAIN.to_owned()));
}

#[tokio::test]
async fn a_corrupt_stored_certificate_stops_the_relay_at_start_and_stays() {
    // No CA is contacted: the stored files are checked before anything listens.
    let dir = tempfile::tempdir().expect("tempdir");
    let directory = "https://ca.invalid/directory";
    let stored = dir.path().join("acme/ca.invalid_directory/certificate.pem");
    std::fs::create_dir_all(stored.parent().expect("folder")).expect("mkdir");
    std::fs::write(&stored, b"not a certificate").expect("write");
    let mut command = relay_command(dir.path());
    command
        .env("DUSK_RELAY_WSS_PORT", free_tcp_port().to_string())
        .env("DUSK_RELAY_ACME_DOMAINS", DOMAIN)
        .env("DUSK_RELAY_ACME_DIRECTORY", directory);
    let (status, output) = support::process::run_to_exit(&mut command).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains(&stored.display().to_string()), "{output}");
    assert!(output.contains("left untouched"), "{output}");
    assert_eq!(
        std::fs::read(&stored).expect("still there"),
        b"not a certificate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_trusting_the_cas_root_reserves_over_wss_and_carries_a_circuit() {
    if !pebble_installed() {
        return;
    }
    ensure_js_setup();
    let chromium = chromium();
    let dir = tempfile::tempdir().expect("tempdir");
    let wss_port = free_tcp_port();
    let pebble = Pebble::start(dir.path(), PebbleOptions::for_tls_port(wss_port)).await;
    let started = Instant::now();
    let mut relay = RelayProcess::ready(acme_relay(dir.path(), &pebble, wss_port)).await;
    issued(&mut relay, 1).await;
    let served = started.elapsed();

    // The address a web client is given: the domain, not an IP. No certificate error
    // is ignored: Chromium verifies the chain to pebble's root and the name, so the
    // self-signed certificate served before issuance would fail this.
    let relay_peer = peer_of(&relay.listen_addr(Transport::Wss));
    let relay_wss: Multiaddr = format!("/dns4/{DOMAIN}/tcp/{wss_port}/tls/ws/p2p/{relay_peer}")
        .parse()
        .expect("multiaddr");
    let trust = BrowserTrust::Root {
        root: pebble.issuing_root(),
        names: vec![DOMAIN.to_owned()],
    };
    let mut browser = open_browser_peer(&chromium, trust, &relay_wss).await;
    println!(
        "relay start to CA-issued certificate served {served:?}; to Chromium reserved over WSS \
         trusting pebble's root {:?} (Chromium's start included)",
        started.elapsed()
    );
    assert!(
        browser
            .addrs
            .iter()
            .any(|a| dusk_relay::multiaddr_ext::is_relayed(a) && a.to_string().contains(DOMAIN)),
        "the browser holds no reservation through {relay_wss}: {:?}",
        browser.addrs
    );

    // A Rust peer over TCP reaches the browser through its reservation.
    let mut dialer = Client::new(None).await;
    let (inbound, _) = rust_dials_js(
        &mut dialer,
        &relay.listen_addr(Transport::Tcp),
        &mut browser,
        1024 * 1024,
        256 * 1024,
    )
    .await;
    assert_eq!(inbound["event"], "exchanged", "{inbound}");
}

#[tokio::test]
async fn an_ip_address_gets_a_certificate_of_its_own_over_tls_alpn() {
    if !pebble_installed() {
        return;
    }
    // RFC 8738: the CA connects to the address itself and asks, by SNI, for its
    // reverse-DNS name (1.0.0.127.in-addr.arpa); no DNS is involved.
    let ip = "127.0.0.1";
    let dir = tempfile::tempdir().expect("tempdir");
    let wss_port = free_tcp_port();
    let pebble = Pebble::start(dir.path(), PebbleOptions::for_tls_port(wss_port)).await;
    let mut command = acme_relay(dir.path(), &pebble, wss_port);
    command.env("DUSK_RELAY_ACME_DOMAINS", ip);
    let mut relay = RelayProcess::ready(command).await;
    let order_time = issued(&mut relay, 1).await;
    println!("ACME issuance for an IP address over TLS-ALPN-01: order {order_time:?}");

    let root = pebble.issuing_root();
    let chain = handshake(
        wss_addr(wss_port),
        ip,
        tls_client(std::slice::from_ref(&root)),
    )
    .expect("the WSS certificate names the IP address and chains to pebble's root");
    assert_eq!(leaf_of(&chain).names, [ip]);
    // A libp2p client dialing the relay's plain /ip4/…/tls/ws address verifies it.
    let mut client = Client::new(Some(root.as_ref().to_vec())).await;
    client.reserve(&relay.listen_addr(Transport::Wss)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_nodes_behind_one_name_answer_each_others_http_01_challenges() {
    if !pebble_installed() {
        return;
    }
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let fleet = tempfile::tempdir().expect("tempdir");
    std::fs::write(fleet.path().join("fleet.key"), "c3".repeat(32)).expect("fleet secret");
    let [a_wss, a_http, b_wss, b_http] = [(); 4].map(|()| free_tcp_port());
    // Every HTTP-01 request of the CA reaches node B, as behind a load balancer that
    // picked it: node A's order can succeed only if B answers A's token.
    let options = PebbleOptions {
        http_port: b_http,
        ..PebbleOptions::for_tls_port(a_wss)
    };
    let pebble = Pebble::start(fleet.path(), options).await;
    let node = |dir: &Path, wss_port: u16, http_port: u16| {
        let mut command = acme_relay(dir, &pebble, wss_port);
        command
            .env("DUSK_RELAY_ACME_HTTP_PORT", http_port.to_string())
            .env("DUSK_RELAY_KEYPAIR", fleet.path().join("keypair"))
            // Its own files (ACME account and certificate), not the keypair's directory.
            .env("DUSK_RELAY_DATA_DIR", dir)
            .env("DUSK_RELAY_FLEET", redis.url())
            .env("DUSK_RELAY_MESH_ADDR", "127.0.0.1:0")
            .env("DUSK_RELAY_MESH_KEY_FILE", fleet.path().join("fleet.key"));
        command
    };
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    // B first: it makes the fleet's keypair, which A then loads.
    let mut b = RelayProcess::ready(node(b_dir.path(), b_wss, b_http)).await;
    let mut a = RelayProcess::ready(node(a_dir.path(), a_wss, a_http)).await;
    let a_order = issued(&mut a, 1).await;
    let b_order = issued(&mut b, 1).await;
    println!("ACME in a fleet over shared HTTP-01: node A's order {a_order:?} (answered by node B), node B's {b_order:?}");

    let root = pebble.issuing_root();
    for (node, port) in [("A", a_wss), ("B", b_wss)] {
        let chain = handshake(
            wss_addr(port),
            DOMAIN,
            tls_client(std::slice::from_ref(&root)),
        )
        .unwrap_or_else(|e| panic!("node {node}'s WSS certificate: {e}"));
        assert!(leaf_of(&chain).names.contains(&DOMAIN.to_owned()));
    }
    assert!(
        !a.seen
            .iter()
            .chain(&b.seen)
            .any(|l| l.contains("over TLS-ALPN-01: orders succeed only")),
        "HTTP-01 nodes are not warned about TLS-ALPN-01"
    );
    // Each order withdrew its tokens from Redis as it ended.
    let mut connection = ::redis::Client::open(redis.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let left: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{}*", dusk_relay::tls::acme::shared::KEY_PREFIX))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    assert!(left.is_empty(), "tokens left in Redis: {left:?}");
}
