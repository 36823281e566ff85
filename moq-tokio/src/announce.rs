//! Discovering the peer's broadcasts.

use std::sync::Arc;

use moq_proto::{BroadcastPath, HopId, StreamId};
use tokio::sync::{mpsc, watch};

use crate::shared::{Announced, Shared};

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
#[derive(Debug)]
pub struct Announcements {
    shared: Arc<Shared>,
    stream: StreamId,
    rx: mpsc::UnboundedReceiver<Announced>,
}

impl Announcements {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream: StreamId,
        rx: mpsc::UnboundedReceiver<Announced>,
    ) -> Self {
        Self { shared, stream, rx }
    }

    /// The next broadcast to become active; `None` once the announce stream has ended.
    pub async fn next(&mut self) -> Option<Announcement> {
        let Announced { path, hops, ended } = self.rx.recv().await?;
        Some(Announcement { path, hops, ended })
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

impl Drop for Announcements {
    fn drop(&mut self) {
        let stream = self.stream;
        self.shared.with(|inner| {
            inner.interests.remove(&stream);
            let _ = inner.core.stop_interest(stream);
        });
    }
}
