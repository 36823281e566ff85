//! Dialling and serving WebTransport sessions: QUIC with ALPN `h3`, HTTP/3 Extended
//! CONNECT, and the `moq-lite-04` sub-protocol (spec §1).

use std::net::SocketAddr;
use std::time::Duration;

use moq_tokio::transport::{ConnectionInfo, Role};
use moq_tokio::{Config, Router, Session};

use crate::conn::WebTransportConnection;
use crate::transport::protocol::{self, Negotiation};
use moq_quic::tls::ServerTrust;
use moq_quic::{BuildClient, ClientSettings, Handshake, ListenError};

/// The QUIC ALPN token of HTTP/3, which carries WebTransport.
///
/// ```
/// assert_eq!(moq_webtransport::transport::ALPN_H3, "h3");
/// ```
pub const ALPN_H3: &str = "h3";

/// Why a session could not be made or accepted.
///
/// ```no_run
/// # async fn demo(client: moq_webtransport::Client) {
/// match client.connect("https://relay.example/moq").await {
///     Ok(session) => {}
///     Err(e) => println!("cannot connect: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not `https://host:port/path`.
    #[error("invalid URL (expected https://host:port/path): {0}")]
    InvalidUrl(#[from] moq_quic::UrlError),
    /// A local socket could not be bound.
    #[error("cannot bind: {0}")]
    Bind(#[from] std::io::Error),
    /// The TLS configuration was refused.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The listening endpoint could not be set up.
    #[error("cannot listen: {0}")]
    Listen(#[source] ListenError),
    /// Dialling failed: QUIC, TLS, HTTP/3, or the server refused the CONNECT.
    #[error("connect: {0}")]
    Connecting(#[source] wtransport::error::ConnectingError),
    /// The server closed the session as it was set up, with a session code (for example
    /// 0x2, unauthorized: a relay refusing a token).
    #[error("the server closed the session with code {code}: {reason}")]
    Closed {
        /// The session code.
        code: moq_tokio::code::ErrorCode,
        /// The reason it gave.
        reason: String,
    },
    /// The QUIC or HTTP/3 handshake of an incoming session failed.
    #[error("connection failed: {0}")]
    Connection(#[from] wtransport::error::ConnectionError),
    /// The CONNECT offered sub-protocols, none of them `moq-lite-04`: refused.
    #[error("the client offered {0:?}, not moq-lite-04: refused")]
    Protocol(Vec<String>),
    /// A server's handshake did not complete within its deadline
    /// ([`moq_quic::HandshakeLimits::timeout`]).
    #[error(transparent)]
    TimedOut(#[from] moq_quic::HandshakeTimedOut),
}

impl From<wtransport::error::ConnectingError> for ConnectError {
    fn from(e: wtransport::error::ConnectingError) -> Self {
        use wtransport::error::{ConnectingError, ConnectionError};
        match e {
            ConnectingError::ConnectionError(ConnectionError::ApplicationClosed(close)) => {
                ConnectError::Closed {
                    code: crate::transport::code_mapping::received_close(close.code().into_inner()),
                    reason: String::from_utf8_lossy(close.reason()).into_owned(),
                }
            }
            other => ConnectError::Connecting(other),
        }
    }
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

/// Checks `https://host[:port][/path]` (port 443 by default) and returns its path (`/`
/// when empty).
pub(crate) fn parse_url(url: &str) -> Result<String, ConnectError> {
    let (parsed, _) = moq_quic::parse_url(url, "https")?;
    Ok(parsed.path().to_owned())
}

/// What a WebTransport session negotiated: ALPN, the server name from the handshake, the
/// peer's certificate chain, and the URL path.
fn connection_info(conn: &wtransport::Connection, path: String) -> ConnectionInfo {
    let mut info = ConnectionInfo::new("webtransport");
    let handshake = conn.handshake_data();
    info.alpn = handshake
        .alpn()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    info.server_name = handshake.server_name().map(str::to_owned);
    info.peer_certificates = conn
        .peer_identity()
        .map(|chain| {
            chain
                .as_slice()
                .iter()
                .map(|c| bytes::Bytes::copy_from_slice(c.der()))
                .collect()
        })
        .unwrap_or_default();
    info.path = Some(path);
    info
}

/// A client endpoint: dials `https://` URLs.
///
/// The CONNECT offers `WT-Available-Protocols: "moq-lite-04"`. wtransport does not expose
/// the response headers, so the server's `WT-Protocol` answer cannot be checked here: a
/// server that accepts the CONNECT is taken to speak moq-lite-04, and
/// [`ConnectionInfo::version`] stays `None` on this side.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = moq_webtransport::Client::new(moq_webtransport::ServerTrust::platform())?;
/// let session = client.connect("https://relay.example/moq").await?;
/// # Ok(()) }
/// ```
pub struct Client {
    endpoint: wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>,
    config: Config,
    router: Option<Router>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// How a [`Client`] is made ([`Client::builder`]): trust, QUIC options (the `max_streams`
/// limit counts HTTP/3's own unidirectional streams too), local address, the session
/// configuration and what the client publishes.
///
/// ```no_run
/// # fn demo() -> Result<(), moq_webtransport::error::ConnectError> {
/// let client = moq_webtransport::Client::builder().trust(moq_webtransport::ServerTrust::platform()).build()?;
/// # Ok(()) }
/// ```
pub type ClientBuilder = moq_quic::ClientBuilder<Client>;

impl BuildClient for Client {
    type Error = ConnectError;

    fn build(settings: ClientSettings) -> Result<Self, ConnectError> {
        let addr = settings.local_addr();
        let quic = moq_quic::client_config(&settings.trust, ALPN_H3.as_bytes(), &settings.options)?;
        // An IPv6 socket is made dual-stack explicitly (the OS default is IPv6-only on some
        // systems), so that it reaches IPv4 servers too.
        let config = match addr {
            SocketAddr::V6(v6) => wtransport::ClientConfig::builder()
                .with_bind_address_v6(v6, wtransport::config::Ipv6DualStackConfig::Allow),
            SocketAddr::V4(_) => wtransport::ClientConfig::builder().with_bind_address(addr),
        }
        .build_with_quic_config(quic);
        let endpoint = wtransport::Endpoint::client(config)?;
        Ok(Self {
            endpoint,
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
    /// # fn demo() -> Result<(), moq_webtransport::error::ConnectError> {
    /// use moq_webtransport::{Client, ServerTrust};
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
    /// use moq_webtransport::{Broadcast, Client, Config, Router, ServerTrust};
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

    /// Dials `https://host:port/path` and starts a session.
    ///
    /// ```no_run
    /// # async fn demo(client: moq_webtransport::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// // A relay that checks moq-relay tokens reads the `jwt` query parameter.
    /// let session = client.connect("https://relay.example/moq?jwt=eyJhbGciOi...").await?;
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
    /// # async fn demo(client: moq_webtransport::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_webtransport::{Config, Router};
    /// let session = client.connect_with("https://relay.example/moq", Config::default(), Some(Router::new())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
        &self,
        url: &str,
        config: Config,
        router: Option<Router>,
    ) -> Result<Session, ConnectError> {
        let path = parse_url(url)?;
        // The name the certificate was checked against (a server learns it from the
        // handshake; a client, from its own URL).
        let dialled = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
        let options = wtransport::endpoint::ConnectOptions::builder(url)
            .add_header(protocol::AVAILABLE_PROTOCOLS, protocol::quoted_version())
            .build();
        let conn = self.endpoint.connect(options).await?;
        let mut info = connection_info(&conn, path);
        info.server_name = info.server_name.or(dialled);
        let conn = WebTransportConnection::new(conn, self.endpoint.local_addr().ok(), info);
        Ok(Session::new(conn, Role::Client, config, router))
    }

    /// The local address.
    ///
    /// ```no_run
    /// # async fn demo(client: moq_webtransport::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// println!("dialing from {}", client.local_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Waits until every connection of this endpoint has closed and its CONNECTION_CLOSE
    /// has gone out. Call it after [`Session::close`] before the process exits.
    ///
    /// ```no_run
    /// # async fn demo(client: moq_webtransport::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let session = client.connect("https://relay.example/moq").await?;
    /// session.close(moq_webtransport::code::session::NO_ERROR, "bye");
    /// drop(session);
    /// client.wait_idle().await; // the close has left before the process exits
    /// # Ok(()) }
    /// ```
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// WebTransport's handshake: QUIC with ALPN `h3`, then HTTP/3 and the extended CONNECT
/// (any URL path).
///
/// Per CONNECT it reads `WT-Available-Protocols`: when the list offers `"moq-lite-04"` it
/// accepts and answers `WT-Protocol: "moq-lite-04"` (quoted: Chromium ignores an unquoted
/// answer); with no list it accepts, assuming moq-lite-04; a list without it is refused with
/// HTTP 400.
///
/// ```no_run
/// # fn demo(server: moq_webtransport::Server) {
/// // moq_webtransport::Server is moq_quic::Server<WebTransport>.
/// let same: &moq_quic::Server<moq_webtransport::transport::WebTransport> = &server;
/// # }
/// ```
#[derive(Debug)]
pub struct WebTransport;

impl Handshake for WebTransport {
    const ALPN: &'static [u8] = ALPN_H3.as_bytes();
    type Connection = WebTransportConnection;
    type Error = ConnectError;

    async fn connect(
        incoming: quinn::Incoming,
        local: Option<SocketAddr>,
    ) -> Result<WebTransportConnection, ConnectError> {
        let request =
            wtransport::endpoint::IncomingSessionFuture::with_quic_incoming(incoming).await?;
        let negotiation = protocol::negotiate(request.headers());
        // The query may carry a credential (`?jwt=`, `?token=`): never logged.
        let path = request.path();
        let shown = path.split_once('?').map_or(path, |(path, _)| path);
        tracing::debug!(path = shown, ?negotiation, "WebTransport CONNECT");
        if let Negotiation::Refused(offered) = negotiation {
            refuse(request).await;
            return Err(ConnectError::Protocol(offered));
        }
        let path = request.path().to_owned();
        let conn = request
            .accept_with_headers(negotiation.response_headers())
            .await?;
        let mut info = connection_info(&conn, path);
        info.version = Some(moq_tokio::transport::proto::ALPN.to_owned());
        Ok(WebTransportConnection::new(conn, local, info))
    }

    /// Session codes are mapped into the HTTP/3 error space, as every session close.
    fn close_code(code: moq_tokio::code::ErrorCode) -> u64 {
        crate::transport::code_mapping::to_http3(code)
    }
}

/// A server endpoint: accepts WebTransport sessions (see [`WebTransport`]). The router that
/// [`Incoming::accept`] asks for sees the CONNECT's URL path, query included, in
/// [`ConnectionInfo::path`].
///
/// Made and used as the native QUIC server is: [`Server::builder`](moq_quic::Server::builder)
/// then [`ServerBuilder`]'s methods, and [`moq_quic::Server`]'s (`serve`, `accept`,
/// `incoming`, `stop_accepting`, `close`, `wait_idle`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_webtransport::{Identity, Router, Server};
/// let server = Server::builder("[::]:4443".parse()?, Identity::self_signed(&["localhost"])?)
///     .router(Router::new())
///     .bind()?;
/// server.serve().await;
/// # Ok(()) }
/// ```
pub type Server = moq_quic::Server<WebTransport>;

/// How a [`Server`] is made.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_webtransport::{Identity, Router, Server};
/// // A self-signed certificate (at most 14 days, as browsers require for pinning by hash).
/// let identity = Identity::self_signed(&["localhost"])?;
/// let hash = identity.certificate_hash();
/// let server = Server::builder("127.0.0.1:4443".parse()?, identity)
///     .router(Router::new())
///     .bind()?;
/// # Ok(()) }
/// ```
pub type ServerBuilder = moq_quic::ServerBuilder<WebTransport>;

/// A connection attempt on a [`Server`], not yet handshaken.
///
/// ```no_run
/// # async fn demo(server: moq_webtransport::Server) {
/// while let Some(incoming) = server.incoming().await {
///     tokio::spawn(async move {
///         // The router may depend on what was negotiated (the URL path, say).
///         let session = incoming.accept(|info| {
///             println!("CONNECT {:?}", info.path);
///             None
///         });
///         if let Ok(session) = session.await {
///             session.closed().await;
///         }
///     });
/// }
/// # }
/// ```
pub type Incoming = moq_quic::Incoming<WebTransport>;

/// How long a refused client has to read the 400 and close before we close.
const REFUSAL_LINGER: Duration = Duration::from_secs(5);

/// Answers a CONNECT with HTTP 400 (spec §1). wtransport's own refusals are 403, 404 and
/// 429 only, but the status of an accepted response is one of its headers, which
/// `accept_with_headers` lets us replace; the session it then registers is never used, and
/// the connection is closed once the client has gone (or after [`REFUSAL_LINGER`]), so the
/// response is not cut off by an early CONNECTION_CLOSE.
async fn refuse(request: wtransport::endpoint::SessionRequest) {
    match request.accept_with_headers([(":status", "400")]).await {
        Ok(conn) => {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REFUSAL_LINGER, conn.closed()).await;
                conn.quic_connection()
                    .close(quinn::VarInt::from_u32(0x100), b"refused");
            });
        }
        Err(e) => tracing::debug!("refusing a CONNECT: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("https://127.0.0.1:4443").unwrap(), "/");
        assert_eq!(parse_url("https://localhost:1/x/y").unwrap(), "/x/y");
        assert_eq!(parse_url("https://[::1]:9/moq").unwrap(), "/moq");
        // Without a port, https means 443.
        assert_eq!(parse_url("https://relay.example.com/moq").unwrap(), "/moq");
        for bad in [
            "moqt://a:1",
            "https://:1",
            "https://a:x/",
            "https://a:99999/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
