//! The most recent groups of one track, kept for subscribers that join late (they start
//! with the latest group, or from the group they ask for) and for fetches.
//!
//! One type for every fan-out: a [`crate::TrackProducer`] keeps one, and so does a relay for
//! each track it forwards; [`crate::TrackWriter::replay`] starts a subscriber from one. A cache is bounded by a count of groups and by bytes (payload
//! plus [`FRAME_OVERHEAD`] per frame), and may share a budget with other caches
//! ([`CacheBudget`]): over any of them it drops its oldest groups.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use moq_proto::GroupSequence;

/// What one cached frame costs beyond its payload (its handle in the group's list),
/// charged against a cache's byte budget so that empty frames are evicted like others.
///
/// ```
/// use bytes::Bytes;
/// use moq_tokio::GroupSequence;
/// use moq_tokio::publish::{FRAME_OVERHEAD, GroupCache};
/// let mut cache = GroupCache::new(4, 1 << 20, None);
/// cache.begin(GroupSequence(1));
/// cache.push(GroupSequence(1), &[Bytes::new()]);
/// assert!(cache.bytes() >= FRAME_OVERHEAD); // an empty frame still costs
/// ```
pub const FRAME_OVERHEAD: usize = 64;

/// The byte limit of a track's cache made with [`crate::Broadcast::create_track`].
///
/// ```
/// assert_eq!(moq_tokio::publish::DEFAULT_TRACK_CACHE_BYTES, 64 << 20);
/// ```
pub const DEFAULT_TRACK_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// One cached group.
///
/// ```
/// use bytes::Bytes;
/// use moq_tokio::GroupSequence;
/// use moq_tokio::publish::GroupCache;
/// let mut cache = GroupCache::new(2, 1 << 20, None);
/// cache.begin(GroupSequence(1));
/// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
/// cache.finish(GroupSequence(1));
/// let group = cache.replay(None).next().unwrap();
/// assert_eq!((group.sequence(), group.frames().len(), group.is_finished()), (GroupSequence(1), 1, true));
/// ```
#[derive(Debug)]
pub struct CachedGroup {
    sequence: GroupSequence,
    frames: Vec<Bytes>,
    bytes: usize,
    finished: bool,
}

impl CachedGroup {
    /// The group's sequence number.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert_eq!(cache.replay(None).next().unwrap().sequence(), GroupSequence(1));
    /// ```
    pub fn sequence(&self) -> GroupSequence {
        self.sequence
    }

    /// Its frames so far.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert_eq!(cache.replay(None).next().unwrap().frames(), &[Bytes::from_static(b"a")]);
    /// ```
    pub fn frames(&self) -> &[Bytes] {
        &self.frames
    }

    /// Whether the group is complete.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert!(cache.replay(None).next().unwrap().is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// Bytes held by several caches together, and their limit: a relay shares one across every
/// track it caches. A cache whose push takes the total over the limit gives up its own
/// oldest groups, down to none: the caches that filled the budget first keep it, and a new
/// track caches nothing until they shrink.
///
/// ```
/// use moq_tokio::publish::{CacheBudget, GroupCache};
/// let budget = CacheBudget::new(256 << 20);
/// let a = GroupCache::new(8, 64 << 20, Some(budget.clone()));
/// let b = GroupCache::new(8, 64 << 20, Some(budget.clone()));
/// assert_eq!(budget.bytes(), 0);
/// ```
#[derive(Debug)]
pub struct CacheBudget {
    bytes: AtomicUsize,
    max: usize,
}

impl CacheBudget {
    /// A budget of `max` bytes.
    ///
    /// ```
    /// use moq_tokio::publish::CacheBudget;
    /// let budget = CacheBudget::new(1 << 30);
    /// ```
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicUsize::new(0),
            max,
        })
    }

    fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    fn over(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.max
    }

    /// Bytes held by every cache under this budget.
    ///
    /// ```
    /// use moq_tokio::publish::CacheBudget;
    /// assert_eq!(CacheBudget::new(1 << 30).bytes(), 0);
    /// ```
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// The most recent groups of one track, by ascending sequence, bounded by count and bytes.
///
/// ```
/// use bytes::Bytes;
/// use moq_tokio::GroupSequence;
/// use moq_tokio::publish::GroupCache;
/// let mut cache = GroupCache::new(2, 1 << 20, None);
/// cache.begin(GroupSequence(1));
/// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
/// cache.finish(GroupSequence(1));
/// assert_eq!(cache.sequences(), vec![GroupSequence(1)]);
/// ```
#[derive(Debug)]
pub struct GroupCache {
    groups: VecDeque<CachedGroup>,
    bytes: usize,
    max_groups: usize,
    max_bytes: usize,
    budget: Option<Arc<CacheBudget>>,
}

impl GroupCache {
    /// A cache of at most `max_groups` groups (at least 1) and `max_bytes` bytes, under a
    /// shared `budget` if given.
    ///
    /// ```
    /// use moq_tokio::publish::GroupCache;
    /// let cache = GroupCache::new(4, 16 << 20, None);
    /// assert_eq!(cache.bytes(), 0);
    /// ```
    pub fn new(max_groups: usize, max_bytes: usize, budget: Option<Arc<CacheBudget>>) -> Self {
        Self {
            groups: VecDeque::new(),
            bytes: 0,
            max_groups: max_groups.max(1),
            max_bytes,
            budget,
        }
    }

    fn find(&mut self, sequence: GroupSequence) -> Option<&mut CachedGroup> {
        // Frames almost always belong to the newest group: search from the back.
        self.groups
            .iter_mut()
            .rev()
            .find(|g| g.sequence == sequence)
    }

    /// A group started. Groups may begin out of order (they travel on their own streams);
    /// the cache keeps them sorted.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// cache.begin(GroupSequence(2));
    /// assert_eq!(cache.sequences().len(), 2);
    /// ```
    pub fn begin(&mut self, sequence: GroupSequence) {
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

    /// Frames of a group arrived. A group evicted (or never begun, or finished) stays as it
    /// is.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// cache.begin(GroupSequence(2));
    /// cache.push(GroupSequence(2), &[Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
    /// cache.finish(GroupSequence(2));
    /// assert_eq!(cache.group(GroupSequence(2)).unwrap().len(), 2);
    /// ```
    pub fn push(&mut self, sequence: GroupSequence, frames: &[Bytes]) {
        let Some(group) = self.find(sequence).filter(|g| !g.finished) else {
            return;
        };
        let len: usize = frames.iter().map(|f| f.len() + FRAME_OVERHEAD).sum();
        group.frames.extend_from_slice(frames);
        group.bytes += len;
        self.bytes += len;
        if let Some(budget) = &self.budget {
            budget.add(len);
        }
        self.evict();
    }

    /// A group is complete.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert!(cache.replay(None).next().unwrap().is_finished());
    /// ```
    pub fn finish(&mut self, sequence: GroupSequence) {
        if let Some(group) = self.find(sequence) {
            group.finished = true;
        }
    }

    /// A group ended incomplete: it is not kept. A finished group stays.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// cache.begin(GroupSequence(2)); // still open: an abort drops it
    /// cache.abort(GroupSequence(2));
    /// assert_eq!(cache.sequences(), vec![GroupSequence(1)]);
    /// ```
    pub fn abort(&mut self, sequence: GroupSequence) {
        if let Some(at) = self
            .groups
            .iter()
            .position(|g| g.sequence == sequence && !g.finished)
            && let Some(group) = self.groups.remove(at)
        {
            self.release(group.bytes);
        }
    }

    fn release(&mut self, bytes: usize) {
        self.bytes -= bytes;
        if let Some(budget) = &self.budget {
            budget.sub(bytes);
        }
    }

    /// Drops the oldest groups while this cache is over its limits, or its budget over its
    /// total (then this cache gives up its own oldest groups, down to none).
    fn evict(&mut self) {
        while self.groups.len() > self.max_groups
            || (!self.groups.is_empty()
                && (self.bytes > self.max_bytes || self.budget.as_ref().is_some_and(|b| b.over())))
        {
            if let Some(old) = self.groups.pop_front() {
                self.release(old.bytes);
            }
        }
    }

    /// The frames of a complete cached group.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert_eq!(cache.group(GroupSequence(1)), Some(vec![Bytes::from_static(b"a")]));
    /// ```
    pub fn group(&self, sequence: GroupSequence) -> Option<Vec<Bytes>> {
        self.groups
            .iter()
            .find(|g| g.sequence == sequence && g.finished)
            .map(|g| g.frames.clone())
    }

    /// The cached sequences, oldest first.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert_eq!(cache.sequences(), vec![GroupSequence(1)]);
    /// ```
    pub fn sequences(&self) -> Vec<GroupSequence> {
        self.groups.iter().map(|g| g.sequence).collect()
    }

    /// Bytes held: payload plus [`FRAME_OVERHEAD`] per frame.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert!(cache.bytes() > 1);
    /// ```
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What a new subscriber gets first: without a start, the latest group; with one, every
    /// cached group from there on.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use moq_tokio::GroupSequence;
    /// use moq_tokio::publish::GroupCache;
    /// let mut cache = GroupCache::new(2, 1 << 20, None);
    /// cache.begin(GroupSequence(1));
    /// cache.push(GroupSequence(1), &[Bytes::from_static(b"a")]);
    /// cache.finish(GroupSequence(1));
    /// assert_eq!(cache.replay(Some(GroupSequence(1))).count(), 1);
    /// assert_eq!(cache.replay(Some(GroupSequence(2))).count(), 0);
    /// ```
    pub fn replay(&self, start: Option<GroupSequence>) -> impl Iterator<Item = &CachedGroup> {
        let skip = match start {
            Some(s) => self.groups.iter().take_while(|g| g.sequence < s).count(),
            None => self.groups.len().saturating_sub(1),
        };
        self.groups.iter().skip(skip)
    }
}

impl Drop for GroupCache {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.sub(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(cache: &GroupCache) -> Vec<u64> {
        cache.sequences().into_iter().map(|s| s.0).collect()
    }

    #[test]
    fn cache_keeps_the_newest_groups_by_count_and_bytes() {
        // Each frame costs its payload plus FRAME_OVERHEAD.
        let cost = |len: usize| len + FRAME_OVERHEAD;
        let mut cache = GroupCache::new(3, 3 * cost(10) + 10, None);
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
        let mut cache = GroupCache::new(4, 1024 * 1024, None);
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
        let total = CacheBudget::new(1000);
        let mut a = GroupCache::new(8, 1000, Some(total.clone()));
        let mut b = GroupCache::new(8, 1000, Some(total.clone()));
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
        let mut cache = GroupCache::new(4, 1000, None);
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

    #[test]
    fn replay_starts_with_the_latest_group_or_from_the_asked_start() {
        let mut cache = GroupCache::new(3, 1000, None);
        for s in 1..=5 {
            cache.begin(GroupSequence(s));
        }
        let replay = |start: Option<u64>| -> Vec<u64> {
            cache
                .replay(start.map(GroupSequence))
                .map(|g| g.sequence().0)
                .collect()
        };
        assert_eq!(replay(None), [5], "the latest");
        assert_eq!(replay(Some(4)), [4, 5]);
        assert_eq!(
            replay(Some(1)),
            [3, 4, 5],
            "older than the cache: all of it"
        );
        assert_eq!(replay(Some(9)), Vec::<u64>::new(), "in the future: nothing");
    }
}
