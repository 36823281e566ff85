//! The core's stream commands, carried out, and each stream's send side, shared by whoever
//! flushes the core and the stream's send task.
//!
//! A write that finds the stream idle (nothing queued, no write in progress) goes straight
//! to the transport with [`crate::transport::SendStream::try_write_chunks`], under the
//! session lock: no task is woken. What the transport does not take at once is queued for
//! the stream's send task, which waits for flow control with the stream lent to it; writes
//! queued meanwhile follow in order.
//!
//! A reset overtakes a write that flow control holds up: the write is dropped (the
//! transport's write is cancel-safe) and the stream reset at once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use moq_proto::{Command, ErrorCode, StreamId};
use tokio::sync::Notify;

use super::{Inner, Io, Request, Shared, Signal, Stopper, now};
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
    /// A reset asked for while the stream was busy: it overtakes everything queued.
    reset: Option<ErrorCode>,
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
        if let SendOp::Write(data) = op {
            return self.push_writes(&mut vec![data]);
        }
        let mut state = self.state();
        if state.ended {
            return Pushed::Written(0);
        }
        let idle = state.ops.is_empty();
        let Some(stream) = state.stream.as_mut().filter(|_| idle) else {
            // Busy: queue behind what is there (a reset overtakes it all).
            match op {
                SendOp::Reset(code) => {
                    state.ops.clear();
                    state.reset = Some(code);
                }
                op => state.ops.push_back(op),
            }
            drop(state);
            self.ready.notify_one();
            return Pushed::Written(0);
        };
        match op {
            SendOp::Finish => {
                stream.finish();
                state.end();
            }
            SendOp::Reset(code) => {
                stream.reset(code);
                state.end();
            }
            SendOp::Priority(priority) => stream.set_priority(priority),
            SendOp::Write(_) => {}
        }
        let ended = state.ended;
        drop(state);
        if ended {
            // The send task, if waiting, finds the stream done.
            self.ready.notify_one();
        }
        Pushed::Written(0)
    }

    /// Writes chunks in order: at once, as far as the transport takes them, when the
    /// stream is idle; what it does not take is queued for the send task. `chunks` is left
    /// empty.
    pub(crate) fn push_writes(&self, chunks: &mut Vec<Bytes>) -> Pushed {
        let mut state = self.state();
        if state.ended {
            chunks.clear();
            return Pushed::Written(0);
        }
        let idle = state.ops.is_empty();
        let mut written = 0;
        if let Some(stream) = state.stream.as_mut().filter(|_| idle) {
            match stream.try_write(chunks) {
                Ok(n) => written = n,
                Err(StreamError::Stopped(code)) => {
                    state.end();
                    chunks.clear();
                    drop(state);
                    self.ready.notify_one();
                    return Pushed::Stopped(code);
                }
                Err(_) => {
                    state.end();
                    chunks.clear();
                    drop(state);
                    self.ready.notify_one();
                    return Pushed::Written(0);
                }
            }
        }
        let before = state.ops.len();
        state.ops.extend(
            chunks
                .drain(..)
                .filter(|chunk| !chunk.is_empty())
                .map(SendOp::Write),
        );
        let queued = state.ops.len() > before;
        drop(state);
        if queued {
            self.ready.notify_one();
        }
        Pushed::Written(written)
    }

    /// Writes `chunks` to the lent stream, waiting for the transport; `None` when a reset
    /// overtook the write (it is dropped: what was written stays written).
    pub(crate) async fn write_unless_reset(
        &self,
        stream: &mut dyn ErasedSend,
        chunks: &mut [Bytes],
    ) -> Option<Result<(), StreamError>> {
        tokio::select! {
            biased;
            () = self.reset_requested() => None,
            written = stream.write(chunks) => Some(written),
        }
    }

    /// Resolves when operations were queued (or the stream ended).
    pub(crate) async fn queued(&self) {
        self.ready.notified().await;
    }

    /// Resolves once a reset waits (it overtakes the write in progress).
    async fn reset_requested(&self) {
        loop {
            let queued = self.ready.notified();
            if self.reset_pending() {
                return;
            }
            queued.await;
        }
    }

    /// Ends the stream's send side: nothing more is written.
    pub(crate) fn end(&self) {
        self.state().end();
    }

    /// Whether the stream is done (finished, reset or stopped).
    pub(crate) fn is_ended(&self) -> bool {
        self.state().ended
    }
}

impl State {
    fn end(&mut self) {
        self.ended = true;
        self.ops.clear();
        self.reset = None;
        self.stream = None;
    }
}

/// What the send task does next.
pub(crate) enum Next {
    /// Write these chunks (the stream lent to the task).
    Write(Box<dyn ErasedSend>, Vec<Bytes>),
    /// Wait for operations.
    Wait,
    /// The stream is done.
    Done,
}

impl SendQueue {
    /// Takes the next operations: queued writes as one batch (lending the stream), or the
    /// next other operation, carried out here.
    pub(crate) fn next(&self, batch: &mut Vec<Bytes>) -> Next {
        let mut guard = self.state();
        let state = &mut *guard;
        loop {
            if state.ended {
                return Next::Done;
            }
            // Only the task lends the stream, and it is back whenever the task is here.
            let Some(stream) = state.stream.as_mut() else {
                debug_assert!(false, "the send task runs without its stream");
                state.end();
                return Next::Done;
            };
            if let Some(code) = state.reset {
                stream.reset(code);
                state.end();
                return Next::Done;
            }
            let Some(op) = state.ops.pop_front() else {
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
                    return match state.stream.take() {
                        Some(stream) => Next::Write(stream, std::mem::take(batch)),
                        None => Next::Done,
                    };
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

    /// Whether a reset waits (it overtakes the write in progress).
    fn reset_pending(&self) -> bool {
        self.state().reset.is_some()
    }

    /// Resets the stream with the waiting reset's code, dropping what was queued.
    pub(crate) fn apply_reset(&self, mut stream: Box<dyn ErasedSend>) {
        let mut state = self.state();
        if let Some(code) = state.reset {
            stream.reset(code);
        }
        state.end();
    }

    /// Returns the stream after a write.
    pub(crate) fn give_back(&self, stream: Box<dyn ErasedSend>) {
        let mut state = self.state();
        if !state.ended {
            state.stream = Some(stream);
        }
    }
}

impl Io {
    /// Hands writes to their stream, in order: done at once, as far as the transport
    /// takes them, if the stream is idle.
    pub(crate) fn send_writes(&mut self, id: StreamId, chunks: &mut Vec<Bytes>) -> Pushed {
        // The core writes only to streams the transport has opened.
        match self.senders.get(&id) {
            Some(queue) => queue.push_writes(chunks),
            None => Pushed::Written(0),
        }
    }

    /// Hands an operation to its stream: done at once if the stream is idle.
    pub(crate) fn send_op(&mut self, id: StreamId, op: SendOp) -> Pushed {
        match self.senders.get(&id) {
            Some(queue) => queue.push(op),
            // Ended (reset after STOP_SENDING, or finished): nothing to do.
            None => Pushed::Written(0),
        }
    }
}

impl Inner {
    /// Carries out every stream command the core has (a write goes to the transport at
    /// once when its stream is idle: see [`SendQueue::push_writes`]); true if there was
    /// any. Consecutive writes to one stream (a frame's header and payload, a backlog) go
    /// to the transport together: one call, and no packet carrying only a header.
    pub(crate) fn carry_out(&mut self, shared: &Shared) -> bool {
        let mut writes = std::mem::take(&mut self.io.batch);
        let mut writes_to = None;
        let mut progressed = false;
        while let Some(command) = self.core.poll_command() {
            progressed = true;
            let Command::Write { id, data } = command else {
                self.write_batch(&mut writes_to, &mut writes);
                self.execute(shared, command);
                continue;
            };
            if writes_to.is_some_and(|to| to != id) || writes.len() >= MAX_BATCH {
                self.write_batch(&mut writes_to, &mut writes);
            }
            writes_to = Some(id);
            writes.push(data);
        }
        // Written bytes free send credit: the caller polls again while there was progress.
        self.write_batch(&mut writes_to, &mut writes);
        self.io.batch = writes;
        progressed
    }

    /// Hands the batch of writes gathered for one stream, if any, to it.
    fn write_batch(&mut self, to: &mut Option<StreamId>, chunks: &mut Vec<Bytes>) {
        if let Some(id) = to.take() {
            self.write(id, chunks);
        }
    }

    /// Hands a stream's consecutive writes to it (see [`Inner::carry_out`]).
    fn write(&mut self, id: StreamId, chunks: &mut Vec<Bytes>) {
        let pushed = self.io.send_writes(id, chunks);
        chunks.clear();
        self.pushed(id, pushed);
    }

    /// Reports to the core what became of a write.
    pub(crate) fn pushed(&mut self, id: StreamId, pushed: Pushed) {
        match pushed {
            Pushed::Written(0) => {}
            Pushed::Written(n) => self.core.handle_written(id, n, now()),
            Pushed::Stopped(code) => {
                self.io.senders.remove(&id);
                self.core.handle_stop_sending(id, code, now());
            }
        }
    }

    fn execute(&mut self, shared: &Shared, command: Command) {
        match command {
            Command::Open { id, dir, priority } => {
                let _ = shared.requests.send(Request::Open { id, dir, priority });
            }
            // `carry_out` batches a stream's consecutive writes; a lone one goes the same
            // way.
            Command::Write { id, data } => self.write(id, &mut vec![data]),
            Command::Finish { id } => {
                self.io.send_op(id, SendOp::Finish);
                self.io.senders.remove(&id);
            }
            Command::Reset { id, code } => {
                self.io.send_op(id, SendOp::Reset(code));
                self.io.senders.remove(&id);
            }
            Command::SetPriority { id, priority } => {
                self.io.send_op(id, SendOp::Priority(priority));
            }
            Command::Stop { id, code } => match self.io.stoppers.remove(&id) {
                Some(Stopper::Task(stop)) => {
                    let _ = stop.send(Signal::Stop(code));
                }
                Some(Stopper::Slot(slot)) => slot.stop(code),
                None => {}
            },
            Command::SampleStats => {
                let stats = (shared.meta.stats)();
                self.core.handle_stats(stats, now());
            }
            Command::CancelOpen { id, code } => {
                let _ = shared.requests.send(Request::CancelOpen { id, code });
            }
            Command::Close { code, reason } => {
                let _ = shared.requests.send(Request::Close { code, reason });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A stream that takes at most `room` bytes without waiting and records what it got.
    #[derive(Clone, Default)]
    struct Mock(Arc<Mutex<Log>>);

    #[derive(Default)]
    struct Log {
        written: Vec<u8>,
        room: usize,
        reset: Option<ErrorCode>,
        finished: bool,
    }

    impl Mock {
        fn with_room(room: usize) -> Self {
            let mock = Self::default();
            mock.log().room = room;
            mock
        }

        fn log(&self) -> MutexGuard<'_, Log> {
            self.0.lock().expect("log")
        }
    }

    impl ErasedSend for Mock {
        fn write<'a>(
            &'a mut self,
            chunks: &'a mut [Bytes],
        ) -> Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send + 'a>> {
            Box::pin(async move {
                for chunk in chunks.iter_mut() {
                    self.log().written.extend_from_slice(chunk);
                    *chunk = Bytes::new();
                }
                Ok(())
            })
        }

        fn try_write(&mut self, chunks: &mut [Bytes]) -> Result<usize, StreamError> {
            let mut log = self.log();
            let mut taken = 0;
            for chunk in chunks.iter_mut() {
                let n = chunk.len().min(log.room);
                log.written.extend_from_slice(&chunk.split_to(n));
                log.room -= n;
                taken += n;
            }
            Ok(taken)
        }

        fn finish(&mut self) {
            self.log().finished = true;
        }

        fn reset(&mut self, code: ErrorCode) {
            self.log().reset = Some(code);
        }

        fn set_priority(&mut self, _: i32) {}
    }

    /// A stream whose writes wait forever (its flow control never opens).
    struct Blocked;

    impl ErasedSend for Blocked {
        fn write<'a>(
            &'a mut self,
            _: &'a mut [Bytes],
        ) -> Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send + 'a>> {
            Box::pin(std::future::pending())
        }

        fn try_write(&mut self, _: &mut [Bytes]) -> Result<usize, StreamError> {
            Ok(0)
        }

        fn finish(&mut self) {}

        fn reset(&mut self, _: ErrorCode) {}

        fn set_priority(&mut self, _: i32) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_overtakes_a_write_that_flow_control_holds_up() {
        let queue = Arc::new(SendQueue::new(Box::new(Blocked)));
        assert_eq!(queue.push(write(b"held")), Pushed::Written(0));
        let Next::Write(mut stream, mut chunks) = queue.next(&mut Vec::new()) else {
            panic!("expected the queued write");
        };
        let writer = queue.clone();
        let write =
            tokio::spawn(async move { writer.write_unless_reset(&mut *stream, &mut chunks).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!write.is_finished(), "the write waits for flow control");
        queue.push(SendOp::Reset(ErrorCode(3)));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // At once: the paused clock did not move.
        assert!(write.is_finished(), "the reset overtook the write");
        assert!(write.await.expect("the write task").is_none());
    }

    fn write(data: &'static [u8]) -> SendOp {
        SendOp::Write(Bytes::from_static(data))
    }

    #[test]
    fn a_write_to_an_idle_stream_goes_straight_through() {
        let mock = Mock::with_room(100);
        let queue = SendQueue::new(Box::new(mock.clone()));
        assert_eq!(queue.push(write(b"abc")), Pushed::Written(3));
        assert_eq!(mock.log().written, b"abc");
        assert!(matches!(queue.next(&mut Vec::new()), Next::Wait));
    }

    #[test]
    fn a_partial_write_queues_its_tail_and_later_writes_follow_in_order() {
        let mock = Mock::with_room(2);
        let queue = SendQueue::new(Box::new(mock.clone()));
        assert_eq!(queue.push(write(b"abcd")), Pushed::Written(2));
        // Room again, but bytes are queued: this one must wait its turn.
        mock.log().room = 100;
        assert_eq!(queue.push(write(b"ef")), Pushed::Written(0));
        assert_eq!(mock.log().written, b"ab");
        match queue.next(&mut Vec::new()) {
            Next::Write(_, batch) => assert_eq!(batch, vec![&b"cd"[..], &b"ef"[..]]),
            _ => panic!("expected the queued writes as one batch"),
        }
    }

    #[test]
    fn consecutive_writes_go_together_and_the_rest_queues_in_order() {
        let mock = Mock::with_room(3);
        let queue = SendQueue::new(Box::new(mock.clone()));
        let mut chunks = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")];
        assert_eq!(queue.push_writes(&mut chunks), Pushed::Written(3));
        assert!(chunks.is_empty());
        assert_eq!(mock.log().written, b"abc");
        let mut more = vec![Bytes::from_static(b"ef")];
        assert_eq!(queue.push_writes(&mut more), Pushed::Written(0));
        match queue.next(&mut Vec::new()) {
            Next::Write(_, batch) => assert_eq!(batch, vec![&b"d"[..], &b"ef"[..]]),
            _ => panic!("expected the queued writes as one batch"),
        }
    }

    #[test]
    fn a_reset_overtakes_queued_writes() {
        let mock = Mock::with_room(0);
        let queue = SendQueue::new(Box::new(mock.clone()));
        assert_eq!(queue.push(write(b"ab")), Pushed::Written(0));
        queue.push(SendOp::Reset(ErrorCode(7)));
        assert!(queue.reset_pending());
        assert!(matches!(queue.next(&mut Vec::new()), Next::Done));
        assert_eq!(mock.log().reset, Some(ErrorCode(7)));
        assert!(mock.log().written.is_empty());
        assert!(queue.is_ended());
        // Nothing is written after the end.
        assert_eq!(queue.push(write(b"x")), Pushed::Written(0));
        assert!(mock.log().written.is_empty());
    }

    #[test]
    fn a_finish_on_an_idle_stream_ends_it_at_once() {
        let mock = Mock::with_room(100);
        let queue = SendQueue::new(Box::new(mock.clone()));
        queue.push(write(b"a"));
        queue.push(SendOp::Finish);
        assert!(mock.log().finished);
        assert!(queue.is_ended());
    }

    #[test]
    fn a_finish_behind_queued_bytes_waits_for_them() {
        let mock = Mock::with_room(0);
        let queue = SendQueue::new(Box::new(mock.clone()));
        queue.push(write(b"ab"));
        queue.push(SendOp::Finish);
        assert!(!mock.log().finished, "FIN must follow the queued bytes");
        let mut batch = Vec::new();
        let Next::Write(mut stream, mut chunks) = queue.next(&mut batch) else {
            panic!("expected the queued write");
        };
        futures_util::FutureExt::now_or_never(stream.write(&mut chunks))
            .expect("mock writes at once")
            .expect("written");
        queue.give_back(stream);
        assert!(matches!(queue.next(&mut batch), Next::Done));
        assert_eq!(mock.log().written, b"ab");
        assert!(mock.log().finished);
    }
}
