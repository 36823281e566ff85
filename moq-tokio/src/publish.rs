//! Publishing: a router of broadcasts, per-subscription track writers, group writers,
//! fetch writers, and a ready-made fan-out broadcast.
//!
//! An application publishes with [`Router`], [`Broadcast`], [`TrackProducer`] and
//! [`GroupProducer`] (at the crate's top level). This module also holds what serves a
//! subscription by hand ([`TrackHandler`], [`TrackRequest`], [`TrackWriter`],
//! [`GroupWriter`], [`FetchWriter`]), the publisher's values ([`PublisherParams`]), the
//! group cache, and the identifiers a relay needs ([`HopId`], [`SubscribeId`]).

pub use crate::cache::{
    CacheBudget, CachedGroup, DEFAULT_TRACK_CACHE_BYTES, FRAME_OVERHEAD, GroupCache,
};
pub use moq_proto::{HopId, PathPrefix, PublisherParams, SubscribeId};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use moq_proto::message::{Fetch, SubscribeParams};
use moq_proto::{BroadcastPath, EndReason, ErrorCode, GroupSequence, StreamId};

use crate::error::PublishError;
use crate::shared::{Shared, WakeKey};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A subscription to one of our tracks, as the handler sees it.
///
/// ```
/// use moq_tokio::publish::{TrackRequest, TrackWriter};
/// use moq_tokio::{Router, code};
/// Router::new().publish("/cam", |request: TrackRequest, writer: TrackWriter| {
///     println!("{} wants {} from {:?}", request.path, request.track, request.params.start);
///     writer.reject(code::subscribe::NOT_FOUND);
/// });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackRequest {
    /// The broadcast.
    pub path: BroadcastPath,
    /// The track name.
    pub track: String,
    /// The subscriber's preferences and range.
    pub params: SubscribeParams,
}

/// A fetch of one group: what [`crate::Session::fetch`] asks for, and what a
/// [`TrackHandler`] is asked to serve.
///
/// ```no_run
/// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
/// use moq_tokio::{FetchRequest, GroupSequence};
/// let frames = session.fetch(FetchRequest::new("/cam", "video", GroupSequence(9)))?.read_all().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The broadcast.
    pub path: BroadcastPath,
    /// The track name.
    pub track: String,
    /// The group.
    pub group: GroupSequence,
    /// Subscriber priority.
    pub priority: u8,
}

impl FetchRequest {
    /// A fetch of `group` of `track` in the broadcast at `path`, at priority 0.
    ///
    /// ```
    /// use moq_tokio::{FetchRequest, GroupSequence};
    /// let request = FetchRequest::new("/cam", "video", GroupSequence(12));
    /// assert_eq!(request.priority, 0);
    /// ```
    pub fn new(path: impl Into<BroadcastPath>, track: &str, group: GroupSequence) -> Self {
        Self {
            path: path.into(),
            track: track.to_owned(),
            group,
            priority: 0,
        }
    }

    /// The same at subscriber priority `priority` (higher goes first).
    ///
    /// ```
    /// use moq_tokio::{FetchRequest, GroupSequence};
    /// let request = FetchRequest::new("/cam", "video", GroupSequence(12)).with_priority(200);
    /// assert_eq!(request.priority, 200);
    /// ```
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }
}

impl From<Fetch> for FetchRequest {
    fn from(f: Fetch) -> Self {
        Self {
            path: f.path,
            track: f.track,
            group: f.group,
            priority: f.priority,
        }
    }
}

/// Serves the tracks of one broadcast. Called on the session's driver task: do not block
/// (spawn a task to produce data, or hand the writer to a [`TrackProducer`]).
///
/// ```
/// use bytes::Bytes;
/// use moq_tokio::publish::{TrackRequest, TrackWriter};
/// use moq_tokio::{Router, code};
/// // A closure is a handler: one group with one frame per subscriber of "hello".
/// let router = Router::new();
/// router.publish("/greeting", |request: TrackRequest, mut writer: TrackWriter| {
///     if request.track != "hello" {
///         return writer.reject(code::subscribe::NOT_FOUND);
///     }
///     if let Ok(mut group) = writer.open_group() {
///         let _ = group.write_frame(Bytes::from_static(b"hello"));
///         let _ = group.finish();
///     }
///     writer.finish();
/// });
/// ```
pub trait TrackHandler: Send + Sync + 'static {
    /// A peer subscribes to a track of this broadcast. Accept by using the writer (or
    /// [`TrackWriter::accept`]); refuse with [`TrackWriter::reject`] (for example
    /// `code::subscribe::NOT_FOUND` for an unknown track).
    fn serve_track(&self, request: TrackRequest, writer: TrackWriter);

    /// A peer fetches one group. The default refuses with Fetch code 0x0.
    fn serve_fetch(&self, request: FetchRequest, writer: FetchWriter) {
        let _ = request;
        writer.reject(moq_proto::code::fetch::INTERNAL);
    }
}

impl<F> TrackHandler for F
where
    F: Fn(TrackRequest, TrackWriter) + Send + Sync + 'static,
{
    fn serve_track(&self, request: TrackRequest, writer: TrackWriter) {
        self(request, writer)
    }
}

/// The broadcasts an endpoint publishes, shared by all its sessions: each session announces
/// them to peers that show interest and routes subscriptions and fetches to their handlers.
///
/// ```
/// use moq_tokio::{Broadcast, Router};
/// // One router shared by every session of an endpoint (and by both transports' servers).
/// let router = Router::new();
/// let cam = Broadcast::new();
/// let video = cam.create_track("video", 4);
/// router.publish("/cam", cam);
/// ```
#[derive(Clone, Default)]
pub struct Router {
    inner: Arc<Mutex<RouterInner>>,
}

#[derive(Default)]
struct RouterInner {
    broadcasts: HashMap<BroadcastPath, (Arc<dyn TrackHandler>, Vec<HopId>)>,
    fallback: Option<Arc<dyn TrackHandler>>,
    sessions: Vec<Weak<Shared>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("Router")
            .field("broadcasts", &inner.broadcasts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// An empty router.
    ///
    /// ```
    /// use moq_tokio::Router;
    /// let router = Router::new();
    /// assert!(router.paths().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes a broadcast that originates here, served by `handler`.
    ///
    /// ```
    /// use moq_tokio::{Broadcast, Router};
    /// let router = Router::new();
    /// let cam = Broadcast::new();
    /// let video = cam.create_track("video", 4);
    /// router.publish("/cam", cam);
    /// assert_eq!(router.paths().len(), 1);
    /// ```
    pub fn publish(&self, path: impl Into<BroadcastPath>, handler: impl TrackHandler) {
        self.publish_with_hops(path, Vec::new(), Arc::new(handler));
    }

    /// Publishes a broadcast learnt through relays: `hops` are the hop IDs it passed
    /// through, ending with ours (spec D15).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use moq_tokio::publish::HopId;
    /// use moq_tokio::{Broadcast, Router};
    /// // A broadcast learnt through relay 7, announced onwards with our hop (9) appended.
    /// Router::new().publish_with_hops("/cam", vec![HopId(7), HopId(9)], Arc::new(Broadcast::new()));
    /// ```
    pub fn publish_with_hops(
        &self,
        path: impl Into<BroadcastPath>,
        hops: Vec<HopId>,
        handler: Arc<dyn TrackHandler>,
    ) {
        let path = path.into();
        let mut inner = lock(&self.inner);
        inner
            .broadcasts
            .insert(path.clone(), (handler, hops.clone()));
        inner.sessions.retain(|s| s.strong_count() > 0);
        for session in inner.sessions.iter().filter_map(Weak::upgrade) {
            session.with(|s| {
                let _ = s.core.announce(path.clone(), hops.clone());
            });
        }
    }

    /// Withdraws a broadcast: peers learn it ended. Returns whether it was published.
    ///
    /// ```
    /// use moq_tokio::{Broadcast, BroadcastPath, Router};
    /// let router = Router::new();
    /// router.publish("/cam", Broadcast::new());
    /// assert!(router.unpublish(&BroadcastPath::new("/cam")));
    /// assert!(router.paths().is_empty());
    /// ```
    pub fn unpublish(&self, path: &BroadcastPath) -> bool {
        let mut inner = lock(&self.inner);
        let found = inner.broadcasts.remove(path).is_some();
        for session in inner.sessions.iter().filter_map(Weak::upgrade) {
            session.with(|s| {
                s.core.unannounce(path);
            });
        }
        found
    }

    /// Serves subscriptions and fetches for paths that are not published here (nothing is
    /// announced for them). Without a fallback they are refused: Subscribe code 0x3 (not
    /// found), Fetch code 0x0. Setting one turns [`moq_proto::Config::serve_unannounced`]
    /// on for every session of this router, current and future.
    ///
    /// A relay uses it to answer for broadcasts a session may not see (Subscribe code 0x4,
    /// unauthorized) or has not been told about yet.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use moq_tokio::publish::{TrackRequest, TrackWriter};
    /// use moq_tokio::{Router, code};
    /// let router = Router::new();
    /// let refuse = |_: TrackRequest, writer: TrackWriter| writer.reject(code::subscribe::UNAUTHORIZED);
    /// router.set_fallback(Arc::new(refuse));
    /// ```
    pub fn set_fallback(&self, handler: Arc<dyn TrackHandler>) {
        let mut inner = lock(&self.inner);
        inner.fallback = Some(handler);
        inner.sessions.retain(|s| s.strong_count() > 0);
        for session in inner.sessions.iter().filter_map(Weak::upgrade) {
            session.with(|s| s.core.set_serve_unannounced(true));
        }
    }

    /// The published broadcast paths.
    ///
    /// ```
    /// use moq_tokio::{Broadcast, Router};
    /// let router = Router::new();
    /// router.publish("/a", Broadcast::new());
    /// router.publish("/b", Broadcast::new());
    /// assert_eq!(router.paths().len(), 2);
    /// ```
    pub fn paths(&self) -> Vec<BroadcastPath> {
        lock(&self.inner).broadcasts.keys().cloned().collect()
    }

    pub(crate) fn attach(&self, shared: &Arc<Shared>) {
        let mut inner = lock(&self.inner);
        inner.sessions.retain(|s| s.strong_count() > 0);
        inner.sessions.push(Arc::downgrade(shared));
        let fallback = inner.fallback.is_some();
        shared.with(|s| {
            if fallback {
                s.core.set_serve_unannounced(true);
            }
            for (path, (_, hops)) in &inner.broadcasts {
                let _ = s.core.announce(path.clone(), hops.clone());
            }
        });
    }

    fn handler(&self, path: &BroadcastPath) -> Option<Arc<dyn TrackHandler>> {
        let inner = lock(&self.inner);
        inner
            .broadcasts
            .get(path)
            .map(|(h, _)| h.clone())
            .or_else(|| inner.fallback.clone())
    }

    pub(crate) fn serve_track(&self, request: TrackRequest, writer: TrackWriter) {
        match self.handler(&request.path) {
            Some(handler) => handler.serve_track(request, writer),
            None => writer.reject(moq_proto::code::subscribe::NOT_FOUND),
        }
    }

    pub(crate) fn serve_fetch(&self, request: FetchRequest, writer: FetchWriter) {
        match self.handler(&request.path) {
            Some(handler) => handler.serve_fetch(request, writer),
            None => writer.reject(moq_proto::code::fetch::INTERNAL),
        }
    }
}

/// One peer's subscription to one of our tracks. Dropping it finishes the track for that
/// subscriber (or refuses the subscription with Subscribe code 0x3 if it was never
/// accepted).
///
/// ```no_run
/// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
/// let mut group = writer.open_group()?;
/// group.write_frame(bytes::Bytes::from_static(b"frame"))?;
/// group.finish()?;
/// writer.finish();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TrackWriter {
    shared: Arc<Shared>,
    id: SubscribeId,
    /// The subscriber's values as last returned.
    seen: SubscribeParams,
    accepted: bool,
    done: bool,
    next: u64,
}

impl TrackWriter {
    pub(crate) fn new(shared: Arc<Shared>, id: SubscribeId, params: SubscribeParams) -> Self {
        Self {
            shared,
            id,
            seen: params,
            accepted: false,
            done: false,
            next: params.start.map_or(1, |s| s.0),
        }
    }

    /// The peer's subscription ID.
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// println!("serving subscription {:?}", writer.id());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> SubscribeId {
        self.id
    }

    /// The subscriber's latest preferences and range.
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// let wanted = writer.subscriber_params();
    /// println!("from group {:?}, priority {}", wanted.start, wanted.priority);
    /// # Ok(()) }
    /// ```
    pub fn subscriber_params(&self) -> SubscribeParams {
        let inner = self.shared.lock();
        inner
            .core
            .publication(self.id)
            .map_or(self.seen, |(_, _, params)| params)
    }

    /// Resolves with the subscriber's values when a SUBSCRIBE_UPDATE changes them; `None`
    /// once the subscription has ended.
    ///
    /// ```no_run
    /// # async fn demo(mut writer: moq_tokio::publish::TrackWriter) {
    /// while let Some(params) = writer.updated().await {
    ///     println!("now at priority {}", params.priority);
    /// }
    /// # }
    /// ```
    pub async fn updated(&mut self) -> Option<SubscribeParams> {
        let (shared, id) = (self.shared.clone(), self.id);
        let seen = &mut self.seen;
        std::future::poll_fn(|cx| {
            let mut inner = shared.lock();
            let params = match inner.core.publication(id) {
                Some(_) if inner.core.publication_end(id).is_some() => None,
                Some((_, _, params)) => Some(params),
                None => None,
            };
            match params {
                None => std::task::Poll::Ready(None),
                Some(params) if params != *seen => {
                    *seen = params;
                    std::task::Poll::Ready(Some(params))
                }
                Some(_) => {
                    inner.wakers.register(WakeKey::Publication(id), cx.waker());
                    std::task::Poll::Pending
                }
            }
        })
        .await
    }

    /// Resolves when the subscription ends (the subscriber left, or the session closed).
    ///
    /// ```no_run
    /// # async fn demo(mut writer: moq_tokio::publish::TrackWriter) {
    /// let why = writer.closed().await;
    /// println!("the subscription ended: {why}");
    /// # }
    /// ```
    pub async fn closed(&mut self) -> EndReason {
        self.closed_owned().await
    }

    /// Whether the subscription has ended.
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// if writer.is_closed() {
    ///     return Ok(()); // the subscriber left
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_closed(&self) -> bool {
        let inner = self.shared.lock();
        inner.core.publication_end(self.id).is_some() || inner.core.publication(self.id).is_none()
    }

    /// Like [`TrackWriter::closed`], but a future that owns what it needs, so the writer
    /// can be stored elsewhere (for example in a fan-out table) while its end is awaited.
    ///
    /// ```no_run
    /// # async fn demo(writer: moq_tokio::publish::TrackWriter) {
    /// let ended = writer.closed_owned();
    /// let table = vec![writer]; // the writer lives elsewhere now
    /// println!("ended: {}", ended.await);
    /// # }
    /// ```
    pub fn closed_owned(&self) -> impl std::future::Future<Output = EndReason> + Send + 'static {
        let (shared, id) = (self.shared.clone(), self.id);
        std::future::poll_fn(move |cx| {
            let mut inner = shared.lock();
            if let Some(reason) = inner.core.publication_end(id) {
                return std::task::Poll::Ready(reason.clone());
            }
            // Gone without a lease: its writer was dropped.
            if inner.core.publication(id).is_none() {
                return std::task::Poll::Ready(EndReason::Local);
            }
            inner.wakers.register(WakeKey::Publication(id), cx.waker());
            std::task::Poll::Pending
        })
    }

    /// Accepts with our priority, order and max latency (SUBSCRIBE_OK). Using the writer
    /// accepts with defaults if this was not called.
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use moq_tokio::publish::PublisherParams;
    /// let mut ours = PublisherParams::default();
    /// ours.priority = 10;
    /// writer.accept(ours)?;
    /// # Ok(()) }
    /// ```
    pub fn accept(&mut self, publisher: PublisherParams) -> Result<(), PublishError> {
        if self.accepted {
            return Ok(());
        }
        self.shared
            .with(|s| s.core.accept_subscribe(self.id, publisher))?;
        self.accepted = true;
        Ok(())
    }

    /// Changes our priority, order and max latency (a new SUBSCRIBE_OK).
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use moq_tokio::publish::PublisherParams;
    /// let mut ours = PublisherParams::default();
    /// ours.priority = 1; // lower it while the link is congested
    /// writer.update_publisher(ours)?;
    /// # Ok(()) }
    /// ```
    pub fn update_publisher(&mut self, publisher: PublisherParams) -> Result<(), PublishError> {
        if !self.accepted {
            return self.accept(publisher);
        }
        self.shared
            .with(|s| s.core.update_publisher(self.id, publisher))?;
        Ok(())
    }

    /// Refuses the subscription with a Subscribe code (no SUBSCRIBE_OK is sent).
    ///
    /// ```no_run
    /// # fn demo(writer: moq_tokio::publish::TrackWriter) {
    /// writer.reject(moq_tokio::code::subscribe::NOT_FOUND);
    /// # }
    /// ```
    pub fn reject(mut self, code: ErrorCode) {
        self.end_with(code);
    }

    /// Refuses (before SUBSCRIBE_OK) or aborts (after) with a Subscribe code.
    fn end_with(&mut self, code: ErrorCode) {
        self.done = true;
        let id = self.id;
        self.shared.with(|s| {
            if s.core.reject_subscribe(id, code).is_err() {
                let _ = s.core.abort_publication(id, code);
            }
        });
    }

    /// Opens the next group (one past the last opened; the first is the subscriber's start,
    /// or 1).
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use bytes::Bytes;
    /// let mut group = writer.open_group()?;
    /// group.write_frame(Bytes::from_static(b"keyframe"))?;
    /// group.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn open_group(&mut self) -> Result<GroupWriter, PublishError> {
        let seq = GroupSequence(self.next);
        self.open_group_at(seq)
    }

    /// Opens the group with this sequence.
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use moq_tokio::GroupSequence;
    /// let group = writer.open_group_at(GroupSequence(42))?;
    /// assert_eq!(group.sequence(), GroupSequence(42));
    /// # Ok(()) }
    /// ```
    pub fn open_group_at(&mut self, sequence: GroupSequence) -> Result<GroupWriter, PublishError> {
        self.accept(PublisherParams::default())?;
        let stream = self.shared.with(|s| s.core.open_group(self.id, sequence))?;
        self.next = self.next.max(sequence.0.saturating_add(1));
        Ok(GroupWriter {
            shared: self.shared.clone(),
            stream,
            sequence,
            done: false,
        })
    }

    /// Skips the next `count` groups, telling the subscriber they will not come
    /// (SUBSCRIBE_DROP, code 0).
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// // Groups 1 and 2 will not come: the subscriber is told, and the next opened is 3.
    /// writer.skip(2)?;
    /// # Ok(()) }
    /// ```
    pub fn skip(&mut self, count: u64) -> Result<(), PublishError> {
        if count == 0 {
            return Ok(());
        }
        let start = GroupSequence(self.next);
        let end = GroupSequence(self.next.saturating_add(count - 1));
        self.drop_groups(start, end, moq_proto::code::subscribe::INTERNAL)?;
        self.next = end.0.saturating_add(1);
        Ok(())
    }

    /// Starts this subscriber from `cache`: replays [`GroupCache::replay`] of its start
    /// (finished groups whole; unfinished ones so far, their writers returned to go on
    /// live) and tells it that groups from its start up to the oldest cached one will not
    /// come (SUBSCRIBE_DROP, code 0). A group outside its range is skipped.
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use moq_tokio::publish::GroupCache;
    /// let cache = GroupCache::new(4, 1 << 20, None);
    /// let still_open = writer.replay(&cache)?;
    /// # Ok(()) }
    /// ```
    pub fn replay(&mut self, cache: &GroupCache) -> Result<Vec<GroupWriter>, PublishError> {
        let SubscribeParams { start, end, .. } = self.subscriber_params();
        let mut replay = cache.replay(start).peekable();
        if let (Some(s), Some(first)) = (start, replay.peek())
            && first.sequence() > s
        {
            // Within its range: nothing past its end.
            let last = GroupSequence(first.sequence().0 - 1);
            let last = end.map_or(last, |e| e.min(last));
            if last >= s {
                self.drop_groups(s, last, moq_proto::code::subscribe::INTERNAL)?;
            }
        }
        let mut open = Vec::new();
        for cached in replay {
            match self.open_group_at(cached.sequence()) {
                Ok(mut group) => {
                    // One pass through the session for the whole group.
                    let _ = group.write_frames(cached.frames().iter().cloned());
                    if cached.is_finished() {
                        let _ = group.finish();
                    } else {
                        open.push(group);
                    }
                }
                Err(e @ PublishError::Closed) => return Err(e),
                Err(_) => {} // outside its range
            }
        }
        Ok(open)
    }

    /// Tells the subscriber that groups `start..=end` will not be delivered.
    ///
    /// ```no_run
    /// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use moq_tokio::{GroupSequence, code::ErrorCode};
    /// writer.drop_groups(GroupSequence(5), GroupSequence(7), ErrorCode(0))?;
    /// # Ok(()) }
    /// ```
    pub fn drop_groups(
        &mut self,
        start: GroupSequence,
        end: GroupSequence,
        code: ErrorCode,
    ) -> Result<(), PublishError> {
        self.accept(PublisherParams::default())?;
        self.shared
            .with(|s| s.core.drop_groups(self.id, start, end, code))?;
        Ok(())
    }

    /// Ends the track normally (FIN on the subscribe stream).
    ///
    /// ```no_run
    /// # fn demo(writer: moq_tokio::publish::TrackWriter) {
    /// writer.finish(); // the track has nothing more
    /// # }
    /// ```
    pub fn finish(mut self) {
        self.finish_inner();
    }

    fn finish_inner(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let id = self.id;
        if !self.accepted {
            // Never answered: say OK (spec: OK first), then end the track.
            let _ = self.accept(PublisherParams::default());
        }
        self.shared.with(|s| {
            let _ = s.core.finish_publication(id);
        });
    }

    /// Ends the track with a Subscribe code; open groups are reset (Group code 0x5).
    ///
    /// ```no_run
    /// # fn demo(writer: moq_tokio::publish::TrackWriter) {
    /// writer.close_with_error(moq_tokio::code::subscribe::INTERNAL);
    /// # }
    /// ```
    pub fn close_with_error(mut self, code: ErrorCode) {
        self.end_with(code);
    }
}

impl Drop for TrackWriter {
    fn drop(&mut self) {
        self.finish_inner();
        let id = self.id;
        self.shared.with(|s| {
            s.core.release_publication(id);
            // What still awaits its end (`closed_owned`) reads it as gone.
            s.wakers.wake(WakeKey::Publication(id));
        });
    }
}

/// One group we send. Dropping it without [`GroupWriter::finish`] aborts it (RESET_STREAM,
/// Group code 0x5 publish aborted): a group cut short never looks complete to a subscriber.
///
/// ```no_run
/// # fn demo(mut writer: moq_tokio::publish::TrackWriter) -> Result<(), moq_tokio::error::PublishError> {
/// let mut group = writer.open_group()?;
/// for i in 0..30u8 {
///     group.write_frame(bytes::Bytes::from(vec![i; 1000]))?;
/// }
/// group.finish()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GroupWriter {
    shared: Arc<Shared>,
    stream: StreamId,
    sequence: GroupSequence,
    done: bool,
}

impl GroupWriter {
    /// The group's sequence number.
    ///
    /// ```no_run
    /// # fn demo(mut group: moq_tokio::publish::GroupWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// println!("writing group {}", group.sequence().0);
    /// # Ok(()) }
    /// ```
    pub fn sequence(&self) -> GroupSequence {
        self.sequence
    }

    /// Queues a frame; the payload is passed to the transport without a copy. Fails once
    /// the group was cancelled by the subscriber, expired or was dropped.
    ///
    /// ```no_run
    /// # fn demo(mut group: moq_tokio::publish::GroupWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use bytes::Bytes;
    /// group.write_frame(Bytes::from_static(b"frame"))?;
    /// # Ok(()) }
    /// ```
    pub fn write_frame(&mut self, payload: Bytes) -> Result<(), PublishError> {
        if self.done {
            return Err(PublishError::Finished);
        }
        self.shared
            .with(|s| s.core.write_frame(self.stream, payload))?;
        Ok(())
    }

    /// Queues several frames at once (one pass through the session): a burst of small
    /// frames reaches the transport as a few chunks. Stops at the first that fails.
    ///
    /// ```no_run
    /// # fn demo(mut group: moq_tokio::publish::GroupWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use bytes::Bytes;
    /// let burst = (0..10).map(|i| Bytes::from(vec![i; 100]));
    /// group.write_frames(burst)?;
    /// # Ok(()) }
    /// ```
    pub fn write_frames(
        &mut self,
        payloads: impl IntoIterator<Item = Bytes>,
    ) -> Result<(), PublishError> {
        if self.done {
            return Err(PublishError::Finished);
        }
        let stream = self.stream;
        self.shared.with(|s| {
            payloads
                .into_iter()
                .try_for_each(|payload| s.core.write_frame(stream, payload))
        })?;
        Ok(())
    }

    /// Finishes the group (FIN after the queued frames).
    ///
    /// ```no_run
    /// # fn demo(mut group: moq_tokio::publish::GroupWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// group.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn finish(mut self) -> Result<(), PublishError> {
        self.done = true;
        self.shared.with(|s| s.core.finish_group(self.stream))?;
        Ok(())
    }

    /// Aborts the group with a Group code (RESET_STREAM).
    ///
    /// ```no_run
    /// # fn demo(group: moq_tokio::publish::GroupWriter) {
    /// group.cancel(moq_tokio::code::group::PUBLISH_ABORTED);
    /// # }
    /// ```
    pub fn cancel(mut self, code: ErrorCode) {
        self.done = true;
        let _ = self.shared.with(|s| s.core.abort_group(self.stream, code));
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let _ = self.shared.with(|s| {
                s.core
                    .abort_group(self.stream, moq_proto::code::group::PUBLISH_ABORTED)
            });
        }
    }
}

/// The answer to one fetch. Dropping it without [`FetchWriter::finish`] aborts the response
/// (Fetch code 0x0), so a cut-short group never looks complete to the fetcher.
///
/// ```
/// use moq_tokio::publish::{FetchWriter, TrackHandler, TrackRequest, TrackWriter};
/// use moq_tokio::FetchRequest;
/// struct Archive;
/// impl TrackHandler for Archive {
///     fn serve_track(&self, _: TrackRequest, writer: TrackWriter) {
///         writer.reject(moq_tokio::code::subscribe::NOT_FOUND);
///     }
///     fn serve_fetch(&self, request: FetchRequest, mut writer: FetchWriter) {
///         let _ = writer.write_frame(bytes::Bytes::from(format!("group {}", request.group.0)));
///         let _ = writer.finish();
///     }
/// }
/// moq_tokio::Router::new().publish("/archive", Archive);
/// ```
#[derive(Debug)]
pub struct FetchWriter {
    shared: Arc<Shared>,
    stream: StreamId,
    done: bool,
}

impl FetchWriter {
    pub(crate) fn new(shared: Arc<Shared>, stream: StreamId) -> Self {
        Self {
            shared,
            stream,
            done: false,
        }
    }

    /// Queues one frame of the group.
    ///
    /// ```no_run
    /// # fn demo(mut fetch: moq_tokio::publish::FetchWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// use bytes::Bytes;
    /// fetch.write_frame(Bytes::from_static(b"frame"))?;
    /// fetch.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn write_frame(&mut self, payload: Bytes) -> Result<(), PublishError> {
        self.shared
            .with(|s| s.core.write_fetch_frame(self.stream, payload))?;
        Ok(())
    }

    /// Ends the response normally (FIN).
    ///
    /// ```no_run
    /// # fn demo(mut fetch: moq_tokio::publish::FetchWriter) -> Result<(), moq_tokio::error::PublishError> {
    /// fetch.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn finish(mut self) -> Result<(), PublishError> {
        self.done = true;
        self.shared.with(|s| s.core.finish_fetch(self.stream))?;
        Ok(())
    }

    /// Refuses or aborts the fetch with a Fetch code (0x0 when the group is not available).
    ///
    /// ```no_run
    /// # fn demo(fetch: moq_tokio::publish::FetchWriter) {
    /// fetch.reject(moq_tokio::code::fetch::INTERNAL);
    /// # }
    /// ```
    pub fn reject(mut self, code: ErrorCode) {
        self.done = true;
        let _ = self.shared.with(|s| s.core.reject_fetch(self.stream, code));
    }
}

impl Drop for FetchWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.shared.with(|s| {
                s.core
                    .reject_fetch(self.stream, moq_proto::code::fetch::INTERNAL)
            });
        }
    }
}

/// A broadcast whose tracks fan out to every subscriber: a [`TrackHandler`] that dispatches
/// by track name to [`TrackProducer`]s, and serves fetches from their recent groups.
///
/// ```
/// use moq_tokio::{Broadcast, Router};
/// let cam = Broadcast::new();
/// let video = cam.create_track("video", 4);
/// let audio = cam.create_track("audio", 4);
/// Router::new().publish("/cam", cam);
/// ```
#[derive(Clone, Default)]
pub struct Broadcast {
    tracks: Arc<Mutex<HashMap<String, TrackProducer>>>,
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("tracks", &lock(&self.tracks).keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Broadcast {
    /// A broadcast with no tracks.
    ///
    /// ```
    /// use moq_tokio::{Broadcast, Router};
    /// let cam = Broadcast::new();
    /// Router::new().publish("/cam", cam.clone());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates (or returns) the producer of a track. It keeps its `cache` most recent
    /// groups for late joiners and fetches, up to [`DEFAULT_TRACK_CACHE_BYTES`].
    ///
    /// ```
    /// use moq_tokio::Broadcast;
    /// let cam = Broadcast::new();
    /// let video = cam.create_track("video", 8); // keeps the 8 newest groups
    /// let again = cam.create_track("video", 8);
    /// assert_eq!(video.subscriber_count(), again.subscriber_count());
    /// ```
    pub fn create_track(&self, name: &str, cache: usize) -> TrackProducer {
        self.create_track_with(
            name,
            GroupCache::new(cache, DEFAULT_TRACK_CACHE_BYTES, None),
        )
    }

    /// Creates (or returns) the producer of a track, with its own cache (limits, and a
    /// budget shared with other tracks).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use moq_tokio::Broadcast;
    /// use moq_tokio::publish::{CacheBudget, GroupCache};
    /// // Tracks that share one 64 MiB budget.
    /// let budget = CacheBudget::new(64 << 20);
    /// let cam = Broadcast::new();
    /// let video = cam.create_track_with("video", GroupCache::new(8, 16 << 20, Some(budget.clone())));
    /// let audio = cam.create_track_with("audio", GroupCache::new(8, 1 << 20, Some(budget)));
    /// ```
    pub fn create_track_with(&self, name: &str, cache: GroupCache) -> TrackProducer {
        lock(&self.tracks)
            .entry(name.to_owned())
            .or_insert_with(|| TrackProducer::new(cache))
            .clone()
    }

    /// Removes a track: new subscriptions to it are refused; current ones end.
    ///
    /// ```
    /// use moq_tokio::Broadcast;
    /// let cam = Broadcast::new();
    /// cam.create_track("video", 4);
    /// cam.remove_track("video");
    /// ```
    pub fn remove_track(&self, name: &str) {
        if let Some(track) = lock(&self.tracks).remove(name) {
            track.close();
        }
    }

    fn track(&self, name: &str) -> Option<TrackProducer> {
        lock(&self.tracks).get(name).cloned()
    }
}

impl TrackHandler for Broadcast {
    fn serve_track(&self, request: TrackRequest, writer: TrackWriter) {
        match self.track(&request.track) {
            Some(track) => track.subscribe(writer),
            None => writer.reject(moq_proto::code::subscribe::NOT_FOUND),
        }
    }

    fn serve_fetch(&self, request: FetchRequest, mut writer: FetchWriter) {
        let frames = self
            .track(&request.track)
            .and_then(|t| t.cached_group(request.group));
        match frames {
            Some(frames) => {
                for frame in frames {
                    if writer.write_frame(frame).is_err() {
                        return;
                    }
                }
                let _ = writer.finish();
            }
            None => writer.reject(moq_proto::code::fetch::INTERNAL),
        }
    }
}

/// The producer side of one track, and the one fan-out engine: groups written here go to
/// every subscriber, sharing the same `Bytes` (never copied per subscriber), and the newest
/// are kept in its cache for late joiners and fetches.
///
/// It exists apart from any session: an application creates it (through a [`Broadcast`],
/// or alone with [`TrackProducer::new`]), any number of sessions serve it, and a track read
/// from one session is published into it as it arrives with [`TrackProducer::forward`].
/// Groups are appended one after another ([`TrackProducer::append_group`]) or created by
/// number, several open at once, as a relay receives them ([`TrackProducer::create_group`]).
///
/// ```
/// use bytes::Bytes;
/// use moq_tokio::{Broadcast, Router};
/// let broadcast = Broadcast::new();
/// let clock = broadcast.create_track("clock", 4);
/// Router::new().publish("/clock", broadcast);
/// let group = clock.append_group();
/// group.write_frame(Bytes::from_static(b"12:00:00"));
/// group.finish();
/// ```
#[derive(Clone)]
pub struct TrackProducer {
    state: Arc<Mutex<TrackState>>,
}

impl std::fmt::Debug for TrackProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("TrackProducer")
            .field("subscribers", &state.subscribers.len())
            .field("last", &state.last)
            .finish_non_exhaustive()
    }
}

struct Subscriber {
    writer: TrackWriter,
    /// Its open groups (few: usually one).
    groups: Vec<GroupWriter>,
}

impl Subscriber {
    fn group(&mut self, sequence: GroupSequence) -> Option<&mut GroupWriter> {
        self.groups.iter_mut().find(|g| g.sequence() == sequence)
    }

    fn take_group(&mut self, sequence: GroupSequence) -> Option<GroupWriter> {
        let at = self.groups.iter().position(|g| g.sequence() == sequence)?;
        Some(self.groups.swap_remove(at))
    }
}

type Closing = std::pin::Pin<Box<dyn std::future::Future<Output = EndReason> + Send>>;

struct TrackState {
    subscribers: Vec<Subscriber>,
    next: u64,
    /// The group appended last (it ends when the next one is appended).
    last: Option<GroupSequence>,
    /// The highest group opened.
    highest: Option<GroupSequence>,
    /// What `forward` adds to its upstream's numbers.
    offset: u64,
    cache: GroupCache,
    closed: bool,
    /// Where a new subscriber's end is sent while someone waits in
    /// [`TrackProducer::unused`].
    watcher: Option<tokio::sync::mpsc::UnboundedSender<Closing>>,
    /// What was written so far.
    written: TrackStats,
}

/// What a [`TrackProducer`] has carried, from [`TrackProducer::stats`]: for an operator's
/// metrics (bitrate is the change of `bytes` over time).
///
/// ```
/// use moq_tokio::Broadcast;
/// let video = Broadcast::new().create_track("video", 4);
/// let stats = video.stats();
/// assert_eq!((stats.subscribers, stats.bytes), (0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackStats {
    /// Current subscribers.
    pub subscribers: usize,
    /// Groups started.
    pub groups: u64,
    /// Frames written.
    pub frames: u64,
    /// Payload bytes written.
    pub bytes: u64,
}

impl TrackProducer {
    /// A track with no broadcast around it, keeping the groups `cache` holds: for a relay, or
    /// to serve it through a [`TrackHandler`] of one's own.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// assert_eq!(track.subscriber_count(), 0);
    /// ```
    pub fn new(cache: GroupCache) -> Self {
        Self {
            state: Arc::new(Mutex::new(TrackState {
                subscribers: Vec::new(),
                next: 1,
                last: None,
                highest: None,
                offset: 0,
                cache,
                closed: false,
                watcher: None,
                written: TrackStats::default(),
            })),
        }
    }

    /// Starts the next group (sequences count from 1, as gomoqt, unless
    /// [`TrackProducer::continue_from`] said otherwise), ending the one appended before it.
    /// Each current subscriber gets a group stream; a subscriber that ended is forgotten.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let first = track.append_group();
    /// let second = track.append_group(); // ends the first
    /// assert_eq!(second.sequence().0, first.sequence().0 + 1);
    /// ```
    pub fn append_group(&self) -> GroupProducer {
        let mut state = lock(&self.state);
        let sequence = GroupSequence(state.next);
        state.next += 1;
        // The previous group ends here: in the cache and for its subscribers.
        if let Some(previous) = state.last.replace(sequence) {
            state.finish_group(previous);
        }
        state.open_group(sequence);
        GroupProducer {
            state: self.state.clone(),
            sequence,
            finished: false,
        }
    }

    /// Opens group `sequence` beside any others still open (a relay forwarding groups that
    /// arrive interleaved). Numbers appended afterwards continue above the highest one.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// use moq_tokio::GroupSequence;
    /// // Groups as a relay receives them: several open at once, by number.
    /// let seven = track.create_group(GroupSequence(7));
    /// let six = track.create_group(GroupSequence(6));
    /// seven.write_frame(Bytes::from_static(b"b"));
    /// six.write_frame(Bytes::from_static(b"a"));
    /// six.finish();
    /// seven.finish();
    /// assert_eq!(track.latest_group(), Some(GroupSequence(7)));
    /// ```
    pub fn create_group(&self, sequence: GroupSequence) -> GroupProducer {
        let mut state = lock(&self.state);
        state.next = state.next.max(sequence.0.saturating_add(1));
        state.open_group(sequence);
        GroupProducer {
            state: self.state.clone(),
            sequence,
            finished: false,
        }
    }

    /// Makes `sequence` the next group's number, the ones after counting on from it: for a
    /// publisher that continues a track after a restart or takes over from another, so that
    /// subscribers see group numbers go on increasing (for example from
    /// [`GroupSequence::from_time`]). Sequences never go back: `false`, and nothing changes,
    /// if `sequence` is not above the last group started.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// use moq_tokio::GroupSequence;
    /// // A restarted publisher goes on from a number derived from the clock.
    /// let now = std::time::SystemTime::now();
    /// // One number per 2 s group period: a restart continues above the last number.
    /// assert!(track.continue_from(GroupSequence::from_time(now, std::time::Duration::from_secs(2))));
    /// let group = track.append_group();
    /// ```
    pub fn continue_from(&self, sequence: GroupSequence) -> bool {
        let mut state = lock(&self.state);
        if state.highest.is_some_and(|highest| sequence <= highest) || sequence.0 >= 1 << 62 {
            return false;
        }
        state.next = sequence.0;
        true
    }

    /// Tells every subscriber that groups `start..=end` will not be delivered (a relay
    /// passing on its publisher's SUBSCRIBE_DROP).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// use moq_tokio::{GroupSequence, code::ErrorCode};
    /// track.drop_groups(GroupSequence(3), GroupSequence(4), ErrorCode(0));
    /// ```
    pub fn drop_groups(&self, start: GroupSequence, end: GroupSequence, code: ErrorCode) {
        let mut state = lock(&self.state);
        for sub in &mut state.subscribers {
            let _ = sub.writer.drop_groups(start, end, code);
        }
    }

    /// The number of current subscribers.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// assert_eq!(track.subscriber_count(), 0);
    /// ```
    pub fn subscriber_count(&self) -> usize {
        let mut state = lock(&self.state);
        state.subscribers.retain(|s| !s.writer.is_closed());
        state.subscribers.len()
    }

    /// Resolves once the track has no subscriber (at once if it has none): for a relay, the
    /// moment to end the subscription that feeds it. One caller at a time.
    ///
    /// ```no_run
    /// # async fn demo(track: moq_tokio::TrackProducer) {
    /// track.unused().await; // nobody watches any more
    /// track.close();
    /// # }
    /// ```
    pub async fn unused(&self) {
        use futures_util::StreamExt;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut ends: futures_util::stream::FuturesUnordered<Closing> = {
            let mut state = lock(&self.state);
            state.subscribers.retain(|s| !s.writer.is_closed());
            state.watcher = Some(tx);
            state
                .subscribers
                .iter()
                .map(|s| Box::pin(s.writer.closed_owned()) as Closing)
                .collect()
        };
        loop {
            if ends.is_empty() && self.subscriber_count() == 0 {
                return;
            }
            tokio::select! {
                Some(end) = rx.recv() => ends.push(end),
                Some(_) = ends.next(), if !ends.is_empty() => {
                    if self.subscriber_count() == 0 {
                        return;
                    }
                }
            }
        }
    }

    /// Ends the track for every subscriber, normally (the publisher has nothing more).
    /// Groups still open are aborted (Group code 0x5): a group cut short is never passed
    /// off as complete.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// group.write_frame(Bytes::from_static(b"last"));
    /// group.finish();
    /// track.finish();
    /// ```
    pub fn finish(&self) {
        self.end(None);
    }

    /// Ends the track for every subscriber with `code` (a Subscribe code).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// track.abort(moq_tokio::code::subscribe::INTERNAL);
    /// ```
    pub fn abort(&self, code: ErrorCode) {
        self.end(Some(code));
    }

    fn end(&self, code: Option<ErrorCode>) {
        let subscribers = {
            let mut state = lock(&self.state);
            state.closed = true;
            std::mem::take(&mut state.subscribers)
        };
        for mut sub in subscribers {
            for group in sub.groups.drain(..) {
                group.cancel(moq_proto::code::group::PUBLISH_ABORTED);
            }
            match code {
                None => sub.writer.finish(),
                Some(code) => sub.writer.close_with_error(code),
            }
        }
    }

    /// Ends the track for every subscriber (as [`TrackProducer::abort`] with Subscribe code
    /// 0x3, not found).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// track.close();
    /// assert!(track.close_if_unused());
    /// ```
    pub fn close(&self) {
        self.abort(moq_proto::code::subscribe::NOT_FOUND);
    }

    /// Serves one subscription. Without a start group it begins with the latest group;
    /// with one, with the first cached group at or after it. Cached groups are replayed,
    /// and those still open go on live. A closed track refuses it (Subscribe code 0x3).
    ///
    /// ```no_run
    /// # fn demo(track: moq_tokio::TrackProducer, writer: moq_tokio::publish::TrackWriter) {
    /// // In a TrackHandler: this subscriber gets the cached groups, then the live ones.
    /// track.subscribe(writer);
    /// # }
    /// ```
    pub fn subscribe(&self, writer: TrackWriter) {
        if let Err(writer) = self.try_subscribe(writer) {
            writer.reject(moq_proto::code::subscribe::NOT_FOUND);
        }
    }

    /// [`TrackProducer::subscribe`], giving the subscription back if the track is closed
    /// (for a caller with another track to offer it, such as a relay).
    ///
    /// ```no_run
    /// # fn demo(track: moq_tokio::TrackProducer, writer: moq_tokio::publish::TrackWriter) {
    /// if let Err(writer) = track.try_subscribe(writer) {
    ///     writer.reject(moq_tokio::code::subscribe::NOT_FOUND); // or offer it another track
    /// }
    /// # }
    /// ```
    pub fn try_subscribe(&self, mut writer: TrackWriter) -> Result<(), TrackWriter> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(writer);
        }
        if writer.accept(PublisherParams::default()).is_err() {
            return Ok(());
        }
        let groups = match writer.replay(&state.cache) {
            Ok(open) => open,
            Err(_) => return Ok(()),
        };
        if let Some(watcher) = &state.watcher {
            let _ = watcher.send(Box::pin(writer.closed_owned()));
        }
        state.subscribers.push(Subscriber { writer, groups });
        Ok(())
    }

    /// Closes the track if it has no subscriber, atomically with
    /// [`TrackProducer::try_subscribe`]: true if it was closed (a relay retiring a track
    /// nobody watches any more).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// assert!(track.close_if_unused(), "no subscriber: closed");
    /// ```
    pub fn close_if_unused(&self) -> bool {
        let mut state = lock(&self.state);
        state.subscribers.retain(|s| !s.writer.is_closed());
        if state.subscribers.is_empty() {
            state.closed = true;
        }
        state.closed
    }

    /// What [`TrackProducer::forward`] adds to its upstream's group numbers now (0 unless
    /// an upstream restarted its numbers).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// assert_eq!(track.offset(), 0);
    /// ```
    pub fn offset(&self) -> u64 {
        lock(&self.state).offset
    }

    /// What the track has carried so far, and its subscribers now.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// group.write_frame(Bytes::from_static(b"hello"));
    /// let stats = track.stats();
    /// assert_eq!((stats.groups, stats.frames, stats.bytes), (1, 1, 5));
    /// ```
    pub fn stats(&self) -> TrackStats {
        let mut state = lock(&self.state);
        state.subscribers.retain(|s| !s.writer.is_closed());
        TrackStats {
            subscribers: state.subscribers.len(),
            ..state.written
        }
    }

    /// The highest group number opened so far.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// assert_eq!(track.latest_group(), None);
    /// let group = track.append_group();
    /// assert_eq!(track.latest_group(), Some(group.sequence()));
    /// ```
    pub fn latest_group(&self) -> Option<GroupSequence> {
        lock(&self.state).highest
    }

    /// The shift for an upstream whose first group is `first`, now the track's offset.
    fn shift_for(&self, first: u64) -> u64 {
        let mut state = lock(&self.state);
        let shift = match state.highest {
            Some(highest) if first <= highest.0 => highest.0 + 1 - first,
            _ => 0,
        };
        if shift != 0 {
            tracing::info!(
                upstream = first,
                downstream = first + shift,
                "the new upstream's group numbers are behind: they continue from the last one"
            );
        }
        state.offset = shift;
        shift
    }

    /// A cached group's frames, if it is cached and complete or still open.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// group.write_frame(Bytes::from_static(b"a"));
    /// let sequence = group.sequence();
    /// group.finish();
    /// assert_eq!(track.cached_group(sequence), Some(vec![Bytes::from_static(b"a")]));
    /// ```
    pub fn cached_group(&self, sequence: GroupSequence) -> Option<Vec<Bytes>> {
        lock(&self.state).cache.group(sequence)
    }

    /// The sequences in the cache, oldest first.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// for _ in 0..6 {
    ///     track.append_group().finish();
    /// }
    /// assert_eq!(track.cached_sequences().len(), 4);
    /// ```
    pub fn cached_sequences(&self) -> Vec<GroupSequence> {
        lock(&self.state).cache.sequences()
    }

    /// Publishes `upstream` (a track read from any session) into this track as it arrives:
    /// each group, its frames in the batches they arrived in, its end, and the publisher's
    /// drops, until the upstream track ends (returned: `Ok(())` for a normal end). The
    /// track itself is not ended: the caller decides ([`TrackProducer::finish`],
    /// [`TrackProducer::abort`], or another upstream). Dropping the future stops it (the
    /// groups it was copying are aborted).
    ///
    /// Group numbers pass through unchanged while they are above the track's highest; when
    /// the upstream's first group is at or below it (a new publisher that started its
    /// numbers again), all its groups are shifted to follow ([`TrackProducer::offset`]), so
    /// subscribers always see increasing numbers. When a newer group overtakes the upstream's
    /// first (group streams race), the groups from the upstream's resolved start up to it are
    /// opened at once, in order, so that no subscriber's range begins after them; one that
    /// never comes is aborted. A group with more than `max_frames` frames is cut there
    /// (stopped upstream, aborted downstream).
    ///
    /// ```no_run
    /// # async fn demo(from: moq_tokio::Session, to: moq_tokio::Router) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_tokio::{Broadcast, SubscribeParams};
    /// // Re-publish a track read from one session to every session of `to`.
    /// let mut upstream = from.subscribe("/cam", "video", SubscribeParams::default())?;
    /// let broadcast = Broadcast::new();
    /// let video = broadcast.create_track("video", 4);
    /// to.publish("/cam", broadcast);
    /// match video.forward(&mut upstream, usize::MAX).await {
    ///     Ok(()) => video.finish(),
    ///     Err(_) => video.close(),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn forward(
        &self,
        upstream: &mut crate::TrackReader,
        max_frames: usize,
    ) -> Result<(), EndReason> {
        use futures_util::StreamExt;
        let mut groups = futures_util::stream::FuturesUnordered::new();
        let mut ended: Option<Result<(), EndReason>> = None;
        // Decided at the first group.
        let mut shift: Option<u64> = None;
        // Groups opened before they arrived (see below), by upstream number.
        let mut early = std::collections::BTreeMap::<u64, GroupProducer>::new();
        loop {
            if let Some(end) = &ended
                && groups.is_empty()
            {
                return end.clone();
            }
            tokio::select! {
                event = upstream.next(), if ended.is_none() => match event {
                    Ok(Some(crate::TrackEvent::Group(reader))) => {
                        let number = reader.sequence().0;
                        let shift = match shift {
                            Some(shift) => shift,
                            None => {
                                // Group streams race: the first to arrive may be newer than
                                // the upstream's first (its resolved start). Those between
                                // are opened now, in order, so that a subscriber's start,
                                // which the first group it is sent settles, covers them.
                                let start = upstream
                                    .publisher_params()
                                    .and_then(|p| p.start)
                                    .map(|s| s.0)
                                    .filter(|&s| s < number && number - s <= EARLY_MAX)
                                    .unwrap_or(number);
                                let first = self.shift_for(start);
                                for n in start..number {
                                    early.insert(n, self.create_group(GroupSequence(n + first)));
                                }
                                *shift.insert(first)
                            }
                        };
                        let group = early.remove(&number).unwrap_or_else(|| {
                            self.create_group(GroupSequence(number + shift))
                        });
                        groups.push(forward_group(reader, group, max_frames));
                    }
                    Ok(Some(crate::TrackEvent::Dropped { start, end, code })) => {
                        // Early groups among them will not come: aborted (dropped).
                        early.retain(|n, _| !(start.0..=end.0).contains(n));
                        let shift = shift.unwrap_or(0);
                        self.drop_groups(
                            GroupSequence(start.0 + shift),
                            GroupSequence(end.0 + shift),
                            code,
                        );
                    }
                    Ok(None) => ended = Some(Ok(())),
                    Err(e) => ended = Some(Err(e)),
                },
                Some(()) = groups.next(), if !groups.is_empty() => {}
            }
        }
    }
}

/// Most frames forwarded in one write: what arrived together goes downstream together.
const BATCH: usize = 256;

/// Most groups [`TrackProducer::forward`] opens ahead of their arrival: those between the
/// upstream's resolved start and a newer first group that overtook them.
const EARLY_MAX: u64 = 16;

/// Copies one upstream group into `group` (see [`TrackProducer::forward`]).
async fn forward_group(mut reader: crate::GroupReader, group: GroupProducer, max_frames: usize) {
    let mut count = 0usize;
    let mut batch = Vec::new();
    loop {
        let first = match reader.read_frame().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return group.finish(),
            Err(e) => return group.abort(group_code(&e)),
        };
        batch.clear();
        batch.push(first);
        let mut end = None;
        while batch.len() < BATCH && end.is_none() {
            match reader.try_read_frame() {
                None => break,
                Some(Ok(Some(frame))) => batch.push(frame),
                Some(Ok(None)) => end = Some(Ok(())),
                Some(Err(e)) => end = Some(Err(e)),
            }
        }
        count += batch.len();
        if count > max_frames {
            tracing::info!(
                group = group.sequence().0,
                max_frames,
                "upstream group over the frame limit: cut off"
            );
            reader.cancel(moq_proto::code::group::INTERNAL);
            batch.truncate(batch.len() - (count - max_frames));
            group.write_frames(batch.drain(..));
            return group.abort(moq_proto::code::group::PUBLISH_ABORTED);
        }
        group.write_frames(batch.drain(..));
        match end {
            Some(Ok(())) => return group.finish(),
            Some(Err(e)) => return group.abort(group_code(&e)),
            None => {}
        }
    }
}

/// The Group code passed on when an upstream group ends abnormally.
fn group_code(err: &EndReason) -> ErrorCode {
    match err {
        EndReason::PeerReset(c) => *c,
        EndReason::Expired => moq_proto::code::group::EXPIRED,
        // The upstream session went away mid-group; ours is not closing.
        _ => moq_proto::code::group::PUBLISH_ABORTED,
    }
}

impl TrackState {
    fn open_group(&mut self, sequence: GroupSequence) {
        self.written.groups += 1;
        self.highest = Some(self.highest.map_or(sequence, |h| h.max(sequence)));
        self.cache.begin(sequence);
        self.subscribers.retain_mut(|sub| {
            match sub.writer.open_group_at(sequence) {
                Ok(group) => {
                    sub.groups.push(group);
                    true
                }
                Err(PublishError::Command(_)) => true, // outside its range: skip this group
                Err(PublishError::Closed | PublishError::Finished) => false,
            }
        });
    }

    fn finish_group(&mut self, sequence: GroupSequence) {
        self.cache.finish(sequence);
        for sub in &mut self.subscribers {
            if let Some(group) = sub.take_group(sequence) {
                let _ = group.finish();
            }
        }
    }
}

/// A group being produced on a [`TrackProducer`]. Dropping it without
/// [`GroupProducer::finish`] aborts the group for every subscriber (Group code 0x5) and
/// drops it from the cache. Appending the next group finishes this one for the subscribers
/// still on it.
///
/// ```
/// use bytes::Bytes;
/// use moq_tokio::Broadcast;
/// let video = Broadcast::new().create_track("video", 4);
/// let group = video.append_group();
/// group.write_frame(Bytes::from_static(b"keyframe"));
/// group.write_frame(Bytes::from_static(b"delta"));
/// group.finish();
/// ```
#[must_use = "a group dropped unfinished is aborted"]
pub struct GroupProducer {
    state: Arc<Mutex<TrackState>>,
    sequence: GroupSequence,
    finished: bool,
}

impl std::fmt::Debug for GroupProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupProducer")
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl GroupProducer {
    /// The group's sequence number.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// assert_eq!(group.sequence().0, 1);
    /// ```
    pub fn sequence(&self) -> GroupSequence {
        self.sequence
    }

    /// Writes a frame to every subscriber of the group (the same `Bytes`, no copy).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// group.write_frame(Bytes::from_static(b"frame"));
    /// ```
    pub fn write_frame(&self, payload: Bytes) {
        let mut state = lock(&self.state);
        let sequence = self.sequence;
        state.written.frames += 1;
        state.written.bytes += payload.len() as u64;
        state.cache.push(sequence, std::slice::from_ref(&payload));
        for sub in &mut state.subscribers {
            if let Some(group) = sub.group(sequence)
                && group.write_frame(payload.clone()).is_err()
            {
                sub.take_group(sequence);
            }
        }
    }

    /// Writes frames to every subscriber of the group in one pass (the same `Bytes`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// group.write_frames([Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
    /// assert_eq!(track.stats().frames, 2);
    /// ```
    pub fn write_frames(&self, frames: impl IntoIterator<Item = Bytes>) {
        let frames: Vec<Bytes> = frames.into_iter().collect();
        let mut state = lock(&self.state);
        let sequence = self.sequence;
        state.written.frames += frames.len() as u64;
        state.written.bytes += frames.iter().map(|f| f.len() as u64).sum::<u64>();
        state.cache.push(sequence, &frames);
        for sub in &mut state.subscribers {
            if let Some(group) = sub.group(sequence)
                && group.write_frames(frames.iter().cloned()).is_err()
            {
                // Dropped for being too slow, expired or stopped by the subscriber.
                sub.take_group(sequence);
            }
        }
    }

    /// Finishes the group for every subscriber.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// group.write_frame(Bytes::from_static(b"frame"));
    /// group.finish();
    /// ```
    pub fn finish(mut self) {
        self.finished = true;
        lock(&self.state).finish_group(self.sequence);
    }

    /// Aborts the group for every subscriber with `code` (a Group code) and drops it from
    /// the cache.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::TrackProducer;
    /// use moq_tokio::publish::GroupCache;
    /// let track = TrackProducer::new(GroupCache::new(4, 1 << 20, None));
    /// let group = track.append_group();
    /// let sequence = group.sequence();
    /// group.abort(moq_tokio::code::group::PUBLISH_ABORTED);
    /// assert_eq!(track.cached_group(sequence), None);
    /// ```
    pub fn abort(mut self, code: ErrorCode) {
        self.finished = true;
        let mut state = lock(&self.state);
        let sequence = self.sequence;
        state.cache.abort(sequence);
        for sub in &mut state.subscribers {
            if let Some(group) = sub.take_group(sequence) {
                group.cancel(code);
            }
        }
    }
}

impl Drop for GroupProducer {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut state = lock(&self.state);
        let sequence = self.sequence;
        state.cache.abort(sequence);
        for sub in &mut state.subscribers {
            if let Some(group) = sub.take_group(sequence) {
                group.cancel(moq_proto::code::group::PUBLISH_ABORTED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_continues_from_a_later_sequence_and_never_goes_back() {
        let broadcast = Broadcast::new();
        let track = broadcast.create_track("t", 4);
        let first = track.append_group();
        assert_eq!(first.sequence(), GroupSequence(1));
        first.write_frame(Bytes::from_static(b"one"));
        // A restarted publisher continues from the clock, say.
        assert!(track.continue_from(GroupSequence(100)));
        let later = track.append_group();
        assert_eq!(later.sequence(), GroupSequence(100));
        later.write_frame(Bytes::from_static(b"hundred"));
        assert!(!track.continue_from(GroupSequence(100)), "never back");
        assert!(!track.continue_from(GroupSequence(50)));
        assert_eq!(track.append_group().sequence(), GroupSequence(101));
        // The group before the jump ended when the next began: it is whole in the cache.
        assert_eq!(
            track.cached_group(GroupSequence(1)),
            Some(vec![Bytes::from_static(b"one")])
        );
        assert_eq!(
            track.cached_group(GroupSequence(100)),
            Some(vec![Bytes::from_static(b"hundred")])
        );
    }
}
