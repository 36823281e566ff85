//! Subscribe streams and received groups: the subscriber side (spec §6.2, §6.3; draft
//! §5.1.2, §7.5–§7.8, §7.12, §7.13).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::data::DataIn;
use super::ranges::Ranges;
use super::{CommandError, Dir, EndReason, Event, Input, Kind, Session, StreamId, Timer};
use crate::code::{group as group_codes, subscribe as codes};
use crate::message::{
    GroupHeader, StreamType, Subscribe, SubscribeParams, SubscribeResponse, SubscribeUpdate,
};
use crate::{BroadcastPath, ErrorCode, GroupSequence, SubscribeId};

/// Most disjoint ranges of groups remembered per subscription: a publisher sending scattered
/// groups or drops costs at most this many entries (the oldest are forgotten).
const MAX_SEEN_RANGES: usize = 1024;

/// Priority of control streams: above every group.
pub(super) const CONTROL_PRIORITY: i32 = i32::MAX;

/// One of our subscriptions.
#[derive(Debug)]
pub(super) struct SubOut {
    stream: StreamId,
    params: SubscribeParams,
    /// The publisher's latest SUBSCRIBE_OK, once one arrived.
    publisher: Option<SubscribeParams>,
    /// Open received groups, by sequence.
    groups: BTreeMap<GroupSequence, StreamId>,
    /// The newest group seen and when it arrived.
    newest: Option<(GroupSequence, Instant)>,
    /// Groups received or dropped, to tell when a bounded range has fully arrived.
    seen: Ranges,
    /// The publisher finished the subscription; groups on their way are still accepted.
    finishing: bool,
}

impl SubOut {
    /// Whether every group of a bounded range was received or dropped. The start is the
    /// publisher's (resolved) one, else ours; the end is ours (the latest we asked for),
    /// else the publisher's.
    fn range_arrived(&self) -> bool {
        let start = self.publisher.and_then(|p| p.start).or(self.params.start);
        let end = self.params.end.or(self.publisher.and_then(|p| p.end));
        match (start, end) {
            (Some(start), Some(end)) => self.seen.covers(start.0, end.0),
            _ => false,
        }
    }
}

/// What one of our subscriptions brought, for a handle that pulls it
/// ([`Session::poll_subscription`]): the same as [`Event::GroupReceived`] and
/// [`Event::SubscribeDropped`], in their order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionItem {
    /// A group started arriving: read it with [`Session::read_frame`] on `stream`.
    Group {
        /// Its stream.
        stream: StreamId,
        /// Its sequence.
        sequence: GroupSequence,
    },
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

/// A leased subscription's items not taken yet, and its end once it ended.
#[derive(Debug, Default)]
pub(super) struct SubLease {
    items: std::collections::VecDeque<SubscriptionItem>,
    /// The publisher's latest SUBSCRIBE_OK, kept past the end.
    publisher: Option<SubscribeParams>,
    end: Option<EndReason>,
}

/// A group we are receiving.
#[derive(Debug)]
pub(super) struct GroupIn {
    sub: SubscribeId,
    sequence: GroupSequence,
    arrived: Instant,
    /// What its reader has not read yet.
    pub(super) data: DataIn,
}

/// The effective max latency: the smaller non-zero value of the two; zero = no limit.
pub(super) fn effective_latency(a: Duration, b: Option<Duration>) -> Option<Duration> {
    match (a.is_zero(), b.filter(|b| !b.is_zero())) {
        (true, None) => None,
        (true, Some(b)) => Some(b),
        (false, None) => Some(a),
        (false, Some(b)) => Some(a.min(b)),
    }
}

/// Whether `seq` lies inside `[start, end]` (an unset bound is open).
pub(super) fn in_range(params: &SubscribeParams, seq: GroupSequence) -> bool {
    params.start.is_none_or(|s| seq >= s) && params.end.is_none_or(|e| seq <= e)
}

impl Session {
    // ---- Commands ----

    /// Subscribes to a track (spec §6.2). The subscription is registered at once, so groups
    /// that overtake SUBSCRIBE_OK are accepted. Events name it by the returned ID.
    pub fn subscribe(
        &mut self,
        path: BroadcastPath,
        track: &str,
        params: SubscribeParams,
    ) -> Result<SubscribeId, CommandError> {
        self.check_new_request()?;
        let id = SubscribeId(self.next_subscribe_id);
        let message = Subscribe {
            id,
            path,
            track: track.to_owned(),
            params,
        };
        crate::Message::encoded_len(&message)?;
        self.next_subscribe_id += 1;
        let stream = self.open_stream(Dir::Bi, Kind::SubscribeOut(id), CONTROL_PRIORITY);
        self.send_typed(stream, StreamType::Subscribe, &message)?;
        self.subs_out.insert(
            id,
            SubOut {
                stream,
                params,
                publisher: None,
                groups: BTreeMap::new(),
                newest: None,
                seen: Ranges::default(),
                finishing: false,
            },
        );
        self.timers.set(
            Timer::SubscribeResponse(id),
            self.now + self.config.subscribe_timeout,
        );
        Ok(id)
    }

    /// Changes one of our subscriptions (SUBSCRIBE_UPDATE): priority, order, max latency and
    /// range are all replaced.
    pub fn update_subscription(
        &mut self,
        id: SubscribeId,
        params: SubscribeParams,
    ) -> Result<(), CommandError> {
        self.check_open()?;
        let sub = self
            .subs_out
            .get_mut(&id)
            .ok_or(CommandError::UnknownSubscription(id))?;
        let stream = sub.stream;
        let update = SubscribeUpdate { params };
        crate::Message::encoded_len(&update)?;
        sub.params = params;
        self.send_message(stream, &update)
    }

    /// Ends one of our subscriptions (spec §5): FIN on the subscribe stream, STOP_SENDING
    /// 0x4 on its open groups, and STOP_SENDING 0x0 if the publisher has not closed its side
    /// within [`crate::Config::unsubscribe_grace`]. Reports its groups and itself ended
    /// ([`EndReason::Local`]).
    pub fn unsubscribe(&mut self, id: SubscribeId) -> Result<(), CommandError> {
        if !self.subs_out.contains_key(&id) {
            return Err(CommandError::UnknownSubscription(id));
        }
        self.end_subscription(id, EndReason::Local);
        Ok(())
    }

    /// Stops receiving one group of our subscriptions (STOP_SENDING with `code`, if it is
    /// still arriving), and forgets it: its reader is done with it.
    pub fn cancel_group(&mut self, stream: StreamId, code: ErrorCode) -> Result<(), CommandError> {
        if !self.groups_in.contains_key(&stream) {
            return Err(CommandError::UnknownStream(stream));
        }
        if self.abandon_data_in(stream) == Some(true) {
            self.stop_recv(stream, code);
            self.end_group_in(stream, EndReason::Local);
            self.groups_in.remove(&stream);
        }
        Ok(())
    }

    /// Holds one of our subscriptions for a handle that pulls what it brings
    /// ([`Session::poll_subscription`]) rather than reading the events: from now on its
    /// groups and drops queue for it, and its end stays readable, until
    /// [`Session::release_subscription`]. False if there is no such subscription.
    pub fn lease_subscription(&mut self, id: SubscribeId) -> bool {
        if !self.subs_out.contains_key(&id) {
            return false;
        }
        self.sub_leases.entry(id).or_default();
        true
    }

    /// Whether a handle holds this subscription.
    pub fn is_subscription_leased(&self, id: SubscribeId) -> bool {
        self.sub_leases.contains_key(&id)
    }

    /// The next group or drop of a leased subscription, in arrival order.
    pub fn poll_subscription(&mut self, id: SubscribeId) -> Option<SubscriptionItem> {
        self.sub_leases.get_mut(&id)?.items.pop_front()
    }

    /// The publisher's values from its latest SUBSCRIBE_OK (kept for a leased subscription
    /// after it ended).
    pub fn subscription_publisher(&self, id: SubscribeId) -> Option<SubscribeParams> {
        match self.subs_out.get(&id) {
            Some(state) => state.publisher,
            None => self.sub_leases.get(&id)?.publisher,
        }
    }

    /// Why a leased subscription ended, once it has (its items come first).
    pub fn subscription_end(&self, id: SubscribeId) -> Option<&EndReason> {
        self.sub_leases.get(&id)?.end.as_ref()
    }

    /// Lets go of a leased subscription (its handle is gone). Groups it brought that were
    /// not taken are stopped (Group code 0x4).
    pub fn release_subscription(&mut self, id: SubscribeId) {
        let Some(lease) = self.sub_leases.remove(&id) else {
            return;
        };
        for item in lease.items {
            if let SubscriptionItem::Group { stream, .. } = item {
                let _ = self.cancel_group(stream, group_codes::SUBSCRIBE_CANCELLED);
            }
        }
    }

    /// The values of one of our subscriptions: ours, and the publisher's if it answered.
    pub fn subscription(
        &self,
        id: SubscribeId,
    ) -> Option<(SubscribeParams, Option<SubscribeParams>)> {
        self.subs_out.get(&id).map(|s| (s.params, s.publisher))
    }

    // ---- Inputs ----

    pub(super) fn recv_subscribe_response(&mut self, id: StreamId, sub: SubscribeId) -> bool {
        match self.decode_with(id, |recv, limits| recv.decode_response(limits)) {
            Input::Item(SubscribeResponse::Ok(ok)) => {
                self.timers.cancel(Timer::SubscribeResponse(sub));
                if let Some(state) = self.subs_out.get_mut(&sub) {
                    state.publisher = Some(ok.params);
                }
                if let Some(lease) = self.sub_leases.get_mut(&sub) {
                    lease.publisher = Some(ok.params);
                }
                self.events.push_back(Event::SubscribeOk {
                    id: sub,
                    params: ok.params,
                });
                true
            }
            Input::Item(SubscribeResponse::Drop(drop)) => {
                let answered = self
                    .subs_out
                    .get(&sub)
                    .is_some_and(|s| s.publisher.is_some());
                if !answered {
                    // A DROP may never be the first response (spec §6.2).
                    self.cancel(id, codes::INTERNAL);
                    self.end_subscription(sub, EndReason::Cancelled(codes::INTERNAL));
                    return false;
                }
                if let Some(state) = self.subs_out.get_mut(&sub) {
                    state
                        .seen
                        .insert_capped(drop.first().0, drop.last().0, MAX_SEEN_RANGES);
                }
                if let Some(lease) = self.sub_leases.get_mut(&sub) {
                    lease.items.push_back(SubscriptionItem::Dropped {
                        start: drop.first(),
                        end: drop.last(),
                        code: ErrorCode(drop.code),
                    });
                }
                self.events.push_back(Event::SubscribeDropped {
                    id: sub,
                    start: drop.first(),
                    end: drop.last(),
                    code: ErrorCode(drop.code),
                });
                true
            }
            Input::End => {
                // The track ended (with or without SUBSCRIBE_OK, decision D8).
                self.on_publisher_finished(sub);
                false
            }
            Input::Pending | Input::Failed | Input::Invalid => false,
        }
    }

    pub(super) fn on_subscribe_timeout(&mut self, sub: SubscribeId) {
        if let Some(state) = self.subs_out.get(&sub) {
            let stream = state.stream;
            self.cancel(stream, codes::TIMEOUT);
            self.end_subscription(sub, EndReason::Cancelled(codes::TIMEOUT));
        }
    }

    /// The publisher finished the subscribe stream. Group streams it opened before may still
    /// be on their way (QUIC does not order streams): keep accepting them until the bounded
    /// range has fully arrived or [`crate::Config::subscription_linger`] passes. Without a
    /// SUBSCRIBE_OK no group was ever sent (decision D8), so it ends at once.
    fn on_publisher_finished(&mut self, sub: SubscribeId) {
        let Some(state) = self.subs_out.get_mut(&sub) else {
            return;
        };
        if state.publisher.is_none() || state.range_arrived() {
            self.end_subscription(sub, EndReason::Finished);
            return;
        }
        state.finishing = true;
        let stream = state.stream;
        self.finish_send(stream);
        self.reap(stream);
        self.timers.set(
            Timer::SubscribeLinger(sub),
            self.now + self.config.subscription_linger,
        );
    }

    pub(super) fn on_subscribe_linger(&mut self, sub: SubscribeId) {
        if self.subs_out.get(&sub).is_some_and(|s| s.finishing) {
            self.end_subscription(sub, EndReason::Finished);
        }
    }

    pub(super) fn on_unsubscribe_grace(&mut self, stream: StreamId) {
        self.stop_recv(stream, codes::INTERNAL);
        self.reap(stream);
    }

    /// Ends one of our subscriptions and reports it. On `Finished` (the publisher ended the
    /// track) open groups are left to complete; otherwise they are stopped.
    pub(super) fn end_subscription(&mut self, sub: SubscribeId, reason: EndReason) {
        let Some(state) = self.subs_out.remove(&sub) else {
            return;
        };
        self.timers.cancel(Timer::SubscribeResponse(sub));
        self.timers.cancel(Timer::SubscribeLinger(sub));
        if reason != EndReason::Finished {
            for (_, group) in state.groups {
                self.stop_recv(group, group_codes::SUBSCRIBE_CANCELLED);
                self.end_group_in(group, reason.clone());
            }
        }
        let stream = state.stream;
        self.finish_send(stream);
        if let Some(s) = self.streams.get_mut(&stream) {
            s.kind = Kind::Ignored;
            if s.recv.is_some() {
                self.timers.set(
                    Timer::UnsubscribeGrace(stream),
                    self.now + self.config.unsubscribe_grace,
                );
            }
        }
        self.reap(stream);
        if let Some(lease) = self.sub_leases.get_mut(&sub) {
            lease.end = Some(reason.clone());
        }
        self.events
            .push_back(Event::SubscriptionEnded { id: sub, reason });
    }

    pub(super) fn end_all_subscriptions(&mut self, reason: &EndReason) {
        let mut ids: Vec<_> = self.subs_out.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.end_subscription(id, reason.clone());
        }
        let mut groups: Vec<_> = self.groups_in.keys().copied().collect();
        groups.sort();
        for group in groups {
            self.end_group_in(group, reason.clone());
        }
    }

    // ---- Received groups ----

    pub(super) fn recv_group(&mut self, id: StreamId) -> bool {
        if self.groups_in.contains_key(&id) {
            // Past its header: its reader pulls the frames (see `data`).
            return false;
        }
        match self.decode::<GroupHeader>(id) {
            Input::Item(header) => {
                self.on_group_header(id, header);
                true
            }
            Input::End => {
                // Ended before its header: nothing to report.
                self.reap(id);
                false
            }
            Input::Pending | Input::Failed | Input::Invalid => false,
        }
    }

    fn on_group_header(&mut self, id: StreamId, header: GroupHeader) {
        let sub = header.subscribe_id;
        let seq = header.sequence;
        let now = self.now;
        let Some(state) = self.subs_out.get_mut(&sub) else {
            let ours = sub.0 >= 1 && sub.0 < self.next_subscribe_id;
            let code = if ours {
                group_codes::SUBSCRIBE_CANCELLED
            } else {
                group_codes::INVALID_SUBSCRIBE_ID
            };
            self.stop_recv(id, code);
            self.reap(id);
            return;
        };
        if !in_range(&state.params, seq) {
            self.stop_recv(id, group_codes::OUT_OF_RANGE);
            self.reap(id);
            return;
        }
        let replaced = state.groups.insert(seq, id);
        state.seen.insert_capped(seq.0, seq.0, MAX_SEEN_RANGES);
        let arrived = state.finishing && state.range_arrived();
        let newer = state.newest.is_none_or(|(n, _)| seq > n);
        if newer {
            state.newest = Some((seq, now));
        }
        let limit = effective_latency(
            state.params.max_latency,
            state.publisher.map(|p| p.max_latency),
        );
        let mut expired = Vec::new();
        if newer && let Some(limit) = limit {
            for (&older, &stream) in state.groups.range(..seq) {
                if let Some(g) = self.groups_in.get(&stream)
                    && now.saturating_duration_since(g.arrived) > limit
                {
                    expired.push((older, stream));
                }
            }
        }
        if let Some(old) = replaced {
            // The same sequence twice: keep the newer stream, stop the older.
            self.stop_recv(old, group_codes::INTERNAL);
            self.end_group_in(old, EndReason::Cancelled(group_codes::INTERNAL));
        }
        // What came after the header is its reader's first unread bytes.
        let unread = self
            .streams
            .get(&id)
            .and_then(|s| s.recv.as_ref())
            .map_or(0, |r| r.held());
        self.unread_data += unread;
        self.groups_in.insert(
            id,
            GroupIn {
                sub,
                sequence: seq,
                arrived: now,
                data: DataIn {
                    unread,
                    ..DataIn::default()
                },
            },
        );
        if unread > 0 {
            self.on_reader_data(id);
        }
        self.stats.groups_received += 1;
        if let Some(lease) = self.sub_leases.get_mut(&sub) {
            lease.items.push_back(SubscriptionItem::Group {
                stream: id,
                sequence: seq,
            });
        }
        self.events.push_back(Event::GroupReceived {
            id: sub,
            sequence: seq,
            stream: id,
        });
        for (_, stream) in expired {
            self.stop_recv(stream, group_codes::EXPIRED);
            self.stats.groups_dropped += 1;
            self.end_group_in(stream, EndReason::Expired);
        }
        if arrived {
            // The last group the finished subscription was waiting for: its frames still
            // arrive, on the group's own stream.
            self.end_subscription(sub, EndReason::Finished);
        }
    }

    /// Ends a received group and reports it; the end is kept for its reader (see `data`).
    pub(super) fn end_group_in(&mut self, id: StreamId, reason: EndReason) {
        let Some(group) = self.groups_in.get_mut(&id) else {
            return;
        };
        if group.data.end.is_some() {
            return;
        }
        self.unread_data -= std::mem::take(&mut group.data.unread);
        group.data.end = Some(reason.clone());
        self.timers.cancel(Timer::Stalled(id));
        let (sub, sequence) = (group.sub, group.sequence);
        self.detach_group(sub, sequence, id);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.kind = Kind::Ignored;
        }
        self.reap(id);
        self.events
            .push_back(Event::GroupEnded { stream: id, reason });
    }

    /// A received group whose last byte has arrived: no longer one of its subscription's
    /// open groups (an unsubscribe or a newer group does not cut it short); its reader
    /// still reads it to the end.
    pub(super) fn on_group_complete(&mut self, id: StreamId) {
        if let Some(group) = self.groups_in.get(&id) {
            let (sub, sequence) = (group.sub, group.sequence);
            self.detach_group(sub, sequence, id);
        }
    }

    /// Removes a group from its subscription's open groups.
    fn detach_group(&mut self, sub: SubscribeId, sequence: GroupSequence, id: StreamId) {
        if let Some(sub) = self.subs_out.get_mut(&sub)
            && sub.groups.get(&sequence) == Some(&id)
        {
            sub.groups.remove(&sequence);
        }
    }
}
