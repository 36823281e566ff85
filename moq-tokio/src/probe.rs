//! Probing: the peer's replies to our probe, and the targets the peer's probe asks of us.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;

use crate::shared::{Shared, WakeKey};

/// A measurement the peer sent in reply to our probe.
///
/// ```no_run
/// # async fn demo(mut replies: moq_tokio::probe::ProbeResults) {
/// if let Some(result) = replies.next().await {
///     println!("{} bit/s, RTT {:?}", result.bitrate, result.rtt);
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The bitrate the peer estimates it can send us, bits per second; 0 = unknown.
    pub bitrate: u64,
    /// The smoothed RTT the peer measured; zero = unknown.
    pub rtt: Duration,
}

/// The peer's replies to our probe, in arrival order (the core keeps the newest 16 while
/// unread). A [`Stream`] of [`ProbeResult`]s, which ends when the probe or the session
/// does, or when a later [`crate::Session::probe`] call takes the replies over.
///
/// ```no_run
/// # async fn demo(session: moq_tokio::Session) -> Result<(), moq_tokio::error::SessionError> {
/// use futures_util::StreamExt;
/// let mut replies = session.probe(1_000_000)?;
/// let first_three: Vec<_> = (&mut replies).take(3).collect().await;
/// # Ok(()) }
/// ```
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
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut replies = session.probe(2_000_000)?;
    /// while let Some(reply) = replies.next().await {
    ///     println!("{} bit/s at {:?}", reply.bitrate, reply.rtt);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<ProbeResult> {
        std::future::poll_fn(|cx| self.poll_reply(cx)).await
    }

    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<ProbeResult>> {
        let generation = self.generation;
        self.shared.with(|inner| {
            // A later `Session::probe` call reads the replies now.
            if inner.probes != generation {
                return Poll::Ready(None);
            }
            if let Some((bitrate, rtt)) = inner.core.poll_probe_reply() {
                return Poll::Ready(Some(ProbeResult { bitrate, rtt }));
            }
            if !inner.core.probing() || inner.core.is_closed() {
                return Poll::Ready(None);
            }
            inner.wakers.register(WakeKey::Probe, cx.waker());
            Poll::Pending
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
///
/// ```no_run
/// # async fn demo(session: moq_tokio::Session) {
/// let mut targets = session.probe_targets();
/// if let Some(bitrate) = targets.next().await {
///     println!("probed up to {bitrate} bit/s");
/// }
/// # }
/// ```
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
    ///
    /// ```no_run
    /// # fn demo(session: moq_tokio::Session) {
    /// if let Some(bitrate) = session.probe_targets().latest() {
    ///     println!("the peer last probed up to {bitrate} bit/s");
    /// }
    /// # }
    /// ```
    pub fn latest(&self) -> Option<u64> {
        *self.targets.borrow()
    }

    /// The next target: the current one first (if the peer has probed), then each new one;
    /// `None` once the session has ended.
    ///
    /// ```no_run
    /// # async fn demo(mut targets: moq_tokio::probe::ProbeTargets) {
    /// while let Some(bitrate) = targets.next().await {
    ///     println!("{bitrate}");
    /// }
    /// # }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn demo(session: moq_tokio::Session) {
    /// use futures_util::StreamExt;
    /// let mut targets = Box::pin(session.probe_targets().into_stream());
    /// while let Some(bitrate) = targets.next().await {
    ///     println!("{bitrate}");
    /// }
    /// # }
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = u64> + Send + 'static {
        futures_util::stream::unfold(self, |mut targets| async move {
            targets.next().await.map(|target| (target, targets))
        })
    }
}
