//! The session handle: what an application holds for one connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use moq_proto::message::{Fetch, SubscribeParams};
use moq_proto::{
    BroadcastPath, CloseReason, Config, ErrorCode, HopId, PathPrefix, Role, SessionStats,
};
use tokio::sync::{Notify, mpsc, watch};

use crate::announce::Announcements;
use crate::driver::Driver;
use crate::error::SessionError;
use crate::probe::{ProbeResults, ProbeTargets};
use crate::publish::{FetchRequest, Router};
use crate::shared::now;
use crate::shared::{Inner, Meta, Shared};
use crate::subscribe::{FetchReader, GroupReader, TrackReader};
use crate::transport::{Connection, ConnectionInfo};

/// One moq-lite-04 session over any [`Connection`].
///
/// Cloning gives another handle to the same session. The session lives while at least one
/// handle does: dropping the last one closes it (code 0) and tears every stream down.
/// Readers and writers obtained from it do not keep it alive.
///
/// ```no_run
/// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
/// // Handles are cheap clones of one session.
/// let other = session.clone();
/// tokio::spawn(async move {
///     let why = other.closed().await;
/// });
/// let mut video = session.subscribe("/cam", "video", Default::default())?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Closes the session when the last [`Session`] handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.with(|inner| {
            inner
                .core
                .close(moq_proto::code::session::NO_ERROR, "session dropped")
        });
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.shared.meta.remote)
            .field("transport", &self.shared.meta.info.transport)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session on an established connection, with its driver task on the current
    /// tokio runtime. `router` serves the broadcasts this end publishes (announced to the
    /// peer as it shows interest); without one, every SUBSCRIBE and FETCH is refused.
    ///
    /// ```no_run
    /// use moq_tokio::transport::{Connection, proto::Role};
    /// use moq_tokio::{Config, Router, Session};
    /// // What an adapter does with a connection it has established.
    /// fn start<C: Connection>(conn: C, router: Router) -> Session {
    ///     Session::new(conn, Role::Client, Config::default(), Some(router))
    /// }
    /// ```
    pub fn new<C: Connection>(conn: C, role: Role, config: Config, router: Option<Router>) -> Self {
        let meta = Meta {
            stats: Box::new({
                let conn = conn.clone();
                move || conn.stats()
            }),
            info: conn.info(),
            remote: conn.remote_addr(),
            local: conn.local_addr(),
        };
        tracing::debug!(
            remote = ?meta.remote,
            transport = meta.info.transport,
            ?role,
            "session started"
        );
        let budget = crate::shared::Budget::new(config.max_unread_bytes);
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            budget,
            inner: Mutex::new(Inner {
                core: moq_proto::Session::new(role, config, now()),
                wakers: Default::default(),
                probes: 0,
                serving: router.is_some(),
                io: Default::default(),
            }),
            wake: Notify::new(),
            requests,
            meta,
            closed: watch::channel(None).0,
            goaway: watch::channel(None).0,
            probe_target: watch::channel(None).0,
        });
        if let Some(router) = &router {
            router.attach(&shared);
        }
        let driver = Driver::new(conn, shared.clone(), requests_rx, router.clone());
        tokio::spawn(driver.run());
        Self {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    // ---- Subscribing ----

    /// Subscribes to a track. Returns at once; groups (and any refusal) arrive through the
    /// reader. Dropping the reader unsubscribes.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_tokio::SubscribeParams;
    /// let mut video = session.subscribe("/cam", "video", SubscribeParams::default())?;
    /// while let Some(mut group) = video.next_group().await? {
    ///     while let Some(frame) = group.read_frame().await? {
    ///         println!("group {}: {} bytes", group.sequence().0, frame.len());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe(
        &self,
        path: impl Into<BroadcastPath>,
        track: &str,
        params: SubscribeParams,
    ) -> Result<TrackReader, SessionError> {
        let path = path.into();
        let id = self.shared.with(|inner| {
            let id = inner.core.subscribe(path.clone(), track, params)?;
            // Its reader takes what it brings from the core.
            inner.core.lease_subscription(id);
            Ok::<_, SessionError>(id)
        })?;
        Ok(TrackReader::new(
            self.shared.clone(),
            id,
            path,
            track.to_owned(),
            params,
        ))
    }

    /// Fetches one whole group (spec §6.4): its frames, then the end.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_tokio::{FetchRequest, GroupSequence};
    /// let mut group = session.fetch(FetchRequest::new("/cam", "video", GroupSequence(7)))?;
    /// while let Some(frame) = group.read_frame().await? {
    ///     println!("{} bytes", frame.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn fetch(&self, request: FetchRequest) -> Result<FetchReader, SessionError> {
        let group = request.group;
        let request = Fetch {
            path: request.path,
            track: request.track,
            priority: request.priority,
            group,
        };
        let slot = Arc::new(crate::shared::source::SourceSlot::default());
        let stream = self.shared.with(|inner| {
            let stream = inner.core.fetch(request)?;
            // The stream goes to the reader's slot once open (see `driver`).
            inner
                .io
                .stoppers
                .insert(stream, crate::shared::Stopper::Slot(slot.clone()));
            Ok::<_, SessionError>(stream)
        })?;
        Ok(FetchReader::new(GroupReader::new(
            self.shared.clone(),
            stream,
            group,
            slot,
            true,
        )))
    }

    /// Listens for the peer's broadcasts under `prefix` (announce interest): `""` for all.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut announced = session.announced("/rooms/")?;
    /// while let Some(announcement) = announced.next().await {
    ///     println!("{} is live", announcement.path());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn announced(&self, prefix: &str) -> Result<Announcements, SessionError> {
        self.announced_excluding(prefix, HopId(0))
    }

    /// [`Session::announced`] for a relay: the peer leaves out broadcasts whose route
    /// already passed `exclude_hop` (the relay's own hop ID), which stops loops.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_tokio::publish::HopId;
    /// let mut announced = session.announced_excluding("/", HopId(7))?;
    /// let first = announced.next().await;
    /// # Ok(()) }
    /// ```
    pub fn announced_excluding(
        &self,
        prefix: &str,
        exclude_hop: HopId,
    ) -> Result<Announcements, SessionError> {
        let stream = self.shared.with(|inner| {
            let stream = inner
                .core
                .announce_interest(PathPrefix::new(prefix), exclude_hop)?;
            // Its reader takes what it reports from the core.
            inner.core.lease_interest(stream);
            Ok::<_, SessionError>(stream)
        })?;
        Ok(Announcements::new(self.shared.clone(), stream))
    }

    // ---- Probing ----

    /// Asks the peer to measure the path up to `target` bits per second. The first call
    /// opens the probe; later calls change the target on the same probe stream, and the
    /// replies go to the latest call's [`ProbeResults`] (an earlier one then ends).
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut probe = session.probe(5_000_000)?;
    /// if let Some(reply) = probe.next().await {
    ///     println!("the path carries {:?} bit/s, RTT {:?}", reply.bitrate, reply.rtt);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn probe(&self, target: u64) -> Result<ProbeResults, SessionError> {
        let generation = self.shared.with(|inner| {
            inner.core.probe(target)?;
            inner.probes += 1;
            // An earlier call's replies end here.
            inner.wakers.wake(crate::shared::WakeKey::Probe);
            Ok::<_, SessionError>(inner.probes)
        })?;
        Ok(ProbeResults::new(self.shared.clone(), generation))
    }

    /// The targets the peer's probe asks of us (bits per second), latest wins.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) {
    /// let mut targets = session.probe_targets();
    /// while let Some(bitrate) = targets.next().await {
    ///     println!("the peer probes up to {bitrate} bit/s");
    /// }
    /// # }
    /// ```
    pub fn probe_targets(&self) -> ProbeTargets {
        ProbeTargets::new(self.shared.clone())
    }

    // ---- Session ----

    /// Statistics: RTT, estimated bitrate, bytes and group/frame counts.
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) {
    /// let stats = session.stats();
    /// println!("rtt {:?}, {} bytes sent, ledger {} bytes", stats.rtt, stats.bytes_sent, stats.ledger.total());
    /// # }
    /// ```
    pub fn stats(&self) -> SessionStats {
        let transport = (self.shared.meta.stats)();
        self.shared.with(|inner| {
            inner.core.handle_stats_read(transport, now());
            inner.core.stats()
        })
    }

    /// What the transport negotiated (version, ALPN, TLS details).
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) {
    /// let info = session.connection_info();
    /// println!("{} over {}, ALPN {:?}", info.version.as_deref().unwrap_or("?"), info.transport, info.alpn);
    /// # }
    /// ```
    pub fn connection_info(&self) -> &ConnectionInfo {
        &self.shared.meta.info
    }

    /// The peer's address.
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) {
    /// println!("peer {:?}", session.remote_addr());
    /// # }
    /// ```
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.shared.meta.remote
    }

    /// Our address.
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) {
    /// println!("us {:?}", session.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.meta.local
    }

    /// Sends GOAWAY (spec §6.6), optionally redirecting to `uri`: no new requests, and the
    /// session closes with 0x10 if the peer has not left within the configured drain time.
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) -> Result<(), moq_tokio::error::SessionError> {
    /// session.goaway("moqt://other.example:4443")?;
    /// # Ok(()) }
    /// ```
    pub fn goaway(&self, uri: &str) -> Result<(), SessionError> {
        self.shared
            .with(|inner| inner.core.goaway(uri))
            .map_err(SessionError::from)
    }

    /// Resolves when the peer sends GOAWAY, with its new session URI (possibly empty);
    /// `None` if the session ended first.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) {
    /// if let Some(uri) = session.goaway_received().await {
    ///     println!("asked to move to {uri:?}");
    /// }
    /// # }
    /// ```
    pub async fn goaway_received(&self) -> Option<String> {
        let mut rx = self.shared.goaway.subscribe();
        let mut closed = self.shared.closed.subscribe();
        loop {
            if let Some(uri) = rx.borrow_and_update().clone() {
                return Some(uri);
            }
            if closed.borrow_and_update().is_some() {
                return None;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return None },
                r = closed.changed() => if r.is_err() { return None },
            }
        }
    }

    /// Closes the session with a code and reason, seen by the peer.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) {
    /// use moq_tokio::code;
    /// session.close(code::session::NO_ERROR, "bye");
    /// println!("{}", session.closed().await);
    /// # }
    /// ```
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.shared.with(|inner| inner.core.close(code, reason));
    }

    /// Resolves when the session has ended, with the cause.
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) {
    /// let why = session.closed().await;
    /// println!("session ended: {why}");
    /// # }
    /// ```
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.shared.closed.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return CloseReason::Transport("driver stopped".into());
            }
        }
    }

    /// Whether the session has ended.
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) {
    /// if session.is_closed() {
    ///     println!("gone");
    /// }
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some()
    }

    /// Publishes a broadcast on this session only (without a router): peers showing
    /// interest learn of it. Subscriptions to it reach the session's router, if any.
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) -> Result<(), moq_tokio::error::SessionError> {
    /// // Tell this peer only about /cam (its subscriptions reach the session's router).
    /// session.announce("/cam")?;
    /// # Ok(()) }
    /// ```
    pub fn announce(&self, path: impl Into<BroadcastPath>) -> Result<(), SessionError> {
        let path = path.into();
        self.shared
            .with(|inner| inner.core.announce(path, Vec::new()))
            .map_err(SessionError::from)
    }
}
