//! The dusk client as it ships (libp2p 0.54, one pinned relay address) in a fleet of
//! relay binaries sharing one keypair, one redis-server and one fleet secret: two
//! clients pinned to different nodes find each other and talk across the mesh; and a
//! client given the fleet by a DNS name that resolves to two nodes comes back on the
//! survivor after its node is killed with SIGKILL (the name is served by a small DNS
//! server in the test, given to the client in a resolv.conf of its own mount namespace), and the chat resumes, without any
//! configuration changing.

mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use support::dusk_client::*;
use support::redis::RedisServer;

/// The second node's loopback address (all of 127.0.0.0/8 is loopback on Linux).
const SECOND_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The name the fleet is given to the client in the kill test.
const FLEET_NAME: &str = "fleet.dusk.test";

struct Fleet {
    redis: RedisServer,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Option<Fleet> {
        let redis = RedisServer::start()?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("fleet.key"), "c3".repeat(32)).expect("fleet secret");
        Some(Fleet { redis, dir })
    }

    fn env(&self, ip: Ipv4Addr) -> Vec<(&'static str, String)> {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            ("DUSK_RELAY_KEYPAIR", path("keypair")),
            ("DUSK_RELAY_FLEET", self.redis.url()),
            ("DUSK_RELAY_MESH_ADDR", format!("{ip}:0")),
            ("DUSK_RELAY_MESH_KEY_FILE", path("fleet.key")),
        ]
    }

    /// A node on `ip` (its own scratch dir for the rest); `port` 0: any.
    async fn node(&self, ip: Ipv4Addr, port: u16) -> (Relay, tempfile::TempDir) {
        self.node_with(ip, port, &[]).await
    }

    async fn node_with(
        &self,
        ip: Ipv4Addr,
        port: u16,
        extra: &[(&'static str, String)],
    ) -> (Relay, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = self.env(ip);
        env.extend_from_slice(extra);
        let relay = Relay::start_with(dir.path(), port, ip, &env).await;
        (relay, dir)
    }

    /// The IP of the node the directory names for `peer`, once it names one.
    async fn node_ip_of(&self, peer: PeerId) -> Ipv4Addr {
        let node = self.redis.directory_entry(peer).await;
        node.iter()
            .find_map(|p| match p {
                Protocol::Ip4(ip) => Some(ip),
                _ => None,
            })
            .expect("an IPv4 mesh address")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dusk_054_clients_pinned_to_two_nodes_find_each_other_and_talk() {
    let Some(fleet) = Fleet::start() else {
        return;
    };
    let binary = client_binary().await;
    let (node1, _dir1) = fleet.node(Ipv4Addr::LOCALHOST, 0).await;
    let (node2, _dir2) = fleet.node(SECOND_IP, 0).await;
    assert_eq!(node1.peer_id, node2.peer_id, "one identity");
    let community = "fleet-talk";
    let mut a = DuskClient::start(&binary, "A", node1.ip4_addr(), community).await;
    let mut b = DuskClient::start(&binary, "B", node2.ip4_addr(), community).await;
    a.expect_reserved_and_registered(community).await;
    b.expect_reserved_and_registered(community).await;
    assert_eq!(fleet.node_ip_of(a.peer_id).await, Ipv4Addr::LOCALHOST);
    assert_eq!(fleet.node_ip_of(b.peer_id).await, SECOND_IP);
    find_each_other(&mut a, &mut b, community).await;
    chat(&mut a, &mut b, "across the fleet").await;
    bulk(&mut a, &mut b).await;
    node1.stop().await;
    node2.stop().await;
}

/// Where the test's DNS server answers (resolv.conf cannot name a port, so 53).
const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53 + 46);

/// A DNS server on [`RESOLVER_IP`]:53 that answers every A query with `ips` (in that
/// order), and a wrapper that runs a program in its own mount namespace with a
/// resolv.conf naming it; `None` where that needs privileges this machine does not give
/// (root for port 53 and mount namespaces).
fn resolver_and_wrapper(dir: &Path, ips: [Ipv4Addr; 2]) -> Option<Vec<String>> {
    let unavailable = |why: String| {
        if std::env::var_os("DUSK_TEST_REQUIRE_NAMESPACES").is_some() {
            panic!("{why}, but DUSK_TEST_REQUIRE_NAMESPACES is set");
        }
        eprintln!("\n*** {why}: the fleet DNS failover test is SKIPPED ***\n");
    };
    let socket = match std::net::UdpSocket::bind((RESOLVER_IP, 53)) {
        Ok(socket) => socket,
        Err(e) => {
            unavailable(format!("cannot serve DNS on {RESOLVER_IP}:53 ({e})"));
            return None;
        }
    };
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status();
    if !matches!(probe, Ok(status) if status.success()) {
        unavailable("no mount namespaces here (needs root)".into());
        return None;
    }
    std::thread::spawn(move || serve_dns(socket, ips));
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {RESOLVER_IP}\n")).expect("resolv.conf");
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"",
        resolv.display()
    );
    Some(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ]
        .map(String::from)
        .to_vec(),
    )
}

/// Answers each query on `socket`: A records for `ips`, nothing for other types.
fn serve_dns(socket: std::net::UdpSocket, ips: [Ipv4Addr; 2]) {
    let mut buf = [0u8; 512];
    while let Ok((len, from)) = socket.recv_from(&mut buf) {
        if let Some(answer) = dns_answer(&buf[..len], ips) {
            let _ = socket.send_to(&answer, from);
        }
    }
}

/// The reply to one DNS query (RFC 1035 §4.1): the header and question echoed, and one
/// A record per IP if it asks for A.
fn dns_answer(query: &[u8], ips: [Ipv4Addr; 2]) -> Option<Vec<u8>> {
    let mut at = 12;
    loop {
        let label = usize::from(*query.get(at)?);
        at += 1 + label;
        if label == 0 {
            break;
        }
    }
    let question_end = at + 4;
    let question = query.get(12..question_end)?;
    let is_a = query.get(at..at + 2)? == [0, 1];
    let answers: &[Ipv4Addr] = if is_a { &ips } else { &[] };
    let mut reply = Vec::with_capacity(question_end + 16 * answers.len());
    reply.extend_from_slice(query.get(..2)?); // id
    reply.extend_from_slice(&[0x81, 0x80, 0, 1, 0, answers.len() as u8, 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    for ip in answers {
        // A pointer to the question's name, type A, class IN, TTL 1 s, 4 bytes.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// A free port on both node IPs, for TCP and UDP (QUIC shares the number).
fn free_port_on_both() -> u16 {
    loop {
        let port = free_port();
        let free = |ip: Ipv4Addr| {
            std::net::TcpListener::bind((ip, port)).is_ok()
                && std::net::UdpSocket::bind((ip, port)).is_ok()
        };
        if free(SECOND_IP) {
            return port;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dusk_054_client_comes_back_on_a_surviving_node_after_kill_9() {
    let Some(fleet) = Fleet::start() else {
        return;
    };
    let Some(wrapper) = resolver_and_wrapper(fleet.dir.path(), [Ipv4Addr::LOCALHOST, SECOND_IP])
    else {
        return;
    };
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let binary = client_binary().await;
    let port = free_port_on_both();
    // The fleet's name is its public address: reservations carry it, and rendezvous
    // accepts circuit addresses through it.
    let external = [(
        "DUSK_RELAY_EXTERNAL_ADDR",
        format!("/dns4/{FLEET_NAME}/tcp/{port}"),
    )];
    let (node1, _dir1) = fleet.node_with(Ipv4Addr::LOCALHOST, port, &external).await;
    let (node2, _dir2) = fleet.node_with(SECOND_IP, port, &external).await;
    let by_name: Multiaddr = format!("/dns4/{FLEET_NAME}/tcp/{port}/p2p/{}", node1.peer_id)
        .parse()
        .expect("multiaddr");

    // A knows the fleet by name; B is pinned to the node A did not land on.
    let community = "fleet-failover";
    let mut a = DuskClient::start_under(&binary, "A", by_name, community, &wrapper).await;
    a.expect_reserved_and_registered(community).await;
    let a_node = fleet.node_ip_of(a.peer_id).await;
    let (mut doomed, survivor) = if a_node == Ipv4Addr::LOCALHOST {
        (node1, node2)
    } else {
        (node2, node1)
    };
    let mut b = DuskClient::start(&binary, "B", survivor.ip4_addr(), community).await;
    b.expect_reserved_and_registered(community).await;
    find_each_other(&mut a, &mut b, community).await;
    chat(&mut a, &mut b, "before the kill").await;

    doomed.process.signal(libc::SIGKILL);
    let killed = Instant::now();
    a.expect("relay connection closed", |e| {
        event(e) == "relay_disconnected"
    })
    .await;
    a.expect_reserved_and_registered(community).await;
    let reserved_again = killed.elapsed();
    assert_eq!(fleet.node_ip_of(a.peer_id).await, survivor.ip);
    a.forget_pending();
    b.forget_pending();
    find_each_other(&mut a, &mut b, community).await;
    chat(&mut a, &mut b, "after the kill").await;
    eprintln!(
        "kill -9 of A's node: A reserved on the survivor after {reserved_again:?}, \
         chat delivered again after {:?}",
        killed.elapsed()
    );
    let _ = doomed.process.exit_status().await;
    survivor.stop().await;
}
