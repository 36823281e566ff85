//! Announce streams, both sides (spec §6.1; draft §5.1.1, §7.3, §7.4).

use std::collections::HashSet;

use super::{CommandError, Dir, EndReason, Event, Input, Kind, Session, StreamId};
use crate::code::announce as codes;
use crate::message::{Announce, AnnounceInterest, AnnounceStatus, StreamType};
use crate::{BroadcastPath, HopId, PathPrefix};

/// The peer's interest in our broadcasts (we are the publisher on this stream).
#[derive(Debug, Default)]
pub(super) struct InterestIn {
    /// `None` until ANNOUNCE_INTEREST arrives.
    interest: Option<AnnounceInterest>,
}

impl InterestIn {
    fn wants(&self, path: &BroadcastPath, hops: &[HopId]) -> Option<&AnnounceInterest> {
        let interest = self.interest.as_ref()?;
        let excluded = interest.exclude_hop.0 != 0 && hops.contains(&interest.exclude_hop);
        (!excluded && interest.prefix.matches(path)).then_some(interest)
    }
}

/// Our interest in the peer's broadcasts.
#[derive(Debug)]
pub(super) struct InterestOut {
    prefix: PathPrefix,
    active: HashSet<BroadcastPath>,
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
        if let Some(old) = self.broadcasts.get(&path) {
            if *old == hops {
                return Ok(());
            }
            let old = old.clone();
            self.send_announce(&path, &old, AnnounceStatus::Ended);
        }
        self.send_announce(&path, &hops, AnnounceStatus::Active);
        self.broadcasts.insert(path, hops);
        Ok(())
    }

    /// Withdraws a broadcast: interested peers learn it ended. Returns whether it was active.
    /// Subscriptions to it stay open until the application ends them.
    pub fn unannounce(&mut self, path: &BroadcastPath) -> bool {
        let Some(hops) = self.broadcasts.remove(path) else {
            return false;
        };
        if self.closed.is_none() {
            self.send_announce(path, &hops, AnnounceStatus::Ended);
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
        self.interests_out.insert(
            id,
            InterestOut {
                prefix,
                active: HashSet::new(),
            },
        );
        Ok(id)
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

    /// ACTIVE/ENDED for `path` to every interest that wants it.
    fn send_announce(&mut self, path: &BroadcastPath, hops: &[HopId], status: AnnounceStatus) {
        let mut targets = Vec::new();
        for (&id, interest) in &self.interests_in {
            if let Some(interest) = interest.wants(path, hops)
                && let Some(suffix) = interest.prefix.suffix_of(path)
            {
                targets.push((id, suffix.to_owned()));
            }
        }
        for (id, suffix) in targets {
            let message = Announce {
                status,
                suffix,
                // ENDED is sent with no hops, as gomoqt does.
                hops: match status {
                    AnnounceStatus::Active => hops.to_vec(),
                    AnnounceStatus::Ended => Vec::new(),
                },
            };
            self.send_announce_message(id, &message);
        }
    }

    fn send_announce_message(&mut self, id: StreamId, message: &Announce) {
        let backlog = self
            .streams
            .get(&id)
            .and_then(|s| s.send.as_ref())
            .map_or(0, |s| s.queue_len());
        if backlog >= self.config.max_announce_queue {
            // A slow consumer (spec §8): cancel rather than buffer without bound.
            self.interests_in.remove(&id);
            self.cancel(id, codes::INTERNAL);
            return;
        }
        // Sizes were checked when the broadcast was announced.
        let _ = self.send_message(id, message);
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
                let mut initial = Vec::new();
                for (path, hops) in &self.broadcasts {
                    let excluded =
                        interest.exclude_hop.0 != 0 && hops.contains(&interest.exclude_hop);
                    if let Some(suffix) = interest.prefix.suffix_of(path)
                        && !excluded
                    {
                        initial.push(Announce {
                            status: AnnounceStatus::Active,
                            suffix: suffix.to_owned(),
                            hops: hops.clone(),
                        });
                    }
                }
                if let Some(state) = self.interests_in.get_mut(&id) {
                    state.interest = Some(interest);
                }
                // In path order, not the table's (randomly seeded) order: the same state
                // gives the same bytes.
                initial.sort_unstable_by(|a, b| a.suffix.cmp(&b.suffix));
                for message in &initial {
                    self.send_announce_message(id, message);
                }
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
        self.interests_in.remove(&id);
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
        let max_entries = self.config.max_announce_entries;
        let Some(interest) = self.interests_out.get_mut(&id) else {
            return;
        };
        let path = interest.prefix.join(&message.suffix);
        let failure = match message.status {
            AnnounceStatus::Active if interest.active.contains(&path) => Some(codes::DUPLICATED),
            AnnounceStatus::Active if interest.active.len() >= max_entries => Some(codes::INTERNAL),
            AnnounceStatus::Active => {
                interest.active.insert(path.clone());
                self.events.push_back(Event::Announced {
                    interest: id,
                    path,
                    hops: message.hops,
                });
                None
            }
            AnnounceStatus::Ended if interest.active.remove(&path) => {
                self.events
                    .push_back(Event::Unannounced { interest: id, path });
                None
            }
            AnnounceStatus::Ended => Some(codes::DUPLICATED),
        };
        if let Some(code) = failure {
            self.cancel(id, code);
            self.end_interest_out(id, EndReason::Cancelled(code));
        }
    }

    /// Ends one of our interests: every active entry is reported ended, then the interest.
    /// Reports every active entry of one of our interests ended, then the interest itself;
    /// `false` if it was not ours.
    fn forget_interest_out(&mut self, id: StreamId, reason: EndReason) -> bool {
        let Some(interest) = self.interests_out.remove(&id) else {
            return false;
        };
        let mut paths: Vec<_> = interest.active.into_iter().collect();
        paths.sort();
        for path in paths {
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
    }
}
