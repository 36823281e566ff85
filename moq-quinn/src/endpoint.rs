//! Dialling and listening: quinn endpoints with ALPN `moq-lite-04` and the ring provider.

use std::net::SocketAddr;

use moq_tokio::transport::Role;
use moq_tokio::{Config, Router, Session};

use crate::conn::QuicConnection;
use moq_quic::tls::ServerTrust;
use moq_quic::{BuildClient, ClientSettings, Handshake, ListenError};

/// Why a connection could not be made or accepted.
///
/// ```no_run
/// # async fn demo(client: moq_quinn::Client) {
/// match client.connect("moqt://relay.example:4443").await {
///     Ok(session) => {}
///     Err(e) => println!("cannot connect: {e}"),
/// }
/// # }
/// ```
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

/// A client endpoint: dials `moqt://` URLs.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_quinn::{Client, ServerTrust, SubscribeParams};
/// let client = Client::builder()
///     .trust(ServerTrust::from_hash_hex("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")?)
///     .build()?;
/// let session = client.connect("moqt://localhost:4443").await?;
/// let mut track = session.subscribe("/demo", "clock", SubscribeParams::default())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: quinn::Endpoint,
    quic: quinn::ClientConfig,
    config: Config,
    router: Option<Router>,
}

/// How a [`Client`] is made ([`Client::builder`]): trust, options, local address, the
/// session configuration and what the client publishes.
///
/// ```no_run
/// # fn demo() -> Result<(), moq_quinn::error::ConnectError> {
/// let client = moq_quinn::Client::builder().trust(moq_quinn::ServerTrust::platform()).build()?;
/// # Ok(()) }
/// ```
pub type ClientBuilder = moq_quic::ClientBuilder<Client>;

impl BuildClient for Client {
    type Error = ConnectError;

    fn build(settings: ClientSettings) -> Result<Self, ConnectError> {
        let alpn = moq_tokio::transport::proto::ALPN.as_bytes();
        let quic = moq_quic::client_config(&settings.trust, alpn, &settings.options)?;
        let endpoint = quinn::Endpoint::client(settings.local_addr())?;
        Ok(Self {
            endpoint,
            quic,
            config: settings.config,
            router: settings.router,
        })
    }
}

impl Client {
    /// A client with the defaults but for `trust`: default options and session
    /// configuration, an ephemeral local port, nothing published.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), moq_quinn::error::ConnectError> {
    /// use moq_quinn::{Client, ServerTrust};
    /// let client = Client::new(ServerTrust::platform())?;
    /// # Ok(()) }
    /// ```
    pub fn new(trust: ServerTrust) -> Result<Self, ConnectError> {
        Self::builder().trust(trust).build()
    }

    /// A builder of a client with other settings.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_quinn::{Broadcast, Client, Config, Router, ServerTrust};
    /// let router = Router::new();
    /// router.publish("/cam", Broadcast::new());
    /// let client = Client::builder()
    ///     .trust(ServerTrust::platform())
    ///     .config(Config::default())
    ///     .router(router) // every session of this client publishes /cam
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// Dials a `moqt://host:port` URL and starts a session: each of the host's addresses in
    /// turn until one answers.
    ///
    /// ```no_run
    /// # async fn demo(client: moq_quinn::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let session = client.connect("moqt://relay.example:4443").await?;
    /// println!("connected to {:?}", session.remote_addr());
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self, url: &str) -> Result<Session, ConnectError> {
        self.connect_with(url, self.config.clone(), self.router.clone())
            .await
    }

    /// [`Client::connect`] with this session's own configuration and router instead of the
    /// client's (a relay gives each link a router of its own).
    ///
    /// ```no_run
    /// # async fn demo(client: moq_quinn::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_quinn::{Config, Router};
    /// let session = client.connect_with("moqt://relay.example:4443", Config::default(), Some(Router::new())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
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
            let attempt = match self.endpoint.connect_with(self.quic.clone(), addr, &host) {
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
        if conn.alpn().as_deref() != Some(moq_tokio::transport::proto::ALPN.as_bytes()) {
            conn.inner().close(0u32.into(), b"alpn");
            return Err(ConnectError::Alpn);
        }
        Ok(Session::new(conn, Role::Client, config, router))
    }

    /// The local address.
    ///
    /// ```no_run
    /// # async fn demo(client: moq_quinn::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// println!("dialing from {}", client.local_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Waits until every connection of this endpoint has closed and its CONNECTION_CLOSE
    /// has gone out. Call it after [`Session::close`] before the process exits, or the
    /// peer may never learn the close code.
    ///
    /// ```no_run
    /// # async fn demo(client: moq_quinn::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let session = client.connect("moqt://relay.example:4443").await?;
    /// session.close(moq_quinn::code::session::NO_ERROR, "bye");
    /// drop(session);
    /// client.wait_idle().await; // the close has left before the process exits
    /// # Ok(()) }
    /// ```
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// Native QUIC's handshake: QUIC with ALPN `moq-lite-04`, refused (closed with 0) when the
/// client did not offer it.
///
/// ```no_run
/// # fn demo(server: moq_quinn::Server) {
/// // moq_quinn::Server is moq_quic::Server<NativeQuic>.
/// let same: &moq_quic::Server<moq_quinn::transport::NativeQuic> = &server;
/// # }
/// ```
#[derive(Debug)]
pub struct NativeQuic;

impl Handshake for NativeQuic {
    const ALPN: &'static [u8] = moq_tokio::transport::proto::ALPN.as_bytes();
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

    fn close_code(code: moq_tokio::code::ErrorCode) -> u64 {
        code.0
    }
}

/// A server endpoint: accepts native QUIC sessions with ALPN `moq-lite-04`.
///
/// Made with [`Server::builder`](moq_quic::Server::builder) (address and identity, then
/// optionally [`config`](moq_quic::ServerBuilder::config),
/// [`router`](moq_quic::ServerBuilder::router) and
/// [`options`](moq_quic::ServerBuilder::options), then
/// [`bind`](moq_quic::ServerBuilder::bind)). Its methods are [`moq_quic::Server`]'s:
/// [`serve`](moq_quic::Server::serve) (accept every session and keep it until it ends),
/// [`accept`](moq_quic::Server::accept), [`incoming`](moq_quic::Server::incoming),
/// [`router`](moq_quic::Server::router), [`stop_accepting`](moq_quic::Server::stop_accepting),
/// [`close`](moq_quic::Server::close) and [`wait_idle`](moq_quic::Server::wait_idle). One
/// [`Router`], cloned, can serve a native QUIC and a WebTransport server in one process.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_quinn::{Broadcast, Identity, Router, Server};
/// let router = Router::new();
/// let broadcast = Broadcast::new();
/// let clock = broadcast.create_track("clock", 4);
/// router.publish("/demo", broadcast);
/// let server = Server::builder("[::]:4443".parse()?, Identity::self_signed(&["localhost"])?)
///     .router(router)
///     .bind()?;
/// server.serve().await;
/// # Ok(()) }
/// ```
pub type Server = moq_quic::Server<NativeQuic>;

/// How a [`Server`] is made.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_quinn::{Config, Identity, QuicOptions, Router, Server};
/// let mut config = Config::default();
/// config.max_queued_bytes = 8 << 20;
/// let server = Server::builder("0.0.0.0:4443".parse()?, Identity::from_pem_files("relay.crt", "relay.key")?)
///     .config(config)
///     .options(QuicOptions::default())
///     .router(Router::new())
///     .bind()?;
/// # Ok(()) }
/// ```
pub type ServerBuilder = moq_quic::ServerBuilder<NativeQuic>;

/// A connection attempt on a [`Server`], not yet handshaken.
///
/// ```no_run
/// # async fn demo(server: moq_quinn::Server) {
/// // Accept sessions one by one, refusing what a policy does not want.
/// while let Some(incoming) = server.incoming().await {
///     if incoming.remote_addr().ip().is_loopback() {
///         incoming.refuse();
///         continue;
///     }
///     tokio::spawn(async move {
///         if let Ok(session) = incoming.accept(|_info| None).await {
///             session.closed().await;
///         }
///     });
/// }
/// # }
/// ```
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
