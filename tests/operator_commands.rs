//! `dusk-relay healthcheck` (the Docker HEALTHCHECK) and `dusk-relay gen-cert`.

mod support;

use std::path::PathBuf;

use dusk_relay::tls;
use libp2p::multiaddr::Protocol;
use support::process::*;
use support::*;

/// The healthcheck command for a relay whose TCP listener is on `port` with `keypair`.
fn healthcheck(dir: &std::path::Path, port: u16, keypair: PathBuf) -> tokio::process::Command {
    let mut command = relay_command(dir);
    command
        .arg("healthcheck")
        .env("DUSK_RELAY_PORT", port.to_string())
        // The relay under test has OS-assigned WS/WSS ports; a port past 45535 would
        // otherwise derive WS/WSS ports above 65535.
        .env("DUSK_RELAY_WS_PORT", "0")
        .env("DUSK_RELAY_WSS_PORT", "0")
        .env("DUSK_RELAY_METRICS_ADDR", "off")
        .env("DUSK_RELAY_KEYPAIR", keypair);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_passes_only_when_the_relay_answers_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::ready(relay_command(dir.path())).await;
    let port = relay
        .listen_addr(Transport::Tcp)
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let keypair = dir.path().join("keypair");

    let (status, output) = run_to_exit(&mut healthcheck(dir.path(), port, keypair.clone())).await;
    assert!(status.success(), "{output}");
    assert!(output.contains("healthy"), "{output}");

    // Another identity on the same port is not "the relay": a bare port check would pass.
    let other_dir = tempfile::tempdir().unwrap();
    let other_keypair = other_dir.path().join("keypair");
    dusk_relay::identity::load_or_create(&other_keypair).unwrap();
    let (status, output) = run_to_exit(&mut healthcheck(dir.path(), port, other_keypair)).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("unhealthy"), "{output}");

    // The relay's own probe does not show up as a peer in its info log.
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());
    relay.line_containing("dusk relay stopped").await;
    let relay_keypair = dusk_relay::identity::load(&keypair).unwrap();
    let probe = dusk_relay::identity::probe_keypair(&relay_keypair)
        .unwrap()
        .public()
        .to_peer_id();
    assert!(
        !relay.seen.iter().any(|l| l.contains(&probe.to_string())),
        "health checks logged as peers ({probe}): {:?}",
        relay
            .seen
            .iter()
            .filter(|l| l.contains(&probe.to_string()))
            .collect::<Vec<_>>()
    );

    // A stopped relay is unhealthy.
    let (status, output) = run_to_exit(&mut healthcheck(dir.path(), port, keypair)).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("unhealthy"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gen_cert_makes_a_dev_ca_whose_certificate_the_relay_serves_over_wss() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut command = relay_command(dir.path());
    command.arg("gen-cert").arg(&certs).arg("relay.test");
    let (status, output) = run_to_exit(&mut command).await;
    assert!(status.success(), "{output}");
    let (ca, cert, key) = (
        certs.join("ca-cert.pem"),
        certs.join("cert.pem"),
        certs.join("key.pem"),
    );

    // Running it again replaces nothing.
    let before = std::fs::read(&key).unwrap();
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success(), "{output}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let relay =
        TestRelay::start_with(|c| c.tls.cert_and_key = Some((cert.clone(), key.clone()))).await;
    let loaded = tls::load(&cert, &key, false).unwrap();
    assert_eq!(relay.handle.certificate_chain, loaded.certs);

    // A client that trusts only the CA reaches the relay over WSS and reserves.
    let ca_pem = std::fs::read(&ca).unwrap();
    use rustls_pki_types::pem::PemObject;
    let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(&ca_pem).unwrap();
    let mut client = Client::new(Some(ca_der.to_vec())).await;
    client.reserve(&relay.addr(Transport::Wss)).await;
}
