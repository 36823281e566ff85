//! One track's fan-out: a single upstream subscription, any number of downstream ones, and
//! a cache of the most recent groups.
//!
//! One task per track owns everything: the upstream [`TrackReader`], every downstream
//! [`TrackWriter`] with its open [`GroupWriter`]s, and the readers of the upstream groups in
//! flight (several at once: groups travel on their own streams and may interleave). Each
//! frame read upstream is written to every downstream group of the same sequence as the
//! same `Bytes` (a reference count, never a copy). The sans-IO core under each downstream
//! session applies that subscriber's priority, order, range and max latency, and drops its
//! oldest groups (SUBSCRIBE_DROP) when it falls too far behind, so a slow subscriber never
//! holds up the others or this task.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, SelectAll};
use futures_util::{Stream, StreamExt};
use moq_quinn::{
    GroupReader, GroupSequence, SubscribeParams, TrackEvent, TrackReader, code, code::ErrorCode,
    error::EndReason, publish::GroupCache, publish::GroupWriter, publish::PublisherParams,
    publish::TrackWriter,
};

use crate::relay::PeerId;
use tokio::sync::{mpsc, watch};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Most frames forwarded in one write: what arrived together goes downstream together.
const BATCH: usize = 256;

/// What the relay keeps about a running fan-out.
#[derive(Debug)]
pub(crate) struct TrackFanout {
    /// Tells fan-outs apart when one replaces another under the same name.
    pub(crate) id: u64,
    /// New downstream subscribers.
    pub(crate) joins: mpsc::UnboundedSender<TrackWriter>,
    /// Shared with fetches.
    pub(crate) cache: Arc<Mutex<GroupCache>>,
    /// Dropped to end the fan-out (the broadcast is gone).
    pub(crate) _stop: watch::Sender<bool>,
    /// A new upstream subscription, on a new route, to continue from (failover).
    pub(crate) switch: mpsc::UnboundedSender<TrackReader>,
    /// What the fan-out adds to the upstream's group numbers (see `Fanout::shift`).
    pub(crate) shift: Arc<AtomicU64>,
    /// The peer the upstream subscription goes to.
    pub(crate) route: PeerId,
    /// The peer whose subscription started it (its route never leads back there).
    pub(crate) requester: PeerId,
    /// What the upstream subscription asks for, on a new route.
    pub(crate) params: SubscribeParams,
}

/// Removes the fan-out from the relay's table, atomically with respect to new joins:
/// called with `force` false when the last subscriber left (it returns the writers that
/// joined meanwhile, and removes the entry only if there are none), and with `force` true
/// when the upstream track ended (it always removes the entry).
pub(crate) type Detach =
    Box<dyn FnMut(&mut mpsc::UnboundedReceiver<TrackWriter>, bool) -> Vec<TrackWriter> + Send>;

/// What was read from an upstream group: frames that arrived together, or its end.
enum Item {
    Frames(Vec<Bytes>),
    End(Result<(), EndReason>),
}

type GroupStream = Pin<Box<dyn Stream<Item = (GroupSequence, Item)> + Send>>;

/// Where an upstream group's reading stands.
enum Reading {
    /// Frames go on; so many were forwarded.
    Open(GroupReader, usize),
    /// The last batch went out; its end comes next.
    Ending(Result<(), EndReason>),
    Done,
}

/// An upstream group as a stream of batches of frames (a frame, with whatever arrived with
/// it), then its end, under its downstream number `sequence`. A group with more than
/// `max_frames` frames is cut there: the upstream group is stopped, and the group ends
/// aborted downstream.
fn frames(reader: GroupReader, sequence: GroupSequence, max_frames: usize) -> GroupStream {
    Box::pin(futures_util::stream::unfold(
        Reading::Open(reader, 0),
        move |state| async move {
            let (mut reader, count) = match state {
                Reading::Open(reader, count) => (reader, count),
                Reading::Ending(end) => return Some(((sequence, Item::End(end)), Reading::Done)),
                Reading::Done => return None,
            };
            let first = match reader.read_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return Some(((sequence, Item::End(Ok(()))), Reading::Done)),
                Err(e) => return Some(((sequence, Item::End(Err(e))), Reading::Done)),
            };
            let mut batch = vec![first];
            let mut end = None;
            while batch.len() < BATCH && end.is_none() {
                match reader.try_read_frame() {
                    None => break,
                    Some(Ok(Some(frame))) => batch.push(frame),
                    Some(Ok(None)) => end = Some(Ok(())),
                    Some(Err(e)) => end = Some(Err(e)),
                }
            }
            let count = count + batch.len();
            if count > max_frames {
                tracing::info!(
                    group = sequence.0,
                    max_frames,
                    "upstream group over the frame limit: cut off"
                );
                reader.cancel(code::group::INTERNAL);
                batch.truncate(batch.len() - (count - max_frames));
                let cut = Err(EndReason::Local);
                return Some(((sequence, Item::Frames(batch)), Reading::Ending(cut)));
            }
            let next = match end {
                Some(end) => Reading::Ending(end),
                None => Reading::Open(reader, count),
            };
            Some(((sequence, Item::Frames(batch)), next))
        },
    ))
}

struct Subscriber {
    writer: TrackWriter,
    /// Its open groups (few: usually one).
    groups: Vec<GroupWriter>,
}

impl Subscriber {
    fn take_group(&mut self, sequence: GroupSequence) -> Option<GroupWriter> {
        let at = self.groups.iter().position(|g| g.sequence() == sequence)?;
        Some(self.groups.swap_remove(at))
    }
}

/// The Group code forwarded downstream when an upstream group ends abnormally.
fn group_code(err: &EndReason) -> ErrorCode {
    match err {
        EndReason::PeerReset(c) => *c,
        EndReason::Expired => code::group::EXPIRED,
        // The upstream session went away mid-group; the downstream session is not closing.
        _ => code::group::PUBLISH_ABORTED,
    }
}

/// The fan-out task's state.
pub(crate) struct Fanout {
    upstream: TrackReader,
    /// New upstream subscriptions, on new routes (failover).
    switches: mpsc::UnboundedReceiver<TrackReader>,
    /// Added to the upstream's group numbers: 0 until a new route's publisher numbers its
    /// groups at or below the last one sent downstream (it restarted from 1); then what
    /// makes its first group follow the last one, for the rest of the fan-out.
    shift: Arc<AtomicU64>,
    /// The upstream changed and its first group sets `shift`.
    reshift: bool,
    /// The highest group number sent downstream.
    last: Option<u64>,
    cache: Arc<Mutex<GroupCache>>,
    /// Frames forwarded per group at most.
    max_frames: usize,
    subscribers: Vec<(u64, Subscriber)>,
    next_subscriber: u64,
    groups: SelectAll<GroupStream>,
    leaving: FuturesUnordered<Pin<Box<dyn std::future::Future<Output = u64> + Send>>>,
}

impl Fanout {
    pub(crate) fn new(
        upstream: TrackReader,
        switches: mpsc::UnboundedReceiver<TrackReader>,
        shift: Arc<AtomicU64>,
        cache: Arc<Mutex<GroupCache>>,
        max_frames: usize,
    ) -> Self {
        Self {
            upstream,
            switches,
            shift,
            reshift: false,
            last: None,
            cache,
            max_frames,
            subscribers: Vec::new(),
            next_subscriber: 0,
            groups: SelectAll::new(),
            leaving: FuturesUnordered::new(),
        }
    }

    /// Runs until the last subscriber leaves, the upstream track ends, or `stop` is set.
    /// An upstream whose session went away is waited for: the relay either sends a new one
    /// (on another route) or sets `stop` when the broadcast has ended.
    pub(crate) async fn run(
        mut self,
        mut joins: mpsc::UnboundedReceiver<TrackWriter>,
        mut stop: watch::Receiver<bool>,
        mut detach: Detach,
    ) {
        let path = self.upstream.path().clone();
        let track = self.upstream.track().to_owned();
        tracing::debug!(%path, %track, "upstream subscription started");
        let mut upstream_end: Option<Result<(), EndReason>> = None;
        let mut stopped = false;
        loop {
            // The route's session went away: the relay moves the track or ends it.
            let waiting = matches!(upstream_end, Some(Err(EndReason::SessionClosed(_))));
            if self.subscribers.is_empty() && (upstream_end.is_none() || waiting) {
                let joined = detach(&mut joins, false);
                if joined.is_empty() {
                    tracing::debug!(%path, %track, "last subscriber left: upstream subscription ends");
                    return;
                }
                for writer in joined {
                    self.join(writer);
                }
                continue;
            }
            if upstream_end.is_some() && !waiting && self.groups.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    stopped = true;
                    break;
                }
                Some(upstream) = self.switches.recv() => {
                    // The old subscription ends as it is dropped; its groups in flight
                    // finish under the numbers they were given.
                    self.upstream = upstream;
                    self.reshift = true;
                    upstream_end = None;
                }
                Some(writer) = joins.recv() => self.join(writer),
                Some((sequence, item)) = self.groups.next(), if !self.groups.is_empty() => {
                    self.group_item(sequence, item);
                }
                event = self.upstream.next(), if upstream_end.is_none() => match event {
                    Ok(Some(TrackEvent::Group(reader))) => self.open_group(reader),
                    Ok(Some(TrackEvent::Dropped { start, end, code })) => {
                        let shift = self.shift.load(Ordering::Relaxed);
                        let (start, end) = (GroupSequence(start.0 + shift), GroupSequence(end.0 + shift));
                        for (_, sub) in &mut self.subscribers {
                            let _ = sub.writer.drop_groups(start, end, code);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => upstream_end = Some(Ok(())),
                    Err(e) => upstream_end = Some(Err(e)),
                },
                Some(id) = self.leaving.next(), if !self.leaving.is_empty() => {
                    self.subscribers.retain(|(i, _)| *i != id);
                }
            }
        }
        let end = upstream_end.unwrap_or(Ok(()));
        tracing::debug!(%path, %track, ?end, stopped, "upstream track ended");
        for writer in detach(&mut joins, true) {
            self.join(writer);
        }
        for (_, mut sub) in self.subscribers.drain(..) {
            // Groups still open were cut short upstream (the broadcast went away mid-group):
            // never FIN them, which would pass a truncated group off as complete.
            for group in sub.groups.drain(..) {
                group.cancel(code::group::PUBLISH_ABORTED);
            }
            match &end {
                // The publisher ended the track.
                Ok(()) if !stopped => sub.writer.finish(),
                Err(EndReason::PeerReset(c) | EndReason::Cancelled(c)) => {
                    sub.writer.close_with_error(*c)
                }
                // The broadcast is gone (no publisher came back): never a silent end.
                _ => sub.writer.close_with_error(code::subscribe::NOT_FOUND),
            }
        }
    }

    /// A new downstream subscriber: it starts with the latest cached group (or, if it asked
    /// for a start, every cached group from there), then follows the live groups.
    fn join(&mut self, mut writer: TrackWriter) {
        if writer.accept(PublisherParams::default()).is_err() {
            return;
        }
        let mut sub = Subscriber {
            writer,
            groups: Vec::new(),
        };
        match sub.writer.replay(&lock(&self.cache)) {
            Ok(open) => sub.groups.extend(open),
            Err(_) => return,
        }
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        let leaving = sub.writer.closed_owned();
        self.leaving.push(Box::pin(async move {
            let _: EndReason = leaving.await;
            id
        }));
        self.subscribers.push((id, sub));
    }

    fn open_group(&mut self, reader: GroupReader) {
        let max_frames = self.max_frames;
        let upstream = reader.sequence().0;
        if std::mem::take(&mut self.reshift) {
            let shift = match self.last {
                Some(last) if upstream <= last => last + 1 - upstream,
                _ => 0,
            };
            if shift != 0 {
                tracing::info!(
                    path = %self.upstream.path(),
                    track = self.upstream.track(),
                    upstream,
                    downstream = upstream + shift,
                    "the new publisher's group numbers are behind: they continue from the last one sent"
                );
            }
            self.shift.store(shift, Ordering::Relaxed);
        }
        let sequence = GroupSequence(upstream + self.shift.load(Ordering::Relaxed));
        self.last = Some(self.last.map_or(sequence.0, |last| last.max(sequence.0)));
        lock(&self.cache).begin(sequence);
        for (_, sub) in &mut self.subscribers {
            // Out of its range, a duplicate, or it has ended: not for this subscriber.
            if let Ok(group) = sub.writer.open_group_at(sequence) {
                sub.groups.push(group);
            }
        }
        self.groups.push(frames(reader, sequence, max_frames));
    }

    fn group_item(&mut self, sequence: GroupSequence, item: Item) {
        match item {
            Item::Frames(frames) => {
                lock(&self.cache).push(sequence, &frames);
                for (_, sub) in &mut self.subscribers {
                    if let Some(group) = sub.groups.iter_mut().find(|g| g.sequence() == sequence)
                        && group.write_frames(frames.iter().cloned()).is_err()
                    {
                        // Dropped for being too slow, expired or stopped by the subscriber.
                        sub.take_group(sequence);
                    }
                }
            }
            Item::End(Ok(())) => {
                lock(&self.cache).finish(sequence);
                for (_, sub) in &mut self.subscribers {
                    if let Some(group) = sub.take_group(sequence) {
                        let _ = group.finish();
                    }
                }
            }
            Item::End(Err(err)) => {
                lock(&self.cache).abort(sequence);
                let code = group_code(&err);
                for (_, sub) in &mut self.subscribers {
                    if let Some(group) = sub.take_group(sequence) {
                        group.cancel(code);
                    }
                }
            }
        }
    }
}
