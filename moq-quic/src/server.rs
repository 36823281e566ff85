//! One server for both adapters: listening, the accept loop and the session start are
//! written here once; what differs (the handshake, the close-code space) is a [`Handshake`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;

use moq_tokio::code::ErrorCode;
use moq_tokio::transport::{Connection, ConnectionInfo, Role};
use moq_tokio::{Config, Router, Session};

use crate::tls::Identity;
use crate::{HandshakeLimits, ListenError, Listener, QuicOptions};

/// What one transport does to turn a QUIC connection attempt into a MOQ connection.
///
/// ```no_run
/// // Adapters implement it; an application names it through their aliases
/// // (moq_quinn::Server is moq_quic::Server<moq_quinn::transport::NativeQuic>).
/// fn alpn<H: moq_quic::Handshake>() -> &'static [u8] {
///     H::ALPN
/// }
/// ```
pub trait Handshake: Send + Sync + 'static {
    /// The ALPN token the server selects.
    const ALPN: &'static [u8];
    /// The connection a session runs on.
    type Connection: Connection;
    /// Why a connection could not be made, or the server could not start.
    type Error: From<ListenError> + From<HandshakeTimedOut> + Send + 'static;

    /// Completes the handshake of `incoming` (QUIC, and whatever the transport adds).
    /// `local` is the server's address.
    fn connect(
        incoming: quinn::Incoming,
        local: Option<SocketAddr>,
    ) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// `code`, as this transport sends it when it closes a connection.
    fn close_code(code: ErrorCode) -> u64;
}

/// A handshake that did not complete within [`HandshakeLimits::timeout`].
///
/// ```
/// use std::time::Duration;
/// let e = moq_quic::HandshakeTimedOut(Duration::from_secs(10));
/// assert_eq!(e.to_string(), "the handshake did not complete within 10s");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the handshake did not complete within {0:?}")]
pub struct HandshakeTimedOut(pub Duration);

/// Connection attempts in their handshake, counted against [`HandshakeLimits`].
#[derive(Debug)]
struct Admission {
    limits: HandshakeLimits,
    in_flight: AtomicUsize,
    refused: AtomicU64,
    retried: AtomicU64,
    timed_out: AtomicU64,
}

/// What to do with a connection attempt.
enum Admit {
    Take(InFlight),
    Retry,
    Refuse,
}

impl Admission {
    fn admit(self: &Arc<Self>, validated: bool) -> Admit {
        // One attempt at a time takes its place (the accept loop is the only caller that
        // adds; handshakes only leave), so a load then an add cannot overshoot by more than
        // the callers of `incoming` at once.
        let in_flight = self.in_flight.load(Ordering::Acquire);
        if in_flight >= self.limits.max_in_flight {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Admit::Refuse;
        }
        if !validated && in_flight >= self.limits.retry_above {
            self.retried.fetch_add(1, Ordering::Relaxed);
            return Admit::Retry;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Admit::Take(InFlight(self.clone()))
    }
}

/// One handshake's place in flight, given back when it ends however it ends.
#[derive(Debug)]
struct InFlight(Arc<Admission>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a [`Server`] has done with connection attempts (see [`HandshakeLimits`]).
///
/// ```no_run
/// # async fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
/// let stats = server.handshake_stats();
/// println!("{} in flight, {} refused, {} retried", stats.in_flight, stats.refused, stats.retried);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeStats {
    /// Handshakes in flight now.
    pub in_flight: usize,
    /// Attempts refused because `max_in_flight` were in flight.
    pub refused: u64,
    /// Attempts asked to prove their address first (QUIC Retry).
    pub retried: u64,
    /// Handshakes dropped at their deadline.
    pub timed_out: u64,
}

/// A server endpoint: accepts connections and starts a session on each.
///
/// Each handshake runs as a task of its own, capped and timed out by
/// [`QuicOptions::handshake`]: a client that stalls its handshake (or, over WebTransport,
/// never sends its CONNECT) delays no other client's accept.
///
/// ```no_run
/// # async fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
/// // Serve until closed, each session kept until it ends.
/// let served = server.serve().await;
/// # }
/// ```
pub struct Server<H: Handshake> {
    listener: Listener,
    config: Config,
    router: Router,
    admission: Arc<Admission>,
    /// Handshakes started by [`Server::accept`], in flight.
    pending: tokio::sync::Mutex<Pending<H>>,
}

struct Pending<H: Handshake> {
    tasks: JoinSet<Result<Session, H::Error>>,
    closed: bool,
}

impl<H: Handshake> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("handshakes", &self.handshake_stats())
            .finish_non_exhaustive()
    }
}

/// How a [`Server`] is made: its address and identity, and optionally the session
/// [`Config`], the [`Router`] of what its sessions publish, and [`QuicOptions`]; then
/// [`ServerBuilder::bind`].
///
/// ```no_run
/// # fn demo<H: moq_quic::Handshake>() -> Result<(), Box<dyn std::error::Error>> where H::Error: std::error::Error + 'static {
/// use moq_quic::{Identity, QuicOptions};
/// let server = moq_quic::Server::<H>::builder("[::]:4443".parse()?, Identity::self_signed(&["localhost"])?)
///     .options(QuicOptions::default())
///     .bind()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `bind`"]
pub struct ServerBuilder<H> {
    addr: SocketAddr,
    identity: Identity,
    config: Config,
    router: Router,
    options: QuicOptions,
    handshake: PhantomData<fn() -> H>,
}

impl<H> fmt::Debug for ServerBuilder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addr", &self.addr)
            .field("config", &self.config)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<H: Handshake> ServerBuilder<H> {
    /// The session configuration of every session (default [`Config::default`]).
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>() -> Result<(), Box<dyn std::error::Error>> where H::Error: std::error::Error + 'static {
    /// use moq_quic::Identity;
    /// let mut config = moq_tokio::Config::default();
    /// config.announce_rate = 100;
    /// let server = moq_quic::Server::<H>::builder("[::]:4443".parse()?, Identity::self_signed(&["localhost"])?)
    ///     .config(config)
    ///     .bind()?;
    /// # Ok(()) }
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// What the sessions publish (default: an empty router, which refuses every
    /// SUBSCRIBE and FETCH until something is published on [`Server::router`]).
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>() -> Result<(), Box<dyn std::error::Error>> where H::Error: std::error::Error + 'static {
    /// use moq_quic::Identity;
    /// let router = moq_tokio::Router::new();
    /// router.publish("/clock", moq_tokio::Broadcast::new());
    /// let server = moq_quic::Server::<H>::builder("[::]:4443".parse()?, Identity::self_signed(&["localhost"])?)
    ///     .router(router)
    ///     .bind()?;
    /// # Ok(()) }
    /// ```
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Transport options: windows, idle timeout, congestion, handshake limits.
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>() -> Result<(), Box<dyn std::error::Error>> where H::Error: std::error::Error + 'static {
    /// use std::time::Duration;
    /// use moq_quic::{Identity, QuicOptions};
    /// let mut options = QuicOptions::default();
    /// options.idle_timeout = Duration::from_secs(10);
    /// let server = moq_quic::Server::<H>::builder("[::]:4443".parse()?, Identity::self_signed(&["localhost"])?)
    ///     .options(options)
    ///     .bind()?;
    /// # Ok(()) }
    /// ```
    pub fn options(mut self, options: QuicOptions) -> Self {
        self.options = options;
        self
    }

    /// Binds the address and starts listening.
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>() -> Result<(), Box<dyn std::error::Error>> where H::Error: std::error::Error + 'static {
    /// use moq_quic::Identity;
    /// let server = moq_quic::Server::<H>::builder("127.0.0.1:0".parse()?, Identity::self_signed(&["localhost"])?).bind()?;
    /// println!("listening on {}", server.local_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn bind(self) -> Result<Server<H>, H::Error> {
        let options = self.options;
        Ok(Server {
            listener: Listener::bind(self.addr, self.identity, H::ALPN, &options)?,
            config: self.config,
            router: self.router,
            admission: Arc::new(Admission {
                limits: options.handshake.clone(),
                in_flight: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
                retried: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
            }),
            pending: tokio::sync::Mutex::new(Pending {
                tasks: JoinSet::new(),
                closed: false,
            }),
        })
    }
}

impl<H: Handshake> Server<H> {
    /// A server on `addr` with `identity`: set what it needs on the builder, then
    /// [`ServerBuilder::bind`].
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>() -> Result<(), Box<dyn std::error::Error>> where H::Error: std::error::Error + 'static {
    /// use moq_quic::Identity;
    /// let identity = Identity::from_pem_files("relay.crt", "relay.key")?;
    /// let server = moq_quic::Server::<H>::builder("0.0.0.0:4443".parse()?, identity).bind()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(addr: SocketAddr, identity: Identity) -> ServerBuilder<H> {
        ServerBuilder {
            addr,
            identity,
            config: Config::default(),
            router: Router::new(),
            options: QuicOptions::default(),
            handshake: PhantomData,
        }
    }

    /// The address the server listens on.
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) -> std::io::Result<()> {
    /// println!("listening on {}", server.local_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The router its sessions serve.
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
    /// // Publish after binding: every session, current and future, serves it.
    /// server.router().publish("/late", moq_tokio::Broadcast::new());
    /// # }
    /// ```
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// What the server has done with connection attempts so far.
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
    /// println!("{} handshakes in flight", server.handshake_stats().in_flight);
    /// # }
    /// ```
    pub fn handshake_stats(&self) -> HandshakeStats {
        let a = &self.admission;
        HandshakeStats {
            in_flight: a.in_flight.load(Ordering::Acquire),
            refused: a.refused.load(Ordering::Relaxed),
            retried: a.retried.load(Ordering::Relaxed),
            timed_out: a.timed_out.load(Ordering::Relaxed),
        }
    }

    /// The next session; `None` once the endpoint is closed and the handshakes under way
    /// have ended. A connection whose handshake fails (or times out) yields an error, and
    /// the server goes on. Handshakes run concurrently, each on a task of its own, so the
    /// next session is the first whose handshake completes; they go on while nobody awaits
    /// `accept`, and end with the server.
    ///
    /// ```no_run
    /// # async fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
    /// while let Some(accepted) = server.accept().await {
    ///     match accepted {
    ///         Ok(session) => { tokio::spawn(async move { session.closed().await; }); }
    ///         Err(_) => continue, // one failed handshake
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> Option<Result<Session, H::Error>> {
        let mut pending = self.pending.lock().await;
        loop {
            let open = !pending.closed;
            let busy = !pending.tasks.is_empty();
            if !open && !busy {
                return None;
            }
            tokio::select! {
                done = pending.tasks.join_next(), if busy => {
                    // A handshake task cannot panic short of a bug in a dependency; the
                    // server goes on.
                    if let Some(Ok(result)) = done {
                        return Some(result);
                    }
                }
                incoming = self.incoming(), if open => match incoming {
                    Some(incoming) => {
                        let router = self.router.clone();
                        pending.tasks.spawn(incoming.accept(move |_| Some(router)));
                    }
                    None => pending.closed = true,
                },
            }
        }
    }

    /// The next connection attempt admitted to its handshake (see [`HandshakeLimits`]:
    /// past the cap attempts are refused, past the retry mark unvalidated ones get a QUIC
    /// Retry, both here); `None` once the endpoint is closed. Unlike [`Server::accept`]
    /// the caller chooses, per connection, the router its session serves (for example one
    /// that holds only what that peer may see, knowing what the connection negotiated),
    /// and runs the handshake itself: run each on a task of its own (its deadline holds
    /// either way), so that one stalled client delays no other.
    ///
    /// ```no_run
    /// # async fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
    /// while let Some(incoming) = server.incoming().await {
    ///     println!("attempt from {}", incoming.remote_addr());
    ///     incoming.refuse();
    /// }
    /// # }
    /// ```
    pub async fn incoming(&self) -> Option<Incoming<H>> {
        loop {
            let incoming = self.listener.accept().await?;
            let validated = incoming.remote_address_validated() || !incoming.may_retry();
            match self.admission.admit(validated) {
                Admit::Take(place) => {
                    return Some(Incoming {
                        incoming,
                        config: self.config.clone(),
                        local: self.listener.local_addr().ok(),
                        place,
                        handshake: PhantomData,
                    });
                }
                Admit::Retry => {
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().refuse();
                    }
                }
                // Counted in `handshake_stats`, not logged: a flood would flood the log.
                Admit::Refuse => incoming.refuse(),
            }
        }
    }

    /// Stops accepting new connections; established ones go on. Pair it with
    /// [`Session::goaway`] on each session to drain a server.
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
    /// server.stop_accepting(); // draining: current sessions go on
    /// # }
    /// ```
    pub fn stop_accepting(&self) {
        self.listener.stop_accepting();
    }

    /// Stops accepting and closes every connection with `code` and `reason`. The close
    /// leaves with the next packets: await [`Server::wait_idle`] before the process exits,
    /// or peers learn of it only at their idle timeout. Keep the sessions until they end
    /// ([`Server::serve`] does): one dropped first closes with code 0, "session dropped".
    ///
    /// ```no_run
    /// # async fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
    /// server.close(moq_tokio::code::session::NO_ERROR, "shutting down");
    /// server.wait_idle().await;
    /// # }
    /// ```
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.listener.close(H::close_code(code), reason);
    }

    /// Waits until every connection has closed and its close has been sent.
    ///
    /// ```no_run
    /// # async fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
    /// server.close(moq_tokio::code::session::NO_ERROR, "bye");
    /// server.wait_idle().await; // the closes have left the process
    /// # }
    /// ```
    pub async fn wait_idle(&self) {
        self.listener.wait_idle().await;
    }

    /// Serves until the server is closed and its sessions have ended: accepts every
    /// session and keeps each open until it ends (a [`Session`] closes when its last handle is dropped, so an accept loop
    /// must keep them; this one does). Returns the number of sessions served. A failed
    /// handshake is skipped (it counts in [`Server::handshake_stats`] when it timed out).
    ///
    /// ```no_run
    /// # async fn demo(server: moq_quic::Server<impl moq_quic::Handshake>) {
    /// // Publish on `server.router()`, then:
    /// let served = server.serve().await;
    /// # let _ = served;
    /// # }
    /// ```
    pub async fn serve(&self) -> usize {
        let mut live = tokio::task::JoinSet::new();
        let mut served = 0;
        loop {
            tokio::select! {
                next = self.accept() => match next {
                    Some(Ok(session)) => {
                        served += 1;
                        live.spawn(async move {
                            session.closed().await;
                        });
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
                Some(_) = live.join_next(), if !live.is_empty() => {}
            }
        }
        // Closed: the sessions end with the server's close (dropping them first would
        // close each with code 0, "session dropped", ahead of it).
        while live.join_next().await.is_some() {}
        served
    }
}

/// A connection attempt on a [`Server`], admitted to its handshake. It holds a place among
/// the server's handshakes in flight until it is accepted, refused or dropped.
///
/// ```no_run
/// # async fn demo<H: moq_quic::Handshake>(server: moq_quic::Server<H>) {
/// if let Some(incoming) = server.incoming().await {
///     let session = incoming.accept(|_info| None).await;
/// }
/// # }
/// ```
pub struct Incoming<H> {
    incoming: quinn::Incoming,
    config: Config,
    local: Option<SocketAddr>,
    place: InFlight,
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
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>(incoming: moq_quic::Incoming<H>) {
    /// println!("from {}", incoming.remote_addr());
    /// # }
    /// ```
    pub fn remote_addr(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Refuses the connection without a handshake.
    ///
    /// ```no_run
    /// # fn demo<H: moq_quic::Handshake>(incoming: moq_quic::Incoming<H>) {
    /// incoming.refuse(); // a CONNECTION_REFUSED, before any handshake work
    /// # }
    /// ```
    pub fn refuse(self) {
        self.incoming.refuse();
    }

    /// Completes the handshake and starts the session, within the server's handshake
    /// deadline ([`HandshakeTimedOut`] past it, the connection dropped). `router` is
    /// called once the connection is up, with what it negotiated, and returns the router
    /// the session serves (`None`: every SUBSCRIBE and FETCH is refused).
    ///
    /// ```no_run
    /// # async fn demo<H: moq_quic::Handshake>(incoming: moq_quic::Incoming<H>) {
    /// let router = moq_tokio::Router::new();
    /// let session = incoming.accept(move |info| {
    ///     println!("{} via {:?}", info.transport, info.alpn);
    ///     Some(router)
    /// }).await;
    /// # }
    /// ```
    pub async fn accept(
        self,
        router: impl FnOnce(&ConnectionInfo) -> Option<Router>,
    ) -> Result<Session, H::Error> {
        let Self {
            incoming,
            config,
            local,
            place,
            ..
        } = self;
        let timeout = place.0.limits.timeout;
        let conn = match tokio::time::timeout(timeout, H::connect(incoming, local)).await {
            Ok(conn) => conn?,
            Err(_) => {
                place.0.timed_out.fetch_add(1, Ordering::Relaxed);
                return Err(HandshakeTimedOut(timeout).into());
            }
        };
        drop(place);
        let router = router(&conn.info());
        Ok(Session::new(conn, Role::Server, config, router))
    }
}
