//! Per-stream transport state: send queues with credit, receive decoders, and the ready
//! queue that [`Session::poll_command`] drains in priority order.
//!
//! The ready queue is a binary heap of `(priority, stream)` entries with lazy deletion: a
//! stream has at most one live entry (its `scheduled` priority); an entry whose stream has
//! since changed priority, lost its send side or stopped being ready is dropped when popped.
//! Draining `poll_command` empties the heap, and its buffer keeps its capacity, so the data
//! path allocates nothing for scheduling in steady state (a `BTreeSet` allocated and freed
//! nodes as streams came and went from the set).

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::subscribe::CONTROL_PRIORITY;
use super::{Command, CommandError, Dir, Session, StreamId};
use crate::code::ErrorCode;
use crate::message::StreamType;
use crate::{Message, StreamDecoder, SubscribeId};

/// Data-stream chunks of at most this many bytes (a frame header, a tiny frame) are copied
/// together rather than handed to the transport one by one.
const COALESCE_MAX: usize = 512;
/// The largest chunk small writes are gathered into.
const COALESCE_CHUNK: usize = 16 * 1024;

/// What a stream carries, from our side's point of view (`In` = the peer opened it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A peer stream whose type byte has not arrived.
    Pending,
    /// The peer's announce interest; we answer with ANNOUNCEs.
    AnnounceIn,
    /// Our announce interest.
    AnnounceOut,
    /// The peer's subscription (`None` until SUBSCRIBE is parsed).
    SubscribeIn(Option<SubscribeId>),
    /// Our subscription.
    SubscribeOut(SubscribeId),
    /// A group we receive.
    GroupIn,
    /// A group we send.
    GroupOut,
    /// A fetch we serve.
    FetchIn,
    /// A fetch we made.
    FetchOut,
    /// The peer's probe; we reply.
    ProbeIn,
    /// Our probe.
    ProbeOut,
    /// The peer's GOAWAY stream.
    GoawayIn,
    /// Our GOAWAY stream.
    GoawayOut,
    /// Our probe padding (see `probe`).
    PaddingOut,
    /// A stream whose further input is discarded.
    Ignored,
}

impl Kind {
    /// Whether the stream carries group or fetch data, as opposed to control messages: a
    /// control stream sits idle between rare messages, so its buffers are released when
    /// empty (an idle subscription then holds none); a data stream keeps them for the next
    /// frame.
    pub(super) fn carries_data(self) -> bool {
        matches!(
            self,
            Self::GroupIn | Self::GroupOut | Self::FetchIn | Self::FetchOut
        )
    }
}

/// One stream; removed once both halves are done.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) dir: Dir,
    pub(super) kind: Kind,
    /// Receive side; `None` when there is none or it is done.
    pub(super) recv: Option<StreamDecoder>,
    /// Send side; `None` when there is none or it is done.
    pub(super) send: Option<SendHalf>,
    /// It owes us a message and is counted in `Session::incomplete` (see `incomplete`).
    pub(super) owes: bool,
}

/// The send side of a stream.
#[derive(Debug)]
pub(super) struct SendHalf {
    /// The transport has the stream (always true for a peer's bidi stream).
    pub(super) opened: bool,
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    pub(super) queued: usize,
    /// Bytes handed to the transport and not yet reported accepted.
    pub(super) in_flight: usize,
    /// Its bytes are group or fetch data, counted against [`crate::Config::max_queued_bytes`]
    /// until the transport accepts them.
    pub(super) data: bool,
    /// Small writes of a data stream gathered into one chunk, after `queue` (see
    /// [`COALESCE_MAX`]).
    tail: BytesMut,
    /// FIN follows the queued data.
    fin: bool,
    pub(super) priority: i32,
    /// The priority the transport was last given (with the open, or a `SetPriority`).
    transport_priority: i32,
    /// The priority of this stream's live entry in the ready queue, if it has one.
    scheduled: Option<i32>,
}

impl SendHalf {
    fn new(opened: bool, priority: i32) -> Self {
        Self {
            opened,
            queue: VecDeque::new(),
            queued: 0,
            in_flight: 0,
            data: false,
            tail: BytesMut::new(),
            fin: false,
            priority,
            transport_priority: priority,
            scheduled: None,
        }
    }

    /// The priority to give the transport, if it differs from what it was last given.
    pub(super) fn take_priority_change(&mut self) -> Option<i32> {
        (self.priority != self.transport_priority).then(|| {
            self.transport_priority = self.priority;
            self.priority
        })
    }

    /// Whether the next write (or the FIN) can go to the transport now. The FIN waits until
    /// the transport has accepted every byte handed to it, so that until then the stream can
    /// still be reset and its bytes still count against its owner's budget.
    fn is_ready(&self, window: usize) -> bool {
        let pending = !self.queue.is_empty() || !self.tail.is_empty();
        self.opened
            && ((pending && self.in_flight < window)
                || (!pending && self.fin && self.in_flight == 0))
    }

    /// Queues a chunk. On a data stream a chunk of at most [`COALESCE_MAX`] bytes is copied
    /// onto the small chunks queued before it, up to [`COALESCE_CHUNK`] bytes: a burst of
    /// tiny frames reaches the transport as a few chunks, not one (or two) per frame.
    fn push(&mut self, data: Bytes) {
        if self.data && data.len() <= COALESCE_MAX {
            if self.tail.len() + data.len() > COALESCE_CHUNK {
                let full = self.tail.split().freeze();
                self.queue.push_back(full);
            }
            if self.tail.capacity() - self.tail.len() < data.len() {
                // A stream's first small writes get a small buffer (a group of one small
                // frame should not hold a kilobyte); a stream that keeps writing small
                // ones, a larger one.
                let more = if self.tail.capacity() == 0 {
                    COALESCE_MAX / 2
                } else {
                    COALESCE_MAX * 2
                };
                self.tail.reserve(more);
            }
            self.tail.extend_from_slice(&data);
        } else {
            if !self.tail.is_empty() {
                let small = self.tail.split().freeze();
                self.queue.push_back(small);
            }
            self.queue.push_back(data);
        }
    }

    /// The next chunk to hand to the transport.
    fn pop(&mut self) -> Option<Bytes> {
        self.queue
            .pop_front()
            .or_else(|| (!self.tail.is_empty()).then(|| self.tail.split().freeze()))
    }

    /// Bytes not yet accepted by the transport: queued here, or handed over and unreported.
    pub(super) fn unsent(&self) -> usize {
        self.queued + self.in_flight
    }
}

impl Stream {
    /// A group past its header, or a fetch: its bytes wait for its reader, which decodes
    /// them (`session/data.rs`).
    pub(super) fn is_readers(&self) -> bool {
        match self.kind {
            Kind::GroupIn => !self.owes,
            Kind::FetchOut => true,
            _ => false,
        }
    }

    pub(super) fn accepted(dir: Dir) -> Self {
        Self {
            dir,
            kind: Kind::Pending,
            recv: Some(StreamDecoder::new()),
            send: (dir == Dir::Bi).then(|| {
                // The transport gave the peer's stream its default priority (0); ours go
                // above every group, whoever opened the stream: the first write tells it.
                let mut send = SendHalf::new(true, CONTROL_PRIORITY);
                send.transport_priority = 0;
                send
            }),
            owes: false,
        }
    }
}

/// What was decided for a stream while the transport was still opening it.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// RESET_STREAM with this code.
    pub(super) reset: Option<ErrorCode>,
    /// STOP_SENDING with this code.
    pub(super) stop: Option<ErrorCode>,
}

/// The result of decoding on a stream's receive side.
pub(super) enum Input<T> {
    /// A whole item.
    Item(T),
    /// More bytes are needed.
    Pending,
    /// The peer finished the stream cleanly, at an item boundary.
    End,
    /// Malformed input (the session is closed), a frame too large (the stream is
    /// stopped), or no receive side.
    Failed,
    /// A stream-scoped semantic error for the caller to handle (an unknown announce status).
    Invalid,
}

impl Session {
    pub(super) fn alloc_stream(&mut self) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        id
    }

    /// Asks the transport for a new stream and registers it.
    pub(super) fn open_stream(&mut self, dir: Dir, kind: Kind, priority: i32) -> StreamId {
        let id = self.alloc_stream();
        let mut send = SendHalf::new(false, priority);
        send.data = kind == Kind::GroupOut;
        self.streams.insert(
            id,
            Stream {
                dir,
                kind,
                recv: (dir == Dir::Bi).then(StreamDecoder::new),
                send: Some(send),
                owes: false,
            },
        );
        self.commands.push_back(Command::Open { id, dir, priority });
        id
    }

    /// Queues bytes on a stream's send side. Returns false if it has no open send side.
    pub(super) fn send_bytes(&mut self, id: StreamId, data: Bytes) -> bool {
        let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) else {
            return false;
        };
        if send.fin {
            return false;
        }
        if send.data {
            self.unsent_data += data.len();
        } else {
            self.ledger.unsent_control += data.len();
        }
        send.queued += data.len();
        send.push(data);
        self.refresh_ready(id);
        true
    }

    /// Queues one control message.
    pub(super) fn send_message<M: Message>(
        &mut self,
        id: StreamId,
        message: &M,
    ) -> Result<(), CommandError> {
        // One small allocation per control message: its encoding.
        let bytes = message.to_bytes()?;
        self.send_bytes(id, bytes);
        Ok(())
    }

    /// Queues the stream-type byte and the first message together.
    pub(super) fn send_typed<M: Message>(
        &mut self,
        id: StreamId,
        ty: StreamType,
        message: &M,
    ) -> Result<(), CommandError> {
        let len = message.encoded_len()?;
        let mut buf = BytesMut::with_capacity(1 + len);
        buf.put_u8(ty.to_byte());
        message.encode(&mut buf)?;
        self.send_bytes(id, buf.freeze());
        Ok(())
    }

    /// Queues FIN after the data already queued.
    pub(super) fn finish_send(&mut self, id: StreamId) {
        if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) {
            send.fin = true;
            self.refresh_ready(id);
        }
    }

    /// Resets the send side, dropping queued data. Returns the bytes dropped.
    pub(super) fn reset_send(&mut self, id: StreamId, code: ErrorCode) -> usize {
        let Some(stream) = self.streams.get_mut(&id) else {
            return 0;
        };
        let kind = stream.kind;
        let Some(send) = stream.send.take() else {
            return 0;
        };
        // Its ready entry, if any, is dropped when popped. A unidirectional stream still
        // opening is given up (the adapter resets it should the open complete); a
        // bidirectional one is reset once the transport has it, with its STOP_SENDING.
        if send.opened {
            self.commands.push_back(Command::Reset { id, code });
        } else if stream.recv.is_none() && stream.dir == Dir::Uni {
            self.opening.remove(&id);
            self.commands.push_back(Command::CancelOpen { id, code });
        } else {
            self.opening.entry(id).or_default().reset = Some(code);
        }
        if send.data {
            self.unsent_data -= send.unsent();
        } else {
            self.ledger.unsent_control -= send.unsent();
        }
        if kind == Kind::GroupOut {
            // The discarded bytes leave its subscription's count too.
            self.on_group_bytes_accepted(id, send.unsent());
        }
        send.queued
    }

    /// Stops the receive side (STOP_SENDING).
    pub(super) fn stop_recv(&mut self, id: StreamId, code: ErrorCode) {
        // A stream the peer has reset, whose reset waits for its reader (see `data`), is
        // not stopped: it is over.
        let reset = matches!(
            self.streams.get(&id).map(|s| s.kind),
            Some(Kind::GroupIn | Kind::FetchOut)
        ) && self.data_in_mut(id).is_some_and(|d| d.reset.is_some());
        if let Some(stream) = self.streams.get_mut(&id)
            && stream.recv.take().is_some()
            && !reset
        {
            // Still opening: its send half has not been told so, or was reset meanwhile.
            let opening =
                stream.send.as_ref().is_some_and(|s| !s.opened) || self.opening.contains_key(&id);
            if opening {
                self.opening.entry(id).or_default().stop = Some(code);
            } else {
                self.commands.push_back(Command::Stop { id, code });
            }
        }
    }

    /// Cancels a stream with a code: reset and stop-sending together (spec §5).
    pub(super) fn cancel(&mut self, id: StreamId, code: ErrorCode) {
        self.reset_send(id, code);
        self.stop_recv(id, code);
        self.reap(id);
    }

    /// Changes a stream's send priority.
    pub(super) fn set_priority(&mut self, id: StreamId, priority: i32) {
        let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) else {
            return;
        };
        if send.priority == priority {
            return;
        }
        send.priority = priority;
        let opened = send.opened;
        if send.scheduled.is_some() {
            // Re-queued at the new priority; the old entry is dropped when popped.
            send.scheduled = Some(priority);
            self.ready.push((priority, Reverse(id)));
        }
        // A stream still opening gets its new priority once open (see `handle_opened`).
        if opened {
            send.transport_priority = priority;
            self.commands
                .push_back(Command::SetPriority { id, priority });
        }
    }

    /// Forgets a stream once both halves are done.
    pub(super) fn reap(&mut self, id: StreamId) {
        if self
            .streams
            .get(&id)
            .is_some_and(|s| s.recv.is_none() && s.send.is_none())
            && let Some(stream) = self.streams.remove(&id)
            && stream.owes
        {
            self.forget_incomplete(id);
        }
    }

    /// Queues a stream for writing if its send state makes it ready. One that stops being
    /// ready keeps its entry, which is dropped when popped.
    pub(super) fn refresh_ready(&mut self, id: StreamId) {
        let window = self.config.stream_send_window;
        let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) else {
            return;
        };
        if send.scheduled.is_none() && send.is_ready(window) {
            send.scheduled = Some(send.priority);
            self.ready.push((send.priority, Reverse(id)));
        }
    }

    /// The next thing the transport must do, or `None` when drained.
    pub fn poll_command(&mut self) -> Option<Command> {
        if self.closed.is_none() {
            self.enforce_ledger();
        }
        if let Some(c) = self.commands.pop_front() {
            return Some(c);
        }
        self.poll_write()
    }

    /// The transport accepted `bytes` of earlier writes on a stream: send credit comes back.
    pub fn handle_written(&mut self, id: StreamId, bytes: usize, now: Instant) {
        if let Some(stream) = self.streams.get_mut(&id)
            && let Some(send) = stream.send.as_mut()
        {
            let bytes = bytes.min(send.in_flight);
            send.in_flight -= bytes;
            if send.data {
                self.unsent_data -= bytes;
            } else {
                self.ledger.unsent_control -= bytes;
            }
            let kind = stream.kind;
            if kind == Kind::GroupOut {
                self.on_group_bytes_accepted(id, bytes);
            }
            self.refresh_ready(id);
            if kind == Kind::AnnounceIn {
                self.flush_interest(id);
            }
        }
        self.advance(now);
    }

    /// The next write (or FIN) of the highest-priority ready stream.
    pub(super) fn poll_write(&mut self) -> Option<Command> {
        let window = self.config.stream_send_window;
        let (id, stream) = loop {
            let (priority, Reverse(id)) = self.ready.pop()?;
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            let Some(send) = stream.send.as_mut() else {
                continue;
            };
            if send.scheduled != Some(priority) {
                // Stale: re-queued at another priority.
                continue;
            }
            send.scheduled = None;
            if send.is_ready(window) {
                break (id, stream);
            }
        };
        let send = stream.send.as_mut()?;
        if (!send.queue.is_empty() || !send.tail.is_empty())
            && let Some(priority) = send.take_priority_change()
        {
            // A priority the transport does not have yet goes before the stream's next
            // write (the write stays ready and comes on the next poll).
            send.scheduled = Some(send.priority);
            self.ready.push((send.priority, Reverse(id)));
            return Some(Command::SetPriority { id, priority });
        }
        if let Some(data) = send.pop() {
            send.queued -= data.len();
            send.in_flight += data.len();
            let len = data.len();
            let kind = stream.kind;
            if send.queue.is_empty() && !kind.carries_data() {
                send.queue.shrink_to_fit();
            }
            self.stats.bytes_sent_app += len as u64;
            if kind == Kind::PaddingOut {
                self.stats.padding_sent += len as u64;
            }
            self.refresh_ready(id);
            return Some(Command::Write { id, data });
        }
        // Queue empty and FIN requested.
        stream.send = None;
        if stream.kind == Kind::GroupOut {
            self.on_group_drained(id);
        }
        self.reap(id);
        Some(Command::Finish { id })
    }

    /// Bytes of a stream the transport has not accepted yet: queued in the core, or handed
    /// over and not yet reported by [`Session::handle_written`].
    pub(super) fn unsent_bytes(&self, id: StreamId) -> usize {
        self.streams
            .get(&id)
            .and_then(|s| s.send.as_ref())
            .map_or(0, SendHalf::unsent)
    }

    /// Bytes queued in the core across every stream, not yet handed to the transport.
    ///
    /// Scans every stream: for tests, fuzzing and diagnostics, not for the data path (the
    /// per-subscription count is in [`Session::stats`]).
    pub fn queued_bytes_total(&self) -> usize {
        self.streams
            .values()
            .filter_map(|s| s.send.as_ref())
            .map(|s| s.queued)
            .sum()
    }

    /// Group and fetch bytes the transport has not accepted yet, counted afresh from every
    /// stream (the running count is [`crate::SessionStats::unsent_bytes`]).
    ///
    /// Scans every stream: for tests, fuzzing and diagnostics.
    pub fn unsent_bytes_total(&self) -> usize {
        self.streams
            .values()
            .filter_map(|s| s.send.as_ref())
            .filter(|s| s.data)
            .map(SendHalf::unsent)
            .sum()
    }

    /// Decodes one message on a stream, handling malformed input and the stream's end.
    pub(super) fn decode<M: Message>(&mut self, id: StreamId) -> Input<M> {
        self.decode_with(id, |recv, limits| recv.decode::<M>(limits))
    }
}
