//! Fetch streams, both sides (spec §6.4; draft §5.1.3, §7.9).

use bytes::Bytes;

use super::data::DataIn;
use super::{CommandError, Dir, EndReason, Event, Input, Kind, Session, StreamId};
use crate::code::fetch as codes;
use crate::message::{Fetch, FrameHeader, StreamType};
use crate::{ErrorCode, Message};

/// A fetch the peer asked us to serve.
#[derive(Debug, Default)]
pub(super) struct FetchIn {
    /// The request was parsed and reported.
    requested: bool,
}

impl Session {
    // ---- Commands: fetcher ----

    /// Fetches one whole group (spec §6.4). Read its frames from the returned stream with
    /// [`Session::read_frame`]; [`Event::FetchEnded`] reports its end. Our request side is
    /// finished at once (decision D17).
    pub fn fetch(&mut self, request: Fetch) -> Result<StreamId, CommandError> {
        self.check_new_request()?;
        request.encoded_len()?;
        let priority = i32::from(request.priority) << 22;
        let id = self.open_stream(Dir::Bi, Kind::FetchOut, priority);
        self.send_typed(id, StreamType::Fetch, &request)?;
        self.finish_send(id);
        self.fetches_out.insert(id, DataIn::default());
        Ok(id)
    }

    /// Abandons one of our fetches (STOP_SENDING with `code`, if it is still arriving; gomoqt
    /// sends [`crate::code::fetch::CANCELLED`], 0x3), and forgets it: its reader is done
    /// with it.
    pub fn cancel_fetch(&mut self, id: StreamId, code: ErrorCode) -> Result<(), CommandError> {
        if !self.fetches_out.contains_key(&id) {
            return Err(CommandError::UnknownStream(id));
        }
        if self.abandon_data_in(id) == Some(true) {
            self.stop_recv(id, code);
            self.end_fetch_out(id, EndReason::Local);
            self.fetches_out.remove(&id);
        }
        Ok(())
    }

    // ---- Commands: server ----

    /// Queues one frame of the group a peer fetches (from [`Event::FetchRequested`]).
    pub fn write_fetch_frame(&mut self, id: StreamId, payload: Bytes) -> Result<(), CommandError> {
        self.check_open()?;
        if !self.fetches_in.get(&id).is_some_and(|f| f.requested) {
            return Err(CommandError::UnknownStream(id));
        }
        let header = FrameHeader::for_payload(&payload)?;
        if self.unsent_bytes(id) + payload.len() > self.config.max_queued_bytes_per_fetch
            || self.unsent_data + payload.len() > self.config.max_queued_bytes
        {
            return Err(CommandError::QueueFull(id));
        }
        let head = self.frame_header(header);
        self.send_bytes(id, head);
        if !payload.is_empty() {
            self.send_bytes(id, payload);
        }
        self.stats.frames_sent += 1;
        Ok(())
    }

    /// Ends a fetch we serve normally (FIN after the queued frames).
    pub fn finish_fetch(&mut self, id: StreamId) -> Result<(), CommandError> {
        if self.fetches_in.remove(&id).is_none() {
            return Err(CommandError::UnknownStream(id));
        }
        self.finish_send(id);
        if let Some(s) = self.streams.get_mut(&id) {
            s.kind = Kind::Ignored;
        }
        self.reap(id);
        Ok(())
    }

    /// Refuses or aborts a fetch we serve, with a Fetch code (0x0 when the group is not
    /// available).
    pub fn reject_fetch(&mut self, id: StreamId, code: ErrorCode) -> Result<(), CommandError> {
        if self.fetches_in.remove(&id).is_none() {
            return Err(CommandError::UnknownStream(id));
        }
        self.cancel(id, code);
        Ok(())
    }

    /// Whether the peer's FETCH on a stream we serve has arrived.
    pub(super) fn fetch_requested(&self, id: StreamId) -> bool {
        self.fetches_in.get(&id).is_some_and(|f| f.requested)
    }

    // ---- Inputs ----

    pub(super) fn on_fetch_stream(&mut self, id: StreamId) {
        if self.fetches_in.len() >= self.config.max_incoming_fetches {
            self.cancel(id, codes::INTERNAL);
            return;
        }
        self.fetches_in.insert(id, FetchIn::default());
        if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) {
            send.data = true;
        }
    }

    pub(super) fn recv_fetch_request(&mut self, id: StreamId) -> bool {
        if self.fetches_in.get(&id).is_some_and(|f| f.requested) {
            // Nothing follows FETCH and its FIN is never awaited (D17): discard the rest,
            // and keep our side open for the response.
            if let Some(stream) = self.streams.get_mut(&id)
                && let Some(recv) = stream.recv.as_mut()
            {
                recv.discard();
                if recv.is_finished() {
                    stream.recv = None;
                }
            }
            return false;
        }
        match self.decode::<Fetch>(id) {
            Input::Item(request) => {
                if !self.config.serve_unannounced && !self.broadcasts.contains_key(&request.path) {
                    self.fetches_in.remove(&id);
                    self.cancel(id, codes::INTERNAL);
                    return false;
                }
                if let Some(f) = self.fetches_in.get_mut(&id) {
                    f.requested = true;
                }
                self.events.push_back(Event::FetchRequested {
                    stream: id,
                    request,
                });
                true
            }
            Input::End => {
                self.fetches_in.remove(&id);
                self.finish_send(id);
                self.reap(id);
                false
            }
            Input::Pending | Input::Failed | Input::Invalid => false,
        }
    }

    /// Ends one of our fetches and reports it; the end is kept for its reader (see `data`).
    pub(super) fn end_fetch_out(&mut self, id: StreamId, reason: EndReason) {
        let Some(fetch) = self.fetches_out.get_mut(&id) else {
            return;
        };
        if fetch.end.is_some() {
            return;
        }
        self.unread_data -= std::mem::take(&mut fetch.unread);
        fetch.end = Some(reason.clone());
        self.timers.cancel(super::timer::Timer::Stalled(id));
        if let Some(s) = self.streams.get_mut(&id) {
            s.kind = Kind::Ignored;
        }
        self.reap(id);
        self.events
            .push_back(Event::FetchEnded { stream: id, reason });
    }

    /// A fetch we serve was cancelled by the peer: report it.
    pub(super) fn end_fetch_in(&mut self, id: StreamId, reason: EndReason) {
        if self.fetches_in.remove(&id).is_some() {
            self.stop_recv(id, codes::CANCELLED);
            self.reap(id);
            self.events
                .push_back(Event::FetchEnded { stream: id, reason });
        }
    }

    pub(super) fn end_all_fetches(&mut self, reason: &EndReason) {
        let mut ids: Vec<_> = self.fetches_out.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.end_fetch_out(id, reason.clone());
        }
        let mut ids: Vec<_> = self.fetches_in.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.fetches_in.remove(&id);
            self.events.push_back(Event::FetchEnded {
                stream: id,
                reason: reason.clone(),
            });
        }
    }
}
