//! Incoming subscriptions and the groups we send: the publisher side (spec §6.2, §6.3;
//! draft §5.1.2, §6, §7.5–§7.8, §7.12, §7.13).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::ranges::Ranges;
use super::subscribe::{effective_latency, in_range};
use super::{CommandError, Dir, EndReason, Event, Input, Kind, Session, StreamId};
use crate::code::{group as group_codes, subscribe as codes};
use crate::message::{
    FrameHeader, GroupHeader, StreamType, Subscribe, SubscribeDrop, SubscribeOk, SubscribeParams,
    SubscribeResponse, SubscribeUpdate,
};
use crate::{BroadcastPath, ErrorCode, GroupSequence, Message, SubscribeId};

/// Most disjoint ranges of the peer's subscribe IDs remembered for duplicate detection.
const MAX_SEEN_ID_RANGES: usize = 1024;

/// The publisher's side of SUBSCRIBE_OK, chosen by the application when it accepts.
///
/// ```
/// use std::time::Duration;
/// let mut ours = moq_proto::PublisherParams::default();
/// ours.priority = 200;
/// ours.max_latency = Duration::from_millis(500);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherParams {
    /// Publisher priority: breaks ties between subscriptions of equal subscriber priority.
    pub priority: u8,
    /// Whether the publisher prefers oldest-first delivery.
    pub ordered: bool,
    /// The publisher's max latency; zero = no limit.
    pub max_latency: Duration,
}

/// A subscription the peer holds on one of our broadcasts.
#[derive(Debug)]
pub(super) struct Publication {
    stream: StreamId,
    path: BroadcastPath,
    track: String,
    /// The subscriber's latest values.
    params: SubscribeParams,
    /// Ours, once accepted.
    publisher: Option<PublisherParams>,
    /// The start we told the subscriber (`None` = not yet resolved).
    start: Option<GroupSequence>,
    /// Open group streams, by sequence.
    pub(super) groups: BTreeMap<GroupSequence, StreamId>,
    /// Groups accounted for (delivered, reset or dropped), as merged inclusive ranges.
    done: Ranges,
    /// The newest group opened and when.
    newest: Option<(GroupSequence, Instant)>,
    /// The sequence the 14-bit order field of group priorities counts from (see
    /// [`group_priority`]): moved forward, and the open groups re-prioritised, when a new
    /// group would fall outside the field.
    order_base: u64,
    /// Bytes of its groups the transport has not accepted yet: queued in the core, or handed
    /// to the adapter and not yet reported written. Bounded by
    /// [`crate::Config::max_queued_bytes_per_subscription`].
    pub(super) queued: usize,
    /// We finished the subscribe stream (track over or range complete).
    finished: bool,
}

/// A group we are sending: open for writes, or finished and draining to the transport.
#[derive(Debug)]
pub(super) struct GroupOut {
    sub: SubscribeId,
    sequence: GroupSequence,
    arrived: Instant,
    /// The application finished it; its queued bytes are still draining.
    finished: bool,
}

/// The order field of a group priority: 14 bits.
const ORDER_SPAN: u64 = 0x3fff;

/// The transport priority of a group stream (spec §6.2): subscriber priority first,
/// publisher priority as tie-break, then order within the track (oldest or newest first) on
/// 14 bits, counted from `base`: groups more than 16 383 past it, or before it, take the
/// field's end (the publication moves `base` before that matters, see `Publication`).
pub(super) fn group_priority(
    subscriber: u8,
    publisher: u8,
    ordered: bool,
    seq: GroupSequence,
    base: u64,
) -> i32 {
    let offset = seq.0.saturating_sub(base).min(ORDER_SPAN) as i32;
    let order = if ordered {
        ORDER_SPAN as i32 - offset
    } else {
        offset
    };
    (i32::from(subscriber) << 22) | (i32::from(publisher) << 14) | order
}

impl Publication {
    /// The values a SUBSCRIBE_OK carries now: ours, and the range we serve.
    fn ok_params(&self) -> SubscribeParams {
        let publisher = self.publisher.unwrap_or_default();
        SubscribeParams {
            priority: publisher.priority,
            ordered: publisher.ordered,
            max_latency: publisher.max_latency,
            start: self.start,
            end: self.params.end,
        }
    }

    fn priority(&self, seq: GroupSequence) -> i32 {
        let publisher = self.publisher.unwrap_or_default();
        group_priority(
            self.params.priority,
            publisher.priority,
            self.params.ordered,
            seq,
            self.order_base,
        )
    }

    /// Whether every group of a bounded range is accounted for.
    fn complete(&self) -> bool {
        let (Some(start), Some(end)) = (self.start, self.params.end) else {
            return false;
        };
        self.done.covers(start.0, end.0)
    }
}

impl Session {
    // ---- Commands ----

    /// Accepts a subscription from [`Event::SubscribeRequested`]: sends SUBSCRIBE_OK at once
    /// (with the start still unknown if the subscriber asked for the latest group; a second
    /// SUBSCRIBE_OK resolves it when the first group opens).
    pub fn accept_subscribe(
        &mut self,
        id: SubscribeId,
        publisher: PublisherParams,
    ) -> Result<(), CommandError> {
        self.set_publisher(id, publisher, false)
    }

    /// Changes our priority, order and max latency on an accepted subscription (a new
    /// SUBSCRIBE_OK carrying them).
    pub fn update_publisher(
        &mut self,
        id: SubscribeId,
        publisher: PublisherParams,
    ) -> Result<(), CommandError> {
        self.set_publisher(id, publisher, true)
    }

    /// Records our values and sends the SUBSCRIBE_OK carrying them: the first one
    /// (`accepted == false`) or an update.
    fn set_publisher(
        &mut self,
        id: SubscribeId,
        publisher: PublisherParams,
        accepted: bool,
    ) -> Result<(), CommandError> {
        self.check_open()?;
        let publication = self
            .pubs
            .get_mut(&id)
            .ok_or(CommandError::UnknownSubscription(id))?;
        match (publication.publisher.is_some(), accepted) {
            (true, false) => return Err(CommandError::AlreadyAnswered(id)),
            (false, true) => return Err(CommandError::NotAccepted(id)),
            (false, false) => publication.start = publication.params.start,
            (true, true) => {}
        }
        publication.publisher = Some(publisher);
        let ok = SubscribeResponse::Ok(SubscribeOk {
            params: publication.ok_params(),
        });
        let stream = publication.stream;
        // Open groups move to the new publisher priority (the tie-break).
        self.reprioritize(id);
        self.send_response(stream, &ok)
    }

    /// Gives every open group of a subscription its current transport priority.
    fn reprioritize(&mut self, id: SubscribeId) {
        let Some(p) = self.pubs.get(&id) else {
            return;
        };
        let priorities: Vec<_> = p
            .groups
            .iter()
            .map(|(&seq, &stream)| (stream, p.priority(seq)))
            .collect();
        for (stream, priority) in priorities {
            self.set_priority(stream, priority);
        }
    }

    /// Refuses a subscription from [`Event::SubscribeRequested`] with a Subscribe code
    /// (for example [`crate::code::subscribe::NOT_FOUND`] for an unknown track).
    pub fn reject_subscribe(
        &mut self,
        id: SubscribeId,
        code: ErrorCode,
    ) -> Result<(), CommandError> {
        let publication = self
            .pubs
            .get(&id)
            .ok_or(CommandError::UnknownSubscription(id))?;
        if publication.publisher.is_some() {
            return Err(CommandError::AlreadyAnswered(id));
        }
        let stream = publication.stream;
        self.pubs.remove(&id);
        self.cancel(stream, code);
        Ok(())
    }

    /// Opens group `sequence` for an accepted subscription: a new uni stream with the GROUP
    /// header. Older open groups that fall behind by more than the max latency are reset
    /// (Group code 0x3, reported with [`Event::GroupCancelled`]).
    pub fn open_group(
        &mut self,
        id: SubscribeId,
        sequence: GroupSequence,
    ) -> Result<StreamId, CommandError> {
        self.check_open()?;
        let now = self.now;
        let publication = self
            .pubs
            .get_mut(&id)
            .ok_or(CommandError::UnknownSubscription(id))?;
        let publisher = publication.publisher.ok_or(CommandError::NotAccepted(id))?;
        if publication.finished {
            return Err(CommandError::UnknownSubscription(id));
        }
        let range = SubscribeParams {
            start: publication.start,
            ..publication.params
        };
        if !in_range(&range, sequence) {
            return Err(CommandError::OutOfRange { id, sequence });
        }
        if publication.groups.contains_key(&sequence) || publication.done.contains(sequence.0) {
            return Err(CommandError::DuplicateGroup { id, sequence });
        }
        let header = GroupHeader {
            subscribe_id: id,
            sequence,
        };
        header.encoded_len()?;
        let mut resolve = None;
        if publication.start.is_none() {
            // The first group resolves the start (spec §4.5).
            publication.start = Some(sequence);
            resolve = Some((publication.stream, publication.ok_params()));
        }
        // A group past the order field's reach moves its base: half a field behind the new
        // group, so the open groups (all newer than that, in practice) keep their order,
        // re-prioritised below.
        let rebase = sequence.0.saturating_sub(publication.order_base) > ORDER_SPAN
            || sequence.0 < publication.order_base;
        if rebase {
            publication.order_base = sequence.0.saturating_sub(ORDER_SPAN / 2);
        }
        let priority = publication.priority(sequence);
        let newer = publication.newest.is_none_or(|(n, _)| sequence > n);
        if newer {
            publication.newest = Some((sequence, now));
        }
        let limit = effective_latency(publication.params.max_latency, Some(publisher.max_latency));
        let mut expired = Vec::new();
        if newer && let Some(limit) = limit {
            // Oldest first, up to the first group still within the limit: groups open in
            // about their sequence order, so this costs the expired ones and one more, not
            // every open group (a subscriber that takes nothing can hold thousands). One
            // opened out of order is expired by a later open.
            for &stream in publication.groups.range(..sequence).map(|(_, s)| s) {
                match self.groups_out.get(&stream) {
                    Some(g) if now.saturating_duration_since(g.arrived) > limit => {
                        expired.push(stream);
                    }
                    Some(_) => break,
                    None => {}
                }
            }
        }
        if let Some((stream, params)) = resolve {
            self.send_response(stream, &SubscribeResponse::Ok(SubscribeOk { params }))?;
        }
        let stream = self.open_stream(Dir::Uni, Kind::GroupOut, priority);
        self.send_typed(stream, StreamType::Group, &header)?;
        if let Some(p) = self.pubs.get_mut(&id) {
            p.groups.insert(sequence, stream);
        }
        self.groups_out.insert(
            stream,
            GroupOut {
                sub: id,
                sequence,
                arrived: now,
                finished: false,
            },
        );
        self.stats.groups_sent += 1;
        if rebase {
            self.reprioritize(id);
        }
        for old in expired {
            self.stats.groups_dropped += 1;
            self.abort_group_with(old, group_codes::EXPIRED, EndReason::Expired);
        }
        Ok(stream)
    }

    /// Queues one frame on a group we send. The payload is passed on as it is (no copy).
    ///
    /// If the subscription's queued bytes exceed
    /// [`crate::Config::max_queued_bytes_per_subscription`] (or the session's unsent bytes
    /// [`crate::Config::max_queued_bytes`]), its oldest groups are dropped: reset with Group
    /// code 0x3, announced with SUBSCRIBE_DROP, and reported with [`Event::GroupCancelled`]
    /// ([`EndReason::Dropped`]). The group being written goes last, once its own bytes from
    /// before this frame pass the limit; its later writes then fail.
    pub fn write_frame(&mut self, group: StreamId, payload: Bytes) -> Result<(), CommandError> {
        self.check_open()?;
        let sub = self
            .groups_out
            .get(&group)
            .filter(|g| !g.finished)
            .ok_or(CommandError::UnknownStream(group))?
            .sub;
        let header = FrameHeader::for_payload(&payload)?;
        let head = self.frame_header(header);
        let len = head.len() + payload.len();
        self.send_bytes(group, head);
        if !payload.is_empty() {
            self.send_bytes(group, payload);
        }
        self.stats.frames_sent += 1;
        if let Some(p) = self.pubs.get_mut(&sub) {
            p.queued += len;
        }
        self.shed_load(sub, group, len);
        Ok(())
    }

    /// Finishes a group we send (FIN after its queued frames).
    pub fn finish_group(&mut self, group: StreamId) -> Result<(), CommandError> {
        let state = self
            .groups_out
            .get_mut(&group)
            .filter(|g| !g.finished)
            .ok_or(CommandError::UnknownStream(group))?;
        state.finished = true;
        let (sub, sequence) = (state.sub, state.sequence);
        self.finish_send(group);
        self.account(sub, sequence);
        Ok(())
    }

    /// Aborts a group we send: RESET_STREAM with a Group code (queued frames are dropped).
    pub fn abort_group(&mut self, group: StreamId, code: ErrorCode) -> Result<(), CommandError> {
        let state = self
            .groups_out
            .get(&group)
            .filter(|g| !g.finished)
            .ok_or(CommandError::UnknownStream(group))?;
        let (sub, sequence) = (state.sub, state.sequence);
        self.forget_group(group);
        self.reset_send(group, code);
        self.reap(group);
        self.account(sub, sequence);
        Ok(())
    }

    /// Tells the subscriber that groups `start..=end` will not be delivered
    /// (SUBSCRIBE_DROP with a Subscribe code, 0 = simply unavailable).
    pub fn drop_groups(
        &mut self,
        id: SubscribeId,
        start: GroupSequence,
        end: GroupSequence,
        code: ErrorCode,
    ) -> Result<(), CommandError> {
        self.check_open()?;
        let publication = self
            .pubs
            .get_mut(&id)
            .ok_or(CommandError::UnknownSubscription(id))?;
        if publication.publisher.is_none() {
            return Err(CommandError::NotAccepted(id));
        }
        let drop = SubscribeResponse::Drop(SubscribeDrop::new(start, end, code.0));
        drop.encoded_len()?;
        publication.done.insert(start.0, end.0);
        let stream = publication.stream;
        self.send_response(stream, &drop)?;
        self.check_complete(id);
        Ok(())
    }

    /// Ends a subscription normally: the track is over (FIN on the subscribe stream). Open
    /// groups stay open until finished or aborted.
    pub fn finish_publication(&mut self, id: SubscribeId) -> Result<(), CommandError> {
        let publication = self
            .pubs
            .get_mut(&id)
            .ok_or(CommandError::UnknownSubscription(id))?;
        if !publication.finished {
            publication.finished = true;
            let stream = publication.stream;
            self.finish_send(stream);
        }
        Ok(())
    }

    /// Ends a subscription with an error: the subscribe stream is cancelled with a Subscribe
    /// code and open groups are reset with Group code 0x5 (publish aborted).
    pub fn abort_publication(
        &mut self,
        id: SubscribeId,
        code: ErrorCode,
    ) -> Result<(), CommandError> {
        if !self.pubs.contains_key(&id) {
            return Err(CommandError::UnknownSubscription(id));
        }
        self.end_publication(id, EndReason::Local, Some(code));
        Ok(())
    }

    /// The subscriber's current values for an incoming subscription, and its track.
    pub fn publication(&self, id: SubscribeId) -> Option<(&BroadcastPath, &str, SubscribeParams)> {
        self.pubs
            .get(&id)
            .map(|p| (&p.path, p.track.as_str(), p.params))
    }

    /// Holds an incoming subscription for a handle that reads its state from the core
    /// rather than from the events (an async layer's track writer): once it ends, its
    /// reason stays readable through [`Session::publication_end`] until
    /// [`Session::release_publication`]. False if there is no such subscription.
    pub fn lease_publication(&mut self, id: SubscribeId) -> bool {
        if !self.pubs.contains_key(&id) {
            return false;
        }
        self.pub_leases.insert(id, None);
        true
    }

    /// Why a leased incoming subscription ended, once it has.
    pub fn publication_end(&self, id: SubscribeId) -> Option<&EndReason> {
        self.pub_leases.get(&id).and_then(Option::as_ref)
    }

    /// Lets go of a leased incoming subscription (its handle is gone).
    pub fn release_publication(&mut self, id: SubscribeId) {
        self.pub_leases.remove(&id);
    }

    // ---- Internals ----

    /// Bytes queued across every incoming subscription (for [`Session::stats`]).
    pub(super) fn queued_publication_bytes(&self) -> usize {
        self.pubs.values().map(|p| p.queued).sum()
    }

    fn send_response(
        &mut self,
        stream: StreamId,
        response: &SubscribeResponse,
    ) -> Result<(), CommandError> {
        let mut buf = BytesMut::with_capacity(response.encoded_len()?);
        response.encode(&mut buf)?;
        self.send_bytes(stream, buf.freeze());
        Ok(())
    }

    /// A frame header as `Bytes`, carved from a shared buffer: one allocation per few
    /// thousand frames rather than one per frame.
    pub(super) fn frame_header(&mut self, header: FrameHeader) -> Bytes {
        const ARENA: usize = 4096;
        if self.header_arena.capacity() < 8 {
            self.header_arena = BytesMut::with_capacity(ARENA);
        }
        header.encode(&mut self.header_arena);
        self.header_arena.split().freeze()
    }

    /// Drops the oldest groups of a subscription while its queue is over its limit, then
    /// of the subscriptions with the most unsent bytes while the session is over
    /// [`crate::Config::max_queued_bytes`]. A subscription's newest group is dropped only
    /// for the session's limit. The group being written (`writing`, which just took a frame
    /// of `frame` bytes) goes last: only when, everything else shed, its bytes from before
    /// this frame alone pass a limit. So one group, however long, holds at most a limit
    /// plus one frame, while a single frame larger than a limit still goes through.
    fn shed_load(&mut self, sub: SubscribeId, writing: StreamId, frame: usize) {
        let limit = self.config.max_queued_bytes_per_subscription;
        while let Some(p) = self.pubs.get(&sub)
            && p.queued > limit
            && let Some((seq, stream)) = self.oldest_unsent_group(p, false, writing)
        {
            self.drop_group(sub, seq, stream);
        }
        if self.unsent_data > self.config.max_queued_bytes {
            self.shed_session(writing);
        }
        let earlier = self.unsent_bytes(writing).saturating_sub(frame);
        let over = earlier > limit
            || self.unsent_data.saturating_sub(frame) > self.config.max_queued_bytes;
        if over && let Some(seq) = self.groups_out.get(&writing).map(|g| g.sequence) {
            self.drop_group(sub, seq, writing);
        }
    }

    /// Drops the oldest groups of the subscriptions with the most unsent bytes, other than
    /// `writing`, until the session is back under its limit.
    fn shed_session(&mut self, writing: StreamId) {
        let mut heaviest: Vec<(usize, SubscribeId)> = self
            .pubs
            .iter()
            .filter(|(_, p)| p.queued > 0)
            .map(|(&id, p)| (p.queued, id))
            .collect();
        heaviest.sort_unstable_by(|a, b| b.cmp(a));
        for (_, id) in heaviest {
            while self.unsent_data > self.config.max_queued_bytes
                && let Some(p) = self.pubs.get(&id)
                && let Some((seq, stream)) = self.oldest_unsent_group(p, true, writing)
            {
                self.drop_group(id, seq, stream);
            }
            if self.unsent_data <= self.config.max_queued_bytes {
                return;
            }
        }
    }

    /// The oldest open group of a publication with bytes the transport has not accepted,
    /// other than `writing`, and other than its newest unless `newest_too`.
    fn oldest_unsent_group(
        &self,
        p: &Publication,
        newest_too: bool,
        writing: StreamId,
    ) -> Option<(GroupSequence, StreamId)> {
        let newest = p.groups.keys().next_back().copied();
        p.groups
            .iter()
            .filter(|&(&seq, _)| newest_too || Some(seq) != newest)
            .find(|&(_, &s)| s != writing && self.unsent_bytes(s) > 0)
            .map(|(&seq, &s)| (seq, s))
    }

    /// Drops the oldest open group of a subscription we serve, whatever it holds (for the
    /// connection's ledger: an empty group still holds its stream, opening or not).
    pub(super) fn drop_oldest_group(&mut self, sub: SubscribeId) {
        if let Some((&seq, &stream)) = self.pubs.get(&sub).and_then(|p| p.groups.iter().next()) {
            self.drop_group(sub, seq, stream);
        }
    }

    /// Drops one group for a slow subscriber: SUBSCRIBE_DROP, reset with Group code 0x3, and
    /// [`Event::GroupCancelled`] with [`EndReason::Dropped`].
    fn drop_group(&mut self, sub: SubscribeId, seq: GroupSequence, stream: StreamId) {
        let Some(control) = self.pubs.get(&sub).map(|p| p.stream) else {
            return;
        };
        let drop = SubscribeResponse::Drop(SubscribeDrop::new(seq, seq, codes::INTERNAL.0));
        // Encodable: the sequence was encodable as a GROUP header.
        let _ = self.send_response(control, &drop);
        self.stats.groups_dropped += 1;
        self.abort_group_with(stream, group_codes::EXPIRED, EndReason::Dropped);
    }

    /// Resets a group we send for a reason of ours (expiry, slow subscriber), reporting
    /// it.
    fn abort_group_with(&mut self, group: StreamId, code: ErrorCode, reason: EndReason) {
        self.reset_send(group, code);
        self.end_group_out(group, reason);
    }

    /// Removes a live group from the tables, taking its unsent bytes off its subscription's
    /// count. Returns it.
    fn forget_group(&mut self, group: StreamId) -> Option<GroupOut> {
        let state = self.groups_out.remove(&group)?;
        let queued = self.unsent_bytes(group);
        if let Some(p) = self.pubs.get_mut(&state.sub) {
            p.queued = p.queued.saturating_sub(queued);
            if p.groups.get(&state.sequence) == Some(&group) {
                p.groups.remove(&state.sequence);
            }
        }
        Some(state)
    }

    /// Bytes of a group were accepted by the transport (or discarded by a reset).
    pub(super) fn on_group_bytes_accepted(&mut self, group: StreamId, len: usize) {
        if let Some(state) = self.groups_out.get(&group)
            && let Some(p) = self.pubs.get_mut(&state.sub)
        {
            p.queued = p.queued.saturating_sub(len);
        }
    }

    /// A finished group's FIN went to the transport: it no longer needs tracking.
    pub(super) fn on_group_drained(&mut self, group: StreamId) {
        if self.groups_out.get(&group).is_some_and(|g| g.finished) {
            self.forget_group(group);
        }
    }

    /// A group is accounted for (delivered, reset or dropped): finish the subscription if
    /// its range is complete.
    fn account(&mut self, sub: SubscribeId, sequence: GroupSequence) {
        if let Some(p) = self.pubs.get_mut(&sub) {
            p.done.insert(sequence.0, sequence.0);
        }
        self.check_complete(sub);
    }

    fn check_complete(&mut self, id: SubscribeId) {
        if let Some(p) = self.pubs.get_mut(&id)
            && !p.finished
            && p.complete()
        {
            p.finished = true;
            let stream = p.stream;
            self.finish_send(stream);
        }
    }

    // ---- Inputs ----

    pub(super) fn recv_subscribe(&mut self, id: StreamId, sub: Option<SubscribeId>) -> bool {
        match sub {
            None => match self.decode::<Subscribe>(id) {
                Input::Item(message) => {
                    self.on_subscribe(id, message);
                    true
                }
                Input::End => {
                    self.finish_send(id);
                    self.reap(id);
                    false
                }
                Input::Pending | Input::Failed | Input::Invalid => false,
            },
            Some(sub) => match self.decode::<SubscribeUpdate>(id) {
                Input::Item(update) => {
                    self.on_subscribe_update(sub, update.params);
                    true
                }
                Input::End => {
                    // The subscriber unsubscribed.
                    self.end_publication(sub, EndReason::Finished, None);
                    false
                }
                Input::Pending | Input::Failed | Input::Invalid => false,
            },
        }
    }

    fn on_subscribe(&mut self, stream: StreamId, message: Subscribe) {
        let id = message.id;
        // IDs in use are always caught; ended ones are remembered as ranges, at most
        // MAX_SEEN_ID_RANGES of them (gomoqt and we count up from 1: one range). A peer that
        // scatters its IDs may reuse one it used long ago undetected, which harms no one.
        if self.pubs.contains_key(&id) || self.seen_subscribe_ids.contains(id.0) {
            self.cancel(stream, codes::DUPLICATE_ID);
            return;
        }
        self.seen_subscribe_ids
            .insert_capped(id.0, id.0, MAX_SEEN_ID_RANGES);
        if self.pubs.len() >= self.config.max_incoming_subscriptions {
            self.cancel(stream, codes::INTERNAL);
            return;
        }
        if !self.config.serve_unannounced && !self.broadcasts.contains_key(&message.path) {
            self.cancel(stream, codes::NOT_FOUND);
            return;
        }
        if let (Some(start), Some(end)) = (message.params.start, message.params.end)
            && end < start
        {
            self.cancel(stream, codes::INVALID_RANGE);
            return;
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            s.kind = Kind::SubscribeIn(Some(id));
        }
        self.pubs.insert(
            id,
            Publication {
                stream,
                path: message.path.clone(),
                track: message.track.clone(),
                params: message.params,
                publisher: None,
                start: None,
                groups: BTreeMap::new(),
                done: Ranges::default(),
                newest: None,
                order_base: 0,
                queued: 0,
                finished: false,
            },
        );
        self.events.push_back(Event::SubscribeRequested {
            id,
            path: message.path,
            track: message.track,
            params: message.params,
        });
    }

    fn on_subscribe_update(&mut self, id: SubscribeId, params: SubscribeParams) {
        let Some(p) = self.pubs.get_mut(&id) else {
            return;
        };
        p.params = params;
        // An explicit start replaces ours once accepted (the range may grow or shrink);
        // "latest" keeps the start already told.
        if p.publisher.is_some() && params.start.is_some() {
            p.start = params.start;
        }
        self.reprioritize(id);
        self.events
            .push_back(Event::SubscriptionUpdated { id, params });
        // A range that shrank to what was already accounted for is complete.
        self.check_complete(id);
    }

    /// Ends an incoming subscription: close the subscribe stream (FIN, or cancel with
    /// `code`), reset its open groups unless we had finished the track, and report it.
    pub(super) fn end_publication(
        &mut self,
        id: SubscribeId,
        reason: EndReason,
        code: Option<ErrorCode>,
    ) {
        let Some(p) = self.pubs.remove(&id) else {
            return;
        };
        let group_code = if code.is_some() {
            group_codes::PUBLISH_ABORTED
        } else {
            group_codes::SUBSCRIBE_CANCELLED
        };
        if !p.finished || code.is_some() {
            for (_, group) in p.groups {
                self.groups_out.remove(&group);
                self.reset_send(group, group_code);
                self.reap(group);
            }
        }
        // Otherwise the track was over: groups already written keep draining.
        match code {
            Some(code) => self.cancel(p.stream, code),
            None => {
                self.finish_send(p.stream);
                if let Some(s) = self.streams.get_mut(&p.stream) {
                    s.kind = Kind::Ignored;
                }
                self.reap(p.stream);
            }
        }
        if let Some(lease) = self.pub_leases.get_mut(&id) {
            *lease = Some(reason.clone());
        }
        self.events
            .push_back(Event::PublicationEnded { id, reason });
    }

    pub(super) fn end_all_publications(&mut self, reason: &EndReason) {
        let mut ids: Vec<_> = self.pubs.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.end_publication(id, reason.clone(), None);
        }
        self.groups_out.clear();
    }

    /// One of our groups ended before it was delivered (the peer stopped it, it failed to
    /// open, it expired or was dropped): report it, since frames were lost.
    pub(super) fn end_group_out(&mut self, group: StreamId, reason: EndReason) {
        let Some(state) = self.forget_group(group) else {
            return;
        };
        self.reap(group);
        self.events.push_back(Event::GroupCancelled {
            id: state.sub,
            sequence: state.sequence,
            reason,
        });
        if !state.finished {
            self.account(state.sub, state.sequence);
        }
    }
}
