//! The WSS certificate from an ACME CA (Let's Encrypt by default), obtained and renewed
//! by the relay itself: no certbot, no renewal hook, no second port when WSS is
//! published on 443.
//!
//! At start ([`prepare`]) a stored certificate for the configured names is served at
//! once; without one WSS serves the self-signed certificate until the first is issued.
//! The task ([`AcmeTask::run`]) then orders whenever the certificate is missing, is for
//! other names or is due for renewal (the CA's renewal information where it offers it,
//! otherwise two thirds into the lifetime), writes the result to the data directory and
//! swaps it in through the [`CertificateReloader`]: new handshakes get it, open WSS
//! connections keep theirs. A failed order is logged with the CA's reason and retried
//! with backoff; the certificate in use is never dropped.

pub mod challenge;
pub mod http01;
pub mod order;
pub mod shared;
pub mod storage;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing::{error, info, warn};

use crate::config::AcmeConfig;
use crate::metrics::OutcomeLabel;
use crate::tls::reload::CertificateReloader;
use crate::tls::TlsMaterial;
use challenge::Challenges;
use storage::{AcmeStore, CertificateFacts};

/// First wait after a failed order; doubled after each further failure. Let's Encrypt
/// allows 5 failed validations per name per hour, so quick retries would only lock
/// the relay out.
const RETRY_FIRST: Duration = Duration::from_secs(60);
/// Longest wait between attempts: a broken set-up still tries a few times a day.
const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "ACME file {path} exists but is not usable ({reason}); it was left untouched. \
         Restore it, or delete it to have the relay obtain a new one"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("DUSK_RELAY_ACME_CA = {path}: {reason}")]
    ExtraCa { path: PathBuf, reason: String },
    #[error("no CA roots to check the ACME directory's HTTPS with ({0}); install ca-certificates or set DUSK_RELAY_ACME_CA")]
    Roots(String),
    /// The CA answered with an error, or could not be reached.
    #[error("{0}")]
    Ca(String),
    /// The CA refused the order; the CA's reasons.
    #[error("the CA refused: {0}")]
    Rejected(String),
    #[error("cannot prepare the challenge response: {0}")]
    Challenge(String),
}

/// What start-up takes from the data directory before the WSS listener exists.
pub struct AcmeSetup {
    pub store: AcmeStore,
    pub challenges: Arc<Challenges>,
    /// A certificate issued earlier for this directory, if any.
    pub stored: Option<(TlsMaterial, CertificateFacts)>,
}

/// Checks what can be checked before anything listens: the extra CA, the stored
/// account and certificate (a corrupt file stops the relay here, untouched).
/// `shared`: a fleet's Redis, through which HTTP-01 tokens are shared by the nodes.
pub fn prepare(
    config: &AcmeConfig,
    data_dir: &Path,
    shared: Option<shared::SharedChallenges>,
) -> Result<AcmeSetup, AcmeError> {
    order::http_client(config.ca.as_deref())?;
    let store = AcmeStore::new(data_dir, &config.directory);
    store.create()?;
    store.load_account()?;
    let stored = store.load_certificate()?;
    Ok(AcmeSetup {
        store,
        challenges: Arc::new(shared.map_or_else(Challenges::default, Challenges::with_shared)),
        stored,
    })
}

/// Obtains and renews the certificate while the relay runs.
pub struct AcmeTask {
    pub config: AcmeConfig,
    pub store: AcmeStore,
    pub challenges: Arc<Challenges>,
    pub reloader: CertificateReloader,
    /// `dusk_relay_acme_orders_total{outcome}`.
    pub orders: Family<OutcomeLabel, Counter>,
    /// The HTTP-01 responder is up: answer HTTP-01 instead of TLS-ALPN-01.
    pub http01: bool,
}

impl AcmeTask {
    pub async fn run(self) {
        let mut retry = Backoff::default();
        let account = loop {
            match order::account(&self.config, &self.store).await {
                Ok(account) => break account,
                Err(e) => {
                    let delay = retry.next_delay();
                    self.count("failed");
                    error!(
                        retry_in_secs = delay.as_secs(),
                        "ACME account not ready: {e}; WSS keeps its current certificate"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        };
        retry = Backoff::default();
        loop {
            match self.renewal_due(&account).await {
                Ok(Some(wait)) => tokio::time::sleep(wait).await,
                Ok(None) => {}
                Err(e) => {
                    // Never order over a file the operator must look at.
                    let delay = retry.next_delay();
                    error!(retry_in_secs = delay.as_secs(), "{e}");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            let started = Instant::now();
            let domains = self.config.domains.join(",");
            info!(domains = %domains, "ACME order started");
            let result = order::issue(
                &account,
                &self.config.domains,
                &self.challenges,
                self.http01,
            )
            .await
            .and_then(|issued| {
                self.store
                    .save_certificate(&issued.chain_pem, &issued.key_pem)
            });
            match result {
                Ok(()) => {
                    self.count("issued");
                    retry = Backoff::default();
                    info!(
                        domains = %domains,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "ACME certificate issued"
                    );
                    // Logged and counted by the reloader, whatever the outcome.
                    let _ = self.reloader.reload("ACME order completed");
                }
                Err(e) => {
                    self.count("failed");
                    let delay = retry.next_delay();
                    error!(
                        domains = %domains,
                        retry_in_secs = delay.as_secs(),
                        "ACME order failed: {e}; WSS keeps its current certificate"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn count(&self, outcome: &str) {
        self.orders
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// How long until the stored certificate should be renewed; `None`: order now.
    async fn renewal_due(&self, account: &Account) -> Result<Option<Duration>, AcmeError> {
        let Some((material, facts)) = self.store.load_certificate()? else {
            return Ok(None);
        };
        if !facts.covers(&self.config.domains) {
            info!(
                names = %facts.names.join(","),
                "the stored ACME certificate is for other names; ordering one for the configured names"
            );
            return Ok(None);
        }
        let renew_at = match material.certs.first() {
            Some(leaf) => self.suggested_renewal(account, leaf, &facts).await,
            None => facts.two_thirds(),
        };
        let wait = renew_at.duration_since(SystemTime::now()).ok();
        if let Some(wait) = wait {
            let expires_in = facts
                .not_after
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            info!(
                serial = %facts.serial,
                renew_in_secs = wait.as_secs(),
                expires_in_secs = expires_in.as_secs(),
                "ACME certificate valid; renewal scheduled"
            );
        }
        Ok(wait)
    }

    /// A random time in the CA's renewal window (RFC 9773: random, so a CA's clients do
    /// not all come back at once), or two thirds into the lifetime without one.
    async fn suggested_renewal(
        &self,
        account: &Account,
        leaf: &rustls_pki_types::CertificateDer<'_>,
        facts: &CertificateFacts,
    ) -> SystemTime {
        let Ok(id) = CertificateIdentifier::try_from(leaf) else {
            return facts.two_thirds();
        };
        match account.renewal_info(&id).await {
            Ok((info, _)) => {
                let at = |t: i64| {
                    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0))
                };
                let start = at(info.suggested_window.start.unix_timestamp());
                let end = at(info.suggested_window.end.unix_timestamp());
                let window = end.duration_since(start).unwrap_or_default();
                start + window.mul_f64(random_fraction())
            }
            Err(instant_acme::Error::Unsupported(_)) => facts.two_thirds(),
            Err(e) => {
                warn!("ACME renewal information unavailable ({e}); renewing two thirds into the lifetime");
                facts.two_thirds()
            }
        }
    }
}

/// A number in [0, 1) from std's per-process random hash keys: enough to spread
/// renewals, without a random number crate.
fn random_fraction() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// Doubling waits between failed attempts, from [`RETRY_FIRST`] to [`RETRY_MAX`].
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = RETRY_FIRST
            .checked_mul(1 << self.failures.min(16))
            .map_or(RETRY_MAX, |d| d.min(RETRY_MAX));
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..12).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], RETRY_FIRST);
        assert_eq!(delays[1], RETRY_FIRST * 2);
        assert_eq!(delays[11], RETRY_MAX);
    }

    #[test]
    fn random_fractions_stay_in_range() {
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
