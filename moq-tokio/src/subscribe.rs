//! Reading what we subscribed to: tracks, their groups, and fetched groups.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use moq_proto::message::SubscribeParams;
use moq_proto::{
    BroadcastPath, EndReason, ErrorCode, GroupSequence, Payload, StreamId, SubscribeId,
    SubscriptionItem,
};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::error::{SessionError, end_result};
use crate::shared::source::{Lend, SourceSlot};
use crate::shared::{Shared, Signal, Stopper, WakeKey};

/// What a track delivers, in arrival order.
///
/// ```no_run
/// # async fn demo(mut video: moq_tokio::TrackReader) -> Result<(), moq_tokio::error::EndReason> {
/// use moq_tokio::TrackEvent;
/// if let Some(TrackEvent::Dropped { start, end, code }) = video.next().await? {
///     println!("groups {}..={} will not come ({code})", start.0, end.0);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TrackEvent {
    /// A group started arriving.
    Group(GroupReader),
    /// The publisher will not deliver groups `start..=end` (SUBSCRIBE_DROP).
    Dropped {
        /// First dropped group.
        start: GroupSequence,
        /// Last dropped group, inclusive.
        end: GroupSequence,
        /// 0 = simply unavailable; else a Subscribe code.
        code: ErrorCode,
    },
}

/// One of our subscriptions. Dropping it unsubscribes.
///
/// ```no_run
/// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
/// let mut video = session.subscribe("/cam", "video", Default::default())?;
/// while let Some(mut group) = video.next_group().await? {
///     let frames = group.read_all().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the reader unsubscribes"]
pub struct TrackReader {
    shared: Arc<Shared>,
    id: SubscribeId,
    path: BroadcastPath,
    track: String,
    params: SubscribeParams,
    ended: Option<Result<(), EndReason>>,
    /// The [`Stream`] has returned its end.
    stream_done: bool,
}

impl TrackReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: SubscribeId,
        path: BroadcastPath,
        track: String,
        params: SubscribeParams,
    ) -> Self {
        Self {
            shared,
            id,
            path,
            track,
            params,
            ended: None,
            stream_done: false,
        }
    }

    /// The subscription's ID on this session.
    ///
    /// ```no_run
    /// # fn demo(video: moq_tokio::TrackReader) {
    /// println!("subscription {:?}", video.id());
    /// # }
    /// ```
    pub fn id(&self) -> SubscribeId {
        self.id
    }

    /// The broadcast.
    ///
    /// ```no_run
    /// # fn demo(video: moq_tokio::TrackReader) {
    /// println!("{} / {}", video.path(), video.track());
    /// # }
    /// ```
    pub fn path(&self) -> &BroadcastPath {
        &self.path
    }

    /// The track name.
    ///
    /// ```no_run
    /// # fn demo(video: moq_tokio::TrackReader) {
    /// assert_eq!(video.track(), "video");
    /// # }
    /// ```
    pub fn track(&self) -> &str {
        &self.track
    }

    /// Our current preferences and range.
    ///
    /// ```no_run
    /// # fn demo(video: moq_tokio::TrackReader) {
    /// println!("ordered: {}", video.params().ordered);
    /// # }
    /// ```
    pub fn params(&self) -> SubscribeParams {
        self.params
    }

    /// The publisher's values from its latest SUBSCRIBE_OK, if one arrived.
    ///
    /// ```no_run
    /// # async fn demo(mut video: moq_tokio::TrackReader) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some(publisher) = video.publisher_params() {
    ///     println!("the publisher serves it at priority {}", publisher.priority);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn publisher_params(&self) -> Option<SubscribeParams> {
        self.shared.lock().core.subscription_publisher(self.id)
    }

    /// The next group or drop notice. `Ok(None)` when the track ended normally; an error
    /// (with the publisher's Subscribe code, e.g. 0x3 not found) when it ended otherwise.
    ///
    /// ```no_run
    /// # async fn demo(mut video: moq_tokio::TrackReader) -> Result<(), Box<dyn std::error::Error>> {
    /// use moq_tokio::TrackEvent;
    /// while let Some(event) = video.next().await? {
    ///     match event {
    ///         TrackEvent::Group(mut group) => println!("{} frames", group.read_all().await?.len()),
    ///         TrackEvent::Dropped { start, end, .. } => println!("groups {}..={} dropped", start.0, end.0),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Result<Option<TrackEvent>, EndReason> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<TrackEvent>, EndReason>> {
        if let Some(end) = &self.ended {
            return Poll::Ready(end.clone().map(|()| None));
        }
        let (shared, id) = (self.shared.clone(), self.id);
        let polled = self.shared.with(|inner| {
            if let Some(item) = inner.core.poll_subscription(id) {
                return Poll::Ready(Ok(item));
            }
            if let Some(reason) = inner.core.subscription_end(id) {
                return Poll::Ready(Err(reason.clone()));
            }
            if !inner.core.is_subscription_leased(id) {
                // The session ended before the subscription was made, or it was released.
                let reason = shared.closed.borrow().clone();
                let reason =
                    reason.unwrap_or(moq_proto::CloseReason::Transport("session ended".into()));
                return Poll::Ready(Err(EndReason::SessionClosed(reason)));
            }
            inner.wakers.register(WakeKey::Subscription(id), cx.waker());
            Poll::Pending
        });
        Poll::Ready(match std::task::ready!(polled) {
            Ok(SubscriptionItem::Group { stream, sequence }) => {
                let slot = self.take_stream(stream);
                Ok(Some(TrackEvent::Group(GroupReader::new(
                    shared, stream, sequence, slot, false,
                ))))
            }
            Ok(SubscriptionItem::Dropped { start, end, code }) => {
                Ok(Some(TrackEvent::Dropped { start, end, code }))
            }
            // Nothing this reader knows: the next one.
            Ok(_) => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Err(reason) => {
                let end = end_result(reason);
                self.ended = Some(end.clone());
                end.map(|()| None)
            }
        })
    }

    /// The slot a group's reader reads its stream from: the driver's task reading the
    /// stream until its header hands it over; a stream that is already done leaves its
    /// reader with what the core holds, then its end.
    fn take_stream(&self, stream: StreamId) -> Arc<SourceSlot> {
        let slot = Arc::new(SourceSlot::default());
        self.shared.with(|inner| {
            let handed = match inner.io.stoppers.remove(&stream) {
                Some(Stopper::Task(task)) => task.send(Signal::Handover(slot.clone())).is_ok(),
                Some(other) => {
                    inner.io.stoppers.insert(stream, other);
                    false
                }
                None => false,
            };
            if handed {
                inner
                    .io
                    .stoppers
                    .insert(stream, Stopper::Slot(slot.clone()));
            } else {
                // Its task is done with it: what the core holds, then the end.
                slot.close();
            }
        });
        slot
    }

    /// The next group, skipping drop notices (also through [`Stream`], whose items are
    /// groups: the track's abnormal end comes once as an error, then the stream ends).
    ///
    /// ```no_run
    /// # async fn demo(mut video: moq_tokio::TrackReader) -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// // The same groups as `next_group`, as a futures Stream (its `next`, not the
    /// // reader's own, which also yields drop notices).
    /// while let Some(group) = StreamExt::next(&mut video).await {
    ///     let mut group = group?;
    ///     println!("group {}", group.sequence().0);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_group(&mut self) -> Result<Option<GroupReader>, EndReason> {
        loop {
            match self.next().await? {
                Some(TrackEvent::Group(group)) => return Ok(Some(group)),
                Some(TrackEvent::Dropped { .. }) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Changes priority, order, max latency and range (SUBSCRIBE_UPDATE).
    ///
    /// ```no_run
    /// # async fn demo(mut video: moq_tokio::TrackReader) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let mut params = video.params();
    /// params.max_latency = Duration::from_millis(500);
    /// video.update(params)?;
    /// # Ok(()) }
    /// ```
    pub fn update(&mut self, params: SubscribeParams) -> Result<(), SessionError> {
        self.shared
            .with(|inner| inner.core.update_subscription(self.id, params))?;
        self.params = params;
        Ok(())
    }
}

/// The track's groups, skipping drop notices (see [`TrackReader::next_group`]); after an
/// abnormal end, the error comes once, then the stream ends.
impl Stream for TrackReader {
    type Item = Result<GroupReader, EndReason>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.stream_done {
            return Poll::Ready(None);
        }
        loop {
            match std::task::ready!(this.poll_event(cx)) {
                Ok(Some(TrackEvent::Group(group))) => return Poll::Ready(Some(Ok(group))),
                Ok(Some(TrackEvent::Dropped { .. })) => continue,
                Ok(None) => {
                    this.stream_done = true;
                    return Poll::Ready(None);
                }
                Err(err) => {
                    this.stream_done = true;
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }
}

impl Drop for TrackReader {
    fn drop(&mut self) {
        let (id, live) = (self.id, self.ended.is_none());
        self.shared.with(|inner| {
            if live {
                let _ = inner.core.unsubscribe(id);
            }
            // Groups delivered and not taken are stopped with it (a group that has fully
            // arrived is not stopped by the unsubscribe, but its reader is gone too).
            inner.core.release_subscription(id);
        });
    }
}

/// The frames of one group (of a subscription or a fetch). Dropping it before the end
/// cancels the group.
///
/// It reads its stream itself: when it wants a frame and the session has none decoded, it
/// reads the transport, and the bytes cross the session lock once, decoded there into the
/// frames it returns (see [`moq_proto::Session::read_frame`]). Bytes it has not asked for
/// stay in the transport, under QUIC flow control.
///
/// ```no_run
/// # async fn demo(mut group: moq_tokio::GroupReader) -> Result<(), moq_tokio::error::EndReason> {
/// while let Some(frame) = group.read_frame().await? {
///     println!("{} bytes of group {}", frame.len(), group.sequence().0);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the reader cancels the group"]
pub struct GroupReader {
    shared: Arc<Shared>,
    stream: StreamId,
    sequence: GroupSequence,
    /// Where its stream waits between reads (the driver hands it over; a stop reaches it).
    slot: Arc<SourceSlot>,
    /// Frames taken from the session in one pull and not yet returned.
    ready: VecDeque<Payload>,
    /// The session had no further whole frame at the last pull: once `ready` is empty, the
    /// next pull reads the transport first.
    blocked: bool,
    fetch: bool,
    ended: Option<Result<(), EndReason>>,
}

impl GroupReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream: StreamId,
        sequence: GroupSequence,
        slot: Arc<SourceSlot>,
        fetch: bool,
    ) -> Self {
        Self {
            shared,
            stream,
            sequence,
            slot,
            ready: VecDeque::new(),
            blocked: false,
            fetch,
            ended: None,
        }
    }

    /// The group's sequence number.
    ///
    /// ```no_run
    /// # fn demo(group: moq_tokio::GroupReader) {
    /// println!("group {}", group.sequence().0);
    /// # }
    /// ```
    pub fn sequence(&self) -> GroupSequence {
        self.sequence
    }

    /// The next frame, contiguous: `Ok(None)` at the end of the group, an error (with the
    /// peer's Group or Fetch code) if it ended otherwise. A frame that arrived in several
    /// QUIC chunks is copied once to join them; [`GroupReader::read_payload`] never copies.
    ///
    /// ```no_run
    /// # async fn demo(mut group: moq_tokio::GroupReader) -> Result<(), Box<dyn std::error::Error>> {
    /// while let Some(frame) = group.read_frame().await? {
    ///     println!("{} bytes", frame.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, EndReason> {
        Ok(self.read_payload().await?.map(Payload::into_bytes))
    }

    /// The next frame as received, the pieces of the QUIC chunks it spans (zero-copy):
    /// otherwise as [`GroupReader::read_frame`].
    ///
    /// ```no_run
    /// # async fn demo(mut group: moq_tokio::GroupReader) -> Result<(), Box<dyn std::error::Error>> {
    /// while let Some(payload) = group.read_payload().await? {
    ///     println!("{} bytes", payload.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_payload(&mut self) -> Result<Option<Payload>, EndReason> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(Some(frame));
            }
            if let Some(end) = &self.ended {
                return end.clone().map(|()| None);
            }
            if !self.blocked {
                self.pull(None);
                continue;
            }
            match self.slot.lend() {
                Lend::Here(mut lease) => match lease.read().await {
                    Some(read) => {
                        let done = self.pull(Some((read, lease.chunks())));
                        if done {
                            self.slot.finish();
                        }
                    }
                    // Stopped meanwhile (the lease stops the stream), or the connection
                    // went: the session knows why.
                    None => self.blocked = false,
                },
                Lend::NotYet => {
                    self.slot.changed().await;
                    // Handed over, or stopped: either way, ask again.
                    self.blocked = false;
                }
                Lend::Done => {
                    // The session stopped the stream (it holds the end: expired,
                    // cancelled...), or the stream failed with the connection.
                    self.pull(None);
                    if self.ready.is_empty() && self.ended.is_none() {
                        // The connection went, and the driver is about to report it.
                        let mut closed = self.shared.closed.subscribe();
                        let reason = closed
                            .wait_for(Option::is_some)
                            .await
                            .ok()
                            .and_then(|r| r.clone());
                        self.pull(None);
                        if self.ready.is_empty() && self.ended.is_none() {
                            self.ended = Some(Err(match reason {
                                Some(reason) => EndReason::SessionClosed(reason),
                                None => EndReason::Local,
                            }));
                        }
                    }
                }
            }
        }
    }

    /// The next frame if it has already arrived, without waiting: `None` when nothing is
    /// ready yet; otherwise what [`GroupReader::read_frame`] would return. Lets a relay
    /// forward a burst of frames in one write ([`crate::publish::GroupWriter::write_frames`]).
    ///
    /// ```no_run
    /// # fn demo(mut group: moq_tokio::GroupReader) {
    /// // Take what has arrived, without waiting.
    /// while let Some(Ok(Some(frame))) = group.try_read_frame() {
    ///     println!("{} bytes", frame.len());
    /// }
    /// # }
    /// ```
    pub fn try_read_frame(&mut self) -> Option<Result<Option<Bytes>, EndReason>> {
        if self.ready.is_empty() && self.ended.is_none() && !self.blocked {
            self.pull(None);
        }
        if let Some(frame) = self.ready.pop_front() {
            return Some(Ok(Some(frame.into_bytes())));
        }
        let end = self.ended.as_ref()?;
        Some(end.clone().map(|()| None))
    }

    /// Takes what the session has for this group into `ready` (after giving it what one
    /// transport read returned, if any): one crossing of the lock. True when the stream
    /// has nothing more to give.
    fn pull(&mut self, read: Option<(crate::shared::source::ReadResult, &mut [Bytes])>) -> bool {
        let pulled = self.shared.pull(self.stream, read, &mut self.ready);
        self.blocked = pulled.blocked;
        if let Some(reason) = pulled.end {
            self.ended = Some(end_result(reason));
        }
        pulled.stream_done
    }

    /// Reads every remaining frame.
    ///
    /// ```no_run
    /// # async fn demo(mut group: moq_tokio::GroupReader) -> Result<(), moq_tokio::error::EndReason> {
    /// let frames = group.read_all().await?;
    /// # Ok(()) }
    /// ```
    pub async fn read_all(&mut self) -> Result<Vec<Bytes>, EndReason> {
        let mut frames = Vec::new();
        while let Some(frame) = self.read_frame().await? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Stops the group (STOP_SENDING with this Group code, for example
    /// `code::group::SUBSCRIBE_CANCELLED`).
    ///
    /// ```no_run
    /// # fn demo(mut group: moq_tokio::GroupReader) {
    /// group.cancel(moq_tokio::code::group::SUBSCRIBE_CANCELLED);
    /// # }
    /// ```
    pub fn cancel(&mut self, code: ErrorCode) {
        self.ready.clear();
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(Err(EndReason::Local));
        let (stream, fetch) = (self.stream, self.fetch);
        let stopper = self.shared.with(|inner| {
            let stopper = inner.io.stoppers.remove(&stream);
            let _ = if fetch {
                inner.core.cancel_fetch(stream, code)
            } else {
                inner.core.cancel_group(stream, code)
            };
            stopper
        });
        if let Some(Stopper::Slot(slot)) = stopper {
            slot.stop(code);
        }
    }
}

impl Drop for GroupReader {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.cancel(if self.fetch {
                moq_proto::code::fetch::CANCELLED
            } else {
                moq_proto::code::group::SUBSCRIBE_CANCELLED
            });
        }
    }
}

/// The frames of one fetched group ([`crate::Session::fetch`]). Dropping it before the end
/// cancels the fetch (STOP_SENDING, Fetch code 0x3). It reads as a [`GroupReader`] does.
///
/// ```no_run
/// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
/// use moq_tokio::{FetchRequest, GroupSequence};
/// let mut fetch = session.fetch(FetchRequest::new("/cam", "video", GroupSequence(3)))?;
/// let frames = fetch.read_all().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the reader cancels the fetch"]
pub struct FetchReader(GroupReader);

impl FetchReader {
    pub(crate) fn new(reader: GroupReader) -> Self {
        Self(reader)
    }

    /// The group fetched.
    ///
    /// ```no_run
    /// # fn demo(fetch: moq_tokio::FetchReader) {
    /// println!("fetching group {}", fetch.group().0);
    /// # }
    /// ```
    pub fn group(&self) -> GroupSequence {
        self.0.sequence()
    }

    /// The next frame, contiguous: `Ok(None)` at the end, an error (with the publisher's
    /// Fetch code, e.g. 0x0 when the group is not available) if it ended otherwise.
    ///
    /// ```no_run
    /// # async fn demo(mut fetch: moq_tokio::FetchReader) -> Result<(), Box<dyn std::error::Error>> {
    /// while let Some(frame) = fetch.read_frame().await? {
    ///     println!("{} bytes", frame.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, EndReason> {
        self.0.read_frame().await
    }

    /// The next frame as received, without a copy (see [`GroupReader::read_payload`]).
    ///
    /// ```no_run
    /// # async fn demo(mut fetch: moq_tokio::FetchReader) -> Result<(), Box<dyn std::error::Error>> {
    /// while let Some(payload) = fetch.read_payload().await? {
    ///     println!("{} bytes", payload.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_payload(&mut self) -> Result<Option<Payload>, EndReason> {
        self.0.read_payload().await
    }

    /// Reads every remaining frame.
    ///
    /// ```no_run
    /// # async fn demo(mut fetch: moq_tokio::FetchReader) -> Result<(), Box<dyn std::error::Error>> {
    /// let frames = fetch.read_all().await?;
    /// # Ok(()) }
    /// ```
    pub async fn read_all(&mut self) -> Result<Vec<Bytes>, EndReason> {
        self.0.read_all().await
    }

    /// Stops the fetch (STOP_SENDING with this Fetch code, for example
    /// `code::fetch::CANCELLED`).
    ///
    /// ```no_run
    /// # fn demo(mut fetch: moq_tokio::FetchReader) {
    /// fetch.cancel(moq_tokio::code::fetch::CANCELLED);
    /// # }
    /// ```
    pub fn cancel(&mut self, code: ErrorCode) {
        self.0.cancel(code);
    }
}
