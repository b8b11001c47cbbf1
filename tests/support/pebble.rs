//! Debian's `pebble` (a test ACME CA) and `pebble-challtestsrv` (its DNS) on free
//! loopback ports, for the ACME tests. The challenge server answers every A query with
//! one address (127.0.0.1: the relay), so any test domain resolves to the relay.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::process::Command;

use super::process::RelayProcess;

/// A TCP port nothing listens on right now (the OS picks; the listener is closed).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free TCP port")
        .port()
}

/// A port free for both UDP and TCP (DNS uses both).
fn free_dns_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("free UDP port");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How the CA is set up for one test.
pub struct PebbleOptions {
    /// Where the CA connects for TLS-ALPN-01 (the relay's WSS port).
    pub tls_port: u16,
    /// Where the CA connects for HTTP-01.
    pub http_port: u16,
    /// The address every test domain resolves to.
    pub resolve_to: Ipv4Addr,
    /// Lifetime of issued certificates; `None`: pebble's default (about five years).
    pub validity_secs: Option<u64>,
}

impl PebbleOptions {
    pub fn for_tls_port(tls_port: u16) -> Self {
        PebbleOptions {
            tls_port,
            http_port: free_tcp_port(),
            resolve_to: Ipv4Addr::LOCALHOST,
            validity_secs: None,
        }
    }
}

/// A running pebble and its DNS; both stop when this is dropped.
pub struct Pebble {
    pub directory_url: String,
    /// The CA of pebble's own HTTPS (DUSK_RELAY_ACME_CA).
    pub listener_ca: PathBuf,
    management: SocketAddr,
    pub output: RelayProcess,
    _dns: RelayProcess,
}

impl Pebble {
    pub async fn start(dir: &Path, options: PebbleOptions) -> Pebble {
        let dns_port = free_dns_port();
        let dns_management = free_tcp_port();
        let mut dns_command = command("pebble-challtestsrv");
        dns_command
            .arg("-defaultIPv4")
            .arg(options.resolve_to.to_string())
            .args(["-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")]);
        let mut dns = RelayProcess::spawn(dns_command);
        dns.line_containing("Starting management server").await;

        let listener_ca = dir.join("pebble-listener-ca.pem");
        let (cert, key) = listener_certificate(&listener_ca);
        let cert_path = dir.join("pebble-cert.pem");
        let key_path = dir.join("pebble-key.pem");
        std::fs::write(&cert_path, cert).expect("write pebble cert");
        std::fs::write(&key_path, key).expect("write pebble key");
        let port = free_tcp_port();
        let management = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": management.to_string(),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": options.http_port,
                "tlsPort": options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(secs) = options.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write pebble config");
        let mut pebble_command = command("pebble");
        pebble_command
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .arg("-strict=false")
            // Validate at once, for real, and never fail a request on purpose: the
            // tests measure the relay, not pebble's chaos.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validates anew (renewals included).
            .env("PEBBLE_AUTHZREUSE", "0");
        let mut output = RelayProcess::spawn(pebble_command);
        let line = output.line_containing("ACME directory available at:").await;
        let directory_url = super::process::after(&line, "ACME directory available at:").to_owned();
        Pebble {
            directory_url,
            listener_ca,
            management,
            output,
            _dns: dns,
        }
    }

    /// The root every certificate pebble issues chains to (its management `/roots/0`).
    pub fn issuing_root(&self) -> CertificateDer<'static> {
        let pem = https_get(self.management, "/roots/0", &self.listener_ca);
        CertificateDer::from_pem_slice(&pem).expect("pebble root PEM")
    }
}

fn command(program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A CA (written to `ca_path`) and the certificate pebble's HTTPS serves (127.0.0.1).
fn listener_certificate(ca_path: &Path) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble listener test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    std::fs::write(ca_path, ca.pem()).expect("write CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    (cert.pem(), key.serialize_pem())
}

/// A rustls client trusting `roots` only (ring, as the relay).
pub fn tls_client(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth(),
    )
}

/// A TLS handshake with `addr` asking for `name`: the chain it served, or why the
/// client refused it.
pub fn handshake(
    addr: SocketAddr,
    name: &str,
    client: Arc<rustls::ClientConfig>,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    let mut connection = rustls::ClientConnection::new(client, server_name).expect("client");
    let mut socket = TcpStream::connect(addr).expect("connect");
    while connection.is_handshaking() {
        connection
            .complete_io(&mut socket)
            .map_err(|e| e.to_string())?;
    }
    Ok(connection
        .peer_certificates()
        .expect("a handshake without certificates")
        .to_vec())
}

/// GET `path` over HTTPS from a server whose certificate `ca` signed.
fn https_get(addr: SocketAddr, path: &str, ca: &Path) -> Vec<u8> {
    let ca = CertificateDer::from_pem_file(ca).expect("CA");
    let client = tls_client(&[ca]);
    let server_name = ServerName::try_from("127.0.0.1").expect("name");
    let connection = rustls::ClientConnection::new(client, server_name).expect("client");
    let socket = TcpStream::connect(addr).expect("connect");
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = Vec::new();
    // Go closes without close_notify after an HTTP/1.0 response: keep what arrived.
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response");
    response[split + 4..].to_vec()
}
