//! Dialling and listening: quinn endpoints with ALPN `moq-lite-04` and the ring provider.

use std::net::SocketAddr;

use moq_tokio::{Config, Role, Router, Session};

use crate::conn::QuicConnection;
use moq_quic::tls::ServerTrust;
use moq_quic::{Handshake, ListenError, QuicOptions};

/// Why a connection could not be made or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not `moqt://host:port[/path]`.
    #[error("invalid URL (expected moqt://host:port): {0}")]
    InvalidUrl(#[from] moq_quic::UrlError),
    /// The host name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The host name resolved to no address this endpoint can reach (an IPv6-only name
    /// from an IPv4 socket).
    #[error("{host} has no address this endpoint can reach")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// A local socket could not be bound.
    #[error("cannot bind: {0}")]
    Bind(#[from] std::io::Error),
    /// The TLS configuration was refused.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The listening endpoint could not be set up.
    #[error("cannot listen: {0}")]
    Listen(#[source] ListenError),
    /// quinn refused to start the connection.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed.
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// No answer from this address in time (another address of the name was tried next).
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    /// The peer did not negotiate `moq-lite-04`.
    #[error("the peer did not negotiate moq-lite-04")]
    Alpn,
    /// A server's handshake did not complete within its deadline
    /// ([`moq_quic::HandshakeLimits::timeout`]).
    #[error(transparent)]
    TimedOut(#[from] moq_quic::HandshakeTimedOut),
}

impl From<ListenError> for ConnectError {
    fn from(e: ListenError) -> Self {
        match e {
            ListenError::Bind(e) => ConnectError::Bind(e),
            ListenError::Tls(e) => ConnectError::Tls(e),
            other => ConnectError::Listen(other),
        }
    }
}

/// Splits `moqt://host:port[/path]` into host (without an IPv6 literal's brackets) and port.
pub(crate) fn parse_url(url: &str) -> Result<(String, u16), ConnectError> {
    let (parsed, host) = moq_quic::parse_url(url, "moqt")?;
    let port = parsed.port().ok_or(moq_quic::UrlError::NoPort)?;
    Ok((host, port))
}

/// An unspecified local address, IPv6 (dual-stack where the system allows) when it can be
/// bound, else IPv4.
pub(crate) fn any_local(bind: impl Fn(SocketAddr) -> bool) -> SocketAddr {
    let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    match bind(v6) {
        true => v6,
        false => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

/// A client endpoint: dials `moqt://` URLs.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
}

impl Client {
    /// A client on an ephemeral local port, checking servers with `trust`: dual-stack IPv6
    /// where the system has it (so it reaches IPv4 and IPv6 servers), else IPv4.
    pub fn new(trust: ServerTrust) -> Result<Self, ConnectError> {
        Self::with_options(trust, QuicOptions::default())
    }

    /// The same, with explicit QUIC options.
    pub fn with_options(trust: ServerTrust, options: QuicOptions) -> Result<Self, ConnectError> {
        let addr = any_local(|a| std::net::UdpSocket::bind(a).is_ok());
        Self::bind(addr, trust, options)
    }

    /// A client bound to `addr`, with explicit QUIC options.
    pub fn bind(
        addr: SocketAddr,
        trust: ServerTrust,
        options: QuicOptions,
    ) -> Result<Self, ConnectError> {
        let config = moq_quic::client_config(&trust, moq_tokio::proto::ALPN.as_bytes(), &options)?;
        let endpoint = quinn::Endpoint::client(addr)?;
        Ok(Self { endpoint, config })
    }

    /// Dials a `moqt://host:port` URL and starts a session. `router` serves what this end
    /// publishes (a client may publish to a server).
    pub async fn connect(
        &self,
        url: &str,
        config: Config,
        router: Option<Router>,
    ) -> Result<Session, ConnectError> {
        let (host, port) = parse_url(url)?;
        let ipv4_only = self.endpoint.local_addr().is_ok_and(|a| a.is_ipv4());
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: host.clone(),
                source,
            })?
            .filter(|a| !(ipv4_only && a.is_ipv6()))
            .collect();
        // Each address in turn until one connects. While others remain, an attempt gets
        // ATTEMPT; the last one gets the whole idle timeout.
        const ATTEMPT: std::time::Duration = std::time::Duration::from_secs(3);
        let mut last = ConnectError::NoAddress { host: host.clone() };
        let mut connected = None;
        let count = addrs.len();
        for (i, addr) in addrs.into_iter().enumerate() {
            let attempt = match self.endpoint.connect_with(self.config.clone(), addr, &host) {
                Ok(connecting) if i + 1 < count => {
                    match tokio::time::timeout(ATTEMPT, connecting).await {
                        Ok(result) => result.map_err(ConnectError::from),
                        Err(_) => Err(ConnectError::Timeout(addr)),
                    }
                }
                Ok(connecting) => connecting.await.map_err(ConnectError::from),
                Err(e) => Err(ConnectError::from(e)),
            };
            match attempt {
                Ok(conn) => {
                    connected = Some(conn);
                    break;
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "connect attempt failed");
                    last = e;
                }
            }
        }
        let conn = connected.ok_or(last)?;
        let conn =
            QuicConnection::new(conn, self.endpoint.local_addr().ok()).with_server_name(host);
        if conn.alpn().as_deref() != Some(moq_tokio::proto::ALPN.as_bytes()) {
            conn.inner().close(0u32.into(), b"alpn");
            return Err(ConnectError::Alpn);
        }
        Ok(Session::new(conn, Role::Client, config, router))
    }

    /// The local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Waits until every connection of this endpoint has closed and its CONNECTION_CLOSE
    /// has gone out. Call it after [`Session::close`] before the process exits, or the
    /// peer may never learn the close code.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// Native QUIC's handshake: QUIC with ALPN `moq-lite-04`, refused (closed with 0) when the
/// client did not offer it.
#[derive(Debug)]
pub struct NativeQuic;

impl Handshake for NativeQuic {
    const ALPN: &'static [u8] = moq_tokio::proto::ALPN.as_bytes();
    type Connection = QuicConnection;
    type Error = ConnectError;

    async fn connect(
        incoming: quinn::Incoming,
        local: Option<SocketAddr>,
    ) -> Result<QuicConnection, ConnectError> {
        let conn = QuicConnection::new(incoming.await?, local);
        if conn.alpn().as_deref() != Some(Self::ALPN) {
            conn.inner().close(0u32.into(), b"alpn");
            return Err(ConnectError::Alpn);
        }
        Ok(conn)
    }

    fn close_code(code: moq_tokio::ErrorCode) -> u64 {
        code.0
    }
}

/// A server endpoint: accepts native QUIC sessions with ALPN `moq-lite-04`.
///
/// Its methods are [`moq_quic::Server`]'s: [`bind`](moq_quic::Server::bind),
/// [`bind_with_options`](moq_quic::Server::bind_with_options),
/// [`accept`](moq_quic::Server::accept), [`serve`](moq_quic::Server::serve) (accept every
/// session and keep it until it ends), [`incoming`](moq_quic::Server::incoming),
/// [`stop_accepting`](moq_quic::Server::stop_accepting), [`close`](moq_quic::Server::close)
/// and [`wait_idle`](moq_quic::Server::wait_idle). One [`Router`](moq_tokio::Router),
/// cloned, can serve a native QUIC and a WebTransport server in one process.
pub type Server = moq_quic::Server<NativeQuic>;

/// A connection attempt on a [`Server`], not yet handshaken.
pub type Incoming = moq_quic::Incoming<NativeQuic>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("moqt://127.0.0.1:4443").unwrap(),
            ("127.0.0.1".into(), 4443)
        );
        assert_eq!(
            parse_url("moqt://localhost:1/x/y").unwrap(),
            ("localhost".into(), 1)
        );
        assert_eq!(parse_url("moqt://[::1]:9").unwrap(), ("::1".into(), 9));
        for bad in ["https://a:1", "moqt://a", "moqt://:1", "moqt://a:x"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
