//! One ACME order, from the account to the issued chain: the CA's HTTPS client, the
//! account (created once, then restored from the data directory), the challenges and
//! the finalization with a key generated here.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tracing::info;

use super::challenge::Challenges;
use super::storage::AcmeStore;
use super::AcmeError;
use crate::config::AcmeConfig;
use crate::tls;

/// How long one order may take from challenges ready to certificate downloaded. The CA
/// usually validates within seconds; Let's Encrypt's own guidance polls for minutes.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

/// The CA's HTTPS client: the system's roots plus the operator's extra CA, with ring
/// (the tree enables aws-lc-rs too, so rustls would have no default provider).
pub fn http_client(extra_ca: Option<&Path>) -> Result<Box<dyn HttpClient>, AcmeError> {
    let provider = Arc::new(tls::crypto_provider());
    let mut extra_roots: Vec<CertificateDer<'static>> = Vec::new();
    if let Some(path) = extra_ca {
        let ca_error = |reason: String| AcmeError::ExtraCa {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        extra_roots = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ca_error(format!("invalid PEM: {e}")))?;
        if extra_roots.is_empty() {
            return Err(ca_error("no PEM CERTIFICATE block found".into()));
        }
    }
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|e| AcmeError::Roots(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Roots(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client: HyperClient<_, BodyWrapper<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

/// The stored account, or a new one (stored before it is used).
pub async fn account(config: &AcmeConfig, store: &AcmeStore) -> Result<Account, AcmeError> {
    let http = || http_client(config.ca.as_deref());
    if let Some(credentials) = store.load_account()? {
        return Account::builder_with_http(http()?)
            .from_credentials(credentials)
            .await
            .map_err(|e| AcmeError::Ca(format!("restoring the ACME account: {e}")));
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http()?)
        .create(
            &NewAccount {
                contact: &contacts,
                // The operator agrees by turning ACME on; README says so.
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await
        .map_err(|e| AcmeError::Ca(format!("creating an ACME account: {e}")))?;
    store.save_account(&credentials)?;
    info!(directory = %config.directory, "created an ACME account");
    Ok(account)
}

/// What a successful order yields.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders a certificate for `domains`, answering with HTTP-01 when `http01` (the
/// responder is up) and TLS-ALPN-01 otherwise. The challenge responses are removed
/// again whatever happens.
pub async fn issue(
    account: &Account,
    domains: &[String],
    challenges: &Challenges,
    http01: bool,
) -> Result<Issued, AcmeError> {
    let result = run_order(account, domains, challenges, http01).await;
    let tokens = challenges.clear();
    if let Some(shared) = challenges.shared() {
        shared.withdraw(&tokens).await;
    }
    result
}

async fn run_order(
    account: &Account,
    domains: &[String],
    challenges: &Challenges,
    http01: bool,
) -> Result<Issued, AcmeError> {
    let identifiers: Vec<Identifier> = domains
        .iter()
        .map(|d| match d.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(d.clone()),
        })
        .collect();
    let ca = |what: &str, e: instant_acme::Error| AcmeError::Ca(format!("{what}: {e}"));
    let mut new_order = NewOrder::new(&identifiers);
    // Let's Encrypt issues IP certificates only under its six-day profile.
    let wants_ip = identifiers.iter().any(|i| matches!(i, Identifier::Ip(_)));
    if wants_ip && account.profiles().any(|p| p.name == "shortlived") {
        new_order = new_order.profile("shortlived");
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(|e| ca("new order", e))?;
    let kind = if http01 {
        ChallengeType::Http01
    } else {
        ChallengeType::TlsAlpn01
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| ca("authorization", e))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(AcmeError::Rejected(format!(
                    "authorization for {} is {status:?}",
                    authorization.identifier()
                )))
            }
        }
        let identifier = authorization.identifier().to_string();
        let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
            AcmeError::Rejected(format!(
                "the CA offers no {kind:?} challenge for {identifier}"
            ))
        })?;
        let key_authorization = challenge.key_authorization();
        if http01 {
            challenges.add_http(&challenge.token, key_authorization.as_str());
            // In a fleet the CA may reach any node: every node must hold the answer
            // before the CA is told to look.
            if let Some(shared) = challenges.shared() {
                shared
                    .publish(&challenge.token, key_authorization.as_str())
                    .await
                    .map_err(AcmeError::Challenge)?;
            }
        } else {
            challenges
                .add_tls_alpn(&identifier, key_authorization.digest().as_ref())
                .map_err(AcmeError::Challenge)?;
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| ca("challenge ready", e))?;
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ORDER_TIMEOUT);
    match order.poll_ready(&retry).await {
        Ok(OrderStatus::Ready) => {}
        // The order's own problem is often generic ("authorization failed"): the
        // challenges carry what the CA saw.
        Ok(_) | Err(instant_acme::Error::Api(_)) => {
            return Err(AcmeError::Rejected(failure_reasons(&mut order).await))
        }
        Err(e) => return Err(ca("waiting for validation", e)),
    }
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Challenge(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec())
        .map_err(|e| AcmeError::Challenge(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Challenge(e.to_string()))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| ca("finalize", e))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| ca("certificate", e))?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The CA's own words on why the order failed: each failed challenge's problem.
async fn failure_reasons(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let identifier = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{identifier}: {problem}"));
            }
        }
    }
    if reasons.is_empty() {
        match &order.state().error {
            Some(problem) => problem.to_string(),
            None => "the order became invalid (the CA gave no reason)".into(),
        }
    } else {
        reasons.join("; ")
    }
}
