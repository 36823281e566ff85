//! Discovering the peer's broadcasts.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use moq_proto::{BroadcastPath, HopId, StreamId};
use tokio::sync::watch;

use crate::shared::{Announced, Shared};

/// The announcements of one interest that the application has not taken yet: at most one
/// per path, in the order they came. A broadcast that ends before it is taken is forgotten
/// (it costs nothing), so what waits is bounded by the broadcasts active at once
/// ([`moq_proto::Config::max_announce_entries`]), however fast the peer churns.
#[derive(Debug, Default)]
pub(crate) struct AnnounceQueue {
    /// Paths in arrival order; a path withdrawn before it was taken stays here until the
    /// queue is compacted or it comes up (then it is skipped).
    order: VecDeque<BroadcastPath>,
    waiting: HashMap<BroadcastPath, Announced>,
    waker: Option<Waker>,
}

impl AnnounceQueue {
    /// A broadcast became active.
    pub(crate) fn push(&mut self, announced: Announced) {
        if !self.waiting.contains_key(&announced.path) {
            self.order.push_back(announced.path.clone());
        }
        self.waiting.insert(announced.path.clone(), announced);
        self.wake();
    }

    /// A broadcast ended: `true` if it was still waiting (and is now forgotten).
    pub(crate) fn withdraw(&mut self, path: &BroadcastPath) -> bool {
        let waited = self.waiting.remove(path).is_some();
        if self.order.len() > 2 * self.waiting.len() + 16 {
            let waiting = &self.waiting;
            self.order.retain(|p| waiting.contains_key(p));
        }
        waited
    }

    /// Wakes the reader (for an announcement, or the end).
    pub(crate) fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Announced> {
        while let Some(path) = self.order.pop_front() {
            if let Some(announced) = self.waiting.remove(&path) {
                return Poll::Ready(announced);
            }
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A broadcast the peer reported active.
#[derive(Clone, Debug)]
pub struct Announcement {
    path: BroadcastPath,
    hops: Vec<HopId>,
    ended: watch::Receiver<bool>,
}

impl Announcement {
    /// The broadcast's full path.
    pub fn path(&self) -> &BroadcastPath {
        &self.path
    }

    /// The relays it passed through (empty when the peer originates it).
    pub fn hops(&self) -> &[HopId] {
        &self.hops
    }

    /// Whether it has ended.
    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Resolves when the broadcast ends (ENDED, or the announce stream or session closed).
    pub async fn ended(&mut self) {
        while !*self.ended.borrow_and_update() {
            if self.ended.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The broadcasts the peer reports under one prefix. Dropping it stops listening.
///
/// Announcements the application has not taken yet wait in the session, one per path; a
/// broadcast that ends before it is taken is never reported.
#[derive(Debug)]
#[must_use = "dropping it stops listening"]
pub struct Announcements {
    shared: Arc<Shared>,
    stream: StreamId,
}

impl Announcements {
    pub(crate) fn new(shared: Arc<Shared>, stream: StreamId) -> Self {
        Self { shared, stream }
    }

    /// The next broadcast to become active; `None` once the announce stream has ended.
    pub async fn next(&mut self) -> Option<Announcement> {
        std::future::poll_fn(|cx| self.poll_announcement(cx)).await
    }

    fn poll_announcement(&mut self, cx: &mut Context<'_>) -> Poll<Option<Announcement>> {
        let stream = self.stream;
        self.shared
            .with(|inner| match inner.interests.get_mut(&stream) {
                Some(queue) => queue.poll_next(cx).map(|Announced { path, hops, ended }| {
                    Some(Announcement { path, hops, ended })
                }),
                None => Poll::Ready(None),
            })
    }

    /// Stops listening with an Announce code (the stream is reset and stop-sent), for
    /// example `code::announce::BANNED_PREFIX` when the peer announces what it may not
    /// publish here. Every announcement it reported ends.
    pub fn cancel(self, code: moq_proto::ErrorCode) {
        let stream = self.stream;
        self.shared.with(|inner| {
            inner.interests.remove(&stream);
            let _ = inner.core.cancel_interest(stream, code);
        });
    }
}

/// The broadcasts as they become active (see [`Announcements::next`]).
impl futures_util::Stream for Announcements {
    type Item = Announcement;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Announcement>> {
        self.get_mut().poll_announcement(cx)
    }
}

impl Drop for Announcements {
    fn drop(&mut self) {
        let stream = self.stream;
        self.shared.with(|inner| {
            inner.interests.remove(&stream);
            let _ = inner.core.stop_interest(stream);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(path: &str) -> Announced {
        Announced {
            path: BroadcastPath::new(path),
            hops: Vec::new(),
            ended: watch::channel(false).1,
        }
    }

    fn take(queue: &mut AnnounceQueue) -> Option<String> {
        let mut cx = Context::from_waker(Waker::noop());
        match queue.poll_next(&mut cx) {
            Poll::Ready(a) => Some(a.path.to_string()),
            Poll::Pending => None,
        }
    }

    #[test]
    fn what_ends_before_it_is_taken_is_forgotten_and_the_queue_stays_small() {
        let mut queue = AnnounceQueue::default();
        queue.push(announced("/first"));
        // A hundred thousand broadcasts that come and go, none taken.
        for i in 0..100_000 {
            let path = format!("/churn/{i}");
            queue.push(announced(&path));
            assert!(queue.withdraw(&BroadcastPath::new(&path)));
            assert!(queue.order.len() <= 2 * queue.waiting.len() + 17);
        }
        queue.push(announced("/last"));
        assert_eq!(take(&mut queue).as_deref(), Some("/first"));
        assert_eq!(take(&mut queue).as_deref(), Some("/last"));
        assert_eq!(take(&mut queue), None);
        // Ended after it was taken: not waiting.
        assert!(!queue.withdraw(&BroadcastPath::new("/last")));
    }

    #[test]
    fn a_path_back_before_it_is_taken_is_reported_once() {
        let mut queue = AnnounceQueue::default();
        queue.push(announced("/a"));
        queue.push(announced("/b"));
        assert!(queue.withdraw(&BroadcastPath::new("/a")));
        queue.push(announced("/a"));
        assert_eq!(take(&mut queue).as_deref(), Some("/a"));
        assert_eq!(take(&mut queue).as_deref(), Some("/b"));
        assert_eq!(take(&mut queue), None);
    }
}
