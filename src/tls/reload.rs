//! The WSS certificate, replaceable while the relay runs (certbot/ACME renewals).
//!
//! rustls asks a [`ResolvesServerCert`] for the certificate on every handshake, so a
//! reload swaps one `Arc` and only new WSS connections see the new certificate;
//! established connections and the circuits on them are untouched. A new pair is loaded
//! and validated in full first: if it is unusable the old one keeps serving and the
//! error names the file.
//!
//! Reloads happen on SIGHUP (the binary calls [`CertificateReloader::reload`]) and when
//! the certificate or key file changes on disk ([`CertificateReloader::watch`]). Both,
//! and anything else that obtains a certificate, go through
//! [`ServedCertificate::install`], so the expiry `/metrics` shows is always the served
//! certificate's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use notify::{EventKind, RecursiveMode, Watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error, info, warn};

use crate::config::defaults;
use crate::events::RelayEvent;
use crate::metrics::OutcomeLabel;
use crate::tls::{self, TlsError, TlsMaterial};

/// The certificate every new WSS handshake is answered with.
#[derive(Debug)]
pub struct ServedCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    /// The served leaf's notAfter (Unix seconds), for `/metrics`.
    not_after: Gauge,
}

impl ServedCertificate {
    pub fn new(material: &TlsMaterial) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(material.certified_key()?);
        let not_after = Gauge::default();
        not_after.set(expiry_of(material));
        Ok(Arc::new(ServedCertificate { current, not_after }))
    }

    /// Serves `material` to every new WSS handshake from now on and publishes its
    /// expiry; established connections keep the certificate they began with. The one
    /// way a certificate goes into service after start (file reloads, SIGHUP, an ACME
    /// renewal), so the metric cannot miss one. Fails, changing nothing, if the key
    /// cannot sign or does not belong to the certificate.
    pub fn install(&self, material: &TlsMaterial) -> Result<(), TlsError> {
        let key = material.certified_key()?;
        let not_after = expiry_of(material);
        // Both under the lock: two installs at once (SIGHUP during a file reload) cannot
        // leave one's certificate served with the other's expiry published.
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        *current = key;
        self.not_after.set(not_after);
        Ok(())
    }

    /// The gauge behind `dusk_relay_tls_certificate_not_after_timestamp_seconds`
    /// ([`crate::metrics::Metrics::register_certificate_not_after`]).
    pub fn not_after(&self) -> Gauge {
        self.not_after.clone()
    }

    /// The rustls server configuration of the WSS listeners, answering with whatever
    /// certificate is current at each handshake.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(tls::crypto_provider()))
            .with_safe_default_protocol_versions()
            // ring supports every safe default version; this cannot fail.
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Arc::new(config)
    }

    /// The chain (DER) new handshakes get now.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.get().cert.clone()
    }

    fn get(&self) -> Arc<CertifiedKey> {
        // A panic while holding the lock cannot leave a half-written Arc behind.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The leaf's notAfter, or 0 (long expired: the expiry alert fires and someone looks)
/// when x509-parser cannot read a certificate rustls accepted.
fn expiry_of(material: &TlsMaterial) -> i64 {
    match tls::not_after(&material.certs) {
        Some(not_after) => not_after,
        None => {
            warn!(cert = %material.cert_path.display(), "cannot read the WSS certificate's expiry; /metrics shows it as expired");
            0
        }
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// New connections get the new certificate.
    Changed,
    /// The files hold the certificate already served.
    Unchanged,
}

/// Reloads the served certificate from its files, logging and counting each outcome.
#[derive(Clone)]
pub struct CertificateReloader {
    served: Arc<ServedCertificate>,
    cert_path: PathBuf,
    key_path: PathBuf,
    self_signed: bool,
    observers: broadcast::Sender<RelayEvent>,
    outcomes: Family<OutcomeLabel, Counter>,
}

impl CertificateReloader {
    pub fn new(
        served: Arc<ServedCertificate>,
        material: &TlsMaterial,
        observers: broadcast::Sender<RelayEvent>,
        outcomes: Family<OutcomeLabel, Counter>,
    ) -> Self {
        CertificateReloader {
            served,
            cert_path: material.cert_path.clone(),
            key_path: material.key_path.clone(),
            self_signed: material.self_signed,
            observers,
            outcomes,
        }
    }

    /// Loads and validates the files; serves them if they are valid and different.
    /// `trigger` says why, for the log.
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, TlsError> {
        let result =
            tls::load(&self.cert_path, &self.key_path, self.self_signed).and_then(|material| {
                if material.certs == self.served.chain() {
                    return Ok(Reloaded::Unchanged);
                }
                self.served.install(&material)?;
                Ok(Reloaded::Changed)
            });
        let outcome = match &result {
            Ok(Reloaded::Changed) => {
                info!(cert = %self.cert_path.display(), "WSS certificate reloaded ({trigger}); new WSS connections use it");
                let _ = self.observers.send(RelayEvent::CertificateReloaded);
                "reloaded"
            }
            Ok(Reloaded::Unchanged) => {
                info!(cert = %self.cert_path.display(), "WSS certificate unchanged ({trigger})");
                "unchanged"
            }
            Err(e) => {
                error!("{e}; still serving the previous WSS certificate ({trigger})");
                let _ = self.observers.send(RelayEvent::CertificateReloadFailed);
                "failed"
            }
        };
        self.outcomes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        result
    }

    /// Watches the certificate's and key's directories (certbot renews by swapping the
    /// symlinks in `live/`, so the files themselves may never be written) and reloads
    /// once changes have settled. Stops when the returned guard is dropped.
    pub fn watch(&self) -> Result<WatchGuard, notify::Error> {
        let (changed, mut changes) = mpsc::unbounded_channel();
        let names: Vec<_> = [&self.cert_path, &self.key_path]
            .iter()
            .filter_map(|p| p.file_name().map(ToOwned::to_owned))
            .collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // Reading the files ourselves must not trigger another reload.
                let relevant = !matches!(
                    event.kind,
                    EventKind::Access(notify::event::AccessKind::Open(_))
                        | EventKind::Access(notify::event::AccessKind::Close(
                            notify::event::AccessMode::Read
                        ))
                        | EventKind::Access(notify::event::AccessKind::Read)
                ) && event
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)));
                if relevant {
                    let _ = changed.send(());
                }
            })?;
        for dir in watched_dirs(&self.cert_path, &self.key_path) {
            watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        }
        let reloader = self.clone();
        let task = tokio::spawn(async move {
            // Keeps inotify open as long as the task runs.
            let _watcher = watcher;
            while changes.recv().await.is_some() {
                // A renewal writes the chain and the key one after the other: wait for
                // quiet so the half-written state is not reported as an error.
                loop {
                    match tokio::time::timeout(defaults::CERT_RELOAD_SETTLE, changes.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                debug!("WSS certificate files changed");
                let _ = reloader.reload("file changed");
            }
        });
        Ok(WatchGuard(task))
    }
}

/// Stops the file watch when dropped.
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn watched_dirs(cert: &Path, key: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [cert, key]
        .iter()
        .map(|p| match p.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.dedup();
    if dirs.is_empty() {
        warn!("no directory to watch for WSS certificate changes");
    }
    dirs
}
