//! The session's deadlines: an ordered set, so the next one is found in O(log n) and a
//! cancelled one leaves nothing behind.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::StreamId;
use crate::SubscribeId;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Timer {
    /// Our subscription has waited too long for its first SUBSCRIBE_OK.
    SubscribeResponse(SubscribeId),
    /// The publisher finished our subscription: groups already on their way are still
    /// accepted until this deadline.
    SubscribeLinger(SubscribeId),
    /// The publisher of a subscription we ended has not closed its side of this stream.
    UnsubscribeGrace(StreamId),
    /// The probe responder's next statistics sample.
    ProbeSample,
    /// The peer has not left after our GOAWAY.
    GoawayDrain,
    /// A stream has owed us a message for too long (see `incomplete`).
    Incomplete(StreamId),
    /// A received group or fetch may be stalled in the middle of a frame (see `data`).
    Stalled(StreamId),
    /// The announce rate limit has a token again for the throttled interests (see
    /// `announce`).
    AnnounceRate,
}

/// Deadlines, at most one per [`Timer`].
#[derive(Debug, Default)]
pub(super) struct Timers {
    by_time: BTreeSet<(Instant, Timer)>,
    by_timer: HashMap<Timer, Instant>,
}

impl Timers {
    /// Sets (or moves) a deadline.
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(old) = self.by_timer.insert(timer, at) {
            self.by_time.remove(&(old, timer));
        }
        self.by_time.insert((at, timer));
    }

    /// Cancels a deadline, if set.
    pub(super) fn cancel(&mut self, timer: Timer) {
        if let Some(at) = self.by_timer.remove(&timer) {
            self.by_time.remove(&(at, timer));
        }
    }

    /// Whether a deadline is set.
    pub(super) fn is_set(&self, timer: Timer) -> bool {
        self.by_timer.contains_key(&timer)
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns one deadline at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_timer.remove(&timer);
        Some(timer)
    }

    pub(super) fn clear(&mut self) {
        self.by_time.clear();
        self.by_timer.clear();
    }
}
