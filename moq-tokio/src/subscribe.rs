//! Reading what we subscribed to: tracks, their groups, and fetched groups.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use moq_proto::message::SubscribeParams;
use moq_proto::{BroadcastPath, ErrorCode, GroupSequence, Payload, StreamId, SubscribeId};
use tokio::sync::{mpsc, watch};

use crate::error::{SessionError, StreamEndError};
use crate::shared::{FRAME_COST, GroupMsg, Shared, TrackMsg};
use crate::source::{Lend, SourceSlot};

/// What a track delivers, in arrival order.
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
#[derive(Debug)]
pub struct TrackReader {
    shared: Arc<Shared>,
    id: SubscribeId,
    path: BroadcastPath,
    track: String,
    params: SubscribeParams,
    rx: mpsc::UnboundedReceiver<TrackMsg>,
    publisher: watch::Receiver<Option<SubscribeParams>>,
    ended: Option<Result<(), StreamEndError>>,
}

impl TrackReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: SubscribeId,
        path: BroadcastPath,
        track: String,
        params: SubscribeParams,
        rx: mpsc::UnboundedReceiver<TrackMsg>,
        publisher: watch::Receiver<Option<SubscribeParams>>,
    ) -> Self {
        Self {
            shared,
            id,
            path,
            track,
            params,
            rx,
            publisher,
            ended: None,
        }
    }

    /// The subscription's ID on this session.
    pub fn id(&self) -> SubscribeId {
        self.id
    }

    /// The broadcast.
    pub fn path(&self) -> &BroadcastPath {
        &self.path
    }

    /// The track name.
    pub fn track(&self) -> &str {
        &self.track
    }

    /// Our current preferences and range.
    pub fn params(&self) -> SubscribeParams {
        self.params
    }

    /// The publisher's values from its latest SUBSCRIBE_OK, if one arrived.
    pub fn publisher_params(&self) -> Option<SubscribeParams> {
        *self.publisher.borrow()
    }

    /// The next group or drop notice. `Ok(None)` when the track ended normally; an error
    /// (with the publisher's Subscribe code, e.g. 0x3 not found) when it ended otherwise.
    pub async fn next(&mut self) -> Result<Option<TrackEvent>, StreamEndError> {
        if let Some(end) = &self.ended {
            return end.clone().map(|()| None);
        }
        match self.rx.recv().await {
            Some(TrackMsg::Group(group)) => Ok(Some(TrackEvent::Group(group))),
            Some(TrackMsg::Dropped { start, end, code }) => {
                Ok(Some(TrackEvent::Dropped { start, end, code }))
            }
            Some(TrackMsg::Ended(reason)) => {
                let end = match StreamEndError::from_reason(reason) {
                    None => Ok(()),
                    Some(err) => Err(err),
                };
                self.ended = Some(end.clone());
                end.map(|()| None)
            }
            None => {
                let err = StreamEndError::SessionClosed(
                    self.shared
                        .closed
                        .borrow()
                        .clone()
                        .unwrap_or(moq_proto::CloseReason::Transport("session ended".into())),
                );
                self.ended = Some(Err(err.clone()));
                Err(err)
            }
        }
    }

    /// The next group, skipping drop notices.
    pub async fn next_group(&mut self) -> Result<Option<GroupReader>, StreamEndError> {
        loop {
            match self.next().await? {
                Some(TrackEvent::Group(group)) => return Ok(Some(group)),
                Some(TrackEvent::Dropped { .. }) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Changes priority, order, max latency and range (SUBSCRIBE_UPDATE).
    pub fn update(&mut self, params: SubscribeParams) -> Result<(), SessionError> {
        self.shared
            .with(|inner| inner.core.update_subscription(self.id, params))?;
        self.params = params;
        Ok(())
    }
}

impl Drop for TrackReader {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.shared.with(|inner| {
                inner.subs.remove(&self.id);
                let _ = inner.core.unsubscribe(self.id);
            });
        }
    }
}

/// The frames of one group (of a subscription or a fetch). Dropping it before the end
/// cancels the group.
#[derive(Debug)]
pub struct GroupReader {
    shared: Arc<Shared>,
    stream: StreamId,
    sequence: GroupSequence,
    rx: mpsc::UnboundedReceiver<GroupMsg>,
    /// Bytes routed to this reader and not yet read (see `Unread`).
    unread: Arc<AtomicUsize>,
    /// The stream, once the driver hands it over (`None` for a fetch, read by the driver).
    slot: Option<Arc<SourceSlot>>,
    fetch: bool,
    ended: Option<Result<(), StreamEndError>>,
}

impl GroupReader {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream: StreamId,
        sequence: GroupSequence,
        rx: mpsc::UnboundedReceiver<GroupMsg>,
        unread: Arc<AtomicUsize>,
        slot: Option<Arc<SourceSlot>>,
    ) -> Self {
        Self {
            shared,
            stream,
            sequence,
            rx,
            unread,
            slot,
            fetch: false,
            ended: None,
        }
    }

    pub(crate) fn new_fetch(
        shared: Arc<Shared>,
        stream: StreamId,
        sequence: GroupSequence,
        rx: mpsc::UnboundedReceiver<GroupMsg>,
        unread: Arc<AtomicUsize>,
    ) -> Self {
        let mut reader = Self::new(shared, stream, sequence, rx, unread, None);
        reader.fetch = true;
        reader
    }

    /// Marks the reader ended without touching the session (used under its lock).
    pub(crate) fn disarm(&mut self) {
        self.ended = Some(Err(StreamEndError::Local));
    }

    /// The group's sequence number.
    pub fn sequence(&self) -> GroupSequence {
        self.sequence
    }

    /// The next frame, contiguous: `Ok(None)` at the end of the group, an error (with the
    /// peer's Group or Fetch code) if it ended otherwise. A frame that arrived in several
    /// QUIC chunks is copied once to join them; [`GroupReader::read_payload`] never copies.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, StreamEndError> {
        Ok(self.read_payload().await?.map(Payload::into_bytes))
    }

    /// The next frame as received, the pieces of the QUIC chunks it spans (zero-copy):
    /// otherwise as [`GroupReader::read_frame`].
    pub async fn read_payload(&mut self) -> Result<Option<Payload>, StreamEndError> {
        loop {
            if let Some(end) = &self.ended {
                return end.clone().map(|()| None);
            }
            // Frames already decoded come first.
            match self.rx.try_recv() {
                Ok(msg) => return self.deliver(Some(msg)),
                Err(mpsc::error::TryRecvError::Disconnected) => return self.deliver(None),
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let Some(slot) = &self.slot else {
                let msg = self.rx.recv().await;
                return self.deliver(msg);
            };
            match slot.lend() {
                Lend::Here(mut lease) => {
                    // `None`: stopped meanwhile; the lease stops the stream as it goes.
                    if let Some(read) = lease.read().await {
                        // Decoded frames (and the end) are routed to `rx`.
                        if self.shared.feed(self.stream, read, lease.chunks()) {
                            slot.finish();
                        }
                    }
                }
                Lend::NotYet => {
                    tokio::select! {
                        biased;
                        msg = self.rx.recv() => return self.deliver(msg),
                        () = slot.changed() => {}
                    }
                }
                Lend::Done => {
                    let msg = self.rx.recv().await;
                    return self.deliver(msg);
                }
            }
        }
    }

    /// The next frame if it has already arrived, without waiting: `None` when nothing is
    /// ready yet; otherwise what [`GroupReader::read_frame`] would return. Lets a relay
    /// forward a burst of frames in one write ([`crate::GroupWriter::write_frames`]).
    pub fn try_read_frame(&mut self) -> Option<Result<Option<Bytes>, StreamEndError>> {
        if let Some(end) = &self.ended {
            return Some(end.clone().map(|()| None));
        }
        let msg = match self.rx.try_recv() {
            Ok(msg) => Some(msg),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => return None,
        };
        Some(self.deliver(msg).map(|p| p.map(Payload::into_bytes)))
    }

    /// Turns what arrived on `rx` into `read_frame`'s answer.
    fn deliver(&mut self, msg: Option<GroupMsg>) -> Result<Option<Payload>, StreamEndError> {
        let end = match msg {
            Some(GroupMsg::Frame(payload)) => {
                self.shared
                    .unread
                    .sub(payload.len() + FRAME_COST, &self.unread);
                return Ok(Some(payload));
            }
            Some(GroupMsg::Ended(reason)) => match StreamEndError::from_reason(reason) {
                None => Ok(()),
                Some(err) => Err(err),
            },
            None => Err(StreamEndError::SessionClosed(
                self.shared
                    .closed
                    .borrow()
                    .clone()
                    .unwrap_or(moq_proto::CloseReason::Transport("session ended".into())),
            )),
        };
        self.ended = Some(end.clone());
        end.map(|()| None)
    }

    /// Reads every remaining frame.
    pub async fn read_all(&mut self) -> Result<Vec<Bytes>, StreamEndError> {
        let mut frames = Vec::new();
        while let Some(frame) = self.read_frame().await? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Stops the group (STOP_SENDING with a Group code, or a Fetch code for a fetch).
    pub fn cancel(&mut self, code: ErrorCode) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(Err(StreamEndError::Local));
        let (stream, fetch) = (self.stream, self.fetch);
        self.shared.with(|inner| {
            inner.groups.remove(&stream);
            inner.handoffs.remove(&stream);
            if fetch {
                let _ = inner.core.cancel_fetch(stream);
            } else {
                let _ = inner.core.cancel_group(stream, code);
            }
        });
    }
}

impl Drop for GroupReader {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.cancel(moq_proto::code::group::SUBSCRIBE_CANCELLED);
        }
        // Unread frames no longer count against the receive budget.
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            if let GroupMsg::Frame(payload) = msg {
                self.shared
                    .unread
                    .sub(payload.len() + FRAME_COST, &self.unread);
            }
        }
    }
}
