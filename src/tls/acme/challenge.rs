//! Answering the CA's validation: TLS-ALPN-01 (RFC 8737) on the WSS listener itself and
//! HTTP-01 on an optional plain HTTP port (served by [`super::http01`]).
//!
//! TLS-ALPN-01 needs no port of its own: the CA opens TLS to port 443 offering only the
//! ALPN protocol `acme-tls/1`, and [`AcmeResolver`] answers such a handshake with a
//! self-signed certificate carrying the `acmeIdentifier` extension for the name asked
//! (SNI). Every other handshake gets the served certificate, as before.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::debug;

use super::shared::SharedChallenges;
use crate::tls;
use crate::tls::reload::ServedCertificate;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The responses to the CA's validation requests, while an order is pending.
#[derive(Debug, Default)]
pub struct Challenges {
    /// SNI name (a DNS name, or the reverse-DNS name of an IP) -> challenge certificate.
    tls_alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01 token -> key authorization.
    http: RwLock<HashMap<String, String>>,
    /// In a fleet: where HTTP-01 tokens are shared with the other nodes.
    shared: Option<SharedChallenges>,
}

impl Challenges {
    /// Responses shared with the other nodes of a fleet through `shared` (HTTP-01).
    pub fn with_shared(shared: SharedChallenges) -> Self {
        Challenges {
            shared: Some(shared),
            ..Challenges::default()
        }
    }

    pub fn shared(&self) -> Option<&SharedChallenges> {
        self.shared.as_ref()
    }

    /// Answers TLS-ALPN-01 for `identifier` (a DNS name or an IP) with a certificate
    /// proving `key_authorization_digest` (SHA-256 of the key authorization).
    pub fn add_tls_alpn(
        &self,
        identifier: &str,
        key_authorization_digest: &[u8],
    ) -> Result<(), String> {
        let certified = challenge_certificate(identifier, key_authorization_digest)?;
        self.tls_alpn
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sni_name(identifier), Arc::new(certified));
        Ok(())
    }

    pub fn add_http(&self, token: &str, key_authorization: &str) {
        self.http
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    /// Forgets every response: called when an order ends, whatever its outcome.
    /// Returns the HTTP-01 tokens it held.
    pub fn clear(&self) -> Vec<String> {
        self.tls_alpn
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.http
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(token, _)| token)
            .collect()
    }

    fn tls_alpn_certificate(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        self.tls_alpn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sni.to_ascii_lowercase())
            .cloned()
    }

    /// The key authorization for an HTTP-01 `token`, while its order is pending.
    pub(super) fn http_response(&self, token: &str) -> Option<String> {
        self.http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}

/// The name a validator puts in SNI: the DNS name itself, or for an IP the reverse-DNS
/// name (RFC 8738 section 6), since SNI cannot carry an IP.
fn sni_name(identifier: &str) -> String {
    match identifier.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        Ok(IpAddr::V6(ip)) => {
            let mut name = String::new();
            for byte in ip.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name + "ip6.arpa"
        }
        Err(_) => identifier.to_ascii_lowercase(),
    }
}

/// RFC 8737: self-signed, the identifier as its only subjectAltName, and the critical
/// `id-pe-acmeIdentifier` extension holding the key authorization's digest.
fn challenge_certificate(identifier: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![identifier.to_owned()]).map_err(|e| e.to_string())?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki,
    // which refuses the critical acmeIdentifier extension it does not know.
    let signing_key = tls::crypto_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(chain, signing_key))
}

/// The WSS listener's certificate choice with ACME on: the challenge certificate for a
/// validation handshake, the served certificate for everything else.
#[derive(Debug)]
pub struct AcmeResolver {
    served: Arc<ServedCertificate>,
    challenges: Arc<Challenges>,
}

impl AcmeResolver {
    pub fn new(served: Arc<ServedCertificate>, challenges: Arc<Challenges>) -> Self {
        AcmeResolver { served, challenges }
    }

    /// The WSS listener's rustls configuration with ACME on. It offers `acme-tls/1`
    /// besides `http/1.1` (WebSocket's): rustls can only agree on a protocol it lists,
    /// and RFC 8737 needs `acme-tls/1` agreed. A client offering neither (but some
    /// other ALPN) is refused; libp2p, browsers and Node send `http/1.1` or no ALPN.
    pub fn server_config(self) -> Arc<rustls::ServerConfig> {
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(tls::crypto_provider()))
                .with_safe_default_protocol_versions()
                // ring supports every safe default version; this cannot fail.
                .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(self));
        config.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if !validation {
            return self.served.resolve(hello);
        }
        let name = hello.server_name()?;
        let certificate = self.challenges.tls_alpn_certificate(name);
        if certificate.is_none() {
            // Someone probing, or the CA after the order ended: no certificate, no TLS.
            debug!("acme-tls/1 handshake for a name with no pending challenge");
        }
        certificate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_asked_for_by_their_reverse_dns_name() {
        assert_eq!(sni_name("127.0.0.1"), "1.0.0.127.in-addr.arpa");
        assert_eq!(
            sni_name("2001:db8::1"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(sni_name("Relay.Example.com"), "relay.example.com");
    }

    #[test]
    fn the_challenge_certificate_carries_the_acme_identifier() {
        let certified = challenge_certificate("relay.example.com", &[7u8; 32]).expect("cert");
        let der = certified.cert[0].as_ref();
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31, DER-encoded.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        assert!(der.windows(32).any(|w| w == [7u8; 32]));
    }
}
