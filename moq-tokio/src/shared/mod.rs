//! State shared by the session handle, its readers and writers, and the driver task: the
//! sans-IO core under a lock, and where each event goes.
//!
//! It knows none of the handles: an event that starts something (a group, an announcement,
//! a request to serve) goes out as the parts its handle is made from, by the reader of the
//! channel (`subscribe`, `announce`) or by the driver, which calls the application's
//! handlers (`driver`). So the modules depend one way: `shared` below the handles, the
//! driver and the session above them.
//!
//! Its two halves toward the transport: [`send`] carries out the core's stream commands
//! (a write goes to the transport at once when its stream is idle), and [`source`] is how
//! a reader pulls its frames (its transport read and the core's decoding, in one crossing
//! of the lock).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use moq_proto::message::SubscribeParams;
use moq_proto::{
    BroadcastPath, CloseReason, Dir, ErrorCode, Event, StreamId, SubscribeId, TransportStats,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};

pub(crate) mod send;
pub(crate) mod source;

use crate::transport::ConnectionInfo;
use send::SendQueue;
use source::SourceSlot;

/// Tables keyed by the core's stream ids, which we assign (no peer chooses them): FxHash,
/// one multiplication per lookup.
pub(crate) type StreamMap<V> = rustc_hash::FxHashMap<StreamId, V>;

/// The session's clock: tokio's, so that tests with a paused clock control it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What a handle waits for in the core, by the key the core's events name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WakeKey {
    /// An incoming subscription: its parameters changed, or it ended.
    Publication(SubscribeId),
    /// One of our subscriptions: a group or drop arrived, the publisher answered, or it
    /// ended.
    Subscription(SubscribeId),
    /// One of our announce interests: a broadcast was reported active, or it ended.
    Interest(StreamId),
    /// A broadcast taken from one of our interests (its path as [`path_key`]) ended.
    Announcement(StreamId, u64),
    /// Our probe: a reply came, it ended, or a new `Session::probe` call took it over.
    Probe,
}

/// A path as a key of [`WakeKey::Announcement`] (two paths that share it only wake each
/// other's waiters for nothing).
pub(crate) fn path_key(path: &BroadcastPath) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(path)
}

/// The one map of wakers: a handle that finds nothing new in the core waits under its key,
/// and the core's event for that key wakes it. It holds no protocol state.
#[derive(Debug, Default)]
pub(crate) struct Wakers(HashMap<WakeKey, Vec<std::task::Waker>>);

impl Wakers {
    /// Wakes `waker` at the next event for `key`.
    pub(crate) fn register(&mut self, key: WakeKey, waker: &std::task::Waker) {
        let list = self.0.entry(key).or_default();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    /// Wakes what waits under `key`.
    pub(crate) fn wake(&mut self, key: WakeKey) {
        for waker in self.0.remove(&key).into_iter().flatten() {
            waker.wake();
        }
    }

    /// Wakes everything (the session ended).
    pub(crate) fn wake_all(&mut self) {
        for (_, list) in self.0.drain() {
            for waker in list {
                waker.wake();
            }
        }
    }
}

/// Transport facts the API reads without the driver.
pub(crate) struct Meta {
    pub(crate) stats: Box<dyn Fn() -> TransportStats + Send + Sync>,
    pub(crate) info: ConnectionInfo,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
}

/// The core and the routing tables, under one lock.
pub(crate) struct Inner {
    pub(crate) core: moq_proto::Session,
    /// What handles wait for in the core.
    pub(crate) wakers: Wakers,
    /// `Session::probe` calls so far (only the latest call's `ProbeResults` reads the
    /// replies, which the core keeps).
    pub(crate) probes: u64,
    /// The session has a router: requests to serve go to the driver, which calls it.
    pub(crate) serving: bool,
    /// Where the core's stream commands go.
    pub(crate) io: Io,
}

/// The stream ends of the core's commands: each open stream's send queue and stop
/// switch, and when the driver next wakes for the core's timers.
#[derive(Debug, Default)]
pub(crate) struct Io {
    /// Each open stream's send task, fed in the core's order.
    pub(crate) senders: StreamMap<Arc<SendQueue>>,
    /// Each receiving stream's STOP_SENDING switch; for a group or fetch, the slot its
    /// reader reads the stream from.
    pub(crate) stoppers: StreamMap<Stopper>,
    /// Room for the writes [`Inner::carry_out`] gathers for one stream (kept between
    /// calls).
    pub(crate) batch: Vec<Bytes>,
    /// The deadline the driver sleeps until; a flush that moves the core's next timeout
    /// earlier wakes it.
    pub(crate) armed: Option<Instant>,
}

/// What the driver's task reading a stream is told.
#[derive(Debug)]
pub(crate) enum Signal {
    /// Stop the stream (STOP_SENDING with this code).
    Stop(ErrorCode),
    /// The GROUP header is in: hand the stream to its reader's slot.
    Handover(Arc<SourceSlot>),
}

/// How a receiving stream is stopped.
#[derive(Debug)]
pub(crate) enum Stopper {
    /// The driver's task reads it.
    Task(oneshot::Sender<Signal>),
    /// Its group or fetch reader reads it (the driver hands a group's stream over once
    /// its GROUP header is in).
    Slot(Arc<SourceSlot>),
}

/// What only the driver task can do, asked of it by whoever flushed the core.
pub(crate) enum Request {
    /// Open a stream (its future joins the driver's set).
    Open {
        id: StreamId,
        dir: Dir,
        priority: i32,
    },
    /// Give up an open not yet reported (reset the stream with `code` should it open).
    CancelOpen { id: StreamId, code: ErrorCode },
    /// Close the connection.
    Close { code: ErrorCode, reason: String },
    /// Call application handlers.
    Upcalls(Vec<Upcall>),
}

/// The receive budget ([`moq_proto::Config::max_unread_bytes`]): while the session holds
/// more unread group and fetch bytes than this, the driver reads no new group stream, so
/// QUIC flow control pushes back on the publisher. A group's reader reads its own stream
/// only when it wants a frame, so it never waits for the budget.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    limit: usize,
    /// The driver is waiting for the readers to catch up.
    waiting: AtomicBool,
    drained: Notify,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Waits until the session's unread bytes are within the budget.
    pub(crate) async fn wait(&self, shared: &Shared) {
        loop {
            let drained = self.drained.notified();
            {
                // Marked under the lock, where `check` runs: a reader's pull that brings
                // the count down after this sees the mark.
                let inner = shared.lock();
                if inner.core.unread_bytes() <= self.limit {
                    return;
                }
                self.waiting.store(true, Ordering::Relaxed);
            }
            drained.await;
        }
    }

    /// After a change to the session: wakes the driver if it waits and the readers caught
    /// up.
    fn check(&self, core: &moq_proto::Session) {
        if self.waiting.load(Ordering::Relaxed) && core.unread_bytes() <= self.limit {
            self.waiting.store(false, Ordering::Relaxed);
            self.drained.notify_waiters();
        }
    }
}

/// Shared by every handle of one session.
pub(crate) struct Shared {
    pub(crate) budget: Budget,
    pub(crate) inner: Mutex<Inner>,
    /// Wakes the driver: the core's next timeout moved earlier, or the session ended.
    pub(crate) wake: Notify,
    /// Work for the driver task.
    pub(crate) requests: mpsc::UnboundedSender<Request>,
    pub(crate) meta: Meta,
    pub(crate) closed: watch::Sender<Option<CloseReason>>,
    pub(crate) goaway: watch::Sender<Option<String>>,
    pub(crate) probe_target: watch::Sender<Option<u64>>,
}

/// Calls into application handlers, made by the driver after the lock is released: the
/// parts of the request and of the writer that serves it.
#[derive(Debug)]
pub(crate) enum Upcall {
    Track {
        id: SubscribeId,
        path: BroadcastPath,
        track: String,
        params: SubscribeParams,
    },
    Fetch {
        stream: StreamId,
        request: moq_proto::message::Fetch,
    },
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("transport", &self.meta.info.transport)
            .field("remote", &self.meta.remote)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Locks the core. Never held across an await.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the core, then carries out what it queued (see [`Shared::flush`]).
    ///
    /// The core's clock moves only with inputs, so it is advanced first: a deadline a
    /// command sets (a subscribe timeout, a GOAWAY drain) counts from now.
    pub(crate) fn with<T>(self: &Arc<Self>, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.lock();
        inner.core.handle_timeout(now());
        let out = f(&mut inner);
        self.flush(inner);
        out
    }

    /// Carries out the core's commands and routes its events, then releases the lock.
    ///
    /// Whoever changed the core flushes it: its stream commands are carried out at once
    /// ([`Inner::carry_out`]: a write goes straight to the transport when the stream is
    /// idle, else to its send task), with no hop through the driver; a reader takes its
    /// frames itself ([`Shared::pull`]). Only what the driver alone can do (open a stream,
    /// close the connection, call application handlers, which must not run under the
    /// caller's locks) is passed to it.
    pub(crate) fn flush(self: &Arc<Self>, mut guard: MutexGuard<'_, Inner>) {
        let inner = &mut *guard;
        let mut upcalls = Vec::new();
        loop {
            let mut progressed = inner.carry_out(self);
            while let Some(event) = inner.core.poll_event() {
                progressed = true;
                inner.route(self, event, &mut upcalls);
            }
            if !progressed {
                break;
            }
        }
        self.budget.check(&inner.core);
        let wake = inner.core.is_closed()
            || match (inner.core.poll_timeout(), inner.io.armed) {
                (Some(at), Some(armed)) => at < armed,
                (Some(_), None) => true,
                (None, _) => false,
            };
        // Sent under the lock, so handlers are called in the core's order. Should the driver
        // be gone, the session has ended: the requests go unanswered with it.
        let refused = (!upcalls.is_empty())
            .then(|| self.requests.send(Request::Upcalls(upcalls)).err())
            .flatten();
        drop(guard);
        drop(refused);
        if wake {
            self.wake.notify_one();
        }
    }
}

impl Inner {
    /// Sends one core event where it belongs. Handler calls are returned, to be made once
    /// the lock is released.
    pub(crate) fn route(&mut self, shared: &Arc<Shared>, event: Event, upcalls: &mut Vec<Upcall>) {
        log_event(shared, &event);
        match event {
            Event::Announced { interest, .. } => {
                self.wakers.wake(WakeKey::Interest(interest));
            }
            Event::Unannounced { interest, path } => {
                self.wakers
                    .wake(WakeKey::Announcement(interest, path_key(&path)));
            }
            // Its announcements end with it (rare: everything is woken).
            Event::InterestEnded { .. } => self.wakers.wake_all(),
            Event::SubscribeOk { id, .. }
            | Event::SubscribeDropped { id, .. }
            | Event::SubscriptionEnded { id, .. } => {
                self.wakers.wake(WakeKey::Subscription(id));
            }
            Event::GroupReceived { id, stream, .. } => {
                if self.core.is_subscription_leased(id) {
                    // Its reader takes it from the core, and the stream with it.
                    self.wakers.wake(WakeKey::Subscription(id));
                } else {
                    let _ = self
                        .core
                        .cancel_group(stream, moq_proto::code::group::SUBSCRIBE_CANCELLED);
                }
            }
            // Its reader reads the end from the core; one still waiting for its stream
            // (a fetch whose stream could not be opened) is woken to read it.
            Event::GroupEnded { stream, .. } | Event::FetchEnded { stream, .. } => {
                if let Some(Stopper::Slot(slot)) = self.io.stoppers.get(&stream) {
                    slot.close();
                    self.io.stoppers.remove(&stream);
                }
            }
            Event::SubscribeRequested {
                id,
                path,
                track,
                params,
            } => {
                if self.serving {
                    // Its writer reads its state from the core from now on.
                    self.core.lease_publication(id);
                    upcalls.push(Upcall::Track {
                        id,
                        path,
                        track,
                        params,
                    });
                } else {
                    let _ = self
                        .core
                        .reject_subscribe(id, moq_proto::code::subscribe::NOT_FOUND);
                }
            }
            Event::SubscriptionUpdated { id, .. } | Event::PublicationEnded { id, .. } => {
                self.wakers.wake(WakeKey::Publication(id));
            }
            Event::GroupCancelled { .. } | Event::InterestReceived { .. } => {}
            Event::FetchRequested { stream, request } => {
                if self.serving {
                    upcalls.push(Upcall::Fetch { stream, request });
                } else {
                    let _ = self
                        .core
                        .reject_fetch(stream, moq_proto::code::fetch::INTERNAL);
                }
            }
            Event::ProbeTarget { bitrate } => {
                shared.probe_target.send_replace(Some(bitrate));
            }
            Event::ProbeResult { .. } | Event::ProbeEnded { .. } => {
                self.wakers.wake(WakeKey::Probe);
            }
            Event::GoAway { uri } => {
                shared.goaway.send_replace(Some(uri));
            }
            Event::Closed { reason } => {
                // Readers waiting for their stream learn the end from the core.
                for (_, stopper) in self.io.stoppers.drain() {
                    if let Stopper::Slot(slot) = stopper {
                        slot.close();
                    }
                }
                self.wakers.wake_all();
                shared.closed.send_replace(Some(reason));
            }
            _ => {}
        }
    }
}

/// What an operator may want to see of an event: a session's end at info; requests,
/// subscriptions and announcements at debug; frames at trace.
fn log_event(shared: &Shared, event: &Event) {
    let remote = shared.meta.remote;
    match event {
        Event::Closed { reason } => tracing::debug!(?remote, %reason, "session closed"),
        Event::GoAway { uri } => tracing::info!(?remote, %uri, "GOAWAY received"),
        Event::SubscribeRequested {
            id, path, track, ..
        } => tracing::debug!(?remote, id = id.0, %path, track, "subscription requested"),
        Event::PublicationEnded { id, reason } => {
            tracing::debug!(?remote, id = id.0, %reason, "publication ended");
        }
        Event::SubscribeOk { id, .. } => tracing::debug!(?remote, id = id.0, "subscribed"),
        Event::SubscriptionEnded { id, reason } => {
            tracing::debug!(?remote, id = id.0, %reason, "subscription ended");
        }
        Event::SubscribeDropped { id, start, end, .. } => {
            tracing::debug!(
                ?remote,
                id = id.0,
                start = start.0,
                end = end.0,
                "groups dropped"
            );
        }
        Event::GroupCancelled {
            id,
            sequence,
            reason,
        } => {
            tracing::debug!(?remote, id = id.0, group = sequence.0, %reason, "group cancelled");
        }
        Event::FetchRequested { stream, request } => tracing::debug!(
            ?remote,
            stream = stream.0,
            path = %request.path,
            track = request.track,
            group = request.group.0,
            "fetch requested"
        ),
        Event::Announced { path, .. } => tracing::debug!(?remote, %path, "announced"),
        Event::Unannounced { path, .. } => tracing::debug!(?remote, %path, "unannounced"),
        _ => {}
    }
}
