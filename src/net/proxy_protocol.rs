//! PROXY protocol (v1 text and v2 binary) on the TCP, WS and WSS listeners, from
//! trusted load balancers only.
//!
//! Behind an L4 load balancer (HAProxy, AWS NLB, …) every connection comes from the
//! balancer, so every per-IP cap and rate of the relay would count one IP. A balancer
//! speaking the PROXY protocol writes a header naming the real client before the client's
//! bytes. [`ProxyProtocolTransport`] wraps libp2p's TCP transport: for a connection from
//! a trusted range it reads that header (exactly its bytes, so no payload is consumed)
//! *before* reporting the connection to the swarm, and reports it with the client's
//! `/ip4|ip6/<addr>/tcp/<port>` as `send_back_addr`. That address is the one the swarm's
//! `ConnectedPoint` carries, so every per-IP cap, rate and access-list range sees the
//! client. The WebSocket layers above append `/ws` (or `/tls/ws`) to it themselves.
//!
//! - A trusted source that sends no valid header, a malformed one, or none within
//!   [`HEADER_TIMEOUT`] is closed (logged at `debug`).
//! - `PROXY UNKNOWN` and the v2 `LOCAL` command (a balancer's health check) keep the
//!   balancer's own address, as the specification says.
//! - An untrusted source is not parsed: its bytes go to the libp2p handshake untouched,
//!   which refuses a PROXY header by itself (it is neither multistream-select nor HTTP).
//! - At most `max_reading` headers are read at once, over every listener together, so a
//!   trusted source that opens connections and stalls cannot grow memory; accepted
//!   streams past that are dropped.
//! - Dials pass through untouched.
//!
//! QUIC is UDP and has no PROXY protocol here: behind a balancer, QUIC clients count as
//! the balancer's address (or publish QUIC directly, as DOCKER.md says).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, Ready};
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncReadExt, FutureExt, StreamExt};
use ipnet::IpNet;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use libp2p::{tcp, Multiaddr, Transport};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

/// How long a trusted source has to send its whole header. A balancer writes it at once,
/// before (or with) the client's first bytes, so anything slower is broken or hostile;
/// 5 s forgives a congested link yet frees the slot of a stalled one quickly. The
/// transport's handshake timeout starts only after the header, when the swarm hears of
/// the connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest v1 header, CRLF included (the specification's figure).
const V1_MAX_BYTES: usize = 107;

/// The most address and TLV bytes a v2 header may declare. The specification allows
/// 65,535; balancers send the 12 or 36 address bytes and a few small TLVs (AWS NLB's VPC
/// endpoint id, HAProxy's SSL and unique-id TLVs: tens to hundreds of bytes). 4 KiB keeps
/// every header being read at once (`max_reading` of them) small.
const V2_MAX_PAYLOAD_BYTES: usize = 4096;

/// A v2 header's fixed part: the 12-byte signature, version and command, family and
/// protocol, and the big-endian length of what follows.
const V2_FIXED_BYTES: usize = 16;

/// The most bytes [`read_header`] takes from a trusted source: a v2 header at its cap
/// (v1's is smaller).
pub(crate) const MAX_HEADER_BYTES: usize = V2_FIXED_BYTES + V2_MAX_PAYLOAD_BYTES;

/// The first bytes read from a trusted source, enough to tell v1 (`PROXY `) from v2 (a
/// 12-byte signature) and fewer than the shortest header (`PROXY UNKNOWN\r\n`, 15 bytes),
/// so no payload is read before the version is known.
const SNIFF_BYTES: usize = 8;

/// One trusted range: a CIDR range (`10.0.0.0/8`) or a bare IP (a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedRange(pub IpNet);

impl std::str::FromStr for TrustedRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(range) = s.parse::<IpNet>() {
            return Ok(TrustedRange(range.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| TrustedRange(IpNet::from(ip)))
            .map_err(|_| {
                "expected an IP address or a CIDR range (10.0.0.0/8) of your load balancers"
                    .to_owned()
            })
    }
}

impl std::fmt::Display for TrustedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Which sources may prepend a PROXY header, and the budget of headers read at once,
/// shared by every listener built with clones of it.
#[derive(Clone)]
pub struct ProxyProtocol {
    trusted: Arc<[IpNet]>,
    reading: Arc<Semaphore>,
}

impl ProxyProtocol {
    /// No PROXY protocol: every listener passes connections through as they are.
    pub fn off() -> Self {
        ProxyProtocol::new(&[], 0)
    }

    /// Headers from `trusted` sources, at most `max_reading` read at once. Empty
    /// `trusted`: off.
    pub fn new(trusted: &[TrustedRange], max_reading: usize) -> Self {
        ProxyProtocol {
            trusted: trusted.iter().map(|r| r.0).collect(),
            reading: Arc::new(Semaphore::new(max_reading.min(Semaphore::MAX_PERMITS))),
        }
    }

    pub fn is_on(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// Whether a TCP connection from `addr` must start with a PROXY header.
    fn trusts(&self, addr: &Multiaddr) -> bool {
        if self.trusted.is_empty() {
            return false;
        }
        let ip = match addr.iter().next() {
            Some(Protocol::Ip4(ip)) => IpAddr::V4(ip),
            // A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6.
            Some(Protocol::Ip6(ip)) => IpAddr::V6(ip).to_canonical(),
            _ => return false,
        };
        self.trusted.iter().any(|range| range.contains(&ip))
    }
}

/// libp2p's tokio TCP transport with PROXY headers read on trusted connections.
pub struct ProxyProtocolTransport {
    inner: tcp::tokio::Transport,
    proxy: ProxyProtocol,
    /// Trusted connections whose header is being read.
    reading: FuturesUnordered<BoxFuture<'static, Option<Accepted>>>,
    /// Listeners still open: a header read for a closed one is dropped.
    listeners: HashSet<ListenerId>,
}

/// A trusted connection whose header has been read.
struct Accepted {
    listener_id: ListenerId,
    local_addr: Multiaddr,
    send_back_addr: Multiaddr,
    stream: tcp::tokio::TcpStream,
}

impl ProxyProtocolTransport {
    pub fn new(inner: tcp::tokio::Transport, proxy: ProxyProtocol) -> Self {
        ProxyProtocolTransport {
            inner,
            proxy,
            reading: FuturesUnordered::new(),
            listeners: HashSet::new(),
        }
    }

    /// Starts reading the header of a trusted connection, or drops it when as many
    /// headers as the budget allows are being read already.
    fn read_header_of(
        &mut self,
        listener_id: ListenerId,
        upgrade: Ready<Result<tcp::tokio::TcpStream, io::Error>>,
        local_addr: Multiaddr,
        balancer: Multiaddr,
    ) {
        let Ok(permit) = self.proxy.reading.clone().try_acquire_owned() else {
            debug!(%balancer, "PROXY protocol: too many headers being read; connection dropped");
            return;
        };
        self.reading
            .push(accept(listener_id, upgrade, local_addr, balancer, permit).boxed());
    }
}

async fn accept(
    listener_id: ListenerId,
    upgrade: Ready<Result<tcp::tokio::TcpStream, io::Error>>,
    local_addr: Multiaddr,
    balancer: Multiaddr,
    // Held until the header is read (or not): one slot of the budget.
    _permit: OwnedSemaphorePermit,
) -> Option<Accepted> {
    let mut stream = upgrade.await.ok()?;
    let send_back_addr = match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await
    {
        Ok(Ok(Some(client))) => Multiaddr::from(client.ip()).with(Protocol::Tcp(client.port())),
        // A balancer's own health check: it is who it is.
        Ok(Ok(None)) => balancer,
        Ok(Err(error)) => {
            debug!(%balancer, %error, "PROXY protocol: no valid header from a trusted source; closed");
            return None;
        }
        Err(_) => {
            debug!(%balancer, "PROXY protocol: no header within {HEADER_TIMEOUT:?} from a trusted source; closed");
            return None;
        }
    };
    Some(Accepted {
        listener_id,
        local_addr,
        send_back_addr,
        stream,
    })
}

/// Why a trusted source's connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("reading the header: {0}")]
    Io(#[from] io::Error),
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("v1 header without CRLF within {V1_MAX_BYTES} bytes")]
    V1TooLong,
    #[error("v1 header: {0}")]
    V1(#[from] ppp::v1::BinaryParseError),
    #[error(
        "v2 header declares {0} bytes of addresses and TLVs, more than {V2_MAX_PAYLOAD_BYTES}"
    )]
    V2TooLong(usize),
    #[error("v2 header: {0}")]
    V2(#[from] ppp::v2::ParseError),
}

/// Reads one PROXY header from `stream`, and not a byte more. `Some` client address for
/// a proxied TCP connection; `None` for `UNKNOWN`, `LOCAL` and non-IP address families,
/// where the connection's own address stands.
/// (Fuzzed: `fuzz/fuzz_targets/proxy_header.rs`.)
pub async fn read_header(
    stream: &mut (impl AsyncRead + Unpin),
) -> Result<Option<SocketAddr>, HeaderError> {
    let mut header = vec![0u8; SNIFF_BYTES];
    stream.read_exact(&mut header).await?;
    if header.starts_with(b"PROXY ") {
        // Byte by byte: the header's end is only known by its CRLF, and what follows it
        // belongs to the libp2p handshake.
        let mut byte = [0u8; 1];
        while !header.ends_with(b"\r\n") {
            if header.len() == V1_MAX_BYTES {
                return Err(HeaderError::V1TooLong);
            }
            stream.read_exact(&mut byte).await?;
            header.push(byte[0]);
        }
        let parsed = ppp::v1::Header::try_from(header.as_slice())?;
        return Ok(match parsed.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        });
    }
    if !ppp::v2::PROTOCOL_PREFIX.starts_with(&header) {
        return Err(HeaderError::NotProxy);
    }
    header.resize(V2_FIXED_BYTES, 0);
    stream.read_exact(&mut header[SNIFF_BYTES..]).await?;
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if length > V2_MAX_PAYLOAD_BYTES {
        return Err(HeaderError::V2TooLong(length));
    }
    header.resize(V2_FIXED_BYTES + length, 0);
    stream.read_exact(&mut header[V2_FIXED_BYTES..]).await?;
    let parsed = ppp::v2::Header::try_from(header.as_slice())?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

impl Transport for ProxyProtocolTransport {
    type Output = tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = Ready<Result<Self::Output, Self::Error>>;
    type Dial = <tcp::tokio::Transport as Transport>::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)?;
        self.listeners.insert(id);
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.listeners.remove(&id);
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        self.inner.dial(addr, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let this = self.get_mut();
        loop {
            // Headers read: the connection reaches the swarm under its client's address.
            while let Poll::Ready(Some(done)) = this.reading.poll_next_unpin(cx) {
                let Some(accepted) = done else { continue };
                if !this.listeners.contains(&accepted.listener_id) {
                    continue;
                }
                return Poll::Ready(TransportEvent::Incoming {
                    listener_id: accepted.listener_id,
                    upgrade: futures::future::ready(Ok(accepted.stream)),
                    local_addr: accepted.local_addr,
                    send_back_addr: accepted.send_back_addr,
                });
            }
            let event = match Pin::new(&mut this.inner).poll(cx) {
                Poll::Ready(event) => event,
                Poll::Pending => return Poll::Pending,
            };
            match event {
                TransportEvent::Incoming {
                    listener_id,
                    upgrade,
                    local_addr,
                    send_back_addr,
                } if this.proxy.trusts(&send_back_addr) => {
                    // Polled at the top of the loop, which registers the waker.
                    this.read_header_of(listener_id, upgrade, local_addr, send_back_addr);
                }
                TransportEvent::ListenerClosed {
                    listener_id,
                    reason,
                } => {
                    this.listeners.remove(&listener_id);
                    return Poll::Ready(TransportEvent::ListenerClosed {
                        listener_id,
                        reason,
                    });
                }
                other => return Poll::Ready(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, HeaderError>, Vec<u8>) {
        let mut cursor = futures::io::Cursor::new(bytes.to_vec());
        let result = read_header(&mut cursor).await;
        let mut rest = Vec::new();
        cursor.read_to_end(&mut rest).await.unwrap();
        (result, rest)
    }

    fn v2(command: ppp::v2::Command, client: SocketAddr) -> Vec<u8> {
        let balancer: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            (client, balancer),
        )
        .write_tlv(ppp::v2::Type::NoOp, b"padding")
        .unwrap()
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_and_leave_the_payload() {
        let client: SocketAddr = "203.0.113.7:50000".parse().unwrap();
        let mut v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 50000 4001\r\n".to_vec();
        v1.extend_from_slice(b"/multistream/1.0.0\n");
        let (result, rest) = read(&v1).await;
        assert_eq!(result.unwrap(), Some(client));
        assert_eq!(rest, b"/multistream/1.0.0\n");

        let v6: SocketAddr = "[2001:db8::7]:50000".parse().unwrap();
        let mut v6_header = b"PROXY TCP6 2001:db8::7 2001:db8::1 50000 4001\r\n".to_vec();
        v6_header.extend_from_slice(b"GET /");
        let (result, rest) = read(&v6_header).await;
        assert_eq!(result.unwrap(), Some(v6));
        assert_eq!(rest, b"GET /");

        let mut binary = v2(ppp::v2::Command::Proxy, client);
        binary.extend_from_slice(b"payload");
        let (result, rest) = read(&binary).await;
        assert_eq!(result.unwrap(), Some(client));
        assert_eq!(rest, b"payload");
    }

    #[tokio::test]
    async fn health_checks_keep_the_balancers_address() {
        let (result, rest) = read(b"PROXY UNKNOWN\r\nx").await;
        assert_eq!(result.unwrap(), None);
        assert_eq!(rest, b"x");
        let client: SocketAddr = "203.0.113.7:50000".parse().unwrap();
        let (result, _) = read(&v2(ppp::v2::Command::Local, client)).await;
        assert_eq!(result.unwrap(), None);
    }

    #[tokio::test]
    async fn malformed_headers_are_refused() {
        let (result, _) = read(b"/multistream/1.0.0\n/noise\n").await;
        assert!(matches!(result, Err(HeaderError::NotProxy)), "{result:?}");
        let (result, _) = read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(matches!(result, Err(HeaderError::NotProxy)), "{result:?}");
        let (result, _) = read(b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n").await;
        assert!(matches!(result, Err(HeaderError::V1(_))), "{result:?}");
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        let (result, rest) = read(&long).await;
        assert!(matches!(result, Err(HeaderError::V1TooLong)), "{result:?}");
        assert_eq!(long.len() - rest.len(), V1_MAX_BYTES);
        let mut huge = ppp::v2::PROTOCOL_PREFIX.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (result, _) = read(&huge).await;
        assert!(
            matches!(result, Err(HeaderError::V2TooLong(65535))),
            "{result:?}"
        );
        let (result, _) = read(b"PROXY TCP4 1.2.3.4").await;
        assert!(matches!(result, Err(HeaderError::Io(_))), "{result:?}");
    }

    #[test]
    fn trusted_ranges_match_ipv4_mapped_addresses_and_bare_ips() {
        let proxy = ProxyProtocol::new(
            &["10.0.0.0/8".parse().unwrap(), "192.0.2.1".parse().unwrap()],
            1,
        );
        assert!(proxy.trusts(&"/ip4/10.1.2.3/tcp/1".parse().unwrap()));
        assert!(proxy.trusts(&"/ip6/::ffff:10.1.2.3/tcp/1".parse().unwrap()));
        assert!(proxy.trusts(&"/ip4/192.0.2.1/tcp/1".parse().unwrap()));
        assert!(!proxy.trusts(&"/ip4/192.0.2.2/tcp/1".parse().unwrap()));
        assert!(!ProxyProtocol::off().trusts(&"/ip4/10.1.2.3/tcp/1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<TrustedRange>().is_err());
        assert_eq!(
            "10.1.2.3/8".parse::<TrustedRange>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }
}
