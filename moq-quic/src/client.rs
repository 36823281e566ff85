//! One way to make a client endpoint for every adapter: a builder of the settings all
//! clients share (trust, QUIC options, local address, the session configuration and what
//! the client publishes), and a [`BuildClient`] per client type.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use moq_tokio::{Config, Router};

use crate::QuicOptions;
use crate::tls::ServerTrust;

/// What a client endpoint is made from ([`ClientBuilder`] fills it in).
///
/// ```
/// let settings = moq_quic::ClientSettings::default();
/// assert!(settings.router.is_none());
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ClientSettings {
    /// How servers' certificates are checked (default: the platform's CAs).
    pub trust: ServerTrust,
    /// QUIC transport options.
    pub options: QuicOptions,
    /// The local address (default: an ephemeral port, see [`ClientSettings::local_addr`]).
    pub bind: Option<SocketAddr>,
    /// The configuration of every session the client starts.
    pub config: Config,
    /// What the client publishes to the servers it dials (default: nothing).
    pub router: Option<Router>,
}

impl ClientSettings {
    /// The address to bind: [`ClientSettings::bind`], else an unspecified one on an
    /// ephemeral port, IPv6 (dual-stack where the system allows, so it reaches IPv4 and
    /// IPv6 servers) when the system has it, else IPv4.
    ///
    /// ```
    /// let settings = moq_quic::ClientSettings::default();
    /// assert_eq!(settings.local_addr().port(), 0);
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        if let Some(addr) = self.bind {
            return addr;
        }
        let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
        match std::net::UdpSocket::bind(v6) {
            Ok(_) => v6,
            Err(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// A client endpoint type that a [`ClientBuilder`] can make.
///
/// ```no_run
/// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
/// moq_quic::ClientBuilder::<C>::new().build()
/// # }
/// ```
pub trait BuildClient: Sized {
    /// Why it could not be made.
    type Error;
    /// Makes the client (binds its socket).
    fn build(settings: ClientSettings) -> Result<Self, Self::Error>;
}

/// How a client endpoint is made: set what differs from the defaults, then
/// [`ClientBuilder::build`].
///
/// ```no_run
/// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
/// use moq_quic::{ClientBuilder, ServerTrust};
/// ClientBuilder::<C>::new().trust(ServerTrust::platform()).build()
/// # }
/// ```
#[must_use = "a builder does nothing until `build`"]
pub struct ClientBuilder<C> {
    settings: ClientSettings,
    client: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.settings.fmt(f)
    }
}

impl<C> Default for ClientBuilder<C> {
    fn default() -> Self {
        Self {
            settings: ClientSettings::default(),
            client: PhantomData,
        }
    }
}

impl<C: BuildClient> ClientBuilder<C> {
    /// A builder with the defaults: the platform's CAs, default options and session
    /// configuration, an ephemeral local port, nothing published.
    ///
    /// ```no_run
    /// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
    /// moq_quic::ClientBuilder::<C>::new().build()
    /// # }
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How servers' certificates are checked.
    ///
    /// ```no_run
    /// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
    /// use moq_quic::ServerTrust;
    /// moq_quic::ClientBuilder::<C>::new().trust(ServerTrust::Insecure).build() // tests only
    /// # }
    /// ```
    pub fn trust(mut self, trust: ServerTrust) -> Self {
        self.settings.trust = trust;
        self
    }

    /// QUIC transport options.
    ///
    /// ```no_run
    /// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
    /// let mut options = moq_quic::QuicOptions::default();
    /// options.max_streams = 512;
    /// moq_quic::ClientBuilder::<C>::new().options(options).build()
    /// # }
    /// ```
    pub fn options(mut self, options: QuicOptions) -> Self {
        self.settings.options = options;
        self
    }

    /// The local address to bind.
    ///
    /// ```no_run
    /// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
    /// moq_quic::ClientBuilder::<C>::new().bind("0.0.0.0:0".parse().unwrap()).build()
    /// # }
    /// ```
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.settings.bind = Some(addr);
        self
    }

    /// The configuration of every session the client starts.
    ///
    /// ```no_run
    /// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
    /// let mut config = moq_tokio::Config::default();
    /// config.max_unread_bytes = 4 << 20;
    /// moq_quic::ClientBuilder::<C>::new().config(config).build()
    /// # }
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.settings.config = config;
        self
    }

    /// What the client publishes to the servers it dials.
    ///
    /// ```no_run
    /// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
    /// let router = moq_tokio::Router::new();
    /// router.publish("/cam", moq_tokio::Broadcast::new());
    /// moq_quic::ClientBuilder::<C>::new().router(router).build()
    /// # }
    /// ```
    pub fn router(mut self, router: Router) -> Self {
        self.settings.router = Some(router);
        self
    }

    /// Makes the client.
    ///
    /// ```no_run
    /// # fn demo<C: moq_quic::BuildClient>() -> Result<C, C::Error> {
    /// moq_quic::ClientBuilder::<C>::new().build()
    /// # }
    /// ```
    pub fn build(self) -> Result<C, C::Error> {
        C::build(self.settings)
    }
}
