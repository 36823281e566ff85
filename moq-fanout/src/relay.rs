//! The relay: every connected peer (publisher, subscriber or another relay), the routes
//! to each broadcast, and the fan-outs of the tracks being relayed.
//!
//! Every peer gets its own [`Router`]: it holds the broadcasts that peer may subscribe to
//! (announced to it with our hop ID appended, spec D15), except those it is itself the
//! route to, and a fallback that answers for everything else (Subscribe code 0x4 outside its
//! prefixes, 0x3 for an unknown broadcast). From every peer the relay asks for announcements
//! (`announced("/", our hop ID)`): each ACTIVE adds a route to that broadcast, each ENDED
//! removes it. A broadcast is announced onwards through one primary route, kept until that
//! route ends (then the shortest remaining one takes over and the broadcast is re-announced
//! with its hops); subscriptions and fetches go upstream through the shortest route that
//! does not lead back to the requester.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use moq_quinn::{
    Announcement, Announcements, BroadcastPath, Config, FetchRequest, Router, Session,
    SubscribeParams, TrackProducer, code, code::ErrorCode, publish::FetchWriter, publish::HopId,
    publish::TrackHandler, publish::TrackRequest, publish::TrackWriter,
};
use tokio::sync::{mpsc, watch};

use crate::auth::{Access, AccessControl, ConnectionRequest};
use crate::config::RelayConfig;
use crate::fanout::{Detach, TrackFanout, lock};
use crate::observe::{
    BroadcastStatus, HandshakeStatus, LinkState, MemoryStatus, Observer, Sample, Status, Totals,
    TrackStatus,
};
use crate::redact::{clip, log_refusal};
use moq_quinn::{publish::CacheBudget, publish::GroupCache};

/// Announcements from one peer waiting for its task.
const ANNOUNCED_BACKLOG: usize = 64;

/// How long a fetch forwarded upstream may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Identifies a peer of this relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The relay's routing and fan-out state, shared by its listeners and upstream links.
/// Cloning gives another handle.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("hop", &self.inner.hop)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// Itself, for the tasks it starts (the failover grace timers).
    me: Weak<Inner>,
    hop: HopId,
    config: RelayConfig,
    access: Arc<dyn AccessControl>,
    state: Mutex<State>,
    /// Set (with the GOAWAY URI) when the relay shuts down.
    shutdown: watch::Sender<Option<String>>,
    /// Bumped whenever a peer leaves (for the drain).
    peers_left: watch::Sender<u64>,
    /// Bytes cached over every track, against `cache.total_bytes`.
    cache_total: Arc<CacheBudget>,
    /// The relay's held bytes as last summed, and when (see `Relay::held_bytes`).
    held: Mutex<Option<(std::time::Instant, u64)>>,
    /// Every change to what peers are told, sent under the state lock in table order; each
    /// peer's task applies them to its own router (see `Change`).
    feed: tokio::sync::broadcast::Sender<Change>,
    /// Requests open on each route for each downstream peer (see `Share`). Taken with the
    /// state lock held or alone, never the other way round.
    shares: Mutex<HashMap<(PeerId, PeerId), usize>>,
    /// What only the relay counts, and its history (see `observe`).
    observer: Observer,
    /// Each listener's handshake counters, by transport.
    handshakes: Mutex<Vec<(&'static str, HandshakeSource)>>,
    /// When the relay started.
    started: std::time::Instant,
}

/// Reads one listener's handshake counters.
pub(crate) type HandshakeSource = Box<dyn Fn() -> HandshakeStatus + Send + Sync>;

/// One request a downstream peer has open on a route (`upstream.max_requests_per_peer`):
/// counted while this lives.
struct Share {
    relay: Weak<Inner>,
    key: (PeerId, PeerId),
}

impl Share {
    /// A share of `route` for `requester`, if it has fewer than the limit open there.
    fn take(relay: &Arc<Inner>, requester: PeerId, route: PeerId) -> Option<Self> {
        let key = (requester, route);
        let mut shares = lock(&relay.shares);
        let held = shares.entry(key).or_insert(0);
        if *held >= relay.config.upstream.max_requests_per_peer {
            return None;
        }
        *held += 1;
        Some(Self {
            relay: Arc::downgrade(relay),
            key,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.upgrade() {
            let mut shares = lock(&relay.shares);
            if let Some(held) = shares.get_mut(&self.key) {
                *held -= 1;
                if *held == 0 {
                    shares.remove(&self.key);
                }
            }
        }
    }
}

/// Changes the feed keeps for peers that have not applied them yet; a peer further behind
/// reads the whole table again.
const FEED_CAPACITY: usize = 1024;

/// A change to what peers are told of one broadcast. The table sends it under its lock, in
/// O(1) whatever the number of peers; each peer's task applies it to that peer's router.
#[derive(Clone, Debug)]
struct Change {
    /// The table's version after this change.
    version: u64,
    path: BroadcastPath,
    /// Announced onwards with these hops to every peer but the primary route's (which is
    /// told it ended); `None`: the broadcast ended.
    route: Option<(Vec<HopId>, PeerId)>,
}

/// How long a sum of the held bytes stands for admission: accepting a connection does not
/// sum every peer's ledger each time.
const HELD_REFRESH: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    next_peer: u64,
    next_fanout: u64,
    /// Numbers routes in the order they were announced (the newest wins a tie).
    next_route: u64,
    /// Numbers the times a broadcast lost its last route (see `Origin::orphaned`).
    next_orphan: u64,
    /// Changes sent on the feed so far.
    version: u64,
    peers: HashMap<PeerId, Peer>,
    origins: HashMap<BroadcastPath, Origin>,
    /// The sessions that ended, summed (with those still open, the relay's totals).
    retired: Totals,
}

struct Peer {
    session: Session,
    transport: &'static str,
    /// Nothing received from it for `relay.liveness_ms`: its routes lose to live ones.
    silent: bool,
}

/// One way to reach a broadcast: the peer that announced it, with its hops.
#[derive(Clone, Debug)]
struct Route {
    peer: PeerId,
    /// Which of the peer's announce interests reported it.
    interest: usize,
    hops: Vec<HopId>,
    /// When it was announced (`State::next_route`): of two routes as short, from live
    /// peers, the newer wins, so a publisher that restarts or takes over is followed.
    since: u64,
}

struct Origin {
    routes: Vec<Route>,
    /// The route the broadcast is announced through.
    primary: PeerId,
    /// The hops announced onwards: the primary route's, then ours.
    hops: Vec<HopId>,
    /// Tracks being relayed, by name.
    tracks: HashMap<String, TrackFanout>,
    /// Set (to a number of `State::next_orphan`) while the broadcast has no route but is
    /// held for `relay.failover_grace_ms`, its subscriptions waiting for a new publisher.
    orphaned: Option<u64>,
}

impl Origin {
    /// The best route that does not lead back to `requester`: from a live peer before a
    /// silent one, then the shortest, then the newest.
    fn best_route(
        &self,
        requester: Option<PeerId>,
        peers: &HashMap<PeerId, Peer>,
    ) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| Some(r.peer) != requester)
            .min_by_key(|r| {
                let silent = peers.get(&r.peer).is_none_or(|p| p.silent);
                (silent, r.hops.len(), std::cmp::Reverse(r.since))
            })
    }

    /// The route to use now for what uses `current` (the primary, or a fan-out whose route
    /// never leads back to `requester`). A working route is kept, so routes do not flap
    /// as shorter ones appear, unless a newer route with the same hops comes from a live
    /// peer: the same publisher restarted, or a second one taking over. A route that is
    /// gone or silent gives way to the best one.
    fn follow(
        &self,
        current: PeerId,
        requester: Option<PeerId>,
        peers: &HashMap<PeerId, Peer>,
    ) -> Option<&Route> {
        let live = |r: &Route| peers.get(&r.peer).is_some_and(|p| !p.silent);
        match self.routes.iter().find(|r| r.peer == current) {
            Some(now) if live(now) => self
                .routes
                .iter()
                .filter(|r| Some(r.peer) != requester && live(r))
                .filter(|r| r.hops == now.hops && r.since > now.since)
                .max_by_key(|r| r.since)
                .or(Some(now)),
            _ => self.best_route(requester, peers),
        }
    }
}

/// What a caller learns about the relay's table (for logs and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastInfo {
    /// The broadcast.
    pub path: BroadcastPath,
    /// The hops announced onwards (ending with ours).
    pub hops: Vec<HopId>,
    /// How many routes lead to it.
    pub routes: usize,
    /// Tracks being relayed, with their cached group sequences.
    pub tracks: Vec<(String, Vec<u64>)>,
}

/// The fallback handler of one peer's router: every subscription and fetch from that peer.
struct PeerHandler {
    relay: Weak<Inner>,
    peer: PeerId,
    access: Access,
}

impl PeerHandler {
    fn refused(&self, what: &'static str, why: &'static str, path: &BroadcastPath) {
        if let Some(relay) = self.relay.upgrade() {
            relay
                .observer
                .refused(what, why, self.peer.to_string(), Some(path.as_str()));
        }
    }
}

impl TrackHandler for PeerHandler {
    fn serve_track(&self, request: TrackRequest, writer: TrackWriter) {
        if !self.access.may_subscribe(&request.path) {
            log_refusal!(tracing::Level::INFO, peer = %self.peer, path = %clip(request.path.as_str()), "subscribe refused: unauthorized");
            self.refused("subscribe", "unauthorized", &request.path);
            writer.reject(code::subscribe::UNAUTHORIZED);
            return;
        }
        match self.relay.upgrade() {
            Some(relay) => relay.subscribe(self.peer, request, writer),
            None => writer.reject(code::subscribe::INTERNAL),
        }
    }

    fn serve_fetch(&self, request: FetchRequest, writer: FetchWriter) {
        if !self.access.may_subscribe(&request.path) {
            // The Fetch stream has no Unauthorized code: Internal, as for "not available".
            log_refusal!(tracing::Level::INFO, peer = %self.peer, path = %clip(request.path.as_str()), "fetch refused: unauthorized");
            self.refused("fetch", "unauthorized", &request.path);
            writer.reject(code::fetch::INTERNAL);
            return;
        }
        match self.relay.upgrade() {
            Some(relay) => relay.fetch(self.peer, request, writer),
            None => writer.reject(code::fetch::INTERNAL),
        }
    }
}

/// A random hop ID from the operating system's generator: non-zero, below 2^31 (a 4-byte
/// varint). Should the generator fail, a relay still needs an ID: the process ID then.
fn random_hop() -> HopId {
    let mut bytes = [0u8; 4];
    let raw = match getrandom::getrandom(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "no randomness for the hop ID: using the process ID");
            std::process::id()
        }
    };
    HopId(u64::from(raw % ((1 << 31) - 1)) + 1)
}

impl Relay {
    /// A relay with no peers yet. Its hop ID is `config.relay.hop_id`, or random.
    pub fn new(config: RelayConfig, access: Arc<dyn AccessControl>) -> Self {
        let hop = config.relay.hop_id.map_or_else(random_hop, HopId);
        let cache_total = CacheBudget::new(config.cache.total_bytes);
        Self {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                hop,
                config,
                access,
                state: Mutex::new(State::default()),
                shutdown: watch::channel(None).0,
                peers_left: watch::channel(0).0,
                cache_total,
                held: Mutex::new(None),
                feed: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
                shares: Mutex::new(HashMap::new()),
                observer: Observer::default(),
                handshakes: Mutex::new(Vec::new()),
                started: std::time::Instant::now(),
            }),
        }
    }

    /// This relay's hop ID.
    pub fn hop_id(&self) -> HopId {
        self.inner.hop
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// The session configuration for every peer: the configured limits, the drain time,
    /// and unannounced paths passed to the relay (so it can answer 0x4 or 0x3 itself).
    pub fn session_config(&self) -> Config {
        let limits = &self.inner.config.limits;
        let mut config = Config::default();
        config.max_incoming_subscriptions = limits.max_subscriptions_per_session;
        config.max_queued_bytes_per_subscription = limits.max_queued_bytes_per_subscriber;
        config.max_queued_bytes = limits.max_queued_bytes_per_session;
        config.max_announce_entries = limits.max_announcements_per_session;
        config.limits.max_string_len = limits.max_string_len;
        // Control messages are a path, a name and a few numbers: a few KiB at most.
        config.limits.max_message_size = 64 * 1024;
        config.max_buffered_control_bytes = limits.max_control_bytes_per_session;
        config.max_unread_bytes = limits.max_unread_bytes_per_session;
        config.incomplete_message_timeout =
            Duration::from_millis(limits.incomplete_message_timeout_ms);
        config.max_incoming_announce_streams = limits.max_announce_streams;
        config.announce_rate = limits.announce_rate;
        config.announce_burst = limits.announce_burst;
        config.goaway_timeout = self.inner.config.drain_timeout();
        config.serve_unannounced = true;
        config.max_connection_bytes = limits.max_connection_bytes;
        config.frame_stall_timeout = Duration::from_millis(limits.frame_stall_timeout_ms);
        config.probe_padding = limits.probe_padding;
        config.probe_padding_max_rate = limits.probe_padding_max_rate;
        config.probe_padding_burst = limits.probe_padding_burst_bytes;
        config.probe_padding_refill_rate = limits.probe_padding_refill_rate;
        config
    }

    /// The session configuration for a link this relay dials to an upstream relay:
    /// [`Relay::session_config`] with the `[upstream]` limits.
    pub fn link_config(&self) -> Config {
        let upstream = &self.inner.config.upstream;
        let mut config = self.session_config();
        config.max_connection_bytes = upstream.max_connection_bytes;
        config.max_announce_entries = upstream.max_announcements;
        config.announce_rate = upstream.announce_rate;
        config.announce_burst = upstream.announce_burst;
        config
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        lock(&self.inner.state).peers.len()
    }

    /// Whether a new connection may come in: not shutting down, below
    /// `limits.max_sessions`, and what the relay holds (see [`Relay::held_bytes`]) below
    /// `limits.max_total_bytes`.
    pub fn accepting(&self) -> bool {
        let limits = &self.inner.config.limits;
        self.inner.shutdown.borrow().is_none()
            && self.peer_count() < limits.max_sessions
            && self.held_bytes_recent() < limits.max_total_bytes as u64
    }

    /// What the relay holds, server-wide: every peer's ledger (see
    /// [`moq_quinn::SessionStats::ledger`]) plus the group caches.
    pub fn held_bytes(&self) -> u64 {
        let sessions: Vec<Session> = lock(&self.inner.state)
            .peers
            .values()
            .map(|p| p.session.clone())
            .collect();
        let ledgers: u64 = sessions.iter().map(|s| s.stats().ledger.total()).sum();
        ledgers + self.cached_bytes() as u64
    }

    /// [`Relay::held_bytes`], summed at most every [`HELD_REFRESH`].
    fn held_bytes_recent(&self) -> u64 {
        let now = std::time::Instant::now();
        if let Some((at, held)) = *lock(&self.inner.held)
            && now.duration_since(at) < HELD_REFRESH
        {
            return held;
        }
        let held = self.held_bytes();
        *lock(&self.inner.held) = Some((now, held));
        held
    }

    /// The broadcasts the relay knows, sorted by path.
    pub fn broadcasts(&self) -> Vec<BroadcastInfo> {
        let state = lock(&self.inner.state);
        let mut list: Vec<_> = state
            .origins
            .iter()
            .map(|(path, o)| {
                let mut tracks: Vec<_> = o
                    .tracks
                    .iter()
                    .map(|(name, f)| {
                        let seqs = f.producer.cached_sequences().iter().map(|s| s.0).collect();
                        (name.clone(), seqs)
                    })
                    .collect();
                tracks.sort();
                BroadcastInfo {
                    path: path.clone(),
                    hops: o.hops.clone(),
                    routes: o.routes.len(),
                    tracks,
                }
            })
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }

    /// Each peer's session statistics (`queued_bytes` is what the relay holds for that
    /// peer's subscriptions), by peer ID.
    pub fn peer_stats(&self) -> Vec<(PeerId, moq_quinn::SessionStats)> {
        let sessions: Vec<(PeerId, Session)> = lock(&self.inner.state)
            .peers
            .iter()
            .map(|(id, p)| (*id, p.session.clone()))
            .collect();
        let mut stats: Vec<_> = sessions
            .into_iter()
            .map(|(id, s)| (id, s.stats()))
            .collect();
        stats.sort_by_key(|(id, _)| *id);
        stats
    }

    /// Bytes cached over every relayed track (payload plus 64 bytes per frame).
    pub fn cached_bytes(&self) -> usize {
        self.inner.cache_total.bytes()
    }

    /// Decides what a connection may do (the access-control hook) and builds the router
    /// its session will serve. Call [`Relay::attach`] with the session once it exists.
    pub fn prepare(&self, request: &ConnectionRequest) -> PreparedPeer {
        let access = self.inner.access.check(request);
        self.prepare_with(access)
    }

    /// Like [`Relay::prepare`] with a given access (upstream relays get [`Access::all`]).
    pub fn prepare_with(&self, access: Access) -> PreparedPeer {
        let id = {
            let mut state = lock(&self.inner.state);
            state.next_peer += 1;
            PeerId(state.next_peer)
        };
        let handler: Arc<dyn TrackHandler> = Arc::new(PeerHandler {
            relay: Arc::downgrade(&self.inner),
            peer: id,
            access: access.clone(),
        });
        let router = Router::new();
        router.set_fallback(handler.clone());
        PreparedPeer {
            id,
            router,
            access,
            handler,
        }
    }

    /// Adds a peer whose session serves `prepared.router`, and runs it until its session
    /// ends: its announcements become routes, and what it may see is announced to it.
    /// Resolves when the session has ended and the peer is gone from the tables.
    pub async fn attach(&self, prepared: PreparedPeer, session: Session) {
        let PreparedPeer {
            id,
            router,
            access,
            handler,
        } = prepared;
        let transport = session.connection_info().transport;
        if let Some(reason) = access.refusal() {
            let remote = session.remote_addr();
            log_refusal!(tracing::Level::INFO, peer = %id, ?remote, %reason, "connection refused: unauthorized (session code 0x2)");
            let who = remote.map_or_else(|| id.to_string(), |r| r.to_string());
            self.inner
                .observer
                .refused("connection", "unauthorized", who, None);
            session.close(code::session::UNAUTHORIZED, &clip(reason));
            // Give the close a moment to leave before the session is dropped.
            let _ = tokio::time::timeout(Duration::from_secs(1), session.closed()).await;
            return;
        }
        tracing::info!(peer = %id, remote = ?session.remote_addr(), transport, "session started");
        self.inner.observer.session_started(transport);
        // Subscribed before the peer is in the table: no change after its first reading of
        // the table is missed.
        let feed = self.inner.feed.subscribe();
        self.inner.add_peer(
            id,
            Peer {
                session: session.clone(),
                transport: session.connection_info().transport,
                silent: false,
            },
        );
        let watched = session.clone();
        let announcer = Announcer {
            peer: id,
            router,
            handler,
            access: access.clone(),
            feed,
            version: 0,
        };
        self.inner
            .clone()
            .run_peer(id, session, access, announcer)
            .await;
        self.inner.remove_peer(id, &watched.stats());
        self.inner.peers_left.send_modify(|n| *n += 1);
        let reason = match tokio::time::timeout(Duration::from_secs(1), watched.closed()).await {
            Ok(reason) => reason.to_string(),
            Err(_) => "still closing".to_owned(),
        };
        tracing::info!(peer = %id, %reason, "session ended");
    }

    /// Sends GOAWAY (with `config.relay.next_session_uri`) to every peer, stops taking new
    /// ones, and waits until they have left or the drain timeout passed. Sessions still
    /// open then are closed.
    pub async fn shutdown(&self) {
        self.begin_drain();
        let deadline = tokio::time::Instant::now() + self.inner.config.drain_timeout();
        let mut left = self.inner.peers_left.subscribe();
        while self.peer_count() > 0 {
            tokio::select! {
                _ = left.changed() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let remaining: Vec<Session> = lock(&self.inner.state)
            .peers
            .values()
            .map(|p| p.session.clone())
            .collect();
        if !remaining.is_empty() {
            tracing::info!(
                peers = remaining.len(),
                "drain timeout: closing the remaining sessions"
            );
        }
        for session in remaining {
            session.close(code::session::GOAWAY_TIMEOUT, "relay shutting down");
        }
    }

    /// Starts a drain without waiting for it: GOAWAY (with `config.relay.next_session_uri`)
    /// to every peer and no new ones. [`Relay::shutdown`] (or the program, which waits for
    /// [`Relay::shutting_down`]) finishes it. False if a drain had already started.
    pub fn begin_drain(&self) -> bool {
        let uri = self.inner.config.relay.next_session_uri.clone();
        let started = self.inner.shutdown.send_if_modified(|now| {
            if now.is_some() {
                return false;
            }
            *now = Some(uri.clone());
            true
        });
        if started {
            tracing::info!(%uri, peers = self.peer_count(), "draining: GOAWAY to every peer");
        }
        started
    }

    /// Adds a listener's handshake counters to [`Relay::status`].
    pub(crate) fn add_handshake_source(&self, transport: &'static str, source: HandshakeSource) {
        lock(&self.inner.handshakes).push((transport, source));
    }

    /// Records the state of the link to an upstream relay (`url` without credentials).
    pub(crate) fn link_state(&self, url: &str, state: LinkState) {
        self.inner.observer.link(url, state);
    }

    /// Counts a refusal, for metrics and the status page.
    pub(crate) fn refused(
        &self,
        what: &'static str,
        why: &'static str,
        who: String,
        path: Option<&str>,
    ) {
        self.inner.observer.refused(what, why, who, path);
    }

    /// A snapshot of the relay: sessions, totals, memory, subscriptions, links, refusals,
    /// and its `top` broadcasts (by subscribers, then bitrate, then path) with their tracks.
    pub fn status(&self, top: usize) -> Status {
        let mut status = self.inner.snapshot().0;
        status.broadcasts.truncate(top);
        status
    }

    /// Samples the relay's history (once a second; [`crate::RelayServer`] does it), keeping
    /// its `top` broadcasts in each sample.
    pub fn sample(&self, top: usize) {
        let (status, mut rtts) = self.inner.snapshot();
        self.inner.observer.sample(status, &mut rtts, top);
    }

    /// The last five minutes, one [`Sample`] a second, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.inner.observer.history()
    }

    /// Resolves once [`Relay::shutdown`] has started.
    pub async fn shutting_down(&self) {
        let mut rx = self.inner.shutdown.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// Whether [`Relay::shutdown`] has started.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.borrow().is_some()
    }
}

/// A peer about to connect: its ID, the router its session must serve, and its access.
pub struct PreparedPeer {
    id: PeerId,
    router: Router,
    access: Access,
    handler: Arc<dyn TrackHandler>,
}

impl std::fmt::Debug for PreparedPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPeer")
            .field("id", &self.id)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl PreparedPeer {
    /// The peer's ID.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The router its session must serve.
    pub fn router(&self) -> Router {
        self.router.clone()
    }
}

/// What one peer is told: its task's end of the feed, applied to its router.
struct Announcer {
    peer: PeerId,
    router: Router,
    handler: Arc<dyn TrackHandler>,
    access: Access,
    feed: tokio::sync::broadcast::Receiver<Change>,
    /// The table version the router stands for: changes up to it are in.
    version: u64,
}

impl Announcer {
    /// Applies one change from the feed (one it has not seen through a reading of the
    /// table).
    fn apply(&mut self, change: Change) {
        if change.version <= self.version {
            return;
        }
        self.version = change.version;
        self.tell(&change.path, change.route);
    }

    /// Publishes or withdraws `path` on the peer's router.
    fn tell(&self, path: &BroadcastPath, route: Option<(Vec<HopId>, PeerId)>) {
        match route {
            Some((_, primary)) if primary == self.peer => {
                self.router.unpublish(path);
            }
            Some((hops, _)) if self.access.may_subscribe(path) => {
                self.router
                    .publish_with_hops(path.clone(), hops, self.handler.clone());
            }
            Some(_) => {}
            None => {
                self.router.unpublish(path);
            }
        }
    }

    /// Reads the whole table (at the start, or after falling behind the feed) and brings
    /// the router to it.
    fn resync(&mut self, relay: &Inner) {
        let (version, table) = relay.table();
        let listed: std::collections::HashSet<&BroadcastPath> =
            table.iter().map(|(path, ..)| path).collect();
        for path in self.router.paths() {
            if !listed.contains(&path) {
                self.router.unpublish(&path);
            }
        }
        for (path, hops, primary) in &table {
            self.tell(path, Some((hops.clone(), *primary)));
        }
        self.version = version;
    }
}

/// One announce interest being watched: announcements come out of `rx`, a code sent on
/// `cancel` resets it.
struct Interest {
    cancel: Option<tokio::sync::oneshot::Sender<ErrorCode>>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Forwards one interest's announcements as `(interest, announcement)`; `None` at its end.
fn watch_interest(
    index: usize,
    mut announcements: Announcements,
    tx: mpsc::Sender<(usize, Option<Announcement>)>,
    mut cancel: tokio::sync::oneshot::Receiver<ErrorCode>,
) -> BoxFuture<()> {
    Box::pin(async move {
        loop {
            tokio::select! {
                next = announcements.next() => {
                    let end = next.is_none();
                    if tx.send((index, next)).await.is_err() || end {
                        return;
                    }
                }
                code = &mut cancel => {
                    if let Ok(code) = code {
                        announcements.cancel(code);
                    }
                    return;
                }
            }
        }
    })
}

/// Opens an announce interest on a peer (excluding our hop) and starts watching it.
fn open_interest(
    session: &Session,
    hop: HopId,
    id: PeerId,
    prefix: &str,
    tx: &mpsc::Sender<(usize, Option<Announcement>)>,
    watchers: &mut FuturesUnordered<BoxFuture<()>>,
    interests: &mut Vec<Interest>,
) {
    match session.announced_excluding(prefix, hop) {
        Ok(announcements) => {
            let (cancel, cancel_rx) = tokio::sync::oneshot::channel();
            watchers.push(watch_interest(
                interests.len(),
                announcements,
                tx.clone(),
                cancel_rx,
            ));
            interests.push(Interest {
                cancel: Some(cancel),
            });
        }
        Err(e) => tracing::debug!(peer = %id, error = %e, "announce interest failed"),
    }
}

impl Inner {
    /// Everything [`Relay::status`] shows, every broadcast included, and each session's RTT.
    /// The table is read under its lock; sessions and tracks are asked outside it.
    fn snapshot(&self) -> (Status, Vec<Duration>) {
        struct Seen {
            path: BroadcastPath,
            routes: usize,
            hops: usize,
            publisher: Option<Session>,
            tracks: Vec<(String, TrackProducer)>,
        }
        let (sessions, seen, retired, routes) = {
            let state = lock(&self.state);
            let sessions: Vec<(&'static str, Session)> = state
                .peers
                .values()
                .map(|p| (p.transport, p.session.clone()))
                .collect();
            let seen: Vec<Seen> = state
                .origins
                .iter()
                .map(|(path, o)| Seen {
                    path: path.clone(),
                    routes: o.routes.len(),
                    hops: o.hops.len(),
                    publisher: state.peers.get(&o.primary).map(|p| p.session.clone()),
                    tracks: o
                        .tracks
                        .iter()
                        .map(|(name, f)| (name.clone(), f.producer.clone()))
                        .collect(),
                })
                .collect();
            let routes = state.origins.values().map(|o| o.routes.len()).sum();
            (sessions, seen, state.retired, routes)
        };
        let mut status = Status {
            hop: self.hop.0,
            draining: self.shutdown.borrow().is_some(),
            uptime_s: self.started.elapsed().as_secs(),
            sessions: BTreeMap::new(),
            sessions_started: BTreeMap::new(),
            handshakes: lock(&self.handshakes)
                .iter()
                .map(|(transport, source)| (*transport, source()))
                .collect(),
            subscriptions_downstream: 0,
            subscriptions_upstream: 0,
            broadcasts_total: seen.len(),
            routes,
            totals: retired,
            memory: MemoryStatus::default(),
            fetch_cache_hits: 0,
            fetch_cache_misses: 0,
            refusals: Vec::new(),
            recent_refusals: Vec::new(),
            links: Vec::new(),
            broadcasts: Vec::with_capacity(seen.len()),
        };
        status.memory.cache = self.cache_total.bytes() as u64;
        let mut rtts = Vec::with_capacity(sessions.len());
        for (transport, session) in &sessions {
            *status.sessions.entry(transport).or_default() += 1;
            let stats = session.stats();
            status.totals.add(&stats);
            status.memory.add(&stats);
            rtts.extend(stats.rtt);
        }
        for b in seen {
            let tracks: Vec<TrackStatus> = b
                .tracks
                .iter()
                .map(|(name, producer)| {
                    let stats = producer.stats();
                    TrackStatus {
                        name: clip(name).into_owned(),
                        subscribers: stats.subscribers,
                        bitrate_bps: 0,
                        groups: stats.groups,
                        frames: stats.frames,
                        bytes: stats.bytes,
                        latest_group: producer.latest_group().map(|g| g.0),
                    }
                })
                .collect();
            status.subscriptions_upstream += tracks.len();
            let subscribers = tracks.iter().map(|t| t.subscribers).sum();
            status.subscriptions_downstream += subscribers;
            status.broadcasts.push(BroadcastStatus {
                path: clip(b.path.as_str()).into_owned(),
                routes: b.routes,
                hops: b.hops,
                publisher_rtt_ms: b
                    .publisher
                    .and_then(|s| s.stats().rtt)
                    .map(|d| d.as_secs_f64() * 1000.0),
                subscribers,
                bitrate_bps: 0,
                tracks,
            });
        }
        self.observer.fill(&mut status);
        status.broadcasts.sort_by(|a, b| {
            (b.subscribers, b.bitrate_bps)
                .cmp(&(a.subscribers, a.bitrate_bps))
                .then_with(|| a.path.cmp(&b.path))
        });
        (status, rtts)
    }

    fn add_peer(&self, id: PeerId, peer: Peer) {
        lock(&self.state).peers.insert(id, peer);
    }

    fn remove_peer(&self, id: PeerId, last: &moq_quinn::SessionStats) {
        let mut state = lock(&self.state);
        state.retired.add(last);
        let paths: Vec<(BroadcastPath, usize)> = state
            .origins
            .iter()
            .flat_map(|(path, o)| {
                o.routes
                    .iter()
                    .filter(|r| r.peer == id)
                    .map(|r| (path.clone(), r.interest))
            })
            .collect();
        for (path, interest) in paths {
            self.remove_route_locked(&mut state, &path, id, interest);
        }
        state.peers.remove(&id);
    }

    /// Tells every peer (through the feed) that `path` is announced onwards with `hops`
    /// through `primary`, or ended (`None`).
    fn announce_locked(
        &self,
        state: &mut State,
        path: &BroadcastPath,
        route: Option<(Vec<HopId>, PeerId)>,
    ) {
        state.version += 1;
        // No receiver (no peer): nothing to tell.
        let _ = self.feed.send(Change {
            version: state.version,
            path: path.clone(),
            route,
        });
    }

    /// What every peer must be told now, and the version it stands for.
    fn table(&self) -> (u64, Vec<(BroadcastPath, Vec<HopId>, PeerId)>) {
        let state = lock(&self.state);
        let table = state
            .origins
            .iter()
            .map(|(path, o)| (path.clone(), o.hops.clone(), o.primary))
            .collect();
        (state.version, table)
    }

    fn add_route(&self, path: BroadcastPath, mut route: Route) {
        let mut state = lock(&self.state);
        route.since = state.next_route;
        state.next_route += 1;
        match state.origins.get_mut(&path) {
            Some(origin) => {
                match origin.routes.iter_mut().find(|r| r.peer == route.peer) {
                    // The same peer again (new hops): it keeps its place in time.
                    Some(existing) => {
                        route.since = existing.since;
                        *existing = route;
                    }
                    None => origin.routes.push(route),
                }
                self.reroute_locked(&mut state, &path);
            }
            None => {
                tracing::info!(%path, peer = %route.peer, hops = ?route.hops, "broadcast active");
                let mut hops = route.hops.clone();
                hops.push(self.hop);
                let primary = route.peer;
                state.origins.insert(
                    path.clone(),
                    Origin {
                        routes: vec![route],
                        primary,
                        hops: hops.clone(),
                        tracks: HashMap::new(),
                        orphaned: None,
                    },
                );
                self.announce_locked(&mut state, &path, Some((hops, primary)));
            }
        }
    }

    fn remove_route(&self, path: &BroadcastPath, peer: PeerId, interest: usize) {
        let mut state = lock(&self.state);
        self.remove_route_locked(&mut state, path, peer, interest);
    }

    fn remove_route_locked(
        &self,
        state: &mut State,
        path: &BroadcastPath,
        peer: PeerId,
        interest: usize,
    ) {
        let Some(origin) = state.origins.get_mut(path) else {
            return;
        };
        let Some(at) = origin
            .routes
            .iter()
            .position(|r| r.peer == peer && r.interest == interest)
        else {
            return;
        };
        origin.routes.remove(at);
        self.reroute_locked(state, path);
    }

    /// After a change to the routes of `path` or to a peer's liveness: the best route
    /// becomes the primary (announced onwards), and every track's fan-out moves to the best
    /// route for it, re-subscribing upstream there while its subscribers stay (see
    /// docs/relay.md, "Failover"). With no route left, the broadcast is held for the grace
    /// period if it has subscribers, else it ends.
    fn reroute_locked(&self, state: &mut State, path: &BroadcastPath) {
        let State {
            origins,
            peers,
            next_orphan,
            ..
        } = &mut *state;
        let Some(origin) = origins.get_mut(path) else {
            return;
        };
        let Some(best) = origin.follow(origin.primary, None, peers).cloned() else {
            if origin.tracks.is_empty() {
                tracing::info!(%path, "broadcast ended");
                state.origins.remove(path);
                self.announce_locked(state, path, None);
            } else if origin.orphaned.is_none() {
                let orphan = *next_orphan;
                *next_orphan += 1;
                origin.orphaned = Some(orphan);
                let grace = Duration::from_millis(self.config.relay.failover_grace_ms);
                tracing::info!(%path, ?grace, "broadcast without a publisher: held for a new one");
                let relay = self.me.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    if let Some(relay) = relay.upgrade() {
                        relay.end_orphan(&path, orphan);
                    }
                });
            }
            return;
        };
        if origin.orphaned.take().is_some() {
            tracing::info!(%path, peer = %best.peer, "a new publisher took over the broadcast");
        }
        // The fan-outs follow the best route for each (not back to its first requester).
        let moves: Vec<(String, PeerId)> = origin
            .tracks
            .iter()
            .filter_map(|(name, fanout)| {
                let target = origin
                    .follow(fanout.route, Some(fanout.requester), peers)?
                    .peer;
                (target != fanout.route).then(|| (name.clone(), target))
            })
            .collect();
        for (name, target) in moves {
            let (Some(fanout), Some(peer)) = (origin.tracks.get_mut(&name), peers.get(&target))
            else {
                continue;
            };
            match peer.session.subscribe(path.clone(), &name, fanout.params) {
                Ok(upstream) => {
                    tracing::info!(%path, track = %name, from = %fanout.route, to = %target, "track moved to a new route");
                    fanout.route = target;
                    // A fan-out that has ended takes no new upstream; it is gone soon.
                    let _ = fanout.switch.send(upstream);
                }
                Err(e) => {
                    tracing::debug!(%path, track = %name, error = %e, "re-subscribing upstream failed")
                }
            }
        }
        let mut hops = best.hops.clone();
        hops.push(self.hop);
        if best.peer != origin.primary || hops != origin.hops {
            if best.peer != origin.primary {
                tracing::info!(%path, from = %origin.primary, to = %best.peer, ?hops, "broadcast rerouted");
            }
            origin.primary = best.peer;
            origin.hops = hops.clone();
            self.announce_locked(state, path, Some((hops, best.peer)));
        }
    }

    /// The grace of a broadcast without a route has passed: if no publisher came back, it
    /// ends (ENDED onwards; its fan-outs end their subscriptions with Subscribe 0x3).
    fn end_orphan(&self, path: &BroadcastPath, orphan: u64) {
        let mut state = lock(&self.state);
        if state
            .origins
            .get(path)
            .is_some_and(|o| o.orphaned == Some(orphan))
        {
            tracing::info!(%path, "broadcast ended: no publisher came back");
            state.origins.remove(path);
            self.announce_locked(&mut state, path, None);
        }
    }

    /// A peer went silent or came back: the routes through it lose to (or may again beat)
    /// the others.
    fn set_silent(&self, id: PeerId, silent: bool) {
        let mut state = lock(&self.state);
        match state.peers.get_mut(&id) {
            Some(peer) if peer.silent != silent => peer.silent = silent,
            _ => return,
        }
        // Back: its routes compete again at the next change; nothing moves now.
        if !silent {
            return;
        }
        let paths: Vec<BroadcastPath> = state
            .origins
            .iter()
            .filter(|(_, o)| o.routes.iter().any(|r| r.peer == id))
            .map(|(path, _)| path.clone())
            .collect();
        for path in paths {
            self.reroute_locked(&mut state, &path);
        }
    }

    /// A downstream subscription: join the track's fan-out, or start one with a single
    /// upstream subscription through the best route.
    fn subscribe(self: &Arc<Self>, requester: PeerId, request: TrackRequest, writer: TrackWriter) {
        let state = lock(&self.state);
        let Some(origin) = state.origins.get(&request.path) else {
            drop(state);
            tracing::debug!(peer = %requester, path = %clip(request.path.as_str()), "subscribe: no such broadcast");
            writer.reject(code::subscribe::NOT_FOUND);
            return;
        };
        let Some(producer) = origin
            .tracks
            .get(&request.track)
            .map(|f| f.producer.clone())
        else {
            let fanout_id = state.next_fanout;
            return self.subscribe_locked(state, fanout_id, requester, request, writer);
        };
        // Joined outside the relay's lock: the cache is replayed to it.
        drop(state);
        if let Err(writer) = producer.try_subscribe(writer) {
            // Closed as its last subscriber left, and so out of the table: a new fan-out.
            self.subscribe_new(requester, request, writer);
        }
    }

    /// A downstream subscription for which no running fan-out took it.
    fn subscribe_new(
        self: &Arc<Self>,
        requester: PeerId,
        request: TrackRequest,
        writer: TrackWriter,
    ) {
        let state = lock(&self.state);
        let fanout_id = state.next_fanout;
        self.subscribe_locked(state, fanout_id, requester, request, writer);
    }

    /// Starts a fan-out for `request` with one upstream subscription through the best
    /// route, `writer` its first subscriber (or refuses it).
    fn subscribe_locked(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, State>,
        fanout_id: u64,
        requester: PeerId,
        request: TrackRequest,
        writer: TrackWriter,
    ) {
        let State { origins, peers, .. } = &mut *state;
        let Some(origin) = origins.get_mut(&request.path) else {
            drop(state);
            writer.reject(code::subscribe::NOT_FOUND);
            return;
        };
        if let Some(fanout) = origin.tracks.get(&request.track) {
            let producer = fanout.producer.clone();
            drop(state);
            if let Err(writer) = producer.try_subscribe(writer) {
                writer.reject(code::subscribe::NOT_FOUND);
            }
            return;
        }
        // A new track: each costs an upstream subscription, a task and a cache, so one
        // broadcast may not have more than the cap (a peer asking for made-up names).
        if origin.tracks.len() >= self.config.limits.max_tracks_per_broadcast {
            drop(state);
            log_refusal!(tracing::Level::INFO, peer = %requester, path = %clip(request.path.as_str()), "subscribe refused: tracks per broadcast at the limit");
            self.observer.refused(
                "subscribe",
                "tracks per broadcast at the limit",
                requester.to_string(),
                Some(request.path.as_str()),
            );
            writer.reject(code::subscribe::INTERNAL);
            return;
        }
        let Some((route, session)) = origin
            .best_route(Some(requester), peers)
            .and_then(|r| Some((r.peer, peers.get(&r.peer)?.session.clone())))
        else {
            drop(state);
            writer.reject(code::subscribe::NOT_FOUND);
            return;
        };
        // One requester may not take every stream of the route.
        let Some(share) = Share::take(self, requester, route) else {
            drop(state);
            log_refusal!(tracing::Level::INFO, peer = %requester, path = %clip(request.path.as_str()), "subscribe refused: upstream requests per peer at the limit");
            self.observer.refused(
                "subscribe",
                "upstream requests per peer at the limit",
                requester.to_string(),
                Some(request.path.as_str()),
            );
            writer.reject(code::subscribe::INTERNAL);
            return;
        };
        let params = SubscribeParams {
            priority: request.params.priority,
            ordered: request.params.ordered,
            max_latency: Duration::from_millis(self.config.relay.upstream_max_latency_ms),
            start: request.params.start,
            end: None,
        };
        let upstream = match session.subscribe(request.path.clone(), &request.track, params) {
            Ok(upstream) => upstream,
            Err(e) => {
                drop(state);
                tracing::debug!(path = %request.path, error = %e, "upstream subscribe failed");
                writer.reject(code::subscribe::NOT_FOUND);
                return;
            }
        };
        let (switch, switches) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let producer = moq_quinn::TrackProducer::new(GroupCache::new(
            self.config.cache.groups,
            self.config.cache.bytes,
            Some(self.cache_total.clone()),
        ));
        origin.tracks.insert(
            request.track.clone(),
            TrackFanout {
                id: fanout_id,
                producer: producer.clone(),
                _stop: stop,
                switch,
                route,
                requester,
                // A new route is taken from its latest group.
                params: SubscribeParams {
                    start: None,
                    ..params
                },
            },
        );
        state.next_fanout += 1;
        drop(state);
        producer.subscribe(writer);

        let relay = Arc::downgrade(self);
        let (path, track) = (request.path, request.track);
        let retired = producer.clone();
        let detach: Detach = Box::new(move |force| {
            // Held as long as the fan-out runs (it owns this closure).
            let _share = &share;
            let Some(relay) = relay.upgrade() else {
                return true;
            };
            let mut state = lock(&relay.state);
            if !force && !retired.close_if_unused() {
                return false;
            }
            if let Some(origin) = state.origins.get_mut(&path)
                && origin.tracks.get(&track).is_some_and(|f| f.id == fanout_id)
            {
                origin.tracks.remove(&track);
            }
            true
        });
        let max_frames = self.config.limits.max_frames_per_group;
        tokio::spawn(crate::fanout::run(
            producer, upstream, switches, stop_rx, max_frames, detach,
        ));
    }

    /// A downstream fetch: from the cache, or forwarded upstream.
    fn fetch(self: &Arc<Self>, requester: PeerId, request: FetchRequest, mut writer: FetchWriter) {
        let state = lock(&self.state);
        let Some(origin) = state.origins.get(&request.path) else {
            drop(state);
            writer.reject(code::fetch::INTERNAL);
            return;
        };
        let fanout = origin.tracks.get(&request.track);
        let cached = fanout.and_then(|f| f.producer.cached_group(request.group));
        // The fan-out's numbers may run ahead of the publisher's (docs/relay.md, "Failover").
        let shift = fanout.map_or(0, |f| f.producer.offset());
        if let Some(frames) = cached {
            drop(state);
            tracing::debug!(path = %request.path, group = request.group.0, "fetch served from the cache");
            self.observer.fetch(true);
            for frame in frames {
                if writer.write_frame(frame).is_err() {
                    return;
                }
            }
            let _ = writer.finish();
            return;
        }
        let route = origin
            .best_route(Some(requester), &state.peers)
            .and_then(|r| Some((r.peer, state.peers.get(&r.peer)?.session.clone())));
        drop(state);
        let (Some((route, session)), Some(group)) = (route, request.group.0.checked_sub(shift))
        else {
            writer.reject(code::fetch::INTERNAL);
            return;
        };
        let Some(share) = Share::take(self, requester, route) else {
            log_refusal!(tracing::Level::INFO, peer = %requester, path = %clip(request.path.as_str()), "fetch refused: upstream requests per peer at the limit");
            self.observer.refused(
                "fetch",
                "upstream requests per peer at the limit",
                requester.to_string(),
                Some(request.path.as_str()),
            );
            writer.reject(code::fetch::INTERNAL);
            return;
        };
        let mut reader = match session.fetch(
            FetchRequest::new(
                request.path.clone(),
                &request.track,
                moq_quinn::GroupSequence(group),
            )
            .with_priority(request.priority),
        ) {
            Ok(reader) => reader,
            Err(_) => {
                writer.reject(code::fetch::INTERNAL);
                return;
            }
        };
        tracing::debug!(path = %request.path, group = request.group.0, "fetch forwarded upstream");
        self.observer.fetch(false);
        tokio::spawn(async move {
            let _share = share;
            loop {
                match tokio::time::timeout(FETCH_TIMEOUT, reader.read_frame()).await {
                    Ok(Ok(Some(frame))) => {
                        if writer.write_frame(frame).is_err() {
                            return;
                        }
                    }
                    Ok(Ok(None)) => {
                        let _ = writer.finish();
                        return;
                    }
                    Ok(Err(e)) => {
                        writer.reject(e.code().unwrap_or(code::fetch::INTERNAL));
                        return;
                    }
                    Err(_) => {
                        writer.reject(code::fetch::TIMEOUT);
                        return;
                    }
                }
            }
        });
    }

    /// Watches one peer's announcements until its session ends; sends GOAWAY when the relay
    /// shuts down.
    async fn run_peer(
        self: Arc<Self>,
        id: PeerId,
        session: Session,
        access: Access,
        mut announcer: Announcer,
    ) {
        announcer.resync(&self);
        // Bounded: while this task is busy, what the peer announces waits in the session
        // (one entry per path, see `moq_quinn::Announcements`).
        let (tx, mut announced) = mpsc::channel(ANNOUNCED_BACKLOG);
        let mut watchers: FuturesUnordered<BoxFuture<()>> = FuturesUnordered::new();
        let mut interests: Vec<Interest> = Vec::new();
        // Everything first; narrowed to the peer's publish prefixes if it oversteps them.
        open_interest(
            &session,
            self.hop,
            id,
            "/",
            &tx,
            &mut watchers,
            &mut interests,
        );
        let mut endings: FuturesUnordered<BoxFuture<(BroadcastPath, usize)>> =
            FuturesUnordered::new();
        let mut shutdown = self.shutdown.subscribe();
        let mut goaway_sent = false;
        let goaway_received = session.goaway_received();
        tokio::pin!(goaway_received);
        let mut goaway_seen = false;
        // Liveness: the bytes received, sampled a few times per window.
        let window = Duration::from_millis(self.config.relay.liveness_ms.max(1));
        let mut liveness = tokio::time::interval((window / 4).max(Duration::from_millis(50)));
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut received = session.stats().bytes_received;
        let mut heard = tokio::time::Instant::now();
        let mut silent = false;
        // A token's expiry ends the session, as on moq-relay (Session code 0x2).
        let expiry = access.expires().map(|at| {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            tokio::select! {
                _ = session.closed() => break,
                () = &mut expired => {
                    tracing::info!(peer = %id, "token expired: closing the session");
                    session.close(code::session::UNAUTHORIZED, "token expired");
                    break;
                }
                _ = liveness.tick() => {
                    let now = session.stats().bytes_received;
                    if now != received {
                        received = now;
                        heard = tokio::time::Instant::now();
                        if silent {
                            silent = false;
                            tracing::info!(peer = %id, "peer heard from again");
                            self.set_silent(id, false);
                        }
                    } else if !silent && heard.elapsed() >= window {
                        silent = true;
                        tracing::info!(peer = %id, ?window, "peer silent: its routes lose to live ones");
                        self.set_silent(id, true);
                    }
                }
                Some((index, next)) = announced.recv() => {
                    let Some(announcement) = next else { continue };
                    let path = announcement.path().clone();
                    let hops = announcement.hops().to_vec();
                    if hops.contains(&self.hop) || hops.len() >= self.config.limits.max_hops {
                        tracing::debug!(peer = %id, %path, ?hops, "announcement ignored: loop or too many hops");
                        continue;
                    }
                    if !access.may_publish(&path) {
                        if let Some(cancel) = interests.get_mut(index).and_then(|i| i.cancel.take()) {
                            log_refusal!(tracing::Level::INFO, peer = %id, path = %clip(path.as_str()), "publish refused: banned prefix (announce code 0x4)");
                            self.observer.refused("publish", "banned prefix", id.to_string(), Some(path.as_str()));
                            let _ = cancel.send(code::announce::BANNED_PREFIX);
                            if index == 0 {
                                for prefix in access.publish_prefixes() {
                                    open_interest(
                                        &session,
                                        self.hop,
                                        id,
                                        prefix.as_wire(),
                                        &tx,
                                        &mut watchers,
                                        &mut interests,
                                    );
                                }
                            }
                        }
                        continue;
                    }
                    self.add_route(path.clone(), Route { peer: id, interest: index, hops, since: 0 });
                    let mut announcement = announcement;
                    endings.push(Box::pin(async move {
                        announcement.ended().await;
                        (path, index)
                    }));
                }
                Some((path, index)) = endings.next(), if !endings.is_empty() => {
                    self.remove_route(&path, id, index);
                }
                change = announcer.feed.recv() => match change {
                    Ok(change) => announcer.apply(change),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(peer = %id, missed, "behind the announce feed: reading the table");
                        announcer.resync(&self);
                    }
                    // The relay is gone.
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                Some(()) = watchers.next(), if !watchers.is_empty() => {}
                _ = shutdown.changed(), if !goaway_sent => {
                    goaway_sent = true;
                    let uri = shutdown.borrow().clone().unwrap_or_default();
                    if let Err(e) = session.goaway(&uri) {
                        tracing::debug!(peer = %id, error = %e, "goaway failed");
                        session.close(code::session::NO_ERROR, "relay shutting down");
                    }
                }
                uri = &mut goaway_received, if !goaway_seen => {
                    goaway_seen = true;
                    // `None`: the session ended without a GOAWAY (the next turn sees it).
                    if let Some(uri) = uri {
                        tracing::info!(peer = %id, %uri, "peer sent GOAWAY: closing the session");
                        session.close(code::session::NO_ERROR, "goaway");
                    }
                }
            }
        }
    }
}

/// The [`ConnectionRequest`] for an accepted connection.
pub fn connection_request(
    info: &moq_quinn::ConnectionInfo,
    remote: Option<SocketAddr>,
) -> ConnectionRequest {
    let mut request = ConnectionRequest::new(info.transport);
    if let Some(path) = &info.path {
        request = request.with_url_path(path);
    }
    request.remote = remote;
    request.server_name = info.server_name.clone();
    request
}
