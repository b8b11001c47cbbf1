//! Nodes of one fleet in this process: the files every node shares (keypair, fleet
//! secret) and a node started against one redis-server, its mesh on loopback port 0.

use std::path::{Path, PathBuf};

use dusk_relay::config::{FleetConfig, RendezvousStore};
use dusk_relay::Config;

use super::redis::RedisServer;
use super::TestRelay;

/// The files every node of one fleet shares: the keypair and the fleet secret.
pub struct FleetFiles {
    dir: tempfile::TempDir,
}

impl FleetFiles {
    pub fn new() -> FleetFiles {
        let files = FleetFiles {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        files.write_secret("fleet.key", &"5e".repeat(32));
        files
    }

    pub fn write_secret(&self, name: &str, secret: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{secret}\n")).expect("write the fleet secret");
        path
    }

    pub fn keypair(&self) -> PathBuf {
        self.dir.path().join("keypair")
    }

    pub fn secret(&self) -> PathBuf {
        self.dir.path().join("fleet.key")
    }
}

/// A node of the fleet `files` describe, its directory in `redis`.
pub async fn node(redis: &RedisServer, files: &FleetFiles) -> TestRelay {
    node_with(redis, files, &files.secret(), |_| {}).await
}

/// [`node`] with a fleet secret of the caller's and the rest of its config adjusted.
pub async fn node_with(
    redis: &RedisServer,
    files: &FleetFiles,
    secret: &Path,
    adjust: impl FnOnce(&mut Config),
) -> TestRelay {
    let (url, keypair, secret) = (redis.url(), files.keypair(), secret.to_owned());
    TestRelay::start_with(move |c| {
        c.keypair_path = keypair;
        c.rendezvous.store = RendezvousStore::Redis(url.clone());
        c.fleet = Some(FleetConfig {
            redis: url,
            mesh_addr: "127.0.0.1:0".parse().expect("socket address"),
            mesh_announce: None,
            mesh_key_file: secret,
        });
        adjust(c);
    })
    .await
}
