//! Discovering the peer's broadcasts.

use std::sync::Arc;
use std::task::{Context, Poll};

use moq_proto::{BroadcastPath, HopId, StreamId};

use crate::shared::{Inner, Shared, WakeKey, path_key};

/// A broadcast the peer reported active.
///
/// ```no_run
/// # async fn demo(mut announced: moq_tokio::Announcements) {
/// if let Some(announcement) = announced.next().await {
///     println!("{} ({} hops)", announcement.path(), announcement.hops().len());
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Announcement {
    shared: Arc<Shared>,
    interest: StreamId,
    path: BroadcastPath,
    hops: Vec<HopId>,
    /// The number the core took it under: ended once the core no longer has it so.
    number: u64,
}

impl Announcement {
    /// The broadcast's full path.
    ///
    /// ```no_run
    /// # fn demo(announcement: moq_tokio::Announcement) {
    /// if announcement.path() == "/cam" {
    ///     println!("the camera is live");
    /// }
    /// # }
    /// ```
    pub fn path(&self) -> &BroadcastPath {
        &self.path
    }

    /// The relays it passed through (empty when the peer originates it).
    ///
    /// ```no_run
    /// # fn demo(announcement: moq_tokio::Announcement) {
    /// println!("through relays {:?}", announcement.hops());
    /// # }
    /// ```
    pub fn hops(&self) -> &[HopId] {
        &self.hops
    }

    /// Whether it has ended.
    ///
    /// ```no_run
    /// # fn demo(announcement: moq_tokio::Announcement) {
    /// if announcement.is_ended() {
    ///     println!("{} is gone", announcement.path());
    /// }
    /// # }
    /// ```
    pub fn is_ended(&self) -> bool {
        !self.is_active(&self.shared.lock())
    }

    fn is_active(&self, inner: &Inner) -> bool {
        inner
            .core
            .is_announcement_active(self.interest, &self.path, self.number)
    }

    /// Resolves when the broadcast ends (ENDED, or the announce stream or session closed).
    ///
    /// ```no_run
    /// # async fn demo(mut announced: moq_tokio::Announcements) {
    /// if let Some(mut cam) = announced.next().await {
    ///     cam.ended().await;
    ///     println!("{} ended", cam.path());
    /// }
    /// # }
    /// ```
    pub async fn ended(&mut self) {
        let key = WakeKey::Announcement(self.interest, path_key(&self.path));
        std::future::poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if !self.is_active(&inner) {
                return Poll::Ready(());
            }
            inner.wakers.register(key, cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// The broadcasts the peer reports under one prefix. Dropping it stops listening.
///
/// Announcements the application has not taken yet wait in the session, one per path; a
/// broadcast that ends before it is taken is never reported.
///
/// ```no_run
/// # async fn demo(session: moq_tokio::Session) -> Result<(), moq_tokio::error::SessionError> {
/// let mut announced = session.announced("")?;
/// while let Some(a) = announced.next().await {
///     println!("{}", a.path());
/// }
/// # Ok(()) }
/// ```
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
    ///
    /// ```no_run
    /// # async fn demo(mut announced: moq_tokio::Announcements) {
    /// while let Some(announcement) = announced.next().await {
    ///     println!("{} via {:?}", announcement.path(), announcement.hops());
    /// }
    /// # }
    /// ```
    pub async fn next(&mut self) -> Option<Announcement> {
        std::future::poll_fn(|cx| self.poll_announcement(cx)).await
    }

    fn poll_announcement(&mut self, cx: &mut Context<'_>) -> Poll<Option<Announcement>> {
        let stream = self.stream;
        let shared = self.shared.clone();
        self.shared.with(|inner| {
            if let Some((path, hops, number)) = inner.core.poll_announcement(stream) {
                return Poll::Ready(Some(Announcement {
                    shared,
                    interest: stream,
                    path,
                    hops,
                    number,
                }));
            }
            if !inner.core.is_interest_open(stream) {
                return Poll::Ready(None);
            }
            inner.wakers.register(WakeKey::Interest(stream), cx.waker());
            Poll::Pending
        })
    }

    /// Stops listening with an Announce code (the stream is reset and stop-sent), for
    /// example `code::announce::BANNED_PREFIX` when the peer announces what it may not
    /// publish here. Every announcement it reported ends.
    ///
    /// ```no_run
    /// # fn demo(announced: moq_tokio::Announcements) {
    /// announced.cancel(moq_tokio::code::announce::BANNED_PREFIX);
    /// # }
    /// ```
    pub fn cancel(self, code: moq_proto::ErrorCode) {
        let stream = self.stream;
        self.shared.with(|inner| {
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
            let _ = inner.core.stop_interest(stream);
        });
    }
}
