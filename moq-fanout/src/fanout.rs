//! One relayed track: a single upstream subscription published into a
//! [`TrackProducer`], the same fan-out engine and cache an application publishes with.
//!
//! The relay is consume-from-one, publish-to-others: the upstream [`TrackReader`] is
//! forwarded into the producer ([`TrackProducer::forward`]), and every downstream
//! subscription is served by the producer ([`TrackProducer::subscribe`]). Each frame goes
//! to every subscriber as the same `Bytes` (a reference count, never a copy); the sans-IO
//! core under each downstream session applies that subscriber's priority, order, range and
//! max latency, and drops its oldest groups (SUBSCRIBE_DROP) when it falls too far behind,
//! so a slow subscriber never holds up the others.
//!
//! The pump task here adds only the relay's part: moving to a new upstream when the route
//! changes (failover), waiting for one while the broadcast is held, and ending the upstream
//! subscription with the last downstream one.

use std::sync::{Mutex, MutexGuard};

use moq_quinn::{SubscribeParams, TrackProducer, TrackReader, code, error::EndReason};
use tokio::sync::{mpsc, watch};

use crate::relay::PeerId;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the relay keeps about a relayed track.
#[derive(Debug)]
pub(crate) struct TrackFanout {
    /// Tells fan-outs apart when one replaces another under the same name.
    pub(crate) id: u64,
    /// Serves the downstream subscriptions, and fetches from its cache.
    pub(crate) producer: TrackProducer,
    /// Dropped to end the fan-out (the broadcast is gone).
    pub(crate) _stop: watch::Sender<bool>,
    /// A new upstream subscription, on a new route, to continue from (failover).
    pub(crate) switch: mpsc::UnboundedSender<TrackReader>,
    /// The peer the upstream subscription goes to.
    pub(crate) route: PeerId,
    /// The peer whose subscription started it (its route never leads back there).
    pub(crate) requester: PeerId,
    /// What the upstream subscription asks for, on a new route.
    pub(crate) params: SubscribeParams,
}

/// Removes the fan-out from the relay's table: with `force` false only if its track has no
/// subscriber, closing it atomically with new joins (`TrackProducer::close_if_unused`; a
/// join that finds it closed makes a new fan-out), and saying whether it did; with `force`
/// true always (the upstream track ended).
pub(crate) type Detach = Box<dyn FnMut(bool) -> bool + Send>;

/// Why the pump stopped forwarding.
enum Turn {
    Stopped,
    Switch(TrackReader),
    Unused,
    Ended(Result<(), EndReason>),
}

/// Runs one relayed track until the last subscriber leaves, the upstream track ends, or
/// `stop` is set (the broadcast ended). An upstream whose session went away is waited for:
/// the relay either sends a new one (on another route) or sets `stop`.
pub(crate) async fn run(
    producer: TrackProducer,
    upstream: TrackReader,
    mut switches: mpsc::UnboundedReceiver<TrackReader>,
    mut stop: watch::Receiver<bool>,
    max_frames: usize,
    mut detach: Detach,
) {
    let path = upstream.path().clone();
    let track = upstream.track().to_owned();
    tracing::debug!(%path, %track, "upstream subscription started");
    let mut upstream = Some(upstream);
    loop {
        let turn = match upstream.as_mut() {
            Some(reader) => tokio::select! {
                biased;
                _ = stop.changed() => Turn::Stopped,
                Some(next) = switches.recv() => Turn::Switch(next),
                () = producer.unused() => Turn::Unused,
                end = producer.forward(reader, max_frames) => Turn::Ended(end),
            },
            None => tokio::select! {
                biased;
                _ = stop.changed() => Turn::Stopped,
                Some(next) = switches.recv() => Turn::Switch(next),
                () = producer.unused() => Turn::Unused,
            },
        };
        match turn {
            // The old subscription ends as it is dropped.
            Turn::Switch(next) => upstream = Some(next),
            Turn::Unused => {
                if detach(false) {
                    tracing::debug!(%path, %track, "last subscriber left: upstream subscription ends");
                    return;
                }
            }
            // The route's session went away: the relay moves the track or ends it.
            Turn::Ended(Err(EndReason::SessionClosed(_))) => upstream = None,
            Turn::Ended(end) => {
                tracing::debug!(%path, %track, ?end, "upstream track ended");
                detach(true);
                match end {
                    Ok(()) => producer.finish(),
                    Err(EndReason::PeerReset(c) | EndReason::Cancelled(c)) => producer.abort(c),
                    Err(_) => producer.abort(code::subscribe::NOT_FOUND),
                }
                return;
            }
            Turn::Stopped => {
                tracing::debug!(%path, %track, "broadcast ended");
                detach(true);
                // No publisher came back: never a silent end.
                producer.abort(code::subscribe::NOT_FOUND);
                return;
            }
        }
    }
}
