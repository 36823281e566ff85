//! A stream's send side, shared by whoever flushes the core and the stream's send task.
//!
//! A write that finds the stream idle (nothing queued, no write in progress) goes straight
//! to the transport with [`crate::transport::SendStream::try_write_chunks`], under the
//! session lock: no task is woken. What the transport does not take at once is queued for
//! the stream's send task, which waits for flow control with the stream lent to it; writes
//! queued meanwhile follow in order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use moq_proto::{ErrorCode, StreamId};
use tokio::sync::Notify;

use crate::shared::Shared;
use crate::transport::{SendStream, StreamError};

/// Most chunks handed to the transport in one write.
const MAX_BATCH: usize = 64;

/// An operation on one stream's send side, in order.
#[derive(Debug)]
pub(crate) enum SendOp {
    Write(Bytes),
    Finish,
    Reset(ErrorCode),
    Priority(i32),
}

/// A transport send stream behind a pointer, so the session (not generic over the
/// transport) can write to it.
pub(crate) trait ErasedSend: Send {
    /// See [`SendStream::write_chunks`].
    fn write<'a>(
        &'a mut self,
        chunks: &'a mut [Bytes],
    ) -> Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send + 'a>>;
    /// See [`SendStream::try_write_chunks`].
    fn try_write(&mut self, chunks: &mut [Bytes]) -> Result<usize, StreamError>;
    /// See [`SendStream::finish`].
    fn finish(&mut self);
    /// See [`SendStream::reset`].
    fn reset(&mut self, code: ErrorCode);
    /// See [`SendStream::set_priority`].
    fn set_priority(&mut self, priority: i32);
}

impl<S: SendStream> ErasedSend for S {
    fn write<'a>(
        &'a mut self,
        chunks: &'a mut [Bytes],
    ) -> Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send + 'a>> {
        Box::pin(self.write_chunks(chunks))
    }

    fn try_write(&mut self, chunks: &mut [Bytes]) -> Result<usize, StreamError> {
        self.try_write_chunks(chunks)
    }

    fn finish(&mut self) {
        let _ = SendStream::finish(self);
    }

    fn reset(&mut self, code: ErrorCode) {
        SendStream::reset(self, code);
    }

    fn set_priority(&mut self, priority: i32) {
        SendStream::set_priority(self, priority);
    }
}

/// What became of an operation handed to [`SendQueue::push`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Carried out (or queued); `n` bytes went to the transport at once.
    Written(usize),
    /// The peer sent STOP_SENDING with this code: the stream is done.
    Stopped(ErrorCode),
}

/// One stream's send side.
#[derive(Default)]
pub(crate) struct SendQueue {
    state: Mutex<State>,
    /// Wakes the send task: operations were queued.
    ready: Notify,
}

#[derive(Default)]
struct State {
    ops: VecDeque<SendOp>,
    /// The stream, when no write of the send task holds it.
    stream: Option<Box<dyn ErasedSend>>,
    /// Finished, reset or stopped: nothing more is written.
    ended: bool,
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue").finish_non_exhaustive()
    }
}

impl SendQueue {
    /// A queue around a freshly opened stream.
    pub(crate) fn new(stream: Box<dyn ErasedSend>) -> Self {
        Self {
            state: Mutex::new(State {
                stream: Some(stream),
                ..State::default()
            }),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Carries out an operation at once when the stream is idle, else queues it for the
    /// send task.
    pub(crate) fn push(&self, op: SendOp) -> Pushed {
        let mut state = self.state();
        if state.ended {
            return Pushed::Written(0);
        }
        let idle = state.ops.is_empty();
        let Some(stream) = state.stream.as_mut().filter(|_| idle) else {
            state.ops.push_back(op);
            drop(state);
            self.ready.notify_one();
            return Pushed::Written(0);
        };
        match op {
            SendOp::Write(mut data) => {
                let len = data.len();
                match stream.try_write(std::slice::from_mut(&mut data)) {
                    Ok(n) if n >= len => Pushed::Written(n),
                    Ok(n) => {
                        // The tail waits for flow control in the send task.
                        state.ops.push_back(SendOp::Write(data));
                        drop(state);
                        self.ready.notify_one();
                        Pushed::Written(n)
                    }
                    Err(StreamError::Stopped(code)) => {
                        state.end();
                        drop(state);
                        self.ready.notify_one();
                        Pushed::Stopped(code)
                    }
                    Err(_) => {
                        state.end();
                        drop(state);
                        self.ready.notify_one();
                        Pushed::Written(0)
                    }
                }
            }
            SendOp::Finish => {
                stream.finish();
                state.end();
                drop(state);
                self.ready.notify_one();
                Pushed::Written(0)
            }
            SendOp::Reset(code) => {
                stream.reset(code);
                state.end();
                drop(state);
                self.ready.notify_one();
                Pushed::Written(0)
            }
            SendOp::Priority(priority) => {
                stream.set_priority(priority);
                Pushed::Written(0)
            }
        }
    }
}

impl State {
    fn end(&mut self) {
        self.ended = true;
        self.ops.clear();
        self.stream = None;
    }
}

/// What the send task does next.
enum Next {
    /// Write these chunks (the stream lent to the task).
    Write(Box<dyn ErasedSend>, Vec<Bytes>),
    /// Wait for operations.
    Wait,
    /// The stream is done.
    Done,
}

/// The send task of stream `id`: writes what could not be written at once, waiting for
/// flow control, and reports to the core what the transport took.
pub(crate) async fn run(queue: Arc<SendQueue>, shared: Arc<Shared>, id: StreamId) {
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        match queue.next(&mut batch) {
            Next::Done => return,
            Next::Wait => queue.ready.notified().await,
            Next::Write(mut stream, mut chunks) => {
                let n = chunks.iter().map(Bytes::len).sum();
                // A reset must not wait behind a write the peer's flow control holds up.
                let written = {
                    let write = stream.write(&mut chunks);
                    tokio::pin!(write);
                    loop {
                        tokio::select! {
                            biased;
                            written = &mut write => break Some(written),
                            () = queue.ready.notified() => {
                                if queue.reset_pending() {
                                    break None;
                                }
                            }
                        }
                    }
                };
                chunks.clear();
                batch = chunks;
                let Some(written) = written else {
                    queue.apply_reset(stream);
                    return;
                };
                match written {
                    Ok(()) => {
                        queue.give_back(stream);
                        let mut inner = shared.lock();
                        inner.core.handle_written(id, n, crate::driver::now());
                        shared.flush(inner);
                    }
                    Err(StreamError::Stopped(code)) => {
                        queue.state().end();
                        let mut inner = shared.lock();
                        inner.io.senders.remove(&id);
                        inner
                            .core
                            .handle_stop_sending(id, code, crate::driver::now());
                        shared.flush(inner);
                        return;
                    }
                    Err(_) => {
                        queue.state().end();
                        return;
                    }
                }
            }
        }
    }
}

impl SendQueue {
    /// Takes the next operations: queued writes as one batch (lending the stream), or the
    /// next other operation, carried out here.
    fn next(&self, batch: &mut Vec<Bytes>) -> Next {
        let mut state = self.state();
        loop {
            if state.ended {
                return Next::Done;
            }
            let Some(op) = state.ops.pop_front() else {
                return Next::Wait;
            };
            let Some(stream) = state.stream.as_mut() else {
                // Lent: cannot happen while the task is here; keep the order anyway.
                state.ops.push_front(op);
                return Next::Wait;
            };
            match op {
                SendOp::Write(data) => {
                    batch.clear();
                    batch.push(data);
                    while batch.len() < MAX_BATCH
                        && matches!(state.ops.front(), Some(SendOp::Write(_)))
                    {
                        if let Some(SendOp::Write(data)) = state.ops.pop_front() {
                            batch.push(data);
                        }
                    }
                    if state.ops.is_empty() && state.ops.capacity() > 64 {
                        state.ops.shrink_to(8);
                    }
                    let Some(stream) = state.stream.take() else {
                        return Next::Wait;
                    };
                    return Next::Write(stream, std::mem::take(batch));
                }
                SendOp::Finish => {
                    stream.finish();
                    state.end();
                }
                SendOp::Reset(code) => {
                    stream.reset(code);
                    state.end();
                }
                SendOp::Priority(priority) => stream.set_priority(priority),
            }
        }
    }

    /// Whether a reset is queued (it overtakes the write in progress).
    fn reset_pending(&self) -> bool {
        self.state()
            .ops
            .iter()
            .any(|op| matches!(op, SendOp::Reset(_)))
    }

    /// Resets the stream with the queued reset's code, dropping what was queued.
    fn apply_reset(&self, mut stream: Box<dyn ErasedSend>) {
        let mut state = self.state();
        let code = state.ops.iter().find_map(|op| match op {
            SendOp::Reset(code) => Some(*code),
            _ => None,
        });
        if let Some(code) = code {
            stream.reset(code);
        }
        state.end();
    }

    /// Returns the stream after a write.
    fn give_back(&self, stream: Box<dyn ErasedSend>) {
        let mut state = self.state();
        if !state.ended {
            state.stream = Some(stream);
        }
    }
}
