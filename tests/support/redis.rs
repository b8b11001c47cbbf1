//! A real `redis-server` for tests: its own process on a free loopback port, with no
//! persistence, killed when dropped. Tests can stop it and start it again on the same
//! port to check that clients reconnect.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh redis-server may take to answer PING (it takes milliseconds; the
/// bound only turns a hang into a failure).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Fresh ports to try when another process grabs the one picked.
const PORT_ATTEMPTS: usize = 5;

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// A running redis-server, or `None` (with a loud message) if it is not installed;
    /// with `DUSK_TEST_REQUIRE_REDIS` set (CI), a missing binary is a failure instead.
    pub fn start() -> Option<RedisServer> {
        let dir = tempfile::tempdir().expect("tempdir for redis-server");
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn(port, &dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // CI installs redis-server and sets this, so these tests never skip there.
                    if std::env::var_os("DUSK_TEST_REQUIRE_REDIS").is_some() {
                        panic!("redis-server is not installed but DUSK_TEST_REQUIRE_REDIS is set: apt-get install -y redis-server");
                    }
                    eprintln!(
                        "\n\n************************************************************\n\
                         *** redis-server is NOT INSTALLED: Redis store tests SKIPPED ***\n\
                         *** install it: apt-get install -y redis-server            ***\n\
                         ************************************************************\n"
                    );
                    return None;
                }
                Err(e) => panic!("cannot run redis-server: {e}"),
                Ok(mut child) => match wait_ready(&mut child, port, &dir) {
                    Ok(()) => {
                        return Some(RedisServer {
                            port,
                            dir,
                            child: Some(child),
                        })
                    }
                    // Most likely the port was taken between picking and binding it.
                    Err(why) => {
                        failures.push(format!("port {port}: {why}"));
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                },
            }
        }
        panic!("redis-server did not start: {}", failures.join("; "))
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mesh address the fleet's reservation directory names for `peer`, once it
    /// names one (nodes write their claims at once; the bound only turns a lost write
    /// into a failure).
    pub async fn directory_entry(&self, peer: libp2p::PeerId) -> libp2p::Multiaddr {
        const LISTED_WITHIN: Duration = Duration::from_secs(10);
        let deadline = Instant::now() + LISTED_WITHIN;
        loop {
            if let Some(node) = self.directory_lookup(peer).await {
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "{peer} not listed within {LISTED_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The mesh address the fleet's reservation directory names for `peer` now.
    pub async fn directory_lookup(&self, peer: libp2p::PeerId) -> Option<libp2p::Multiaddr> {
        let mut connection = ::redis::Client::open(self.url())
            .expect("redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connected to redis-server");
        let key = format!(
            "{}{}",
            dusk_relay::fleet::directory::PREFIX,
            peer.to_base58()
        );
        let node: Option<String> = ::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("GET");
        node.map(|node| node.parse().expect("a mesh multiaddr"))
    }

    /// Kills the server and waits for it to exit; its port is free once this returns.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and the kernel still accepts
    /// new ones, but nothing answers, as with a Redis stuck or behind a dead link.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("redis-server running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Starts the server again on the same port (empty: it persists nothing), so that
    /// clients of [`url`](Self::url) reconnect to it.
    pub fn start_again(&mut self) {
        self.stop();
        let mut child = spawn(self.port, &self.dir).expect("restart redis-server");
        let ready = wait_ready(&mut child, self.port, &self.dir);
        self.child = Some(child);
        if let Err(why) = ready {
            panic!("redis-server did not restart on port {}: {why}", self.port);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused server too.
        self.stop();
    }
}

/// Polls until the server answers PING; `Err` with its log if it exits or the deadline
/// passes.
fn wait_ready(child: &mut Child, port: u16, dir: &tempfile::TempDir) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let log = || std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}: {}", log()));
        }
        if ping(addr) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no PONG within {READY_TIMEOUT:?}: {}", log()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn spawn(port: u16, dir: &tempfile::TempDir) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("redis.log"))?;
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// Whether a Redis on `addr` answers PING with PONG.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
