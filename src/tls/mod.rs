//! Certificates for the WSS listener: PEM files from configured paths, or a self-signed
//! development certificate generated with rcgen and kept beside the keypair.
//!
//! Everything is validated here because libp2p-websocket panics on a malformed key. A
//! bad file stops the relay with an error naming it; an existing file is never replaced.

pub mod acme;
pub mod reload;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libp2p::multiaddr::Protocol;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::defaults;
use crate::config::Config;
use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read WSS certificate file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("WSS certificate file {path} is not usable: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "WSS certificate {cert} and key {key} do not work together ({reason}); check that the key belongs to the certificate"
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error(
        "found the self-signed WSS certificate {cert} but not its key {key}; restore the key, or delete the certificate to generate a new pair"
    )]
    OrphanDevCert { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a self-signed WSS certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A certificate chain and its private key, parsed and checked.
#[derive(Debug)]
pub struct TlsMaterial {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// True when generated for development: browsers will not trust it.
    pub self_signed: bool,
}

impl TlsMaterial {
    /// The chain and signing key rustls serves: fails if the key cannot sign (unsupported
    /// algorithm) or does not belong to the certificate.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let provider = crypto_provider();
        CertifiedKey::from_der(self.certs.clone(), self.key.clone_key(), &provider)
            .map(Arc::new)
            .map_err(|e| TlsError::Mismatch {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
                reason: e.to_string(),
            })
    }
}

/// When the leaf certificate of `chain` expires, in seconds since the Unix epoch; `None`
/// if it does not parse. The leaf only: a chain may carry an expired cross-signed root
/// (Let's Encrypt's served DST Root CA X3 for old Android clients), which clients ignore.
pub fn not_after(chain: &[CertificateDer<'_>]) -> Option<i64> {
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// ring, as libp2p-websocket uses for its own TLS (QUIC brings aws-lc-rs separately).
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Loads the configured certificate, or loads/creates the self-signed development one.
pub fn load_or_generate(config: &Config) -> Result<TlsMaterial, TlsError> {
    if let Some((cert, key)) = &config.tls.cert_and_key {
        return load(cert, key, false);
    }
    let dir = config.data_dir();
    let cert_path = dir.join(defaults::DEV_CERT_FILE);
    let key_path = dir.join(defaults::DEV_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {}
        (true, false) => {
            return Err(TlsError::OrphanDevCert {
                cert: cert_path,
                key: key_path,
            })
        }
        (false, key_exists) => {
            let names = self_signed_names(config);
            generate(&cert_path, &key_path, key_exists, names)?;
        }
    }
    load(&cert_path, &key_path, true)
}

/// Reads and validates a PEM certificate chain and PEM private key.
pub fn load(cert_path: &Path, key_path: &Path, self_signed: bool) -> Result<TlsMaterial, TlsError> {
    let cert_pem = read(cert_path)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| malformed(cert_path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(malformed(
            cert_path,
            "no PEM CERTIFICATE block found".into(),
        ));
    }
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        malformed(
            key_path,
            format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    fsutil::warn_if_readable_by_others(key_path);
    let material = TlsMaterial {
        cert_path: cert_path.to_owned(),
        key_path: key_path.to_owned(),
        certs,
        key,
        self_signed,
    };
    // A key that does not parse or does not match the certificate fails here, at start
    // or reload, not on the first WSS handshake.
    material.certified_key()?;
    Ok(material)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn malformed(path: &Path, reason: String) -> TlsError {
    TlsError::Malformed {
        path: path.to_owned(),
        reason,
    }
}

/// `localhost`, the loopback IPs, the configured hostnames and every DNS name or IP of
/// the external addresses.
pub fn self_signed_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.extend(config.tls.hostnames.iter().cloned());
    for addr in &config.external_addrs {
        for protocol in addr.iter() {
            let name = match protocol {
                Protocol::Dns(n) | Protocol::Dns4(n) | Protocol::Dns6(n) => n.to_string(),
                Protocol::Ip4(ip) => ip.to_string(),
                Protocol::Ip6(ip) => ip.to_string(),
                _ => continue,
            };
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Writes a self-signed certificate for `names`, reusing the key at `key_path` if it
/// exists (so a lost certificate is remade without replacing anything).
fn generate(
    cert_path: &Path,
    key_path: &Path,
    key_exists: bool,
    names: Vec<String>,
) -> Result<(), TlsError> {
    let key_pair = if key_exists {
        let pem = String::from_utf8(read(key_path)?)
            .map_err(|_| malformed(key_path, "not a PEM text file".into()))?;
        rcgen::KeyPair::from_pem(&pem).map_err(|e| malformed(key_path, e.to_string()))?
    } else {
        let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        write(key_path, key_pair.serialize_pem().as_bytes())?;
        key_pair
    };
    let mut params = rcgen::CertificateParams::new(names.clone())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dusk-relay self-signed");
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write(cert_path, cert.pem().as_bytes())?;
    // The names may be IP addresses (the relay's own), and info lines carry none.
    tracing::info!(cert = %cert_path.display(), "generated a self-signed WSS certificate");
    tracing::debug!(names = ?names, "self-signed WSS certificate names");
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    fsutil::write_new_private(path, bytes).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Files written by [`generate_dev_ca`].
#[derive(Debug)]
pub struct DevCaFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a local development CA and a WSS certificate it signs, for `localhost`, the
/// loopback IPs and `names`, in `dir`: `ca-cert.pem` (trust this in browsers and
/// clients), `cert.pem` + `key.pem` (give these to the relay). The CA key is not kept,
/// so the CA can sign nothing else. Existing files are never replaced.
pub fn generate_dev_ca(dir: &Path, names: &[String]) -> Result<DevCaFiles, TlsError> {
    let files = DevCaFiles {
        ca_cert: dir.join("ca-cert.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    for path in [&files.ca_cert, &files.cert, &files.key] {
        if path.exists() {
            return Err(TlsError::Write {
                path: path.clone(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "already exists; not replacing it",
                ),
            });
        }
    }
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());

    let ca_key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dusk-relay development CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;

    let mut all_names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    all_names.extend(names.iter().cloned());
    all_names.dedup();
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::new(all_names).map_err(generate)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "dusk-relay development certificate",
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(generate)?;

    write(&files.key, key.serialize_pem().as_bytes())?;
    write(&files.cert, cert.pem().as_bytes())?;
    write(&files.ca_cert, ca_cert.pem().as_bytes())?;
    Ok(files)
}
