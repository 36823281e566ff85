//! Announce streams, both sides (spec §6.1; draft §5.1.1, §7.3, §7.4).
//!
//! As publisher, what an interest is sent is read from our broadcasts as its stream takes
//! it, never queued ahead: at most [`SEND_AHEAD`] bytes of ANNOUNCE are given to the stream
//! beyond what the transport has accepted. The first report walks the broadcasts in path
//! order; a change to a broadcast the walk has passed marks that path, with what the peer
//! was last told of it, and when its turn comes the peer is told the difference (ACTIVE,
//! ENDED, or ENDED then ACTIVE for new hops; nothing if it came back as it was). So a peer
//! that reads slowly costs one entry per changed broadcast, and past
//! [`Config::max_announce_queue`](crate::Config::max_announce_queue) of them it is a slow
//! consumer (cancel 0x0).
//!
//! As subscriber, the changes the peer announces are reported to the application at a
//! rate per session ([`Config::announce_rate`](crate::Config::announce_rate)): past the
//! burst they wait, coalesced per path the same way, until a token comes back.

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;

use super::timer::Timer;
use super::{CommandError, Dir, EndReason, Event, Input, Kind, Session, StreamId};
use crate::code::announce as codes;
use crate::message::{Announce, AnnounceInterest, AnnounceStatus, StreamType};
use crate::{BroadcastPath, HopId, PathPrefix};

/// ANNOUNCE bytes given to an announce stream beyond what the transport has accepted.
pub(super) const SEND_AHEAD: usize = 4096;

/// What the ledger counts for one marked path of an interest, besides its hops.
const MARK_COST: usize = 96;

/// What the ledger counts for a marked path.
fn mark_cost(path: &BroadcastPath, was: Option<&Vec<HopId>>) -> usize {
    MARK_COST + path.as_str().len() + was.map_or(0, |hops| hops.len() * 8)
}

/// Paths in the order they were first marked, each with a value: the paths changed since
/// someone (the peer, or the application) was told of them, with what was told (`V` is the
/// hops it was told active with, or `None`), or the announcements a pulling handle has not
/// taken yet (`V` is the hops). A path forgotten before its turn stays in the order until its
/// turn or a compaction, and is skipped, so forgetting is O(1) and the order stays bounded by
/// twice what is marked.
#[derive(Debug)]
struct Marks<V> {
    order: VecDeque<BroadcastPath>,
    told: HashMap<BroadcastPath, V>,
}

impl<V> Default for Marks<V> {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            told: HashMap::new(),
        }
    }
}

impl<V> Marks<V> {
    /// Marks `path` with `value` unless it is marked already: whether it is new.
    fn mark(&mut self, path: &BroadcastPath, value: V) -> bool {
        if self.told.contains_key(path) {
            return false;
        }
        self.told.insert(path.clone(), value);
        self.order.push_back(path.clone());
        true
    }

    /// Marks `path` with `value`, replacing the value (not the place) of a marked path.
    fn set(&mut self, path: &BroadcastPath, value: V) {
        if let Some(told) = self.told.get_mut(path) {
            *told = value;
        } else {
            self.mark(path, value);
        }
    }

    /// The value of a marked path.
    fn told(&self, path: &BroadcastPath) -> Option<&V> {
        self.told.get(path)
    }

    /// Unmarks a path, returning its value; the order is compacted once forgotten paths
    /// outnumber marked ones.
    fn forget(&mut self, path: &BroadcastPath) -> Option<V> {
        let value = self.told.remove(path);
        if self.order.len() > 2 * self.told.len() + 16 {
            let told = &self.told;
            self.order.retain(|p| told.contains_key(p));
        }
        value
    }

    /// The next marked path, with its value.
    fn pop(&mut self) -> Option<(BroadcastPath, V)> {
        while let Some(path) = self.order.pop_front() {
            if let Some(value) = self.told.remove(&path) {
                return Some((path, value));
            }
        }
        None
    }

    /// Puts back what [`Marks::pop`] returned, first in line.
    fn unpop(&mut self, path: BroadcastPath, value: V) {
        self.told.insert(path.clone(), value);
        self.order.push_front(path);
    }

    /// Paths marked.
    fn len(&self) -> usize {
        self.told.len()
    }
}

/// The peer's interest in our broadcasts (we are the publisher on this stream).
#[derive(Debug, Default)]
pub(super) struct InterestIn {
    /// `None` until ANNOUNCE_INTEREST arrives.
    interest: Option<AnnounceInterest>,
    /// The first report: the broadcasts after this path (all of them if `Some(None)`) are
    /// still to be reported as they are when the walk reaches them. `None` once done.
    walk: Option<Option<BroadcastPath>>,
    /// Paths changed since the peer was told of them.
    marks: Marks<Option<Vec<HopId>>>,
    /// What `marks` holds, for the ledger.
    held: usize,
}

impl InterestIn {
    /// Whether this interest wants `path` with `hops`.
    fn wants(&self, path: &BroadcastPath, hops: &[HopId]) -> bool {
        self.interest.as_ref().is_some_and(|interest| {
            let excluded = interest.exclude_hop.0 != 0 && hops.contains(&interest.exclude_hop);
            !excluded && interest.prefix.matches(path)
        })
    }

    /// Whether the first report has yet to reach `path`.
    fn walk_ahead_of(&self, path: &BroadcastPath) -> bool {
        match &self.walk {
            None => false,
            Some(None) => true,
            Some(Some(at)) => path > at,
        }
    }

    /// Marks `path` as changed, `was` being what the peer was told (if not marked already).
    fn mark(&mut self, path: &BroadcastPath, was: Option<&Vec<HopId>>) -> usize {
        let was = was.filter(|hops| self.wants(path, hops)).cloned();
        let cost = mark_cost(path, was.as_ref());
        if !self.marks.mark(path, was) {
            return 0;
        }
        self.held += cost;
        cost
    }

    /// The next marked path, with what the peer was told of it.
    fn next_marked(&mut self) -> Option<(BroadcastPath, Option<Vec<HopId>>)> {
        let (path, was) = self.marks.pop()?;
        self.held -= mark_cost(&path, was.as_ref());
        Some((path, was))
    }

    /// The ANNOUNCE messages that tell the peer of `now` for `path`, after `was`.
    fn difference(
        &self,
        path: &BroadcastPath,
        was: Option<Vec<HopId>>,
        now: Option<&Vec<HopId>>,
    ) -> Vec<Announce> {
        let Some(suffix) = self
            .interest
            .as_ref()
            .and_then(|i| i.prefix.suffix_of(path))
        else {
            return Vec::new();
        };
        let now = now.filter(|hops| self.wants(path, hops));
        let message = |status, hops: Vec<HopId>| Announce {
            status,
            suffix: suffix.to_owned(),
            hops,
        };
        match (was, now) {
            (was, Some(now)) if was.as_ref() == Some(now) => Vec::new(),
            // ENDED is sent with no hops, as gomoqt does.
            (Some(_), None) => vec![message(AnnounceStatus::Ended, Vec::new())],
            (None, Some(now)) => vec![message(AnnounceStatus::Active, now.clone())],
            (Some(_), Some(now)) => vec![
                message(AnnounceStatus::Ended, Vec::new()),
                message(AnnounceStatus::Active, now.clone()),
            ],
            (None, None) => Vec::new(),
        }
    }
}

/// What a handle that pulls an interest's announcements has not taken, and what it took
/// that is still active (see [`Session::lease_interest`]). One entry per path: a broadcast
/// that ends before it is taken is forgotten, so what waits is bounded by the broadcasts
/// active at once, however fast the peer churns.
#[derive(Debug, Default)]
struct AppQueue {
    /// Reported active and not taken yet, with their hops.
    waiting: Marks<Vec<HopId>>,
    /// Taken and still active, each with the number it was taken under.
    taken: HashMap<BroadcastPath, u64>,
    next: u64,
}

impl AppQueue {
    fn announced(&mut self, path: &BroadcastPath, hops: &[HopId]) {
        self.waiting.set(path, hops.to_vec());
    }

    fn unannounced(&mut self, path: &BroadcastPath) {
        if self.waiting.forget(path).is_none() {
            self.taken.remove(path);
        }
    }

    fn take(&mut self) -> Option<(BroadcastPath, Vec<HopId>, u64)> {
        let (path, hops) = self.waiting.pop()?;
        let number = self.next;
        self.next += 1;
        self.taken.insert(path.clone(), number);
        Some((path, hops, number))
    }
}

/// Our interest in the peer's broadcasts.
#[derive(Debug)]
pub(super) struct InterestOut {
    prefix: PathPrefix,
    /// The peer's active broadcasts, with their hops.
    active: HashMap<BroadcastPath, Vec<HopId>>,
    /// Paths changed since the application was told of them.
    marks: Marks<Option<Vec<HopId>>>,
    /// For a handle that pulls (leased).
    app: Option<AppQueue>,
}

impl InterestOut {
    fn new(prefix: PathPrefix) -> Self {
        Self {
            prefix,
            active: HashMap::new(),
            marks: Marks::default(),
            app: None,
        }
    }

    /// `path` changed from `was` (the peer's state before): remember what the application
    /// was told, or forget the change if it is back to that.
    fn mark(&mut self, path: BroadcastPath, was: Option<Vec<HopId>>) {
        match self.marks.told(&path) {
            None => {
                self.marks.mark(&path, was);
            }
            Some(told) if told.as_ref() == self.active.get(&path) => {
                self.marks.forget(&path);
            }
            Some(_) => {}
        }
    }

    /// The paths the application was told are active, in path order.
    fn told_active(&self) -> Vec<BroadcastPath> {
        let mut paths: Vec<BroadcastPath> = self
            .active
            .keys()
            .filter(|p| self.marks.told(p).is_none())
            .chain(
                self.marks
                    .told
                    .iter()
                    .filter(|(_, hops)| hops.is_some())
                    .map(|(p, _)| p),
            )
            .cloned()
            .collect();
        paths.sort();
        paths
    }
}

impl Session {
    // ---- Commands ----

    /// Publishes a broadcast: every peer interest whose prefix matches learns of it (ACTIVE).
    ///
    /// `hops` is empty for a broadcast that originates here; a relay passes the hops it
    /// learnt followed by its own non-zero hop ID (decision D15). Announcing an active path
    /// again with other hops re-announces it (ENDED then ACTIVE); with the same hops it does
    /// nothing.
    pub fn announce(&mut self, path: BroadcastPath, hops: Vec<HopId>) -> Result<(), CommandError> {
        self.check_open()?;
        let probe = Announce {
            status: AnnounceStatus::Active,
            suffix: path.as_str().to_owned(),
            hops: hops.clone(),
        };
        crate::Message::encoded_len(&probe)?;
        if self.broadcasts.get(&path) == Some(&hops) {
            return Ok(());
        }
        let old = self.broadcasts.insert(path.clone(), hops);
        self.broadcast_changed(&path, old.as_ref());
        Ok(())
    }

    /// Withdraws a broadcast: interested peers learn it ended. Returns whether it was active.
    /// Subscriptions to it stay open until the application ends them.
    pub fn unannounce(&mut self, path: &BroadcastPath) -> bool {
        let Some(hops) = self.broadcasts.remove(path) else {
            return false;
        };
        if self.closed.is_none() {
            self.broadcast_changed(path, Some(&hops));
        }
        true
    }

    /// Whether a broadcast is published here.
    pub fn is_announced(&self, path: &BroadcastPath) -> bool {
        self.broadcasts.contains_key(path)
    }

    /// Asks the peer to report its broadcasts under `prefix` (an Announce stream). Reports
    /// arrive as [`Event::Announced`] / [`Event::Unannounced`] naming the returned stream.
    ///
    /// `exclude_hop`: a relay passes its own hop ID to avoid hearing its own announcements
    /// back; an edge passes `HopId(0)`.
    pub fn announce_interest(
        &mut self,
        prefix: PathPrefix,
        exclude_hop: HopId,
    ) -> Result<StreamId, CommandError> {
        self.check_new_request()?;
        let message = AnnounceInterest {
            prefix: prefix.clone(),
            exclude_hop,
        };
        crate::Message::encoded_len(&message)?;
        let id = self.open_stream(Dir::Bi, Kind::AnnounceOut, 0);
        self.send_typed(id, StreamType::Announce, &message)?;
        self.interests_out.insert(id, InterestOut::new(prefix));
        Ok(id)
    }

    /// Holds one of our announce interests for a handle that pulls its announcements
    /// ([`Session::poll_announcement`]) rather than reading the events: from now on what is
    /// reported active waits for it, one entry per path (a broadcast that ends before it
    /// is taken is forgotten). False if there is no such interest.
    pub fn lease_interest(&mut self, interest: StreamId) -> bool {
        match self.interests_out.get_mut(&interest) {
            Some(state) => {
                state.app.get_or_insert_with(AppQueue::default);
                true
            }
            None => false,
        }
    }

    /// Whether one of our announce interests is open.
    pub fn is_interest_open(&self, interest: StreamId) -> bool {
        self.interests_out.contains_key(&interest)
    }

    /// The next broadcast reported active on a leased interest and not taken yet: its
    /// path, hops, and the number it is taken under (for [`Session::is_announcement_active`]).
    pub fn poll_announcement(
        &mut self,
        interest: StreamId,
    ) -> Option<(BroadcastPath, Vec<HopId>, u64)> {
        self.interests_out.get_mut(&interest)?.app.as_mut()?.take()
    }

    /// Whether a broadcast taken from a leased interest (under `number`) is still active:
    /// false once it ended, or its interest or the session did.
    pub fn is_announcement_active(
        &self,
        interest: StreamId,
        path: &BroadcastPath,
        number: u64,
    ) -> bool {
        self.interests_out
            .get(&interest)
            .and_then(|i| i.app.as_ref())
            .is_some_and(|app| app.taken.get(path) == Some(&number))
    }

    /// Stops listening on one of our announce interests. Its active entries are reported
    /// ended, then [`Event::InterestEnded`] with [`EndReason::Local`].
    pub fn stop_interest(&mut self, interest: StreamId) -> Result<(), CommandError> {
        if !self.interests_out.contains_key(&interest) {
            return Err(CommandError::UnknownStream(interest));
        }
        self.end_interest_out(interest, EndReason::Local);
        Ok(())
    }

    /// Cancels one of our announce interests with an Announce code (RESET_STREAM and
    /// STOP_SENDING), for example [`codes::BANNED_PREFIX`] when the peer announces what it
    /// may not publish here. Its active entries are reported ended, then
    /// [`Event::InterestEnded`] with [`EndReason::Cancelled`].
    pub fn cancel_interest(
        &mut self,
        interest: StreamId,
        code: crate::ErrorCode,
    ) -> Result<(), CommandError> {
        if !self.forget_interest_out(interest, EndReason::Cancelled(code)) {
            return Err(CommandError::UnknownStream(interest));
        }
        self.cancel(interest, code);
        Ok(())
    }

    // ---- Publisher side ----

    /// A broadcast changed (`was`: its hops before): every interest that has been told of
    /// it marks it, and is sent what it can take now.
    fn broadcast_changed(&mut self, path: &BroadcastPath, was: Option<&Vec<HopId>>) {
        let mut touched = Vec::new();
        for (&id, interest) in self.interests_in.iter_mut() {
            let matches = interest
                .interest
                .as_ref()
                .is_some_and(|i| i.prefix.matches(path));
            if matches && !interest.walk_ahead_of(path) {
                self.ledger.announce_marks += interest.mark(path, was);
                touched.push(id);
            }
        }
        // Stream order, not the table's (randomly seeded) order: the same state gives the
        // same commands.
        touched.sort_unstable();
        for id in touched {
            let queued = self.interests_in.get(&id).map_or(0, |i| i.marks.len());
            if queued > self.config.max_announce_queue {
                // A slow consumer (spec §8): cancel rather than keep marking.
                self.drop_interest_in(id);
                self.cancel(id, codes::INTERNAL);
            } else {
                self.flush_interest(id);
            }
        }
    }

    /// Sends an interest what it can take now: marked paths first, then the first report,
    /// until [`SEND_AHEAD`] bytes wait for the transport.
    pub(super) fn flush_interest(&mut self, id: StreamId) {
        while self.unsent_bytes(id) < SEND_AHEAD {
            let Some(interest) = self.interests_in.get_mut(&id) else {
                return;
            };
            let held = interest.held;
            let messages = if let Some((path, was)) = interest.next_marked() {
                self.ledger.announce_marks -= held - interest.held;
                interest.difference(&path, was, self.broadcasts.get(&path))
            } else if let Some(at) = &interest.walk {
                let from = at.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
                let next = self
                    .broadcasts
                    .range((from, Bound::Unbounded))
                    .find(|(path, hops)| interest.wants(path, hops));
                match next {
                    Some((path, hops)) => {
                        interest.walk = Some(Some(path.clone()));
                        interest.difference(path, None, Some(hops))
                    }
                    None => {
                        interest.walk = None;
                        continue;
                    }
                }
            } else {
                return;
            };
            for message in &messages {
                // Sizes were checked when the broadcast was announced.
                let _ = self.send_message(id, message);
            }
        }
    }

    /// Forgets the peer's interest, giving back what its marks held.
    pub(super) fn drop_interest_in(&mut self, id: StreamId) {
        if let Some(interest) = self.interests_in.remove(&id) {
            self.ledger.announce_marks -= interest.held;
        }
    }

    /// What one of the peer's interests holds in marks, for the ledger.
    pub(super) fn interest_in_marks(&self, id: StreamId) -> usize {
        self.interests_in.get(&id).map_or(0, |i| i.held)
    }

    pub(super) fn on_announce_stream(&mut self, id: StreamId) {
        if self.interests_in.len() >= self.config.max_incoming_announce_streams {
            self.cancel(id, codes::INTERNAL);
            return;
        }
        self.interests_in.insert(id, InterestIn::default());
    }

    pub(super) fn recv_announce_interest(&mut self, id: StreamId) -> bool {
        let received = self
            .interests_in
            .get(&id)
            .is_some_and(|i| i.interest.is_some());
        if received {
            // Nothing may follow ANNOUNCE_INTEREST but FIN.
            return match self.decode_with(id, |recv, _| {
                if recv.buffered() > 0 {
                    Err(crate::DecodeError::TrailingBytes {
                        message: "announce stream",
                        count: recv.buffered(),
                    })
                } else {
                    Ok(None::<()>)
                }
            }) {
                Input::End => {
                    self.end_interest_in(id);
                    false
                }
                _ => false,
            };
        }
        match self.decode::<AnnounceInterest>(id) {
            Input::Item(interest) => {
                self.events.push_back(Event::InterestReceived {
                    stream: id,
                    prefix: interest.prefix.clone(),
                });
                if let Some(state) = self.interests_in.get_mut(&id) {
                    state.interest = Some(interest);
                    state.walk = Some(None);
                }
                self.flush_interest(id);
                true
            }
            Input::End => {
                self.end_interest_in(id);
                false
            }
            Input::Pending | Input::Failed | Input::Invalid => false,
        }
    }

    /// The peer stopped listening (or the stream failed): close our side.
    pub(super) fn end_interest_in(&mut self, id: StreamId) {
        self.drop_interest_in(id);
        self.finish_send(id);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.kind = Kind::Ignored;
        }
        self.reap(id);
    }

    // ---- Subscriber side ----

    pub(super) fn recv_announce(&mut self, id: StreamId) -> bool {
        match self.decode::<Announce>(id) {
            Input::Item(message) => {
                self.on_announce(id, message);
                true
            }
            Input::End => {
                self.end_interest_out(id, EndReason::Finished);
                false
            }
            Input::Invalid => {
                self.cancel(id, codes::INVALID_STATUS);
                self.end_interest_out(id, EndReason::Cancelled(codes::INVALID_STATUS));
                false
            }
            Input::Pending | Input::Failed => false,
        }
    }

    fn on_announce(&mut self, id: StreamId, message: Announce) {
        self.stats.announcements_received += 1;
        let max_entries = self.config.max_announce_entries;
        let Some(interest) = self.interests_out.get_mut(&id) else {
            return;
        };
        let path = interest.prefix.join(&message.suffix);
        let failure = match message.status {
            AnnounceStatus::Active if interest.active.contains_key(&path) => {
                Some(codes::DUPLICATED)
            }
            AnnounceStatus::Active if interest.active.len() >= max_entries => Some(codes::INTERNAL),
            AnnounceStatus::Active => {
                interest.active.insert(path.clone(), message.hops);
                interest.mark(path, None);
                None
            }
            AnnounceStatus::Ended => match interest.active.remove(&path) {
                Some(hops) => {
                    interest.mark(path, Some(hops));
                    None
                }
                None => Some(codes::DUPLICATED),
            },
        };
        match failure {
            Some(code) => {
                self.cancel(id, code);
                self.end_interest_out(id, EndReason::Cancelled(code));
            }
            None => self.report_announcements(id),
        }
    }

    /// Tells the application of an interest's changes, one token of the announce rate
    /// each; the rest wait for the timer.
    fn report_announcements(&mut self, id: StreamId) {
        let now = self.now;
        let Some(interest) = self.interests_out.get_mut(&id) else {
            return;
        };
        while let Some((path, was)) = interest.marks.pop() {
            if self.announce_tokens.take(1, now) == 0 {
                interest.marks.unpop(path, was);
                self.announce_throttled.insert(id);
                self.stats.announce_throttled += 1;
                if let Some(at) = self.announce_tokens.next_token(now) {
                    self.timers.set(Timer::AnnounceRate, at);
                }
                return;
            }
            self.stats.announcements_reported += 1;
            let hops = interest.active.get(&path);
            if was.is_some() && was.as_ref() != hops {
                if let Some(app) = interest.app.as_mut() {
                    app.unannounced(&path);
                }
                self.events.push_back(Event::Unannounced {
                    interest: id,
                    path: path.clone(),
                });
            }
            if let Some(hops) = hops
                && was.as_ref() != Some(hops)
            {
                if let Some(app) = interest.app.as_mut() {
                    app.announced(&path, hops);
                }
                self.events.push_back(Event::Announced {
                    interest: id,
                    path,
                    hops: hops.clone(),
                });
            }
        }
    }

    /// The announce rate limit has a token again: the throttled interests report on, in
    /// stream order, while tokens last.
    pub(super) fn on_announce_tokens(&mut self) {
        while let Some(id) = self.announce_throttled.pop_first() {
            self.report_announcements(id);
            if self.announce_throttled.contains(&id) {
                return;
            }
        }
    }

    /// Ends one of our interests: every active entry is reported ended, then the interest.
    /// Reports every active entry of one of our interests ended, then the interest itself;
    /// `false` if it was not ours.
    fn forget_interest_out(&mut self, id: StreamId, reason: EndReason) -> bool {
        let Some(interest) = self.interests_out.remove(&id) else {
            return false;
        };
        self.announce_throttled.remove(&id);
        for path in interest.told_active() {
            self.events
                .push_back(Event::Unannounced { interest: id, path });
        }
        self.events.push_back(Event::InterestEnded {
            interest: id,
            reason,
        });
        true
    }

    pub(super) fn end_interest_out(&mut self, id: StreamId, reason: EndReason) {
        if !self.forget_interest_out(id, reason) {
            return;
        }
        // FIN our side (we were done), discard whatever else arrives, and forget the stream
        // once the peer closes its side.
        self.finish_send(id);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.kind = Kind::Ignored;
        }
        self.reap(id);
    }

    pub(super) fn end_all_interests(&mut self, reason: &EndReason) {
        let mut ids: Vec<_> = self.interests_out.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.end_interest_out(id, reason.clone());
        }
        self.interests_in.clear();
        self.ledger.announce_marks = 0;
        self.announce_throttled.clear();
    }
}

#[cfg(test)]
mod app_queue_tests {
    use super::*;

    fn path(p: &str) -> BroadcastPath {
        BroadcastPath::new(p)
    }

    fn take(queue: &mut AppQueue) -> Option<String> {
        queue.take().map(|(path, ..)| path.to_string())
    }

    #[test]
    fn what_ends_before_it_is_taken_is_forgotten_and_the_queue_stays_small() {
        let mut queue = AppQueue::default();
        queue.announced(&path("/first"), &[]);
        // A hundred thousand broadcasts that come and go, none taken.
        for i in 0..100_000 {
            let p = path(&format!("/churn/{i}"));
            queue.announced(&p, &[]);
            queue.unannounced(&p);
            assert!(queue.waiting.order.len() <= 2 * queue.waiting.len() + 17);
        }
        queue.announced(&path("/last"), &[]);
        assert_eq!(take(&mut queue).as_deref(), Some("/first"));
        assert_eq!(take(&mut queue).as_deref(), Some("/last"));
        assert_eq!(take(&mut queue), None);
        // Taken, then ended: no longer active.
        assert!(queue.taken.contains_key(&path("/last")));
        queue.unannounced(&path("/last"));
        assert!(!queue.taken.contains_key(&path("/last")));
    }

    #[test]
    fn a_path_back_before_it_is_taken_is_reported_once() {
        let mut queue = AppQueue::default();
        queue.announced(&path("/a"), &[]);
        queue.announced(&path("/b"), &[]);
        queue.unannounced(&path("/a"));
        queue.announced(&path("/a"), &[]);
        assert_eq!(take(&mut queue).as_deref(), Some("/a"));
        assert_eq!(take(&mut queue).as_deref(), Some("/b"));
        assert_eq!(take(&mut queue), None);
    }

    #[test]
    fn a_path_taken_again_after_it_ended_gets_a_new_number() {
        let mut queue = AppQueue::default();
        queue.announced(&path("/a"), &[]);
        let (_, _, first) = queue.take().unwrap();
        queue.unannounced(&path("/a"));
        queue.announced(&path("/a"), &[]);
        let (_, _, second) = queue.take().unwrap();
        assert_ne!(first, second, "the first handle stays ended");
        assert_eq!(queue.taken.get(&path("/a")), Some(&second));
    }
}
