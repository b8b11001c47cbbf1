//! The secure WebSocket listener: TLS by our own rustls acceptor, then libp2p's plain
//! WebSocket on top.
//!
//! libp2p-websocket's own TLS configuration is fixed when the transport is built, so a
//! renewed certificate would need a restart. Here TLS sits *under* the WebSocket layer,
//! in a TCP transport whose listener upgrade is a rustls accept with a certificate
//! resolver ([`crate::tls::reload`]): the certificate can change between handshakes.
//! Because the WebSocket layer below us only knows `/ws`, [`WssListener`] hands it `/ws`
//! addresses and turns them back into the `/tls/ws` (or `/wss`) the operator asked for.
//!
//! Listen only: the relay never dials, and clients dial `/tls/ws` with libp2p's own
//! WebSocket TLS.
//!
//! The TLS accept runs inside the listener upgrade, so the transport's upgrade timeout
//! (`transport.rs`) bounds it with the WebSocket upgrade, noise and yamux.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::{tcp, websocket, Multiaddr, Transport};

use crate::config::defaults;
use crate::net::proxy_protocol::ProxyProtocolTransport;

/// Secure WebSocket listeners over `tcp` (whose PROXY header, if any, is read before
/// TLS starts), answering TLS with `server_config`.
pub fn listener(
    tcp: ProxyProtocolTransport,
    server_config: Arc<rustls::ServerConfig>,
) -> WssListener<
    websocket::Config<
        impl Transport<
                Output = TlsStream<tcp::tokio::TcpStream>,
                Error = impl std::error::Error + Send + Sync + 'static,
                ListenerUpgrade = impl Send + 'static,
                Dial = impl Send + 'static,
            > + Send
            + Unpin
            + 'static,
    >,
> {
    let acceptor = TlsAcceptor::from(server_config);
    let tls_over_tcp = tcp.and_then(move |stream, endpoint: ConnectedPoint| {
        let acceptor = acceptor.clone();
        async move {
            if endpoint.is_dialer() {
                return Err(io::Error::other("the WSS listener transport does not dial"));
            }
            let tls = acceptor.accept(stream).await?;
            // RFC 8737: the CA's validation ends with the handshake; no WebSocket follows.
            if tls.get_ref().1.alpn_protocol() == Some(crate::tls::acme::challenge::ACME_TLS_ALPN) {
                return Err(io::Error::other("ACME TLS-ALPN-01 validation handshake"));
            }
            Ok(tls)
        }
        .boxed()
    });
    let mut inner = websocket::Config::new(tls_over_tcp);
    // As for plain WebSocket (see `transport.rs`): libp2p-websocket's 256 MiB default is
    // allocated as soon as a frame header declares it.
    inner.set_max_data_size(defaults::WEBSOCKET_MAX_FRAME_BYTES);
    WssListener {
        inner,
        secure_suffixes: HashMap::new(),
    }
}

/// How the operator spelled the secure WebSocket suffix, to give it back in addresses.
#[derive(Debug, Clone)]
enum SecureSuffix {
    TlsWs(std::borrow::Cow<'static, str>),
    Wss(std::borrow::Cow<'static, str>),
}

/// Accepts `/tls/ws` and `/wss` listen addresses for an inner WebSocket transport that
/// runs over TLS already.
pub struct WssListener<T> {
    inner: T,
    secure_suffixes: HashMap<ListenerId, SecureSuffix>,
}

impl<T> WssListener<T> {
    /// `/ip4/…/tcp/443/tls/ws` → (`/ip4/…/tcp/443/ws`, TlsWs); `None` for anything else.
    fn plain(addr: &Multiaddr) -> Option<(Multiaddr, SecureSuffix)> {
        let mut inner = addr.clone();
        match inner.pop()? {
            Protocol::Wss(path) => {
                let suffix = SecureSuffix::Wss(path.clone());
                Some((inner.with(Protocol::Ws(path)), suffix))
            }
            Protocol::Ws(path) => match inner.pop()? {
                Protocol::Tls => {
                    let suffix = SecureSuffix::TlsWs(path.clone());
                    Some((inner.with(Protocol::Ws(path)), suffix))
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn secure(&self, id: ListenerId, mut addr: Multiaddr) -> Multiaddr {
        let Some(suffix) = self.secure_suffixes.get(&id) else {
            return addr;
        };
        if let Some(Protocol::Ws(_)) = addr.iter().last() {
            addr.pop();
            match suffix {
                SecureSuffix::TlsWs(path) => {
                    addr.push(Protocol::Tls);
                    addr.push(Protocol::Ws(path.clone()));
                }
                SecureSuffix::Wss(path) => addr.push(Protocol::Wss(path.clone())),
            }
        }
        addr
    }
}

impl<T> Transport for WssListener<T>
where
    T: Transport + Unpin,
{
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let Some((plain, suffix)) = Self::plain(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        self.inner.listen_on(id, plain)?;
        self.secure_suffixes.insert(id, suffix);
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let this = self.get_mut();
        let event = match Pin::new(&mut this.inner).poll(cx) {
            Poll::Ready(event) => event,
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(match event {
            TransportEvent::NewAddress {
                listener_id,
                listen_addr,
            } => TransportEvent::NewAddress {
                listener_id,
                listen_addr: this.secure(listener_id, listen_addr),
            },
            TransportEvent::AddressExpired {
                listener_id,
                listen_addr,
            } => TransportEvent::AddressExpired {
                listener_id,
                listen_addr: this.secure(listener_id, listen_addr),
            },
            TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr,
                send_back_addr,
            } => TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr: this.secure(listener_id, local_addr),
                send_back_addr: this.secure(listener_id, send_back_addr),
            },
            TransportEvent::ListenerClosed {
                listener_id,
                reason,
            } => {
                this.secure_suffixes.remove(&listener_id);
                TransportEvent::ListenerClosed {
                    listener_id,
                    reason,
                }
            }
            error @ TransportEvent::ListenerError { .. } => error,
        })
    }
}
