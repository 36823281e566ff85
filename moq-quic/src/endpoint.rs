//! The quinn endpoint settings and the listening socket both adapters use.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::QuicOptions;
use crate::tls::{Identity, ServerTrust, client_crypto, server_crypto};

/// A quinn client configuration: TLS 1.3 with ring checking the server with `trust`,
/// offering `alpn`, with the transport settings of `options`.
///
/// ```
/// use moq_quic::{QuicOptions, ServerTrust};
/// let config = moq_quic::client_config(&ServerTrust::platform(), b"moq-lite-04", &QuicOptions::default())
///     .expect("a TLS configuration");
/// ```
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
///
/// ```no_run
/// # fn demo() {
/// use moq_quic::{Identity, Listener, ListenError, QuicOptions};
/// let identity = Identity::self_signed(&["localhost"]).unwrap();
/// match Listener::bind("127.0.0.1:1".parse().unwrap(), identity, b"h3", &QuicOptions::default()) {
///     Err(ListenError::Bind(e)) => println!("port taken or not ours: {e}"),
///     Err(e) => println!("{e}"),
///     Ok(_) => {}
/// }
/// # }
/// ```
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

/// Why a URL cannot be dialled.
///
/// ```
/// use moq_quic::{UrlError, parse_url};
/// assert_eq!(parse_url("https://relay.example/", "moqt").unwrap_err(), UrlError::Scheme { expected: "moqt" });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// It does not parse as a URL.
    #[error(transparent)]
    Parse(#[from] url::ParseError),
    /// Its scheme is not the transport's.
    #[error("the scheme must be {expected}")]
    Scheme {
        /// The scheme this transport dials (`moqt` or `https`).
        expected: &'static str,
    },
    /// It names no host.
    #[error("it names no host")]
    NoHost,
    /// It names no port, and the scheme has no default.
    #[error("it names no port")]
    NoPort,
}

/// Parses `url`, checking its scheme and that it names a host: the URL, and its host
/// without an IPv6 literal's brackets.
///
/// ```
/// let (url, host) = moq_quic::parse_url("moqt://[::1]:4443", "moqt").unwrap();
/// assert_eq!((host.as_str(), url.port()), ("::1", Some(4443)));
/// ```
pub fn parse_url(url: &str, scheme: &'static str) -> Result<(url::Url, String), UrlError> {
    let parsed = url::Url::parse(url)?;
    if parsed.scheme() != scheme {
        return Err(UrlError::Scheme { expected: scheme });
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(UrlError::NoHost),
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    Ok((parsed, host))
}

/// A quinn server endpoint presenting an identity for one ALPN token, with our transport
/// settings: what both adapters' servers listen with. The adapter completes each
/// handshake its own way.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_quic::{Identity, Listener, QuicOptions};
/// let identity = Identity::self_signed(&["localhost"])?;
/// let listener = Listener::bind("127.0.0.1:0".parse()?, identity, b"moq-lite-04", &QuicOptions::default())?;
/// while let Some(incoming) = listener.accept().await {
///     let connection = incoming.await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listener {
    endpoint: quinn::Endpoint,
}

impl Listener {
    /// Listens on `addr`, presenting `identity` and selecting `alpn`.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_quic::{Identity, Listener, QuicOptions};
    /// let identity = Identity::self_signed(&["localhost"])?;
    /// let listener = Listener::bind("[::]:4443".parse()?, identity, b"h3", &QuicOptions::default())?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # fn demo(listener: moq_quic::Listener) -> std::io::Result<()> {
    /// println!("{}", listener.local_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The next connection attempt, before its handshake; `None` once the endpoint is
    /// closed.
    ///
    /// ```no_run
    /// # async fn demo(listener: moq_quic::Listener) {
    /// if let Some(incoming) = listener.accept().await {
    ///     println!("attempt from {}", incoming.remote_address());
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// Stops accepting new connections; established ones go on.
    ///
    /// ```no_run
    /// # fn demo(listener: moq_quic::Listener) {
    /// listener.stop_accepting();
    /// # }
    /// ```
    pub fn stop_accepting(&self) {
        self.endpoint.set_server_config(None);
    }

    /// Waits until every connection has closed and its close has been sent (after
    /// [`Listener::close`], or once the peers have left).
    ///
    /// ```no_run
    /// # async fn demo(listener: moq_quic::Listener) {
    /// listener.close(0, "bye");
    /// listener.wait_idle().await;
    /// # }
    /// ```
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }

    /// Stops accepting and closes every connection with `code` (a QUIC application error
    /// code, already in the adapter's code space).
    ///
    /// ```no_run
    /// # fn demo(listener: moq_quic::Listener) {
    /// listener.close(0, "maintenance");
    /// # }
    /// ```
    pub fn close(&self, code: u64, reason: &str) {
        self.endpoint.close(
            quinn::VarInt::from_u64(code).unwrap_or(quinn::VarInt::MAX),
            reason.as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_refused_with_the_reason() {
        assert!(matches!(
            parse_url("not a url", "moqt"),
            Err(UrlError::Parse(_))
        ));
        assert_eq!(
            parse_url("https://relay.example:4443/", "moqt").unwrap_err(),
            UrlError::Scheme { expected: "moqt" }
        );
        assert_eq!(
            parse_url("moqt:4443", "moqt").unwrap_err(),
            UrlError::NoHost
        );
        let (url, host) = parse_url("moqt://[::1]:4443/path", "moqt").unwrap();
        assert_eq!((host.as_str(), url.port()), ("::1", Some(4443)));
    }
}
