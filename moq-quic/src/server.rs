//! One server for both adapters: listening, the accept loop and the session start are
//! written here once; what differs (the handshake, the close-code space) is a [`Handshake`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;

use moq_tokio::transport::{Connection, ConnectionInfo};
use moq_tokio::{Config, ErrorCode, Role, Router, Session};

use crate::tls::Identity;
use crate::{ListenError, Listener, QuicOptions};

/// What one transport does to turn a QUIC connection attempt into a MOQ connection.
pub trait Handshake: Send + Sync + 'static {
    /// The ALPN token the server selects.
    const ALPN: &'static [u8];
    /// The connection a session runs on.
    type Connection: Connection;
    /// Why a connection could not be made, or the server could not start.
    type Error: From<ListenError> + Send;

    /// Completes the handshake of `incoming` (QUIC, and whatever the transport adds).
    /// `local` is the server's address.
    fn connect(
        incoming: quinn::Incoming,
        local: Option<SocketAddr>,
    ) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// `code`, as this transport sends it when it closes a connection.
    fn close_code(code: ErrorCode) -> u64;
}

/// A server endpoint: accepts connections and starts a session on each.
pub struct Server<H> {
    listener: Listener,
    config: Config,
    router: Router,
    handshake: PhantomData<fn() -> H>,
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl<H: Handshake> Server<H> {
    /// Listens on `addr` with `identity`; sessions publish what `router` holds.
    pub fn bind(
        addr: SocketAddr,
        identity: Identity,
        config: Config,
        router: Router,
    ) -> Result<Self, H::Error> {
        Self::bind_with_options(addr, identity, config, router, QuicOptions::default())
    }

    /// [`Server::bind`] with explicit transport options.
    pub fn bind_with_options(
        addr: SocketAddr,
        identity: Identity,
        config: Config,
        router: Router,
        options: QuicOptions,
    ) -> Result<Self, H::Error> {
        Ok(Self {
            listener: Listener::bind(addr, identity, H::ALPN, &options)?,
            config,
            router,
            handshake: PhantomData,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The router its sessions serve.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The next session; `None` once the endpoint is closed. A connection whose handshake
    /// fails yields an error, and the server goes on.
    pub async fn accept(&self) -> Option<Result<Session, H::Error>> {
        let incoming = self.incoming().await?;
        let router = self.router.clone();
        Some(incoming.accept(move |_| Some(router)).await)
    }

    /// The next connection attempt, before its handshake; `None` once the endpoint is
    /// closed. Unlike [`Server::accept`] the caller chooses, per connection, the router its
    /// session serves (for example one that holds only what that peer may see, knowing
    /// what the connection negotiated), and can run several handshakes at once.
    pub async fn incoming(&self) -> Option<Incoming<H>> {
        let incoming = self.listener.accept().await?;
        Some(Incoming {
            incoming,
            config: self.config.clone(),
            local: self.listener.local_addr().ok(),
            handshake: PhantomData,
        })
    }

    /// Stops accepting new connections; established ones go on. Pair it with
    /// [`Session::goaway`] on each session to drain a server.
    pub fn stop_accepting(&self) {
        self.listener.stop_accepting();
    }

    /// Stops accepting and closes every connection with `code`.
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.listener.close(H::close_code(code), reason);
    }
}

/// A connection attempt on a [`Server`], not yet handshaken.
pub struct Incoming<H> {
    incoming: quinn::Incoming,
    config: Config,
    local: Option<SocketAddr>,
    handshake: PhantomData<fn() -> H>,
}

impl<H> fmt::Debug for Incoming<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("remote", &self.incoming.remote_address())
            .finish_non_exhaustive()
    }
}

impl<H: Handshake> Incoming<H> {
    /// The peer's address (before any handshake, so not yet validated).
    pub fn remote_addr(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Refuses the connection without a handshake.
    pub fn refuse(self) {
        self.incoming.refuse();
    }

    /// Completes the handshake and starts the session. `router` is called once the
    /// connection is up, with what it negotiated, and returns the router the session
    /// serves (`None`: every SUBSCRIBE and FETCH is refused).
    pub async fn accept(
        self,
        router: impl FnOnce(&ConnectionInfo) -> Option<Router>,
    ) -> Result<Session, H::Error> {
        let conn = H::connect(self.incoming, self.local).await?;
        let router = router(&conn.info());
        Ok(Session::new(conn, Role::Server, self.config, router))
    }
}
