//! Probing: the peer's replies to our probe, and the targets the peer's probe asks of us.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::Stream;

use crate::shared::Shared;

/// A measurement the peer sent in reply to our probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The bitrate the peer estimates it can send us, bits per second; 0 = unknown.
    pub bitrate: u64,
    /// The smoothed RTT the peer measured; zero = unknown.
    pub rtt: Duration,
}

/// Replies waiting for their reader: the newest [`ProbeQueue::CAP`], older ones dropped
/// (a measurement is superseded by the next; a peer that floods replies costs nothing).
#[derive(Debug, Default)]
pub(crate) struct ProbeQueue {
    /// Which [`crate::Session::probe`] call these replies answer.
    pub(crate) generation: u64,
    replies: VecDeque<ProbeResult>,
    ended: bool,
    waker: Option<Waker>,
}

impl ProbeQueue {
    const CAP: usize = 16;

    pub(crate) fn new(generation: u64) -> Self {
        Self {
            generation,
            ..Self::default()
        }
    }

    pub(crate) fn push(&mut self, reply: ProbeResult) {
        if self.replies.len() == Self::CAP {
            self.replies.pop_front();
        }
        self.replies.push_back(reply);
        self.wake();
    }

    /// The probe ended (or the session): the reader gets what is queued, then `None`.
    pub(crate) fn end(&mut self) {
        self.ended = true;
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// The peer's replies to our probe, in arrival order (the newest 16 are kept while
/// unread). A [`Stream`] of [`ProbeResult`]s, which ends when the probe or the session
/// does, or when a later [`crate::Session::probe`] call takes the replies over.
#[derive(Debug)]
#[must_use = "the replies arrive here"]
pub struct ProbeResults {
    shared: Arc<Shared>,
    generation: u64,
}

impl ProbeResults {
    pub(crate) fn new(shared: Arc<Shared>, generation: u64) -> Self {
        Self { shared, generation }
    }

    /// The next reply; `None` once the probe or the session has ended.
    pub async fn next(&mut self) -> Option<ProbeResult> {
        std::future::poll_fn(|cx| self.poll_reply(cx)).await
    }

    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<ProbeResult>> {
        let generation = self.generation;
        self.shared.with(|inner| match inner.probe.as_mut() {
            Some(queue) if queue.generation == generation => {
                if let Some(reply) = queue.replies.pop_front() {
                    Poll::Ready(Some(reply))
                } else if queue.ended {
                    Poll::Ready(None)
                } else {
                    queue.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
            _ => Poll::Ready(None),
        })
    }
}

impl Stream for ProbeResults {
    type Item = ProbeResult;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ProbeResult>> {
        self.get_mut().poll_reply(cx)
    }
}

/// The targets the peer's probe asks of us (bits per second), latest wins: from
/// [`crate::Session::probe_targets`].
#[derive(Debug)]
pub struct ProbeTargets {
    shared: Arc<Shared>,
    targets: tokio::sync::watch::Receiver<Option<u64>>,
    /// Whether the target current when this was made has been returned.
    started: bool,
}

impl ProbeTargets {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let targets = shared.probe_target.subscribe();
        Self {
            shared,
            targets,
            started: false,
        }
    }

    /// The latest target, if the peer has probed.
    pub fn latest(&self) -> Option<u64> {
        *self.targets.borrow()
    }

    /// The next target: the current one first (if the peer has probed), then each new one;
    /// `None` once the session has ended.
    pub async fn next(&mut self) -> Option<u64> {
        let mut closed = self.shared.closed.subscribe();
        loop {
            if !std::mem::replace(&mut self.started, true)
                && let Some(target) = *self.targets.borrow_and_update()
            {
                return Some(target);
            }
            if closed.borrow_and_update().is_some() {
                return None;
            }
            tokio::select! {
                changed = self.targets.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    if let Some(target) = *self.targets.borrow_and_update() {
                        return Some(target);
                    }
                }
                changed = closed.changed() => if changed.is_err() { return None },
            }
        }
    }

    /// The targets as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = u64> + Send + 'static {
        futures_util::stream::unfold(self, |mut targets| async move {
            targets.next().await.map(|target| (target, targets))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_replies_keeps_the_newest_sixteen() {
        let mut queue = ProbeQueue::new(1);
        for i in 0..1000u64 {
            queue.push(ProbeResult {
                bitrate: i,
                rtt: Duration::ZERO,
            });
        }
        let kept: Vec<u64> = queue.replies.iter().map(|r| r.bitrate).collect();
        assert_eq!(kept, (984..1000).collect::<Vec<_>>());
    }
}
