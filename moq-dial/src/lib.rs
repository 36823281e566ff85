//! One dial by URL, over either moq-lite-04 transport: `moqt://host:port` over native QUIC
//! (`moq-quinn`), `https://host[:port]/path` over WebTransport (`moq-webtransport`). The same
//! session API comes back either way. It sits above both adapters, so that neither depends
//! on the other. It re-exports the application API, so an application that dials by URL
//! needs no other crate; errors are in each adapter's `error` module.

mod reconnect;

pub use moq_quic::{Identity, QuicOptions, ServerTrust};
pub use moq_tokio::*;
pub use reconnect::{
    ConnectionEvent, Reconnect, Reconnecting, ResumingAnnouncements, ResumingTrack,
};

use moq_quic::{BuildClient, ClientSettings};

/// Why a dial failed.
///
/// ```no_run
/// # async fn demo(dialer: moq_dial::Dialer) {
/// use moq_dial::DialError;
/// match dialer.connect("ftp://relay.example").await {
///     Err(DialError::Scheme(url)) => println!("not a MOQ URL: {url}"),
///     Err(other) => println!("dial failed: {other}"),
///     Ok(_) => {}
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The URL's scheme is neither `moqt` nor `https`.
    #[error("unsupported URL {0:?}: expected moqt://host:port or https://host[:port]/path")]
    Scheme(String),
    /// Native QUIC failed.
    #[error(transparent)]
    Quic(#[from] moq_quinn::error::ConnectError),
    /// WebTransport failed.
    #[error(transparent)]
    WebTransport(#[from] moq_webtransport::error::ConnectError),
}

/// Dials `moqt://` and `https://` URLs with one set of settings (trust, options, the session
/// configuration, what it publishes): a native QUIC and a WebTransport client endpoint. Keep
/// the `Dialer` for as long as its sessions.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use moq_dial::Dialer;
/// let dialer = Dialer::new(moq_dial::ServerTrust::platform())?;
/// let native = dialer.connect("moqt://relay.example.com:4443").await?;
/// let browser_path = dialer.connect("https://relay.example.com/moq").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Dialer {
    quic: moq_quinn::Client,
    webtransport: moq_webtransport::Client,
}

/// How a [`Dialer`] is made ([`Dialer::builder`]). A fixed local address binds the native
/// QUIC client; the WebTransport client takes the same IP on an ephemeral port.
///
/// ```no_run
/// # fn demo() -> Result<(), moq_dial::DialError> {
/// use moq_dial::{Dialer, QuicOptions, ServerTrust};
/// let dialer = Dialer::builder()
///     .trust(ServerTrust::platform())
///     .options(QuicOptions::default())
///     .bind("[::]:0".parse().unwrap())
///     .build()?;
/// # Ok(()) }
/// ```
pub type DialerBuilder = moq_quic::ClientBuilder<Dialer>;

impl BuildClient for Dialer {
    type Error = DialError;

    fn build(settings: ClientSettings) -> Result<Self, DialError> {
        let mut webtransport = settings.clone();
        webtransport.bind = settings.bind.map(|mut addr| {
            addr.set_port(0);
            addr
        });
        Ok(Self {
            quic: moq_quinn::Client::build(settings)?,
            webtransport: moq_webtransport::Client::build(webtransport)?,
        })
    }
}

impl Dialer {
    /// A dialer with the defaults but for `trust`.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), moq_dial::DialError> {
    /// use moq_dial::{Dialer, ServerTrust};
    /// // A relay with a self-signed certificate, pinned by its SHA-256 (hex).
    /// let trust = ServerTrust::from_hash_hex(
    ///     "6a3f7bde1c9c2f0e4b5d8a7c6e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b",
    /// )
    /// .expect("64 hex digits");
    /// let dialer = Dialer::new(trust)?;
    /// # Ok(()) }
    /// ```
    pub fn new(trust: ServerTrust) -> Result<Self, DialError> {
        Self::builder().trust(trust).build()
    }

    /// A builder of a dialer with other settings.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), moq_dial::DialError> {
    /// use moq_dial::{Broadcast, Dialer, Router, ServerTrust};
    /// // A dialer whose every session publishes /cam.
    /// let router = Router::new();
    /// router.publish("/cam", Broadcast::new());
    /// let dialer = Dialer::builder()
    ///     .trust(ServerTrust::platform())
    ///     .router(router)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> DialerBuilder {
        DialerBuilder::new()
    }

    /// Dials `url` and starts a session: native QUIC for `moqt://`, WebTransport for
    /// `https://`.
    ///
    /// ```no_run
    /// # async fn demo(dialer: moq_dial::Dialer) -> Result<(), moq_dial::DialError> {
    /// let native = dialer.connect("moqt://relay.example:4443").await?;
    /// let web = dialer.connect("https://relay.example/moq").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self, url: &str) -> Result<Session, DialError> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "moqt" => Ok(self.quic.connect(url).await?),
            "https" => Ok(self.webtransport.connect(url).await?),
            _ => Err(DialError::Scheme(url.to_owned())),
        }
    }

    /// [`Dialer::connect`] with this session's own configuration and router instead of
    /// the dialer's (a relay gives each link a router of its own).
    ///
    /// ```no_run
    /// # async fn demo(dialer: moq_dial::Dialer) -> Result<(), moq_dial::DialError> {
    /// use moq_dial::{Config, Router};
    /// let session = dialer
    ///     .connect_with("moqt://origin.example:4443", Config::default(), Some(Router::new()))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
        &self,
        url: &str,
        config: Config,
        router: Option<Router>,
    ) -> Result<Session, DialError> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "moqt" => Ok(self.quic.connect_with(url, config, router).await?),
            "https" => Ok(self.webtransport.connect_with(url, config, router).await?),
            _ => Err(DialError::Scheme(url.to_owned())),
        }
    }

    /// Waits until every connection of this dialer's endpoints has been closed and its
    /// close sent (after closing the sessions).
    ///
    /// ```no_run
    /// # async fn demo(dialer: moq_dial::Dialer) -> Result<(), moq_dial::DialError> {
    /// let session = dialer.connect("moqt://relay.example:4443").await?;
    /// session.close(moq_dial::code::session::NO_ERROR, "bye");
    /// drop(session);
    /// dialer.wait_idle().await; // the close has left the process
    /// # Ok(()) }
    /// ```
    pub async fn wait_idle(&self) {
        self.quic.wait_idle().await;
        self.webtransport.wait_idle().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scheme_picks_the_transport() {
        let dialer = Dialer::new(ServerTrust::Insecure).expect("dialer");
        for url in ["ftp://a:1", "a:1", "http://a:1/x"] {
            assert!(
                matches!(dialer.connect(url).await, Err(DialError::Scheme(_))),
                "{url}"
            );
        }
        // Each scheme reaches its own transport (and its own URL check).
        assert!(matches!(
            dialer.connect("moqt://a").await,
            Err(DialError::Quic(moq_quinn::error::ConnectError::InvalidUrl(
                _
            )))
        ));
        assert!(matches!(
            dialer.connect("https://:1").await,
            Err(DialError::WebTransport(
                moq_webtransport::error::ConnectError::InvalidUrl(_)
            ))
        ));
    }
}
