//! The Docker image as users run it, with the repository's docker-compose.yml: healthy,
//! reachable by real libp2p clients over TCP, QUIC, WS and WSS, same peer id after a
//! restart, uid 1000 on a read-only root filesystem, clean `docker stop`.
//!
//! Needs a Docker engine and the `dusk-relay:latest` image: `.ci/docker-test` sets both
//! up and runs this (`cargo nextest run --test docker --run-ignored only`).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::{Multiaddr, PeerId};
use rustls_pki_types::pem::PemObject;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const CONTAINER: &str = "dusk-relay";
const PROJECT: &str = "dusk-relay-ci";
/// The first health check runs one interval (30 s) after start.
const HEALTHY_WITHIN: Duration = Duration::from_secs(120);

async fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Loopback only, OS-assigned host ports: nothing else on the machine is touched.
        .env("DUSK_RELAY_HOST_IP", "127.0.0.1")
        .env("DUSK_RELAY_HOST_PORT", "0")
        .env("DUSK_RELAY_HOST_QUIC_PORT", "0")
        .env("DUSK_RELAY_HOST_WS_PORT", "0")
        .env("DUSK_RELAY_HOST_WSS_PORT", "0")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

async fn compose(args: &[&str]) -> String {
    let mut all = vec!["-p", PROJECT];
    all.extend_from_slice(args);
    run("docker-compose", &all).await
}

async fn inspect(format: &str) -> String {
    run("docker", &["inspect", "-f", format, CONTAINER])
        .await
        .trim()
        .to_owned()
}

/// Now, for `docker events --since`: sub-second, or an event from earlier in the same
/// second would be replayed.
fn unix_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Waits for the container's `start` event since `since`, then for `health_status:
/// healthy` after it (a healthy status from before a restart does not count).
async fn started_and_healthy_since(since: &str) {
    let mut events = Command::new("docker")
        .args([
            "events",
            "--since",
            since,
            "--filter",
            &format!("container={CONTAINER}"),
        ])
        .args(["--filter", "event=start", "--filter", "event=health_status"])
        .args(["--format", "{{.Status}}"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("docker events");
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    let waited = tokio::time::timeout(HEALTHY_WITHIN, async {
        let mut started = false;
        while let Some(line) = lines.next_line().await.expect("read events") {
            match line.trim() {
                "start" => started = true,
                "health_status: healthy" if started => return,
                "health_status: unhealthy" if started => panic!("container unhealthy"),
                _ => {}
            }
        }
        panic!("docker events ended");
    })
    .await;
    if waited.is_err() {
        let logs = run("docker", &["logs", CONTAINER]).await;
        panic!("not started and healthy within {HEALTHY_WITHIN:?}; logs:\n{logs}");
    }
}

/// Container port ("4001/tcp") -> host address, from `docker port`.
async fn published_ports() -> HashMap<String, (String, u16)> {
    run("docker", &["port", CONTAINER])
        .await
        .lines()
        .filter_map(|line| {
            let (container, host) = line.split_once(" -> ")?;
            let (ip, port) = host.rsplit_once(':')?;
            Some((
                container.trim().to_owned(),
                (ip.to_owned(), port.parse().ok()?),
            ))
        })
        .collect()
}

fn relay_addresses(
    ports: &HashMap<String, (String, u16)>,
    relay: PeerId,
) -> HashMap<&'static str, Multiaddr> {
    let addr = |key: &str, suffix: &str| -> Multiaddr {
        let (ip, port) = ports
            .get(key)
            .unwrap_or_else(|| panic!("{key} not published: {ports:?}"));
        format!(
            "/ip4/{ip}/{}/{port}{suffix}/p2p/{relay}",
            if key.ends_with("udp") { "udp" } else { "tcp" }
        )
        .parse()
        .unwrap()
    };
    HashMap::from([
        ("tcp", addr("4001/tcp", "")),
        ("quic", addr("4001/udp", "/quic-v1")),
        ("ws", addr("14001/tcp", "/ws")),
        ("wss", addr("24001/tcp", "/tls/ws")),
    ])
}

async fn logged_peer_ids() -> Vec<PeerId> {
    let output = Command::new("docker")
        .args(["logs", CONTAINER])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    text.lines()
        .filter_map(|l| {
            l.split_once("peer id: ")
                .map(|(_, id)| id.trim().parse().expect("peer id"))
        })
        .collect()
}

async fn relay_certificate(dir: &Path) -> Vec<u8> {
    let path = dir.join("wss-cert.pem");
    run(
        "docker",
        &[
            "cp",
            &format!("{CONTAINER}:/data/dusk-relay/wss-cert.pem"),
            path.to_str().unwrap(),
        ],
    )
    .await;
    let pem = std::fs::read(&path).unwrap();
    rustls_pki_types::CertificateDer::from_pem_slice(&pem)
        .unwrap()
        .to_vec()
}

/// A client reserves over each transport; another opens a circuit to it over TCP and
/// they exchange 1 MiB each way.
async fn serves_every_transport(addrs: &HashMap<&'static str, Multiaddr>, cert: &[u8]) {
    for transport in ["tcp", "quic", "ws", "wss"] {
        let mut a = Client::new(Some(cert.to_vec())).await;
        let mut b = Client::new(Some(cert.to_vec())).await;
        a.reserve(&addrs[transport]).await;
        b.connect(&addrs["tcp"]).await;
        b.dial_through(&addrs["tcp"], a.peer_id).await;
        let rate = exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;
        eprintln!("container, reservation over {transport}: circuit carried 1 MiB each way at {rate:.1} MiB/s");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine and the dusk-relay:latest image: run by .ci/docker-test"]
async fn compose_deployment_serves_every_transport_keeps_its_identity_and_stops_cleanly() {
    let _ = Command::new("docker-compose")
        .args(["-p", PROJECT, "down", "-v"])
        .output()
        .await;
    let dir = tempfile::tempdir().unwrap();

    let since = unix_now();
    compose(&["up", "-d", "--no-build"]).await;
    started_and_healthy_since(&since).await;
    let peer_ids = logged_peer_ids().await;
    assert_eq!(peer_ids.len(), 1, "{peer_ids:?}");
    let relay = peer_ids[0];
    let cert = relay_certificate(dir.path()).await;
    serves_every_transport(&relay_addresses(&published_ports().await, relay), &cert).await;

    // Hardening: uid 1000, read-only root, no capabilities, no new privileges.
    let pid = inspect("{{.State.Pid}}").await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id == "1000"),
        "{uid_line}"
    );
    assert_eq!(inspect("{{.HostConfig.ReadonlyRootfs}}").await, "true");
    assert_eq!(inspect("{{.HostConfig.CapDrop}}").await, "[ALL]");
    assert!(inspect("{{.HostConfig.SecurityOpt}}")
        .await
        .contains("no-new-privileges"));

    // Restart: the volume keeps the identity (and the certificate).
    let since = unix_now();
    run("docker", &["restart", CONTAINER]).await;
    started_and_healthy_since(&since).await;
    assert_eq!(
        logged_peer_ids().await,
        vec![relay, relay],
        "same peer id after restart"
    );
    assert_eq!(relay_certificate(dir.path()).await, cert);
    let addrs = relay_addresses(&published_ports().await, relay);
    let mut client = Client::new(Some(cert.clone())).await;
    client.reserve(&addrs["tcp"]).await;

    // docker stop: SIGTERM, clean exit 0 well within the stop timeout.
    let started = Instant::now();
    run("docker", &["stop", "-t", "30", CONTAINER]).await;
    let took = started.elapsed();
    assert_eq!(inspect("{{.State.ExitCode}}").await, "0");
    assert!(took < Duration::from_secs(20), "docker stop took {took:?}");
    eprintln!("docker stop took {took:?}");

    compose(&["down", "-v"]).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker-compose: run by .ci/docker-test"]
async fn deploy_compose_files_are_valid() {
    // The fleet's Valkey image cannot be pulled here, so the fleet itself is tested with
    // real redis-servers in tests/fleet.rs; this checks the file operators would run.
    for file in [
        "deploy/docker-compose.fleet.yml",
        "deploy/docker-compose.443.yml",
    ] {
        let mut args = vec!["-f", "docker-compose.yml"];
        if file.ends_with("fleet.yml") {
            args = vec![];
        }
        args.extend_from_slice(&["-f", file, "config", "-q"]);
        run("docker-compose", &args).await;
    }
}
