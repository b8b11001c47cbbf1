//! TCP, QUIC v1, WebSocket and secure WebSocket in one transport. TCP and (secure)
//! WebSocket are upgraded with noise + yamux; QUIC brings its own TLS 1.3 and streams.
//!
//! Built by hand rather than with `SwarmBuilder::with_websocket`, which has no TLS
//! server configuration and so cannot listen on `/tls/ws`. The relay's WSS listeners are
//! [`crate::wss`]'s, whose certificate can be replaced while the relay runs.
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

use crate::defaults;

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
pub fn build(
    keypair: &Keypair,
    wss: Option<WssTls>,
    upgrade_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let tcp = tcp::tokio::Transport::new(tcp_config())
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(keypair)?)
        .multiplex(yamux_config())
        .timeout(upgrade_timeout);

    let mut ws = websocket::Config::new(tcp::tokio::Transport::new(tcp_config()));
    let wss_listener = match wss {
        Some(WssTls::Trust(tls)) => {
            ws.set_tls_config(tls);
            None
        }
        Some(WssTls::Serve(server_config)) => Some(
            crate::wss::listener(tcp::tokio::Transport::new(tcp_config()), server_config)
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
