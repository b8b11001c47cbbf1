//! The ACME account and the issued certificate in the data directory, one folder per
//! CA directory (`acme/<directory>/`), so switching from staging to production never
//! serves a staging certificate or reuses a staging account.
//!
//! Files are owner-only and written atomically ([`crate::fsutil`]). The certificate
//! file holds the chain and its key together: one rename replaces both, so a reload
//! never sees a new chain with an old key. A file that exists but does not parse stops
//! the relay with an error naming it; it is never replaced behind the operator's back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use instant_acme::AccountCredentials;
use rustls_pki_types::CertificateDer;

use super::AcmeError;
use crate::fsutil;
use crate::tls::{self, TlsMaterial};

const ACCOUNT_FILE: &str = "account.json";
const CERTIFICATE_FILE: &str = "certificate.pem";

/// The folder of one CA directory's account and certificate.
#[derive(Debug, Clone)]
pub struct AcmeStore {
    dir: PathBuf,
}

impl AcmeStore {
    /// `data_dir/acme/<directory URL as a file name>`.
    pub fn new(data_dir: &Path, directory_url: &str) -> Self {
        let name: String = directory_url
            .trim_start_matches("https://")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        AcmeStore {
            dir: data_dir.join("acme").join(name),
        }
    }

    /// Creates the folder (owner-only) so it can be watched before anything is issued.
    pub fn create(&self) -> Result<(), AcmeError> {
        fsutil::create_private_dir(&self.dir).map_err(|source| AcmeError::Write {
            path: self.dir.clone(),
            source,
        })
    }

    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join(CERTIFICATE_FILE)
    }

    fn account_path(&self) -> PathBuf {
        self.dir.join(ACCOUNT_FILE)
    }

    /// The stored account; `None` when there is none yet.
    pub fn load_account(&self) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.account_path();
        let Some(bytes) = read_if_exists(&path)? else {
            return Ok(None);
        };
        fsutil::warn_if_readable_by_others(&path);
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AcmeError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    pub fn save_account(&self, credentials: &AccountCredentials) -> Result<(), AcmeError> {
        let path = self.account_path();
        let json = serde_json::to_vec_pretty(credentials).map_err(|e| AcmeError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        fsutil::write_new_private(&path, &json).map_err(|source| AcmeError::Write { path, source })
    }

    /// The stored certificate, checked as the WSS listener would load it; `None` when
    /// nothing was issued yet.
    pub fn load_certificate(&self) -> Result<Option<(TlsMaterial, CertificateFacts)>, AcmeError> {
        let path = self.certificate_path();
        if read_if_exists(&path)?.is_none() {
            return Ok(None);
        }
        let material = tls::load(&path, &path, false).map_err(|e| AcmeError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let facts = material
            .certs
            .first()
            .ok_or_else(|| "no certificate".to_owned())
            .and_then(CertificateFacts::of)
            .map_err(|reason| AcmeError::Corrupt {
                path: path.clone(),
                reason,
            })?;
        Ok(Some((material, facts)))
    }

    /// Replaces the certificate with a newly issued chain and its key (both PEM).
    pub fn save_certificate(&self, chain_pem: &str, key_pem: &str) -> Result<(), AcmeError> {
        let path = self.certificate_path();
        let mut bytes = chain_pem.trim_end().as_bytes().to_vec();
        bytes.push(b'\n');
        bytes.extend_from_slice(key_pem.as_bytes());
        fsutil::replace_private(&path, &bytes).map_err(|source| AcmeError::Write { path, source })
    }
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, AcmeError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// What the relay needs to know of an issued leaf certificate.
#[derive(Debug, Clone)]
pub struct CertificateFacts {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names (lower case) and IP addresses of its subjectAltName.
    pub names: Vec<String>,
    /// Hex serial, to tell certificates apart in the log.
    pub serial: String,
}

impl CertificateFacts {
    pub fn of(leaf: &CertificateDer<'_>) -> Result<Self, String> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let time = |t: x509_parser::time::ASN1Time| {
            let secs = u64::try_from(t.timestamp()).unwrap_or(0);
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(CertificateFacts {
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            names,
            serial: cert.raw_serial_as_string(),
        })
    }

    /// True when every one of `domains` is among the certificate's names.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains.iter().all(|d| self.names.contains(d))
    }

    /// Two thirds into its lifetime: Let's Encrypt's advice when the CA gives no
    /// renewal information (30 days left of 90; 2 of 6 for short-lived certificates).
    pub fn two_thirds(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime * 2 / 3
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_certificate_is_an_error_and_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path(), "https://ca.example/dir");
        store.create().expect("create");
        fs::write(store.certificate_path(), b"garbage").expect("write");
        let error = store.load_certificate().expect_err("corrupt");
        assert!(error.to_string().contains("certificate.pem"), "{error}");
        assert_eq!(
            fs::read(store.certificate_path()).expect("read"),
            b"garbage"
        );
    }

    #[test]
    fn a_corrupt_account_is_an_error_and_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path(), "https://ca.example/dir");
        store.create().expect("create");
        fs::write(store.account_path(), b"{").expect("write");
        let Err(error) = store.load_account() else {
            panic!("a corrupt account file must be an error");
        };
        assert!(error.to_string().contains("account.json"), "{error}");
    }

    #[test]
    fn each_directory_has_its_own_folder() {
        let a = AcmeStore::new(
            Path::new("/d"),
            "https://acme-v02.api.letsencrypt.org/directory",
        );
        let b = AcmeStore::new(
            Path::new("/d"),
            "https://acme-staging-v02.api.letsencrypt.org/directory",
        );
        assert_ne!(a.certificate_path(), b.certificate_path());
        assert_eq!(
            a.certificate_path(),
            Path::new("/d/acme/acme-v02.api.letsencrypt.org_directory/certificate.pem")
        );
    }
}
