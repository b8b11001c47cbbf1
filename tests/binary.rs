//! The `dusk-relay` binary as an operator runs it: the seed's log lines, one
//! `relay address:` line per listener, clean exit on SIGTERM, and clear non-zero exits
//! on bad configuration, keypairs and certificates.

mod support;

use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use support::process::*;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn binary_prints_seed_lines_and_one_address_per_listener_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::spawn(relay_command(dir.path()));
    relay.line_containing("dusk relay server starting").await;
    let peer_id: PeerId = after(&relay.line_containing("peer id: ").await, "peer id: ")
        .parse()
        .unwrap();
    relay.line_containing("dusk relay ready").await;

    let addresses = relay.listen_addrs();
    assert_eq!(
        addresses.len(),
        4,
        "one per listener (TCP, QUIC, WS, WSS on 127.0.0.1): {addresses:?}"
    );
    for transport in ALL_TRANSPORTS {
        let matching: Vec<_> = addresses
            .iter()
            .filter(|a| transport_of(a) == Some(transport))
            .collect();
        assert_eq!(matching.len(), 1, "{transport:?}: {addresses:?}");
        assert_eq!(peer_of(matching[0]), peer_id, "full address with /p2p/");
    }

    // The seed's lines for a reservation and a circuit, without any IP at info.
    let tcp = addresses
        .iter()
        .find(|a| transport_of(a) == Some(Transport::Tcp))
        .unwrap()
        .clone();
    let mut a = Client::new(None).await;
    let mut b = Client::new(None).await;
    a.reserve(&tcp).await;
    relay
        .line_containing(&format!(
            "peer connected: {} (total connections: 1)",
            a.peer_id
        ))
        .await;
    relay
        .line_containing(&format!(
            "relay reservation accepted for peer {} (total: 1)",
            a.peer_id
        ))
        .await;
    b.connect(&tcp).await;
    b.dial_through(&tcp, a.peer_id).await;
    relay
        .line_containing(&format!(
            "circuit opened: {} -> {} (through relay)",
            b.peer_id, a.peer_id
        ))
        .await;

    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success(), "SIGTERM exits 0");
    relay.line_containing("dusk relay stopped").await;
    let about_clients: Vec<_> = relay
        .seen
        .iter()
        .filter(|l| l.contains(&a.peer_id.to_string()) || l.contains(&b.peer_id.to_string()))
        .collect();
    assert!(!about_clients.is_empty());
    for line in about_clients {
        assert!(
            !line.contains("127.0.0.1"),
            "a line links a peer to an IP: {line}"
        );
    }

    // It stores no messages or user data: the keypair and the dev certificate are all
    // it wrote, after carrying a circuit.
    let mut written: Vec<_> = walk(dir.path())
        .into_iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        ["keypair", "wss-cert.pem", "wss-key.pem"].map(std::path::PathBuf::from)
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn transport_of(addr: &Multiaddr) -> Option<Transport> {
    ALL_TRANSPORTS.into_iter().find(|t| t.matches(addr))
}

/// In a fresh network namespace (only a downed loopback: what Docker's IPv6-less
/// containers look like to `::`) wildcard listeners bind but never get an address. The
/// relay must still become ready and obey SIGTERM.
#[tokio::test]
async fn binary_on_wildcard_listeners_without_addresses_is_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // `unshare` finds itself through PATH; the relay's environment stays clean.
    let unshare = ["/usr/bin/unshare", "--user", "--map-root-user", "--net"];
    let mut command = relay_command_under(dir.path(), &unshare);
    command.env("DUSK_RELAY_LISTEN_IPS", "0.0.0.0,::");
    let mut relay = RelayProcess::ready(command).await;
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success(), "{:?}", relay.seen);
    relay.line_containing("dusk relay stopped").await;
}

#[tokio::test]
async fn binary_logs_json_lines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = relay_command(dir.path());
    command.env("DUSK_RELAY_LOG_FORMAT", "json");
    let mut relay = RelayProcess::spawn(command);
    let line = relay.line_containing("peer id: ").await;
    let record: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let message = record["fields"]["message"]
        .as_str()
        .expect("a message field");
    assert!(message.starts_with("peer id: 12D3KooW"), "{record}");
    assert_eq!(record["level"], "INFO");
    relay.line_containing("dusk relay ready").await;
    relay.signal(libc::SIGTERM);
    assert!(relay.exit_status().await.success());

    let mut command = relay_command(dir.path());
    command.env("DUSK_RELAY_LOG_FORMAT", "xml");
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success());
    assert!(output.contains("DUSK_RELAY_LOG_FORMAT"), "{output}");
}

#[tokio::test]
async fn binary_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = RelayProcess::ready(relay_command(dir.path())).await;
    relay.signal(libc::SIGINT);
    assert!(relay.exit_status().await.success(), "SIGINT exits 0");
    relay.line_containing("received SIGINT").await;
}

#[tokio::test]
async fn binary_exits_nonzero_naming_a_corrupt_keypair_and_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keypair");
    std::fs::write(&path, b"not a keypair").unwrap();
    let (status, output) = run_to_exit(&mut relay_command(dir.path())).await;
    assert!(!status.success());
    assert!(output.contains(&path.display().to_string()), "{output}");
    assert!(!output.contains("panicked"), "{output}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a keypair");
}

#[tokio::test]
async fn binary_exits_nonzero_naming_a_malformed_or_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(&key, "garbage").unwrap();

    // Malformed certificate.
    let mut command = relay_command(dir.path());
    command
        .env("DUSK_RELAY_TLS_CERT", &cert)
        .env("DUSK_RELAY_TLS_KEY", &key);
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success());
    assert!(!output.contains("panicked"), "{output}");
    assert!(
        output.contains("cert.pem") || output.contains("key.pem"),
        "{output}"
    );

    // A real certificate with a malformed key names the key.
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success());
    assert!(!output.contains("panicked"), "{output}");
    assert!(output.contains(&key.display().to_string()), "{output}");

    // A key that does not belong to the certificate.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&key, other.serialize_pem()).unwrap();
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success());
    assert!(!output.contains("panicked"), "{output}");
    assert!(output.contains("do not work together"), "{output}");

    // Missing file.
    let missing = dir.path().join("missing.pem");
    command.env("DUSK_RELAY_TLS_CERT", &missing);
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success());
    assert!(output.contains(&missing.display().to_string()), "{output}");
}

#[tokio::test]
async fn binary_exits_nonzero_naming_a_bad_variable() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = relay_command(dir.path());
    command.env("DUSK_MAX_CONNECTIONS", "lots");
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success());
    assert!(output.contains("DUSK_MAX_CONNECTIONS"), "{output}");
    assert!(
        !dir.path().join("keypair").exists(),
        "nothing written before the config is valid"
    );
}

#[tokio::test]
async fn binary_exits_nonzero_when_the_port_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut command = relay_command(dir.path());
    command
        .env("DUSK_RELAY_PORT", port.to_string())
        .env("DUSK_RELAY_WS_PORT", "0")
        .env("DUSK_RELAY_WSS_PORT", "0")
        .env("DUSK_RELAY_METRICS_ADDR", "off");
    let (status, output) = run_to_exit(&mut command).await;
    assert!(!status.success());
    assert!(
        output.contains("DUSK_RELAY_PORT") && output.contains(&format!("lsof -i :{port}")),
        "{output}"
    );
    drop(taken);
}
