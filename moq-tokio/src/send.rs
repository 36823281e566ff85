//! A stream's send side, shared by whoever flushes the core and the stream's send task.
//!
//! A write that finds the stream idle (nothing queued, no write in progress) goes straight
//! to the transport with [`crate::transport::SendStream::try_write_chunks`], under the
//! session lock: no task is woken. What the transport does not take at once is queued for
//! the stream's send task, which waits for flow control with the stream lent to it; writes
//! queued meanwhile follow in order.
//!
//! Blocked streams wait for the transport through the session's [`WriteGate`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use moq_proto::{ErrorCode, StreamId};
use tokio::sync::{Notify, Semaphore};

use crate::shared::Shared;
use crate::transport::{SendStream, StreamError};

/// Most chunks handed to the transport in one write.
const MAX_BATCH: usize = 64;

/// Blocked send streams of one session that wait for the transport with a waker of their
/// own (see [`WriteGate`]).
const GATE_PERMITS: usize = 4;

/// How often the blocked stream whose turn it is retries without a waker.
const RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// How long a permit holder may go without a wake-up from the transport before it gives its
/// permit up (when a stream in line retries).
const HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// Which of a session's blocked send streams wait for the transport.
///
/// When a QUIC connection's send window fills, quinn wakes every stream that found it
/// full each time an acknowledgement frees room, and all but the first find it full
/// again: with hundreds of group streams in flight that is hundreds of task wake-ups per
/// acknowledgement. So a blocked stream waits, in line, for one of a few permits, and
/// only a permit holder waits for the transport with a waker.
///
/// The streams in line take turns: the one whose turn it is retries at once and after
/// [`RETRY`] without a waker, writing whatever room it finds, then hands the turn on. The
/// timed retry also tells the permit holders to check on themselves: a holder that the
/// transport has not woken for [`HOLD`] is held up by its own flow control (a group its
/// reader does not read), since the connection's window wakes its holders at every
/// acknowledgement, so it gives its permit up and queues again (a write dropped half way
/// leaves its chunks showing what is left, see
/// [`crate::transport::SendStream::write_chunks`]). quinn checks the window before a
/// stream's own credit, so while other streams keep the window full a holder without
/// credit may be woken too, and keep its permit; the streams in line then move on the
/// turn's retries. A stream in line watches for STOP_SENDING
/// ([`crate::transport::SendStream::stopped`]), having no waker of its own.
#[derive(Debug)]
pub(crate) struct WriteGate {
    /// Held by the blocked streams that wait with a waker.
    permits: Semaphore,
    /// Held by the blocked stream in line whose turn it is to retry.
    turn: tokio::sync::Mutex<()>,
    /// Asks permit holders that the transport has not woken for [`HOLD`] to give it up.
    hand_on: Notify,
}

impl Default for WriteGate {
    fn default() -> Self {
        Self {
            permits: Semaphore::new(GATE_PERMITS),
            turn: tokio::sync::Mutex::new(()),
            hand_on: Notify::new(),
        }
    }
}

/// Whether the transport woke a write (the waker handed to it), passing the wake-up on to
/// the task.
#[derive(Default)]
struct Woken {
    woken: std::sync::atomic::AtomicBool,
    task: Mutex<Option<std::task::Waker>>,
}

impl Woken {
    /// Wakes `task` from now on.
    fn track(&self, task: &std::task::Waker) {
        let mut current = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if !current.as_ref().is_some_and(|w| w.will_wake(task)) {
            *current = Some(task.clone());
        }
    }

    /// Whether a wake-up came since the last call.
    fn take(&self) -> bool {
        self.woken.swap(false, std::sync::atomic::Ordering::AcqRel)
    }
}

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Polls `inner` only once it has woken the task (and on the first poll), so that a future
/// whose polls cost something (quinn's `stopped` takes the connection lock) stays cheap in
/// a `select!` whose other branches wake the task often.
struct OnWake<F> {
    inner: F,
    woken: Arc<Woken>,
    waker: std::task::Waker,
    first: bool,
}

impl<F> OnWake<F> {
    fn new(inner: F) -> Self {
        let woken = Arc::new(Woken::default());
        Self {
            inner,
            waker: std::task::Waker::from(woken.clone()),
            woken,
            first: true,
        }
    }
}

impl<F: Future + Unpin> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = &mut *self;
        this.woken.track(cx.waker());
        if !std::mem::take(&mut this.first) && !this.woken.take() {
            return std::task::Poll::Pending;
        }
        Pin::new(&mut this.inner).poll(&mut std::task::Context::from_waker(&this.waker))
    }
}

/// How a wait in line for a permit ended.
enum InLine<'g> {
    /// The write is over (`None`: a reset overtook it).
    Done(Option<Result<(), StreamError>>),
    /// A permit (`None` only if the gate closed, which it never does).
    Permit(Option<tokio::sync::SemaphorePermit<'g>>),
}

/// A blocked stream's place in the line for the turn to retry.
enum Turn<'a> {
    Waiting(Pin<Box<dyn Future<Output = tokio::sync::MutexGuard<'a, ()>> + Send + 'a>>),
    /// The turn lasts as long as the guard is held.
    Mine {
        _guard: tokio::sync::MutexGuard<'a, ()>,
    },
}

impl<'a> Turn<'a> {
    /// Resolves when the turn comes (never while it is this stream's).
    async fn wait(&mut self) -> tokio::sync::MutexGuard<'a, ()> {
        match self {
            Self::Waiting(lock) => lock.await,
            Self::Mine { .. } => std::future::pending().await,
        }
    }
}

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
    /// See [`SendStream::stopped`].
    fn stopped(&mut self) -> Pin<Box<dyn Future<Output = Option<ErrorCode>> + Send>>;
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

    fn stopped(&mut self) -> Pin<Box<dyn Future<Output = Option<ErrorCode>> + Send>> {
        Box::pin(SendStream::stopped(self))
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
                let written = queue.write(&shared.gate, &mut *stream, &mut chunks).await;
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
                        // The connection is gone (its end is reported by the driver).
                        queue.state().end();
                        shared.lock().io.senders.remove(&id);
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

    /// Writes `chunks` to the lent `stream`, waiting for the transport through `gate`.
    /// `None` when a reset overtook the write.
    async fn write(
        &self,
        gate: &WriteGate,
        stream: &mut dyn ErasedSend,
        chunks: &mut [Bytes],
    ) -> Option<Result<(), StreamError>> {
        loop {
            let permit = match self.wait_in_line(gate, stream, chunks).await {
                InLine::Done(done) => return done,
                InLine::Permit(permit) => permit,
            };
            let start = chunks.iter().position(|c| !c.is_empty()).unwrap_or(0);
            if let Some(done) = self
                .write_holding(gate, permit, stream, &mut chunks[start..])
                .await
            {
                return done;
            }
            // Asked to give the permit up: back to the end of the line.
        }
    }

    /// Waits in line for a permit, retrying without a waker when it is this stream's turn.
    async fn wait_in_line<'g>(
        &self,
        gate: &'g WriteGate,
        stream: &mut dyn ErasedSend,
        chunks: &mut [Bytes],
    ) -> InLine<'g> {
        // The futures are kept across wake-ups, and with them the places in line.
        let acquire = gate.permits.acquire();
        tokio::pin!(acquire);
        let mut turn = Turn::Waiting(Box::pin(gate.turn.lock()));
        let retry = tokio::time::sleep(RETRY);
        tokio::pin!(retry);
        // Without a waker of its own here, the stream hears of STOP_SENDING this way.
        let mut stopped = OnWake::new(stream.stopped());
        let mut stop_watched = true;
        let mut try_now = true;
        let mut timed = false;
        loop {
            // A reset must not wait behind a write that flow control holds up.
            if self.reset_pending() {
                return InLine::Done(None);
            }
            if std::mem::take(&mut try_now) {
                let found = match stream.try_write(chunks) {
                    Ok(n) => n > 0,
                    Err(e) => return InLine::Done(Some(Err(e))),
                };
                let mine = matches!(turn, Turn::Mine { .. });
                if mine && timed {
                    gate.hand_on.notify_waiters();
                }
                if chunks.iter().all(Bytes::is_empty) {
                    return InLine::Done(Some(Ok(())));
                }
                if mine && (found || timed) {
                    // Hand the turn on (the next in line retries at once) and queue again.
                    turn = Turn::Waiting(Box::pin(gate.turn.lock()));
                }
            }
            tokio::select! {
                biased;
                permit = &mut acquire => return InLine::Permit(permit.ok()),
                () = self.ready.notified() => {}
                guard = turn.wait() => {
                    turn = Turn::Mine { _guard: guard };
                    try_now = true;
                    timed = false;
                    retry.as_mut().reset(tokio::time::Instant::now() + RETRY);
                }
                () = &mut retry, if matches!(turn, Turn::Mine { .. }) => {
                    try_now = true;
                    timed = true;
                }
                code = &mut stopped, if stop_watched => match code {
                    Some(code) => return InLine::Done(Some(Err(StreamError::Stopped(code)))),
                    None => stop_watched = false,
                },
            }
        }
    }

    /// Writes `chunks`, waiting for the transport with a waker and holding `permit`. `None`
    /// when asked to give the permit up after [`HOLD`] without a wake-up from the transport:
    /// the write is dropped, and `chunks` shows what is left.
    async fn write_holding(
        &self,
        gate: &WriteGate,
        permit: Option<tokio::sync::SemaphorePermit<'_>>,
        stream: &mut dyn ErasedSend,
        chunks: &mut [Bytes],
    ) -> Option<Option<Result<(), StreamError>>> {
        let woken = Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        // When the transport last woke the write (time since `start`): stamped as the write
        // is polled, which a wake-up always leads to before `hand_on` is looked at.
        let start = tokio::time::Instant::now();
        let last_woken = std::sync::atomic::AtomicU64::new(0);
        let since_start = || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut write = stream.write(chunks);
        let mut write = std::future::poll_fn(|cx| {
            woken.track(cx.waker());
            if woken.take() {
                last_woken.store(since_start(), std::sync::atomic::Ordering::Relaxed);
            }
            write
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
        });
        loop {
            if self.reset_pending() {
                return Some(None);
            }
            tokio::select! {
                biased;
                written = &mut write => return Some(Some(written)),
                () = self.ready.notified() => {}
                () = gate.hand_on.notified(), if permit.is_some() => {
                    let quiet = since_start()
                        .saturating_sub(last_woken.load(std::sync::atomic::Ordering::Relaxed));
                    if std::time::Duration::from_nanos(quiet) >= HOLD {
                        return None;
                    }
                }
            }
        }
    }

    /// Whether a reset waits (it overtakes the write in progress).
    fn reset_pending(&self) -> bool {
        self.state().reset.is_some()
    }

    /// Resets the stream with the waiting reset's code, dropping what was queued.
    fn apply_reset(&self, mut stream: Box<dyn ErasedSend>) {
        let mut state = self.state();
        if let Some(code) = state.reset {
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

#[cfg(test)]
mod tests {
    use super::*;

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

        fn stopped(&mut self) -> Pin<Box<dyn Future<Output = Option<ErrorCode>> + Send>> {
            Box::pin(std::future::pending())
        }
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

    /// A connection's shared send window, modelled on quinn's: a write that finds the
    /// window full registers its task's waker, and all of them are woken when room is
    /// added; a write blocked only by its own stream's credit waits for credit; a write
    /// dropped while blocked leaves its waker behind; a try leaves a no-op one.
    #[derive(Default)]
    struct Window {
        room: usize,
        /// Per blocked stream, its write's waker (`None`: left by a try, wakes nobody).
        wakers: Vec<(usize, Option<std::task::Waker>)>,
        /// The most tasks one `add_room` woke.
        most_woken: usize,
        written: usize,
        /// Writes (with a waker) started, per stream.
        started: std::collections::HashMap<usize, usize>,
    }

    /// A stream on a [`Window`], with its own flow-control credit.
    struct Flow {
        index: usize,
        credit: usize,
        window: Arc<Mutex<Window>>,
        stop: Option<tokio::sync::oneshot::Receiver<ErrorCode>>,
    }

    impl Flow {
        /// Takes what the window and the credit allow; when blocked by the window (not by
        /// the credit), registers `waker` (`None` for a try) as quinn does.
        fn take(&mut self, chunks: &mut [Bytes], waker: Option<&std::task::Waker>) -> usize {
            let mut window = self.window.lock().expect("window");
            let mut taken = 0;
            for chunk in chunks.iter_mut() {
                let n = chunk.len().min(window.room).min(self.credit);
                let _ = chunk.split_to(n);
                window.room -= n;
                window.written += n;
                self.credit -= n;
                taken += n;
            }
            // quinn checks the connection's window before the stream's credit: a write that
            // finds the window full waits for it even without credit of its own.
            if chunks.iter().any(|c| !c.is_empty()) && (self.credit > 0 || window.room == 0) {
                let index = self.index;
                window.wakers.retain(|(i, _)| *i != index);
                window.wakers.push((index, waker.cloned()));
            }
            taken
        }
    }

    impl ErasedSend for Flow {
        fn write<'a>(
            &'a mut self,
            chunks: &'a mut [Bytes],
        ) -> Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send + 'a>> {
            *self
                .window
                .lock()
                .expect("window")
                .started
                .entry(self.index)
                .or_default() += 1;
            Box::pin(std::future::poll_fn(move |cx| {
                self.take(chunks, Some(cx.waker()));
                if chunks.iter().all(Bytes::is_empty) {
                    std::task::Poll::Ready(Ok(()))
                } else {
                    std::task::Poll::Pending
                }
            }))
        }

        fn try_write(&mut self, chunks: &mut [Bytes]) -> Result<usize, StreamError> {
            Ok(self.take(chunks, None))
        }

        fn finish(&mut self) {}

        fn reset(&mut self, _: ErrorCode) {}

        fn set_priority(&mut self, _: i32) {}

        fn stopped(&mut self) -> Pin<Box<dyn Future<Output = Option<ErrorCode>> + Send>> {
            let stop = self.stop.take();
            Box::pin(async move {
                match stop {
                    Some(stop) => stop.await.ok(),
                    None => std::future::pending().await,
                }
            })
        }
    }

    fn add_room(window: &Mutex<Window>, room: usize) {
        let wakers = {
            let mut window = window.lock().expect("window");
            window.room += room;
            std::mem::take(&mut window.wakers)
        };
        let woken = wakers.iter().filter(|(_, w)| w.is_some()).count();
        let mut guard = window.lock().expect("window");
        guard.most_woken = guard.most_woken.max(woken);
        drop(guard);
        for waker in wakers.into_iter().filter_map(|(_, w)| w) {
            waker.wake();
        }
    }

    /// Spawns a write of `len` bytes on a new stream of `window`, through `queue`.
    fn spawn_flow(
        queue: Arc<SendQueue>,
        gate: &Arc<WriteGate>,
        mut stream: Flow,
        len: usize,
    ) -> tokio::task::JoinHandle<Option<Result<(), StreamError>>> {
        let gate = gate.clone();
        tokio::spawn(async move {
            let mut chunks = vec![Bytes::from(vec![0u8; len])];
            queue.write(&gate, &mut stream, &mut chunks).await
        })
    }

    fn spawn_write(
        gate: &Arc<WriteGate>,
        window: &Arc<Mutex<Window>>,
        index: usize,
        credit: usize,
        len: usize,
    ) -> tokio::task::JoinHandle<Option<Result<(), StreamError>>> {
        let stream = Flow {
            index,
            credit,
            window: window.clone(),
            stop: None,
        };
        spawn_flow(Arc::default(), gate, stream, len)
    }

    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    /// The write's outcome, within `within` (of the paused clock).
    async fn outcome(
        write: tokio::task::JoinHandle<Option<Result<(), StreamError>>>,
        within: std::time::Duration,
    ) -> Option<Result<(), StreamError>> {
        tokio::time::timeout(within, write)
            .await
            .expect("the write ends in time")
            .expect("the write task")
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_few_blocked_streams_are_woken_per_acknowledgement() {
        let gate = Arc::new(WriteGate::default());
        let window = Arc::new(Mutex::new(Window::default()));
        let writes: Vec<_> = (0..20)
            .map(|i| spawn_write(&gate, &window, i, usize::MAX, 100))
            .collect();
        settle().await;
        // Room comes in small steps while the clock runs past RETRY and HOLD.
        for _ in 0..1000 {
            if window.lock().expect("window").written == 2000 {
                break;
            }
            add_room(&window, 30);
            settle().await;
            tokio::time::sleep(RETRY / 4).await;
        }
        for write in writes {
            assert!(matches!(outcome(write, RETRY).await, Some(Ok(()))));
        }
        let window = window.lock().expect("window");
        assert_eq!(window.written, 2000);
        assert!(
            window.most_woken <= GATE_PERMITS,
            "one acknowledgement woke {} blocked writes",
            window.most_woken
        );
    }

    #[tokio::test(start_paused = true)]
    async fn streams_stuck_on_their_own_flow_control_do_not_hold_up_the_others() {
        let gate = Arc::new(WriteGate::default());
        let window = Arc::new(Mutex::new(Window::default()));
        // More streams without credit than permits: they take every permit, and one waits.
        let stuck: Vec<_> = (0..GATE_PERMITS + 1)
            .map(|i| spawn_write(&gate, &window, i, 0, 10))
            .collect();
        settle().await;
        assert_eq!(gate.permits.available_permits(), 0);
        let free: Vec<_> = (0..10)
            .map(|i| spawn_write(&gate, &window, GATE_PERMITS + 1 + i, usize::MAX, 100))
            .collect();
        settle().await;
        add_room(&window, 10_000);
        // The stream whose turn it is retries after RETRY, finds room, writes, and the next
        // in line retries at once.
        for write in free {
            assert!(matches!(outcome(write, RETRY * 3).await, Some(Ok(()))));
        }
        assert_eq!(window.lock().expect("window").written, 1000);
        // Not woken for HOLD, the stuck permit holders give their permits up when the stuck
        // stream in line retries: it gets one.
        tokio::time::sleep(HOLD + RETRY * 3).await;
        settle().await;
        assert!(
            window
                .lock()
                .expect("window")
                .started
                .contains_key(&GATE_PERMITS)
        );
        for write in stuck {
            write.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permit_holders_woken_by_the_connection_keep_their_permits() {
        let gate = Arc::new(WriteGate::default());
        let window = Arc::new(Mutex::new(Window::default()));
        let writes: Vec<_> = (0..GATE_PERMITS + 3)
            .map(|i| spawn_write(&gate, &window, i, usize::MAX, 10_000))
            .collect();
        settle().await;
        // The window opens a little at a time, for much longer than HOLD: the holders are
        // woken each time, so none gives its permit up (each write starts once).
        for _ in 0..40 {
            add_room(&window, 1);
            settle().await;
            tokio::time::sleep(RETRY / 2).await;
        }
        for i in 0..GATE_PERMITS {
            assert_eq!(window.lock().expect("window").started.get(&i), Some(&1));
        }
        for write in writes {
            write.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_reaches_a_write_waiting_in_line() {
        let gate = Arc::new(WriteGate::default());
        let window = Arc::new(Mutex::new(Window::default()));
        let _holders: Vec<_> = (0..GATE_PERMITS)
            .map(|i| spawn_write(&gate, &window, i, 0, 10))
            .collect();
        settle().await;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let stream = Flow {
            index: GATE_PERMITS,
            credit: usize::MAX,
            window: window.clone(),
            stop: Some(stopped),
        };
        let waiting = spawn_flow(Arc::default(), &gate, stream, 10);
        settle().await;
        assert!(!waiting.is_finished());
        stop.send(ErrorCode(9)).expect("stop");
        settle().await;
        // At once: the clock did not move.
        assert!(waiting.is_finished());
        assert!(matches!(
            waiting.await,
            Ok(Some(Err(StreamError::Stopped(ErrorCode(9)))))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_overtakes_a_blocked_write_wherever_it_waits() {
        let gate = Arc::new(WriteGate::default());
        let window = Arc::new(Mutex::new(Window::default()));
        let flow = |index| Flow {
            index,
            credit: 0,
            window: window.clone(),
            stop: None,
        };
        // Stream 0 holds a permit, 1..=GATE_PERMITS the others and the turn, and the last
        // waits for both.
        let queues: Vec<Arc<SendQueue>> = (0..GATE_PERMITS + 2).map(|_| Arc::default()).collect();
        let mut writes = Vec::new();
        for (i, queue) in queues.iter().enumerate() {
            writes.push(spawn_flow(queue.clone(), &gate, flow(i), 10));
            settle().await;
        }
        let (holder, turn, last) = (0, GATE_PERMITS, GATE_PERMITS + 1);
        for i in [last, turn, holder] {
            assert!(!writes[i].is_finished());
            queues[i].push(SendOp::Reset(ErrorCode(3)));
            settle().await;
            // At once: nothing was handed on meanwhile (the clock did not move).
            assert!(writes[i].is_finished(), "stream {i}");
        }
        for i in [last, turn, holder] {
            let write = std::mem::replace(&mut writes[i], tokio::spawn(async { None }));
            assert!(matches!(write.await, Ok(None)));
        }
        for write in writes {
            write.abort();
        }
    }
}
