//! WSS certificate reload without a restart: on request (what SIGHUP does), when the
//! files change, and through the binary with a real SIGHUP. New WSS clients see the new
//! certificate, established connections keep working, and an invalid pair leaves the
//! old certificate serving. `/metrics` shows the served certificate's expiry throughout.

mod support;

use std::path::{Path, PathBuf};

use dusk_relay::tls::reload::Reloaded;
use dusk_relay::RelayEvent;
use libp2p::Multiaddr;
use support::process::{relay_command, RelayProcess};
use support::{exchange_both_ways, relay_event, Client, TestRelay, Transport};

/// A self-signed certificate for 127.0.0.1, as PEM files and the DER clients trust.
struct Cert {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn new_cert() -> Cert {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("generate certificate");
    Cert {
        cert_pem: cert.pem(),
        key_pem: key_pair.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// [`new_cert`] valid until midnight UTC starting `year-month-day`; and that instant in
/// Unix seconds.
fn cert_expiring(year: i32, month: u8, day: u8) -> (Cert, f64) {
    let not_after = rcgen::date_time_ymd(year, month, day);
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate names");
    params.not_after = not_after;
    let key_pair = rcgen::KeyPair::generate().expect("generate key");
    let cert = params.self_signed(&key_pair).expect("generate certificate");
    let cert = Cert {
        cert_pem: cert.pem(),
        key_pem: key_pair.serialize_pem(),
        der: cert.der().to_vec(),
    };
    (cert, not_after.unix_timestamp() as f64)
}

/// `dusk_relay_tls_certificate_not_after_timestamp_seconds` as the endpoint at `metrics` serves it.
async fn served_not_after(metrics: std::net::SocketAddr) -> f64 {
    let scrape = support::scrape(metrics).await;
    let value = support::metric_sum(
        &scrape,
        "dusk_relay_tls_certificate_not_after_timestamp_seconds",
        &[],
    );
    assert_eq!(
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "dusk_relay_tls_certificate_not_after_timestamp_seconds")
            .count(),
        1,
        "one expiry series"
    );
    value
}

/// Writes the pair the way certbot's deploy does: each file replaced whole by a rename.
fn install(dir: &Path, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    for (path, text) in [(&key, key_pem), (&cert, cert_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (cert, key)
}

async fn relay_serving(cert: &Cert) -> (TestRelay, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let paths = install(certs.path(), &cert.cert_pem, &cert.key_pem);
    let relay = TestRelay::start_with(|c| c.tls.cert_and_key = Some(paths)).await;
    (relay, certs)
}

/// Whether a client trusting only `trusted` (and the web PKI) completes a WSS connection.
async fn wss_accepts(addr: &Multiaddr, trusted: &Cert) -> Result<(), String> {
    Client::new(Some(trusted.der.clone()))
        .await
        .try_connect(addr)
        .await
}

/// Fails (`what`) unless a client trusting only `cert` completes a WSS connection.
async fn assert_served(addr: &Multiaddr, cert: &Cert, what: &str) {
    if let Err(e) = wss_accepts(addr, cert).await {
        panic!("{what}: {e}");
    }
}

/// Fails (`what`) if a client trusting only `cert` completes a WSS connection.
async fn assert_not_served(addr: &Multiaddr, cert: &Cert, what: &str) {
    assert!(wss_accepts(addr, cert).await.is_err(), "{what}");
}

#[tokio::test]
async fn reload_serves_the_new_certificate_to_new_clients_and_keeps_old_connections() {
    let (a, b) = (new_cert(), new_cert());
    let (relay, certs) = relay_serving(&a).await;
    let wss = relay.addr(Transport::Wss);

    // A client of certificate A holds a reservation over WSS.
    let mut old = Client::new(Some(a.der.clone())).await;
    old.reserve(&wss).await;

    install(certs.path(), &b.cert_pem, &b.key_pem);
    // The file watch may have reloaded first; either way B is served from here on.
    let outcome = relay.handle.reload_certificate().expect("WSS is on");
    assert!(
        matches!(outcome, Ok(Reloaded::Changed | Reloaded::Unchanged)),
        "{outcome:?}"
    );

    assert_not_served(&wss, &a, "certificate A is no longer served").await;
    // A client of certificate B reaches the old client through its WSS reservation,
    // made under certificate A, and both directions carry data.
    let mut new = Client::new(Some(b.der.clone())).await;
    new.connect(&wss).await;
    new.dial_through(&wss, old.peer_id).await;
    exchange_both_ways(&mut new, &mut old, 1024 * 1024).await;
}

#[tokio::test]
async fn an_invalid_new_certificate_is_refused_naming_the_file_and_the_old_one_keeps_serving() {
    let (a, b) = (new_cert(), new_cert());
    let (relay, certs) = relay_serving(&a).await;
    let wss = relay.addr(Transport::Wss);

    for (cert_pem, key_pem, file) in [
        ("not a certificate", a.key_pem.as_str(), "fullchain.pem"),
        (a.cert_pem.as_str(), "not a key", "privkey.pem"),
        // Valid files that do not belong together.
        (a.cert_pem.as_str(), b.key_pem.as_str(), "privkey.pem"),
    ] {
        install(certs.path(), cert_pem, key_pem);
        let error = relay
            .handle
            .reload_certificate()
            .expect("WSS is on")
            .expect_err("an unusable pair is refused");
        assert!(error.to_string().contains(file), "{error}");
        assert_served(&wss, &a, "certificate A still served").await;
    }
}

#[tokio::test]
async fn a_changed_certificate_file_is_reloaded_without_a_signal() {
    let (a, b) = (new_cert(), new_cert());
    let (relay, certs) = relay_serving(&a).await;
    let wss = relay.addr(Transport::Wss);
    let mut events = relay.subscribe();

    install(certs.path(), &b.cert_pem, &b.key_pem);
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CertificateReloaded).then_some(())
    })
    .await;
    assert_served(&wss, &b, "certificate B served").await;
    assert_not_served(&wss, &a, "certificate A is no longer served").await;

    // A broken write is reported and does not replace B.
    install(certs.path(), "garbage", "garbage");
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CertificateReloadFailed).then_some(())
    })
    .await;
    assert_served(&wss, &b, "certificate B still served").await;
}

#[tokio::test]
async fn the_expiry_metric_is_the_served_certificates_and_follows_each_reload() {
    let ((a, a_expires), (b, b_expires)) = (cert_expiring(2031, 1, 1), cert_expiring(2032, 6, 15));
    let (relay, certs) = relay_serving(&a).await;
    let metrics = relay.handle.http_addr.expect("metrics on");
    assert_eq!(served_not_after(metrics).await, a_expires, "at start");

    // The file watch installs B.
    let mut events = relay.subscribe();
    install(certs.path(), &b.cert_pem, &b.key_pem);
    relay_event(&mut events, |e| {
        matches!(e, RelayEvent::CertificateReloaded).then_some(())
    })
    .await;
    assert_eq!(
        served_not_after(metrics).await,
        b_expires,
        "after the reload"
    );

    // A refused pair changes nothing.
    install(certs.path(), "garbage", &a.key_pem);
    let refused = relay.handle.reload_certificate().expect("WSS is on");
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        served_not_after(metrics).await,
        b_expires,
        "after a refused reload"
    );

    // What SIGHUP does installs A again (or finds that the file watch already has).
    install(certs.path(), &a.cert_pem, &a.key_pem);
    let outcome = relay.handle.reload_certificate().expect("WSS is on");
    assert!(
        matches!(outcome, Ok(Reloaded::Changed | Reloaded::Unchanged)),
        "{outcome:?}"
    );
    assert_eq!(
        served_not_after(metrics).await,
        a_expires,
        "after SIGHUP's reload"
    );
    assert_served(&wss_of(&relay), &a, "certificate A served").await;
}

#[tokio::test]
async fn a_generated_self_signed_certificate_reports_its_far_expiry() {
    let relay = TestRelay::start().await;
    let not_after = served_not_after(relay.handle.http_addr.expect("metrics on")).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    // rcgen's default validity ends in 4096: never an expiry alert for a dev relay.
    assert!(not_after > now + 1000.0 * 365.0 * 86400.0, "{not_after}");
}

fn wss_of(relay: &TestRelay) -> Multiaddr {
    relay.addr(Transport::Wss)
}

#[tokio::test]
async fn binary_reloads_the_certificate_on_sighup() {
    let ((a, _), (b, b_expires)) = (cert_expiring(2031, 1, 1), cert_expiring(2032, 6, 15));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = install(dir.path(), &a.cert_pem, &a.key_pem);
    let mut command = relay_command(dir.path());
    command
        .env("DUSK_RELAY_TLS_CERT", &cert)
        .env("DUSK_RELAY_TLS_KEY", &key)
        .env("DUSK_RELAY_METRICS_ADDR", "127.0.0.1:0");
    let mut relay = RelayProcess::spawn(command);
    let line = relay.line_containing("/tls/ws/").await;
    let wss: Multiaddr = support::process::after(&line, "relay address:")
        .parse()
        .expect("a multiaddr");
    assert_served(&wss, &a, "certificate A served").await;

    install(dir.path(), &b.cert_pem, &b.key_pem);
    relay.signal(libc::SIGHUP);
    relay.line_containing("received SIGHUP").await;
    // "reloaded (SIGHUP)", or "unchanged (SIGHUP)" if the file watch was first.
    relay.line_containing("(SIGHUP)").await;
    assert_served(&wss, &b, "certificate B served").await;
    assert_not_served(&wss, &a, "certificate A is no longer served").await;
    assert_eq!(served_not_after(relay.metrics_addr()).await, b_expires);

    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
}
