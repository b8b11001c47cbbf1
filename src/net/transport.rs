//! TCP, QUIC v1, WebSocket and secure WebSocket in one transport. TCP and (secure)
//! WebSocket are upgraded with noise + yamux; QUIC brings its own TLS 1.3 and streams.
//!
//! Built by hand rather than with `SwarmBuilder::with_websocket`, which has no TLS
//! server configuration and so cannot listen on `/tls/ws`. The relay's WSS listeners are
//! [`crate::net::wss`]'s, whose certificate can be replaced while the relay runs.
//!
//! The relay only accepts connections and never dials by name, so it has no DNS
//! transport (which would also need a resolv.conf in minimal containers). Clients that
//! dial `/dns4/…` addresses wrap this transport with `libp2p::dns`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, OptionalTransport, OrTransport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::{noise, quic, tcp, websocket, yamux, PeerId, Transport};

use crate::config::defaults;
use crate::net::proxy_protocol::{ProxyProtocol, ProxyProtocolTransport};

/// How the transport does TLS for secure WebSocket.
pub enum WssTls {
    /// The relay: listen on `/tls/ws` with this server configuration (its certificate
    /// resolver decides the certificate at each handshake).
    Serve(Arc<rustls::ServerConfig>),
    /// A client: dial `/tls/ws` trusting these anchors (besides the web PKI roots).
    Trust(websocket::tls::Config),
}

/// The transport every listener of the relay runs on, and that test clients dial with.
/// `None` for `wss` dials WSS with the public web PKI roots and cannot listen on it.
/// `proxy` says which sources' TCP, WS and WSS connections start with a PROXY protocol
/// header naming the real client ([`crate::net::proxy_protocol`]); clients and the bench
/// pass [`ProxyProtocol::off`]. QUIC is UDP and is not covered.
///
/// What bounds a connection before its handshake is done, read from libp2p-core 0.44,
/// libp2p-websocket 0.46 and soketto 0.8.1:
/// - Time: `.timeout(upgrade_timeout)` wraps each transport's whole listener upgrade in
///   libp2p-core's `TransportTimeout`, whose timer starts when the listener reports the
///   accepted socket. `authenticate` and `multiplex` are `and_then`s on the inner
///   upgrade, so the timer covers, in order, the TLS accept of WSS (an `and_then` on TCP
///   in [`crate::net::wss`]), the WebSocket HTTP upgrade (libp2p-websocket's `map_upgrade`
///   awaits both before yielding the stream), noise and yamux. QUIC has its own
///   handshake timeout (libp2p-quic's, 5 s).
/// - The HTTP upgrade request: soketto's server reads at most 8 KiB (in 8 KiB blocks,
///   so its buffer stays under 16 KiB) looking for the end of the headers and parses at
///   most 32 headers; anything longer fails the handshake.
/// - WebSocket frames and messages: [`defaults::WEBSOCKET_MAX_FRAME_BYTES`], set below on
///   both WebSocket configurations (here and the WSS listener's). soketto checks a frame
///   header's declared length against it before allocating, and libp2p-websocket applies
///   the same bound to whole (fragmented) messages.
pub fn build(
    keypair: &Keypair,
    wss: Option<WssTls>,
    upgrade_timeout: Duration,
    proxy: &ProxyProtocol,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    // Every TCP socket under TCP, WS and WSS: the PROXY header, when one is due, is read
    // before the WebSocket and TLS layers see a byte.
    let tcp_socket =
        || ProxyProtocolTransport::new(tcp::tokio::Transport::new(tcp_config()), proxy.clone());
    let tcp = tcp_socket()
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(keypair)?)
        .multiplex(yamux_config())
        .timeout(upgrade_timeout);

    let mut ws = websocket::Config::new(tcp_socket());
    // libp2p-websocket's default is 256 MiB, which soketto allocates and zero-fills as
    // soon as a frame header declares it, before a byte of payload or any handshake.
    ws.set_max_data_size(defaults::WEBSOCKET_MAX_FRAME_BYTES);
    let wss_listener = match wss {
        Some(WssTls::Trust(tls)) => {
            ws.set_tls_config(tls);
            None
        }
        Some(WssTls::Serve(server_config)) => Some(
            crate::net::wss::listener(tcp_socket(), server_config)
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(keypair)?)
                .multiplex(yamux_config())
                .timeout(upgrade_timeout)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
        ),
        None => None,
    };
    let wss_listener = match wss_listener {
        Some(wss) => OptionalTransport::some(wss),
        None => OptionalTransport::none(),
    };
    let ws = ws
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(keypair)?)
        .multiplex(yamux_config())
        .timeout(upgrade_timeout);

    let quic = quic::tokio::Transport::new(quic::Config::new(keypair));

    // WebSocket before plain TCP: each refuses the other's addresses, but the order
    // makes the intent plain.
    let transport = OrTransport::new(
        quic,
        OrTransport::new(wss_listener, OrTransport::new(ws, tcp)),
    )
    .map(|output, _| match output {
        Either::Left((peer, conn)) => (peer, StreamMuxerBox::new(conn)),
        Either::Right(Either::Left(boxed)) => boxed,
        Either::Right(Either::Right(Either::Left((peer, muxer)))) => {
            (peer, StreamMuxerBox::new(muxer))
        }
        Either::Right(Either::Right(Either::Right((peer, muxer)))) => {
            (peer, StreamMuxerBox::new(muxer))
        }
    })
    .boxed();
    Ok(transport)
}

/// yamux with at most 4096 streams per connection. rust-yamux divides its 1 GiB
/// connection window among the streams, so this caps a stream's receive window at
/// 256 KiB. js-yamux sends data frames as large as the window it is granted, and
/// rust-yamux rejects frames over 1 MiB by closing the whole connection (every circuit
/// of a js peer with it); with this cap no window, and so no frame, gets that large.
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(defaults::YAMUX_MAX_STREAMS);
    config
}

fn tcp_config() -> tcp::Config {
    // Chat messages are small and latency-sensitive: no Nagle delay.
    tcp::Config::default().nodelay(true)
}
