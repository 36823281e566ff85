//! The quinn endpoint settings and the listening socket both adapters use.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::QuicOptions;
use crate::tls::{Identity, ServerTrust, client_crypto, server_crypto};

/// A quinn client configuration: TLS 1.3 with ring checking the server with `trust`,
/// offering `alpn`, with the transport settings of `options`.
pub fn client_config(
    trust: &ServerTrust,
    alpn: &[u8],
    options: &QuicOptions,
) -> Result<quinn::ClientConfig, rustls::Error> {
    let mut config = quinn::ClientConfig::new(Arc::new(client_crypto(trust, alpn)?));
    config.transport_config(Arc::new(options.transport_config()));
    Ok(config)
}

/// Why a [`Listener`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The TLS configuration was refused.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The socket could not be bound.
    #[error("cannot bind: {0}")]
    Bind(#[from] std::io::Error),
}

/// A quinn server endpoint presenting an identity for one ALPN token, with our transport
/// settings: what both adapters' servers listen with. The adapter completes each
/// handshake its own way.
#[derive(Debug)]
pub struct Listener {
    endpoint: quinn::Endpoint,
}

impl Listener {
    /// Listens on `addr`, presenting `identity` and selecting `alpn`.
    pub fn bind(
        addr: SocketAddr,
        identity: Identity,
        alpn: &[u8],
        options: &QuicOptions,
    ) -> Result<Self, ListenError> {
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto(identity, alpn)?));
        config.transport_config(Arc::new(options.transport_config()));
        Ok(Self {
            endpoint: quinn::Endpoint::server(config, addr)?,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The next connection attempt, before its handshake; `None` once the endpoint is
    /// closed.
    pub async fn accept(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// Stops accepting new connections; established ones go on.
    pub fn stop_accepting(&self) {
        self.endpoint.set_server_config(None);
    }

    /// Waits until every connection has closed and its close has been sent (after
    /// [`Listener::close`], or once the peers have left).
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }

    /// Stops accepting and closes every connection with `code` (a QUIC application error
    /// code, already in the adapter's code space).
    pub fn close(&self, code: u64, reason: &str) {
        self.endpoint.close(
            quinn::VarInt::from_u64(code).unwrap_or(quinn::VarInt::MAX),
            reason.as_bytes(),
        );
    }
}
