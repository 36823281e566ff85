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

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, SelectAll};
use futures_util::{Stream, StreamExt};
use moq_quinn::{
    EndReason, ErrorCode, GroupReader, GroupSequence, GroupWriter, PublishError, PublisherParams,
    StreamEndError, TrackEvent, TrackReader, TrackWriter, code,
};
use tokio::sync::{mpsc, watch};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one cached frame costs beyond its payload (its handle in the group's list),
/// charged against the cache's byte budget so that empty frames are evicted like others.
pub(crate) const FRAME_OVERHEAD: usize = 64;

/// Most frames forwarded in one write: what arrived together goes downstream together.
const BATCH: usize = 256;

/// One cached group.
#[derive(Debug)]
struct CachedGroup {
    sequence: GroupSequence,
    frames: Vec<Bytes>,
    bytes: usize,
    finished: bool,
}

/// The most recent groups of one track, bounded by count and bytes (payload plus
/// [`FRAME_OVERHEAD`] per frame).
#[derive(Debug)]
pub(crate) struct Cache {
    /// By ascending sequence.
    groups: VecDeque<CachedGroup>,
    bytes: usize,
    max_groups: usize,
    max_bytes: usize,
    /// Bytes held by every track's cache together, and their limit.
    total: Arc<CacheTotal>,
}

/// The relay-wide count of cached bytes, shared by every track's [`Cache`].
#[derive(Debug)]
pub(crate) struct CacheTotal {
    bytes: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl CacheTotal {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            bytes: std::sync::atomic::AtomicUsize::new(0),
            max,
        })
    }

    fn add(&self, n: usize) {
        self.bytes
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.bytes
            .fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn over(&self) -> bool {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed) > self.max
    }

    /// Bytes cached across the relay.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Cache {
    pub(crate) fn new(max_groups: usize, max_bytes: usize, total: Arc<CacheTotal>) -> Self {
        Self {
            groups: VecDeque::new(),
            bytes: 0,
            max_groups: max_groups.max(1),
            max_bytes,
            total,
        }
    }

    fn find(&mut self, sequence: GroupSequence) -> Option<&mut CachedGroup> {
        // Frames almost always belong to the newest group: search from the back.
        self.groups
            .iter_mut()
            .rev()
            .find(|g| g.sequence == sequence)
    }

    /// A group started arriving.
    fn begin(&mut self, sequence: GroupSequence) {
        if self.groups.iter().any(|g| g.sequence == sequence) {
            return;
        }
        let at = self
            .groups
            .iter()
            .rposition(|g| g.sequence < sequence)
            .map_or(0, |i| i + 1);
        self.groups.insert(
            at,
            CachedGroup {
                sequence,
                frames: Vec::new(),
                bytes: 0,
                finished: false,
            },
        );
        self.evict();
    }

    /// Frames of a group arrived. A group evicted (or never begun) stays uncached.
    fn push(&mut self, sequence: GroupSequence, frames: &[Bytes]) {
        let Some(group) = self.find(sequence).filter(|g| !g.finished) else {
            return;
        };
        let len: usize = frames.iter().map(|f| f.len() + FRAME_OVERHEAD).sum();
        group.frames.extend_from_slice(frames);
        group.bytes += len;
        self.bytes += len;
        self.total.add(len);
        self.evict();
    }

    fn finish(&mut self, sequence: GroupSequence) {
        if let Some(group) = self.find(sequence) {
            group.finished = true;
        }
    }

    /// An incomplete group is not kept.
    fn abort(&mut self, sequence: GroupSequence) {
        if let Some(at) = self.groups.iter().position(|g| g.sequence == sequence)
            && let Some(group) = self.groups.remove(at)
        {
            self.bytes -= group.bytes;
            self.total.sub(group.bytes);
        }
    }

    /// Drops the oldest groups while this track is over its limits, or the relay over its
    /// total (then this track gives up its own oldest groups, down to none).
    fn evict(&mut self) {
        while self.groups.len() > self.max_groups
            || (!self.groups.is_empty() && (self.bytes > self.max_bytes || self.total.over()))
        {
            if let Some(old) = self.groups.pop_front() {
                self.bytes -= old.bytes;
                self.total.sub(old.bytes);
            }
        }
    }

    /// The frames of a complete cached group.
    pub(crate) fn group(&self, sequence: GroupSequence) -> Option<Vec<Bytes>> {
        self.groups
            .iter()
            .find(|g| g.sequence == sequence && g.finished)
            .map(|g| g.frames.clone())
    }

    /// The cached sequences, oldest first.
    pub(crate) fn sequences(&self) -> Vec<GroupSequence> {
        self.groups.iter().map(|g| g.sequence).collect()
    }

    /// Bytes held: payload plus [`FRAME_OVERHEAD`] per frame.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.total.sub(self.bytes);
    }
}

/// What the relay keeps about a running fan-out.
#[derive(Debug)]
pub(crate) struct TrackFanout {
    /// Tells fan-outs apart when one replaces another under the same name.
    pub(crate) id: u64,
    /// New downstream subscribers.
    pub(crate) joins: mpsc::UnboundedSender<TrackWriter>,
    /// Shared with fetches.
    pub(crate) cache: Arc<Mutex<Cache>>,
    /// Dropped to end the fan-out (the broadcast is gone).
    pub(crate) _stop: watch::Sender<bool>,
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
    End(Result<(), StreamEndError>),
}

type GroupStream = Pin<Box<dyn Stream<Item = (GroupSequence, Item)> + Send>>;

/// Where an upstream group's reading stands.
enum Reading {
    /// Frames go on; so many were forwarded.
    Open(GroupReader, usize),
    /// The last batch went out; its end comes next.
    Ending(Result<(), StreamEndError>),
    Done,
}

/// An upstream group as a stream of batches of frames (a frame, with whatever arrived with
/// it), then its end. A group with more than `max_frames` frames is cut there: the upstream
/// group is stopped, and the group ends aborted downstream.
fn frames(reader: GroupReader, max_frames: usize) -> GroupStream {
    let sequence = reader.sequence();
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
                let cut = Err(StreamEndError::Local);
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
fn group_code(err: &StreamEndError) -> ErrorCode {
    match err {
        StreamEndError::Reset(c) => *c,
        StreamEndError::Expired => code::group::EXPIRED,
        // The upstream session went away mid-group; the downstream session is not closing.
        _ => code::group::PUBLISH_ABORTED,
    }
}

/// The fan-out task's state.
pub(crate) struct Fanout {
    upstream: TrackReader,
    cache: Arc<Mutex<Cache>>,
    /// Frames forwarded per group at most.
    max_frames: usize,
    subscribers: Vec<(u64, Subscriber)>,
    next_subscriber: u64,
    groups: SelectAll<GroupStream>,
    leaving: FuturesUnordered<Pin<Box<dyn std::future::Future<Output = u64> + Send>>>,
}

impl Fanout {
    pub(crate) fn new(upstream: TrackReader, cache: Arc<Mutex<Cache>>, max_frames: usize) -> Self {
        Self {
            upstream,
            cache,
            max_frames,
            subscribers: Vec::new(),
            next_subscriber: 0,
            groups: SelectAll::new(),
            leaving: FuturesUnordered::new(),
        }
    }

    /// Runs until the last subscriber leaves, the upstream track ends, or `stop` is set.
    pub(crate) async fn run(
        mut self,
        mut joins: mpsc::UnboundedReceiver<TrackWriter>,
        mut stop: watch::Receiver<bool>,
        mut detach: Detach,
    ) {
        let path = self.upstream.path().clone();
        let track = self.upstream.track().to_owned();
        tracing::debug!(%path, %track, "upstream subscription started");
        let mut upstream_end: Option<Result<(), StreamEndError>> = None;
        loop {
            if self.subscribers.is_empty() && upstream_end.is_none() {
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
            if upstream_end.is_some() && self.groups.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    upstream_end = Some(Ok(()));
                    break;
                }
                Some(writer) = joins.recv() => self.join(writer),
                Some((sequence, item)) = self.groups.next(), if !self.groups.is_empty() => {
                    self.group_item(sequence, item);
                }
                event = self.upstream.next(), if upstream_end.is_none() => match event {
                    Ok(Some(TrackEvent::Group(reader))) => self.open_group(reader),
                    Ok(Some(TrackEvent::Dropped { start, end, code })) => {
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
        tracing::debug!(%path, %track, ?end, "upstream track ended");
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
                Err(StreamEndError::Reset(c) | StreamEndError::Cancelled(c)) => {
                    sub.writer.close_with_error(*c)
                }
                _ => sub.writer.finish(),
            }
        }
    }

    /// A new downstream subscriber: it starts with the latest cached group (or, if it asked
    /// for a start, every cached group from there), then follows the live groups.
    fn join(&mut self, mut writer: TrackWriter) {
        if writer.accept(PublisherParams::default()).is_err() {
            return;
        }
        let start = writer.subscriber_params().start;
        let mut sub = Subscriber {
            writer,
            groups: Vec::new(),
        };
        {
            let cache = lock(&self.cache);
            let replay: Vec<&CachedGroup> = match start {
                Some(s) => cache.groups.iter().filter(|g| g.sequence >= s).collect(),
                None => cache.groups.back().into_iter().collect(),
            };
            // Groups before the oldest cached one will not come (SUBSCRIBE_DROP, code 0).
            if let (Some(s), Some(first)) = (start, replay.first())
                && first.sequence > s
            {
                let _ = sub.writer.drop_groups(
                    s,
                    GroupSequence(first.sequence.0 - 1),
                    code::subscribe::INTERNAL,
                );
            }
            for cached in replay {
                match sub.writer.open_group_at(cached.sequence) {
                    Ok(mut group) => {
                        for frame in &cached.frames {
                            if group.write_frame(frame.clone()).is_err() {
                                break;
                            }
                        }
                        if cached.finished {
                            let _ = group.finish();
                        } else {
                            sub.groups.push(group);
                        }
                    }
                    Err(PublishError::Closed(_)) => return,
                    Err(_) => {} // outside its range
                }
            }
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
        let sequence = reader.sequence();
        lock(&self.cache).begin(sequence);
        for (_, sub) in &mut self.subscribers {
            // Out of its range, a duplicate, or it has ended: not for this subscriber.
            if let Ok(group) = sub.writer.open_group_at(sequence) {
                sub.groups.push(group);
            }
        }
        self.groups.push(frames(reader, max_frames));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(cache: &Cache) -> Vec<u64> {
        cache.sequences().into_iter().map(|s| s.0).collect()
    }

    #[test]
    fn cache_keeps_the_newest_groups_by_count_and_bytes() {
        // Each frame costs its payload plus FRAME_OVERHEAD.
        let cost = |len: usize| len + FRAME_OVERHEAD;
        let mut cache = Cache::new(3, 3 * cost(10) + 10, CacheTotal::new(usize::MAX));
        for s in 1..=5 {
            cache.begin(GroupSequence(s));
            cache.push(GroupSequence(s), &[Bytes::from(vec![0u8; 10])]);
            cache.finish(GroupSequence(s));
        }
        assert_eq!(seqs(&cache), [3, 4, 5]);
        assert_eq!(cache.bytes(), 3 * cost(10));
        assert_eq!(cache.group(GroupSequence(4)).unwrap().len(), 1);
        assert!(cache.group(GroupSequence(2)).is_none());

        // Bytes: a big group pushes the old ones out, and one bigger than the budget goes too.
        cache.begin(GroupSequence(6));
        cache.push(GroupSequence(6), &[Bytes::from(vec![0u8; 81])]);
        assert_eq!(seqs(&cache), [5, 6]);
        assert_eq!(cache.bytes(), cost(10) + cost(81));
        cache.push(GroupSequence(6), &[Bytes::from(vec![0u8; 200])]);
        assert_eq!(seqs(&cache), Vec::<u64>::new());
        assert_eq!(cache.bytes(), 0);
        cache.push(GroupSequence(6), &[Bytes::from(vec![0u8; 1])]);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn empty_frames_count_against_the_cache_budget() {
        // A million empty frames would cost nothing by payload; by their overhead they push
        // the group out once it passes the budget.
        let mut cache = Cache::new(4, 1024 * 1024, CacheTotal::new(usize::MAX));
        cache.begin(GroupSequence(1));
        let empty = vec![Bytes::new(); 1000];
        for _ in 0..1000 {
            cache.push(GroupSequence(1), &empty);
            assert!(cache.bytes() <= 1024 * 1024);
        }
        assert_eq!(
            seqs(&cache),
            Vec::<u64>::new(),
            "evicted by its frames' overhead"
        );
    }

    #[test]
    fn every_track_cache_shares_the_relay_total() {
        // Two tracks, each allowed 1000 bytes, under a total of 1000: the second track's
        // groups push its own out rather than grow past the total; dropping a cache
        // releases its share.
        let total = CacheTotal::new(1000);
        let mut a = Cache::new(8, 1000, total.clone());
        let mut b = Cache::new(8, 1000, total.clone());
        let frame = |n| [Bytes::from(vec![0u8; n])];
        a.begin(GroupSequence(1));
        a.push(GroupSequence(1), &frame(600 - FRAME_OVERHEAD));
        b.begin(GroupSequence(1));
        b.push(GroupSequence(1), &frame(300 - FRAME_OVERHEAD));
        assert_eq!(total.bytes(), 900);
        b.begin(GroupSequence(2));
        b.push(GroupSequence(2), &frame(300 - FRAME_OVERHEAD));
        assert!(total.bytes() <= 1000, "{}", total.bytes());
        assert_eq!(seqs(&b), [2], "b gave up its oldest group");
        assert_eq!(seqs(&a), [1], "a keeps its own");
        drop(a);
        assert_eq!(total.bytes(), 300);
    }

    #[test]
    fn cache_orders_interleaved_groups_and_drops_aborted_ones() {
        let mut cache = Cache::new(4, 1000, CacheTotal::new(usize::MAX));
        cache.begin(GroupSequence(2));
        cache.begin(GroupSequence(1));
        cache.begin(GroupSequence(3));
        assert_eq!(seqs(&cache), [1, 2, 3]);
        cache.push(GroupSequence(2), &[Bytes::from_static(b"ab")]);
        cache.abort(GroupSequence(2));
        assert_eq!(seqs(&cache), [1, 3]);
        assert_eq!(cache.bytes(), 0);
        // Unfinished groups are not served to fetches.
        assert!(cache.group(GroupSequence(1)).is_none());
        cache.finish(GroupSequence(1));
        assert_eq!(cache.group(GroupSequence(1)), Some(vec![]));
    }
}
