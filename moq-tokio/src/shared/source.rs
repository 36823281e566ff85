//! A group's (or fetch's) receive stream, read by its reader itself.
//!
//! The driver reads a group stream only until its GROUP header is routed; then it puts the
//! stream in the group's [`SourceSlot`] (a fetch's stream goes there as soon as it opens)
//! and the [`crate::GroupReader`] reads the transport directly when it wants a frame: frames
//! reach the application without a hop through the driver, and bytes the application has
//! not asked for stay in the transport, under QUIC flow control.
//!
//! A reader crosses the session's lock once per read ([`Shared::pull`]): the chunks its
//! transport read returned go into the core, and the frames now whole come out into its
//! queue. The driver feeds the core the streams no reader has ([`Shared::feed`]).
//!
//! The slot is shared by the reader and the core's STOP_SENDING command. A stop finds the
//! stream in the slot (nobody is reading it) and stops it at once, or finds it lent to a
//! read in progress, records the code and wakes the reader, whose lease stops it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use moq_proto::{EndReason, ErrorCode, FrameRead, Payload, StreamId};
use tokio::sync::Notify;

use super::{Inner, Shared, Stopper, now};
use crate::transport::{RecvStream, StreamError};

/// Most chunks taken from the transport in one read.
pub(crate) const READ_BATCH: usize = 16;

/// One read's result: chunks filled, or `None` at FIN.
pub(crate) type ReadResult = Result<Option<usize>, StreamError>;

/// A transport receive stream behind a pointer, for readers that are not generic over the
/// transport.
pub(crate) trait ErasedRecv: Send {
    /// See [`RecvStream::read_chunks`].
    fn read<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> Pin<Box<dyn Future<Output = ReadResult> + Send + 'a>>;
    /// See [`RecvStream::stop`].
    fn stop(&mut self, code: ErrorCode);
}

impl<R: RecvStream> ErasedRecv for R {
    fn read<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> Pin<Box<dyn Future<Output = ReadResult> + Send + 'a>> {
        Box::pin(self.read_chunks(bufs))
    }

    fn stop(&mut self, code: ErrorCode) {
        RecvStream::stop(self, code);
    }
}

/// The stream and room for one read's chunks.
pub(crate) struct Source {
    stream: Box<dyn ErasedRecv>,
    chunks: Box<[Bytes; READ_BATCH]>,
}

impl Source {
    pub(crate) fn new(stream: Box<dyn ErasedRecv>, chunks: Box<[Bytes; READ_BATCH]>) -> Self {
        Self { stream, chunks }
    }
}

/// Where a group's stream waits between reads.
#[derive(Default)]
pub(crate) struct SourceSlot {
    state: Mutex<SlotState>,
    /// Wakes the reader: the stream arrived, or a stop was recorded.
    wake: Notify,
}

#[derive(Default)]
struct SlotState {
    source: Option<Source>,
    /// The stream was stopped or ended: nothing more comes from it.
    done: bool,
    /// A stop recorded while the stream was lent to a read.
    stop: Option<ErrorCode>,
}

impl std::fmt::Debug for SourceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSlot").finish_non_exhaustive()
    }
}

/// What the reader may do with its stream now.
pub(crate) enum Lend {
    /// Read it, through this lease.
    Here(Lease),
    /// The driver still reads it.
    NotYet,
    /// It was stopped or ended.
    Done,
}

impl SourceSlot {
    fn state(&self) -> MutGuard<'_> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The driver hands the stream over (stopping it instead if a stop came first).
    pub(crate) fn fill(&self, mut source: Source) {
        let mut state = self.state();
        if state.done {
            if let Some(code) = state.stop.take() {
                source.stream.stop(code);
            }
            return;
        }
        state.source = Some(source);
        drop(state);
        self.wake.notify_one();
    }

    /// The core stops the stream (STOP_SENDING with `code`).
    pub(crate) fn stop(&self, code: ErrorCode) {
        let mut state = self.state();
        state.done = true;
        match state.source.take() {
            Some(mut source) => source.stream.stop(code),
            None => state.stop = Some(code),
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The connection is gone: the stream (if here) is dropped and the reader woken.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.done = true;
        let source = state.source.take();
        drop(state);
        drop(source);
        self.wake.notify_one();
    }

    /// A stop was recorded, or the stream ended or went with the connection.
    fn ended(&self) -> bool {
        let state = self.state();
        state.stop.is_some() || state.done
    }

    /// The reader saw the stream end.
    pub(crate) fn finish(&self) {
        self.state().done = true;
    }

    /// Lends the stream to the reader, if it is here.
    pub(crate) fn lend(self: &Arc<Self>) -> Lend {
        let mut state = self.state();
        match state.source.take() {
            Some(source) => Lend::Here(Lease {
                slot: self.clone(),
                source: Some(source),
            }),
            None if state.done => Lend::Done,
            None => Lend::NotYet,
        }
    }

    /// Resolves when the slot changed (the stream arrived or was stopped); may resolve
    /// spuriously.
    pub(crate) async fn changed(&self) {
        self.wake.notified().await;
    }
}

type MutGuard<'a> = MutexGuard<'a, SlotState>;

/// The stream, lent to one read. Dropping the lease (even with the read's future) puts
/// the stream back, or stops it if a stop was recorded meanwhile.
pub(crate) struct Lease {
    slot: Arc<SourceSlot>,
    source: Option<Source>,
}

impl Lease {
    /// Reads the chunks that are ready (waiting for the first), or `None` if a stop or the
    /// connection's end came first (the lease then stops or drops the stream as it goes).
    pub(crate) async fn read(&mut self) -> Option<ReadResult> {
        let source = self.source.as_mut()?;
        loop {
            if self.slot.ended() {
                return None;
            }
            tokio::select! {
                biased;
                () = self.slot.wake.notified() => {}
                read = source.stream.read(&mut source.chunks[..]) => return Some(read),
            }
        }
    }

    /// The chunks the last read filled.
    pub(crate) fn chunks(&mut self) -> &mut [Bytes] {
        match self.source.as_mut() {
            Some(source) => &mut source.chunks[..],
            None => &mut [],
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut source) = self.source.take() else {
            return;
        };
        let mut state = self.slot.state();
        if let Some(code) = state.stop.take() {
            source.stream.stop(code);
        } else if !state.done {
            state.source = Some(source);
        }
    }
}

/// What a reader's pull took from the session (see [`Shared::pull`]).
pub(crate) struct Pulled {
    /// The group or fetch ended, after the frames taken.
    pub(crate) end: Option<EndReason>,
    /// Its stream has nothing more to give (FIN, reset, or the connection is gone).
    pub(crate) stream_done: bool,
    /// The session has no further whole frame: the next one needs a transport read.
    pub(crate) blocked: bool,
}

/// Most frames one pull takes from the session.
const PULL_MAX: usize = 64;

impl Shared {
    /// Gives the core what one read of a receiving stream returned; true when the stream
    /// has nothing more to give.
    pub(crate) fn feed(
        self: &Arc<Self>,
        id: StreamId,
        read: ReadResult,
        chunks: &mut [Bytes],
    ) -> bool {
        let mut inner = self.lock();
        let ended = inner.feed(id, read, chunks);
        self.flush(inner);
        ended
    }

    /// A reader's one crossing of the lock: gives the core what its transport read
    /// returned, if anything, and takes the frames now whole into `ready` (and the end,
    /// once reached).
    pub(crate) fn pull(
        self: &Arc<Self>,
        id: StreamId,
        read: Option<(ReadResult, &mut [Bytes])>,
        ready: &mut VecDeque<Payload>,
    ) -> Pulled {
        let mut inner = self.lock();
        let stream_done = match read {
            Some((read, chunks)) => inner.feed(id, read, chunks),
            None => false,
        };
        let mut end = None;
        let mut blocked = false;
        while ready.len() < PULL_MAX {
            match inner.core.read_frame(id) {
                Ok(FrameRead::Frame(frame)) => ready.push_back(frame),
                Ok(FrameRead::Blocked) => {
                    blocked = true;
                    break;
                }
                Ok(FrameRead::Ended(reason)) => {
                    end = Some(reason);
                    break;
                }
                // Forgotten: only a reader that cancelled it could have made it so.
                Err(_) => {
                    end = Some(EndReason::Local);
                    break;
                }
            }
        }
        if end.is_some() {
            inner.io.stoppers.remove(&id);
        }
        self.flush(inner);
        Pulled {
            end,
            stream_done,
            blocked,
        }
    }
}

impl Inner {
    /// Gives the core what one read of a receiving stream returned; true when the stream
    /// has nothing more to give.
    fn feed(&mut self, id: StreamId, read: ReadResult, chunks: &mut [Bytes]) -> bool {
        let now = now();
        match read {
            Ok(Some(n)) => {
                if let Some(read) = chunks.get_mut(..n) {
                    self.core.handle_chunks(id, read, now);
                }
                false
            }
            Ok(None) => {
                self.forget_stopper(id);
                self.core.handle_fin(id, now);
                true
            }
            Err(StreamError::Reset(code)) => {
                self.forget_stopper(id);
                self.core.handle_reset(id, code, now);
                true
            }
            // The connection is gone: its closed task reports why.
            Err(_) => true,
        }
    }

    /// The stream has nothing more to give. A reader may be waiting for it in its slot:
    /// the driver's task read the end just as the reader took the group (the stream was
    /// handed over, but the task ends without filling the slot), so the slot is closed and
    /// the reader reads the end from the core.
    fn forget_stopper(&mut self, id: StreamId) {
        if let Some(Stopper::Slot(slot)) = self.io.stoppers.remove(&id) {
            slot.close();
        }
    }
}
