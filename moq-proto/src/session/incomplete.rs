//! Streams that owe us a message: a peer stream with no type byte yet, a subscribe or group
//! stream without its first message, and any control stream holding part of a message.
//!
//! Two limits apply to them (spec §8, our rule): the bytes they hold together, across the
//! session, are bounded by [`crate::Config::max_buffered_control_bytes`], and each must
//! complete a message within [`crate::Config::incomplete_message_timeout`] of starting to
//! owe one (or of its last complete message). A stream past either limit is cancelled with
//! its kind's code (0x0, or the kind's timeout code on a timeout) and its transaction ends
//! as [`EndReason::Cancelled`]; the session goes on. Without them a peer could pin up to
//! `max_message_size` per stream by never finishing a message, or hold streams open with
//! one byte a second.

use super::streams::Kind;
use super::timer::Timer;
use super::{EndReason, Session, StreamId};
use crate::code::{self, ErrorCode};

impl Session {
    /// Bytes `id` holds toward an incomplete message, if it owes one.
    fn owed(&self, id: StreamId) -> Option<usize> {
        let stream = self.streams.get(&id)?;
        let recv = stream.recv.as_ref()?;
        let owes = match stream.kind {
            Kind::Pending | Kind::SubscribeIn(None) => true,
            Kind::GroupIn => !self.groups_in.contains_key(&id),
            Kind::FetchIn => !self.fetch_requested(id),
            Kind::GroupOut | Kind::FetchOut | Kind::PaddingOut | Kind::Ignored => false,
            _ => recv.buffered() > 0,
        };
        owes.then(|| recv.buffered())
    }

    /// Re-counts what a stream holds after input on it. `progressed`: a message (or the
    /// type byte) completed, which restarts its deadline.
    pub(super) fn watch_incomplete(&mut self, id: StreamId, progressed: bool) {
        let owed = self.owed(id);
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.owes = owed.is_some();
        }
        let old = self.incomplete.remove(&id);
        if let Some(old) = old {
            self.incomplete_bytes -= old;
        }
        let Some(bytes) = owed else {
            if old.is_some() {
                self.timers.cancel(Timer::Incomplete(id));
            }
            return;
        };
        self.incomplete.insert(id, bytes);
        self.incomplete_bytes += bytes;
        if old.is_none() || progressed {
            let at = self.now + self.config.incomplete_message_timeout;
            self.timers.set(Timer::Incomplete(id), at);
        }
        if self.incomplete_bytes > self.config.max_buffered_control_bytes {
            // Stale entries (streams whose receive side ended since) must not count.
            let ids: Vec<StreamId> = self.incomplete.keys().copied().collect();
            for other in ids {
                if other != id && self.owed(other).is_none() {
                    self.forget_incomplete(other);
                }
            }
            if self.incomplete_bytes > self.config.max_buffered_control_bytes {
                self.abandon_incomplete(id, false);
            }
        }
    }

    /// Drops a stream from the count (its receive side ended, or it is gone).
    pub(super) fn forget_incomplete(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.owes = false;
        }
        if let Some(bytes) = self.incomplete.remove(&id) {
            self.incomplete_bytes -= bytes;
            self.timers.cancel(Timer::Incomplete(id));
        }
    }

    /// A stream's deadline passed.
    pub(super) fn on_incomplete_timeout(&mut self, id: StreamId) {
        if self.incomplete.contains_key(&id) && self.owed(id).is_some() {
            self.abandon_incomplete(id, true);
        } else {
            self.forget_incomplete(id);
        }
    }

    /// Cancels a stream that broke a limit and ends what it carried.
    fn abandon_incomplete(&mut self, id: StreamId, timed_out: bool) {
        self.forget_incomplete(id);
        let Some(kind) = self.streams.get(&id).map(|s| s.kind) else {
            return;
        };
        self.stats.streams_abandoned += 1;
        let code = match (kind, timed_out) {
            (Kind::SubscribeIn(_) | Kind::SubscribeOut(_), true) => code::subscribe::TIMEOUT,
            (Kind::FetchIn, true) => code::fetch::TIMEOUT,
            (Kind::ProbeIn | Kind::ProbeOut, true) => code::probe::TIMEOUT,
            // Every kind's Internal code is 0x0.
            _ => ErrorCode(0x0),
        };
        let reason = EndReason::Cancelled(code);
        match kind {
            Kind::AnnounceIn => self.end_interest_in(id),
            Kind::AnnounceOut => self.end_interest_out(id, reason),
            Kind::SubscribeIn(Some(sub)) => self.end_publication(sub, reason, Some(code)),
            Kind::SubscribeOut(sub) => self.end_subscription(sub, reason),
            Kind::GroupIn => self.end_group_in(id, reason),
            Kind::FetchIn => self.end_fetch_in(id, reason),
            Kind::ProbeIn => self.end_probe_in(id),
            Kind::ProbeOut => self.end_probe_out(reason),
            Kind::Pending
            | Kind::SubscribeIn(None)
            | Kind::GroupOut
            | Kind::FetchOut
            | Kind::GoawayIn
            | Kind::GoawayOut
            | Kind::PaddingOut
            | Kind::Ignored => {}
        }
        self.cancel(id, code);
        self.reap(id);
    }
}
