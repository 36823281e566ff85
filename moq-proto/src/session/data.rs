//! Received bytes, and the groups and fetch responses among them, read by pull.
//!
//! Every stream's bytes come in here ([`Session::handle_chunks`]); a control stream's are
//! decoded at once, a group's or fetch's past its header are kept for its reader.
//!
//! The session decodes a group's (or fetch's) frames only when its reader asks for the next
//! one ([`Session::read_frame`]), as quinn-proto's `recv_stream().read()` does: an adapter
//! reports a data stream's bytes when the reader is blocked, and the frames come back from
//! the same call under the same lock, never through an event queue. Bytes reported and not
//! yet read are counted ([`Session::unread_bytes`]), so that an adapter can stop reading new
//! group streams while the application is behind.
//!
//! An end the session decides (expiry, cancellation, the peer's reset, the session's close)
//! is kept until the reader reads it: every stream named by [`Event::GroupReceived`] or
//! returned by [`Session::fetch`] is read until [`FrameRead::Ended`], or cancelled.

use std::time::Instant;

use bytes::Bytes;

use super::streams::Kind;
use super::{CommandError, EndReason, FrameRead, Input, Session, StreamId};
use crate::{DecodeError, StreamDecoder};

/// What the session holds for one group or fetch we receive, beside its stream.
#[derive(Debug, Default)]
pub(super) struct DataIn {
    /// Why it ended, kept until its reader reads it.
    pub(super) end: Option<EndReason>,
    /// Its bytes counted in `Session::unread_data`.
    pub(super) unread: usize,
    /// The peer reset the stream: the whole frames before the reset still go to the reader,
    /// then this end.
    pub(super) reset: Option<crate::ErrorCode>,
    /// When its last bytes arrived (for [`crate::Config::frame_stall_timeout`]).
    pub(super) last_data: Option<std::time::Instant>,
}

impl Session {
    /// Bytes arrived, in order, on a stream's receive side. On a group or fetch past its
    /// header they wait for its reader ([`Session::read_frame`]).
    pub fn handle_data(&mut self, id: StreamId, data: Bytes, now: Instant) {
        self.handle_chunks(id, &mut [data], now);
    }

    /// Several chunks arrived, in order, on one stream's receive side: as
    /// [`Session::handle_data`] for each, in one call. The chunks are taken (left empty).
    pub fn handle_chunks(&mut self, id: StreamId, chunks: &mut [Bytes], now: Instant) {
        self.advance_clock(now);
        let mut rest = chunks.iter_mut();
        while let Some(chunk) = rest.next() {
            if let Some(recv) = self.reader_stream(id) {
                // A reader's stream (perhaps since the last chunk): the rest is kept whole
                // until it asks (see `data`), in one go.
                let mut len = 0;
                for chunk in std::iter::once(chunk).chain(rest) {
                    len += chunk.len();
                    recv.push(std::mem::take(chunk));
                }
                self.stats.bytes_received_app += len as u64;
                self.on_reader_data(id);
                break;
            }
            let data = std::mem::take(chunk);
            self.stats.bytes_received_app += data.len() as u64;
            self.receive(id, data);
        }
        self.advance(now);
    }

    /// The receive side of a group or fetch past its header, which its reader decodes.
    fn reader_stream(&mut self, id: StreamId) -> Option<&mut crate::StreamDecoder> {
        let stream = self.streams.get_mut(&id).filter(|s| s.is_readers())?;
        stream.recv.as_mut()
    }

    /// Decodes one item with `f`, handling malformed input and the stream's end.
    pub(super) fn decode_with<T>(
        &mut self,
        id: StreamId,
        f: impl FnOnce(&mut StreamDecoder, &crate::Limits) -> Result<Option<T>, DecodeError>,
    ) -> Input<T> {
        let limits = &self.config.limits;
        let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return Input::Failed;
        };
        match f(recv, limits) {
            Ok(Some(item)) => Input::Item(item),
            Ok(None) if recv.is_finished() => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.recv = None;
                }
                Input::End
            }
            Ok(None) => Input::Pending,
            Err(DecodeError::FrameTooLarge { .. })
                if matches!(
                    self.streams.get(&id).map(|s| s.kind),
                    Some(Kind::GroupIn | Kind::FetchOut)
                ) =>
            {
                self.refuse_oversized_frame(id);
                Input::Failed
            }
            Err(err) if err.is_malformed() => {
                self.protocol_violation(&err);
                Input::Failed
            }
            Err(_) => Input::Invalid,
        }
    }

    /// A frame over [`crate::Limits::max_frame_size`] on a group or fetch we receive: that
    /// stream alone is stopped (code 0x0) and ends as cancelled; the session goes on.
    fn refuse_oversized_frame(&mut self, id: StreamId) {
        let code = crate::ErrorCode(0x0);
        self.stop_recv(id, code);
        match self.streams.get(&id).map(|s| s.kind) {
            Some(Kind::GroupIn) => self.end_group_in(id, EndReason::Cancelled(code)),
            Some(Kind::FetchOut) => self.end_fetch_out(id, EndReason::Cancelled(code)),
            _ => self.reap(id),
        }
    }

    /// The next frame of a received group (from [`crate::Event::GroupReceived`]) or of one
    /// of our fetches: decoded from the bytes reported so far, or [`FrameRead::Blocked`] if
    /// no whole frame is buffered. After the last frame comes [`FrameRead::Ended`] (once:
    /// the session then forgets the stream); after the session's end, always
    /// [`EndReason::SessionClosed`]. Fails only for a stream that is not (or no longer) a
    /// group or fetch we receive.
    ///
    /// A malformed frame closes the session; a frame over the size limit stops its stream
    /// alone. Either way the reader gets the end, and the drain rule applies.
    pub fn read_frame(&mut self, stream: StreamId) -> Result<FrameRead, CommandError> {
        if let Some(reason) = &self.closed {
            return Ok(FrameRead::Ended(EndReason::SessionClosed(reason.clone())));
        }
        let data = self
            .data_in_mut(stream)
            .ok_or(CommandError::UnknownStream(stream))?;
        if data.end.is_some() {
            return Ok(self.forget_data_in(stream));
        }
        match self.decode_with(stream, |recv, limits| recv.decode_payload(limits)) {
            Input::Item(payload) => {
                self.recount_unread(stream);
                self.stats.frames_received += 1;
                Ok(FrameRead::Frame(payload))
            }
            Input::Pending => match self.data_in_mut(stream).and_then(|d| d.reset) {
                // The peer reset it after these frames: what is left is a part of one.
                Some(code) => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.recv = None;
                    }
                    self.on_peer_reset(stream, code);
                    self.reap(stream);
                    Ok(self.forget_data_in(stream))
                }
                None => Ok(FrameRead::Blocked),
            },
            Input::End => {
                self.end_data_in(stream, EndReason::Finished);
                Ok(self.forget_data_in(stream))
            }
            Input::Failed | Input::Invalid => {
                if let Some(reason) = &self.closed {
                    return Ok(FrameRead::Ended(EndReason::SessionClosed(reason.clone())));
                }
                // A frame too large ended the stream alone; anything else ends it here.
                self.stop_recv(stream, crate::ErrorCode(0x0));
                self.end_data_in(stream, EndReason::Cancelled(crate::ErrorCode(0x0)));
                Ok(self.forget_data_in(stream))
            }
        }
    }

    /// Bytes of received groups and fetches reported to the session and not yet read:
    /// what the readers are behind by (see [`crate::Config::max_unread_bytes`]).
    pub fn unread_bytes(&self) -> usize {
        self.unread_data
    }

    /// [`Session::unread_bytes`] counted afresh from every received group and fetch.
    ///
    /// Scans them all: for tests, fuzzing and diagnostics.
    pub fn unread_bytes_total(&self) -> usize {
        let live = |id: &StreamId, data: &DataIn| {
            if data.end.is_some() {
                return 0;
            }
            self.streams
                .get(id)
                .and_then(|s| s.recv.as_ref())
                .map_or(0, |r| r.held())
        };
        let groups: usize = self.groups_in.iter().map(|(id, g)| live(id, &g.data)).sum();
        let fetches: usize = self.fetches_out.iter().map(|(id, f)| live(id, f)).sum();
        groups + fetches
    }

    pub(super) fn data_in_mut(&mut self, id: StreamId) -> Option<&mut DataIn> {
        if let Some(group) = self.groups_in.get_mut(&id) {
            return Some(&mut group.data);
        }
        self.fetches_out.get_mut(&id)
    }

    /// Re-counts a data stream's unread bytes from what its receive side holds, in memory
    /// terms ([`crate::StreamDecoder::held`]).
    pub(super) fn recount_unread(&mut self, id: StreamId) {
        let held = self
            .streams
            .get(&id)
            .and_then(|s| s.recv.as_ref())
            .map_or(0, |r| r.held());
        if let Some(data) = self.data_in_mut(id) {
            let before = std::mem::replace(&mut data.unread, held);
            self.unread_data = self.unread_data - before + held;
        }
    }

    /// Bytes arrived on a data stream its reader has: count what it now holds, note when,
    /// and watch for a stall in the middle of a frame.
    pub(super) fn on_reader_data(&mut self, id: StreamId) {
        let (now, timeout) = (self.now, self.config.frame_stall_timeout);
        let held = self
            .streams
            .get(&id)
            .and_then(|s| s.recv.as_ref())
            .map_or(0, |r| r.held());
        let Some(data) = self.data_in_mut(id).filter(|d| d.end.is_none()) else {
            return;
        };
        let before = std::mem::replace(&mut data.unread, held);
        data.last_data = Some(now);
        self.unread_data = self.unread_data - before + held;
        let timer = super::timer::Timer::Stalled(id);
        if !self.timers.is_set(timer) {
            self.timers.set(timer, now + timeout);
        }
    }

    /// Stops a received group or fetch for a reason of ours and keeps that end for its
    /// reader.
    pub(super) fn stop_data_in(&mut self, id: StreamId, code: crate::ErrorCode, reason: EndReason) {
        self.stop_recv(id, code);
        self.end_data_in(id, reason);
        self.reap(id);
    }

    /// A data stream's stall deadline: if it still sits in the middle of a frame with no
    /// byte since the timeout, it is stopped and its reader told; if bytes came meanwhile,
    /// the deadline moves; between frames, nothing is watched until the next bytes.
    pub(super) fn on_stall_timeout(&mut self, id: StreamId) {
        let timeout = self.config.frame_stall_timeout;
        let Some(last) = self
            .data_in_mut(id)
            .filter(|d| d.end.is_none())
            .and_then(|d| d.last_data)
        else {
            return;
        };
        let mid_frame = self
            .streams
            .get(&id)
            .and_then(|s| s.recv.as_ref())
            .is_some_and(|r| r.buffered() > 0 && !r.can_progress());
        if !mid_frame {
            return;
        }
        if self.now.saturating_duration_since(last) < timeout {
            self.timers
                .set(super::timer::Timer::Stalled(id), last + timeout);
            return;
        }
        self.stats.streams_abandoned += 1;
        if self.groups_in.contains_key(&id) {
            self.stop_data_in(id, crate::code::group::EXPIRED, EndReason::Expired);
        } else {
            let code = crate::code::fetch::TIMEOUT;
            self.stop_data_in(id, code, EndReason::Cancelled(code));
        }
    }

    /// The peer reset a data stream its reader has: true if the reset waits for the reader,
    /// behind the whole frames already reported.
    pub(super) fn defer_reset(&mut self, id: StreamId, code: crate::ErrorCode) -> bool {
        let routed = self.streams.get(&id).is_some_and(|s| s.is_readers());
        match self.data_in_mut(id) {
            Some(data) if routed && data.end.is_none() => {
                data.reset = Some(code);
                true
            }
            _ => false,
        }
    }

    /// Ends a received group or fetch with `reason` (see `end_group_in`, `end_fetch_out`).
    fn end_data_in(&mut self, id: StreamId, reason: EndReason) {
        if self.groups_in.contains_key(&id) {
            self.end_group_in(id, reason);
        } else {
            self.end_fetch_out(id, reason);
        }
    }

    /// Forgets an ended group or fetch, returning its end for its reader.
    fn forget_data_in(&mut self, id: StreamId) -> FrameRead {
        let end = match self.groups_in.remove(&id) {
            Some(group) => group.data.end,
            None => self.fetches_out.remove(&id).and_then(|f| f.end),
        };
        FrameRead::Ended(end.unwrap_or(EndReason::Local))
    }

    /// Forgets a group or fetch its reader abandons; `None` if it is not ours. `Some(true)`
    /// when it was still open (the caller stops it).
    pub(super) fn abandon_data_in(&mut self, id: StreamId) -> Option<bool> {
        let open = self.data_in_mut(id)?.end.is_none();
        if !open {
            self.forget_data_in(id);
        }
        Some(open)
    }
}
