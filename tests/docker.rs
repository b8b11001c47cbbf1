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

/// Loopback only, OS-assigned host ports: nothing else on the machine is touched.
const SINGLE_RELAY_ENV: [(&str, &str); 5] = [
    ("DUSK_RELAY_HOST_IP", "127.0.0.1"),
    ("DUSK_RELAY_HOST_PORT", "0"),
    ("DUSK_RELAY_HOST_QUIC_PORT", "0"),
    ("DUSK_RELAY_HOST_WS_PORT", "0"),
    ("DUSK_RELAY_HOST_WSS_PORT", "0"),
];

async fn run(program: &str, args: &[&str]) -> String {
    run_with_env(program, args, &SINGLE_RELAY_ENV).await
}

async fn run_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().copied())
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
    // The fleet file is also run, by the test below; this checks the 443 overlay.
    run(
        "docker-compose",
        &[
            "-f",
            "docker-compose.yml",
            "-f",
            "deploy/docker-compose.443.yml",
            "config",
            "-q",
        ],
    )
    .await;
}

/// deploy/docker-compose.fleet.yml as operators run it: three nodes of one identity and
/// Valkey (a stand-in built by .ci/docker-test under the file's tag).
struct ComposeFleet {
    files: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl ComposeFleet {
    const PROJECT: &'static str = "dusk-relay-fleet-ci";
    const NODES: [&'static str; 3] = ["relay-1", "relay-2", "relay-3"];

    /// The shared keypair and fleet secret in a directory the relays (uid 1000) can read,
    /// as the file's header tells operators to prepare `deploy/fleet`.
    fn new() -> (ComposeFleet, PeerId) {
        use std::os::unix::fs::{chown, PermissionsExt};
        let files = tempfile::tempdir().unwrap();
        let keypair_path = files.path().join("keypair");
        let (keypair, _) = dusk_relay::identity::load_or_create(&keypair_path).unwrap();
        let secret_path = files.path().join("fleet.key");
        std::fs::write(&secret_path, format!("{}\n", "c0ffee".repeat(11))).unwrap();
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        for path in [&keypair_path, &secret_path] {
            chown(path, Some(1000), Some(1000)).unwrap();
        }
        std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Loopback only, OS-assigned host ports, as for the single relay.
        let mut env = vec![
            ("DUSK_RELAY_HOST_IP".to_owned(), "127.0.0.1".to_owned()),
            (
                "DUSK_FLEET_DIR".to_owned(),
                files.path().display().to_string(),
            ),
        ];
        for n in 1..=3 {
            for kind in ["PORT", "QUIC_PORT", "WSS_PORT"] {
                env.push((format!("RELAY_{n}_{kind}"), "0".to_owned()));
            }
        }
        let fleet = ComposeFleet { files, env };
        (fleet, keypair.public().to_peer_id())
    }

    async fn compose(&self, args: &[&str]) -> String {
        let mut all = vec!["-p", Self::PROJECT, "-f", "deploy/docker-compose.fleet.yml"];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_with_env("docker-compose", &all, &env).await
    }

    async fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service]).await.trim().to_owned()
    }

    /// Follows `service`'s log until it prints its TCP relay address; returns that
    /// address's peer id (the relay logs it once it listens, after fleet mode started).
    async fn listening(&self, service: &str) -> PeerId {
        let container = self.container(service).await;
        let mut logs = Command::new("sh")
            .args(["-c", &format!("docker logs -f {container} 2>&1")])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("docker logs");
        let mut lines = BufReader::new(logs.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(HEALTHY_WITHIN, async {
            while let Some(line) = lines.next_line().await.expect("read logs") {
                if let Some((_, addr)) = line.split_once("relay address: ") {
                    if addr.contains("/tcp/4001/p2p/") {
                        let addr: Multiaddr = addr.split_whitespace().next()?.parse().ok()?;
                        return Some(peer_of(&addr));
                    }
                }
                seen.push(line);
            }
            None
        })
        .await;
        match found {
            Ok(Some(peer)) => peer,
            _ => panic!("{service} did not listen; its log:\n{}", seen.join("\n")),
        }
    }

    /// `service`'s TCP address on the host, with the fleet's peer id.
    async fn tcp_addr(&self, service: &str, fleet: PeerId) -> Multiaddr {
        let container = self.container(service).await;
        let published = run("docker", &["port", &container, "4001/tcp"]).await;
        let host = published.lines().next().unwrap().trim();
        let (ip, port) = host.rsplit_once(':').unwrap();
        format!("/ip4/{ip}/tcp/{port}/p2p/{fleet}").parse().unwrap()
    }

    /// Waits until the fleet's directory names `node` for `peer` (written asynchronously
    /// after the reservation was granted), asking Valkey in its container.
    async fn listed_on(&self, peer: PeerId, node: &str) {
        let valkey = self.container("valkey").await;
        let key = format!("dusk:dir:{peer}");
        // The node's mesh address as it announces it (DUSK_RELAY_MESH_ANNOUNCE_ADDR),
        // then its mesh peer id.
        let mesh = format!("/dns/{node}/tcp/4100/p2p/");
        within(EVENT_TIMEOUT, "the directory entry", async {
            loop {
                let entry = run("docker", &["exec", &valkey, "valkey-cli", "GET", &key]).await;
                if entry.trim().starts_with(&mesh) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine, dusk-relay:latest and the Valkey stand-in: run by .ci/docker-test"]
async fn compose_fleet_forwards_across_nodes_and_survives_a_killed_node() {
    let (fleet, identity) = ComposeFleet::new();
    let _ = fleet.compose(&["down", "-v"]).await;
    fleet.compose(&["up", "-d", "--no-build"]).await;
    let mut addrs = HashMap::new();
    for node in ComposeFleet::NODES {
        assert_eq!(
            fleet.listening(node).await,
            identity,
            "{node}: one identity"
        );
        addrs.insert(node, fleet.tcp_addr(node, identity).await);
    }

    // A is reserved on relay-1 only; B and C reach it through relay-2 and relay-3.
    let mut a = Client::new(None).await;
    a.reserve(&addrs["relay-1"]).await;
    fleet.listed_on(a.peer_id, "relay-1").await;
    for node in ["relay-2", "relay-3"] {
        let mut b = Client::new(None).await;
        b.connect(&addrs[node]).await;
        b.dial_through(&addrs[node], a.peer_id).await;
        let rate = exchange_both_ways(&mut b, &mut a, 1024 * 1024).await;
        eprintln!("compose fleet: {node} -> relay-1 carried 1 MiB each way at {rate:.1} MiB/s");
    }

    // relay-1 dies: A reserves again on a survivor and is reachable through the third.
    let relay_1 = fleet.container("relay-1").await;
    run("docker", &["kill", &relay_1]).await;
    a.disconnected_from(identity).await;
    let killed = Instant::now();
    a.reserve(&addrs["relay-2"]).await;
    fleet.listed_on(a.peer_id, "relay-2").await;
    let mut c = Client::new(None).await;
    c.connect(&addrs["relay-3"]).await;
    c.dial_through(&addrs["relay-3"], a.peer_id).await;
    eprintln!(
        "compose fleet: relay-1 killed; A re-reserved on relay-2 and was reached through relay-3 {:?} after it lost relay-1",
        killed.elapsed()
    );
    exchange_both_ways(&mut c, &mut a, 256 * 1024).await;

    fleet.compose(&["down", "-v"]).await;
    drop(fleet.files);
}
