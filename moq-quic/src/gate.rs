//! Which of a connection's blocked send streams wait for quinn: see [`WriteGate`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};

/// What the gate needs of a send stream: quinn's, or a model of it in the tests.
pub(crate) trait Gated: Send {
    /// Why a write failed.
    type Error: Send;
    /// Writes what the stream takes at once, without waiting.
    fn try_write(&mut self, chunks: &mut [Bytes]) -> Result<usize, Self::Error>;
    /// Writes every chunk, waiting for room; dropped half way, `chunks` shows what is left.
    fn write<'a>(
        &'a mut self,
        chunks: &'a mut [Bytes],
    ) -> Pin<Box<dyn Future<Output = Result<(), Self::Error>> + Send + 'a>>;
    /// Resolves with the error a write would fail with once the peer sends STOP_SENDING
    /// (`None` if the stream ends otherwise).
    fn stopped(&mut self) -> Pin<Box<dyn Future<Output = Option<Self::Error>> + Send>>;
}

impl Gated for quinn::SendStream {
    type Error = quinn::WriteError;

    fn try_write(&mut self, chunks: &mut [Bytes]) -> Result<usize, quinn::WriteError> {
        crate::stream::try_write(self, chunks)
    }

    fn write<'a>(
        &'a mut self,
        chunks: &'a mut [Bytes],
    ) -> Pin<Box<dyn Future<Output = Result<(), quinn::WriteError>> + Send + 'a>> {
        Box::pin(self.write_all_chunks(chunks))
    }

    fn stopped(&mut self) -> Pin<Box<dyn Future<Output = Option<quinn::WriteError>> + Send>> {
        let stopped = quinn::SendStream::stopped(self);
        Box::pin(async move { stopped.await.ok().flatten().map(quinn::WriteError::Stopped) })
    }
}

/// Blocked send streams of one connection that wait for quinn with a waker of their own
/// (see [`WriteGate`]).
const GATE_PERMITS: usize = 4;

/// How often the blocked stream whose turn it is retries without a waker.
const RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// How long a permit holder may go without a wake-up from the transport before it gives its
/// permit up (when a stream in line retries).
const HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// Which of a connection's blocked send streams wait for quinn. Both adapters write every
/// stream that cannot take its bytes at once through their connection's gate.
///
/// When a QUIC connection's send window fills, quinn wakes every stream that found it
/// full each time an acknowledgement frees room, and all but the first find it full
/// again: with hundreds of group streams in flight that is hundreds of task wake-ups per
/// acknowledgement. So a blocked stream waits, in line, for one of a few permits, and
/// only a permit holder waits for the transport with a waker.
///
/// The streams in line take turns: the one whose turn it is retries at once and after
/// `RETRY` without a waker, writing whatever room it finds, then hands the turn on. The
/// timed retry also tells the permit holders to check on themselves: a holder that the
/// transport has not woken for `HOLD` is held up by its own flow control (a group its
/// reader does not read), since the connection's window wakes its holders at every
/// acknowledgement, so it gives its permit up and queues again (a write dropped half way
/// leaves its chunks showing what is left, as quinn's `SendStream::write_chunks` does). quinn checks the window before a
/// stream's own credit, so while other streams keep the window full a holder without
/// credit may be woken too, and keep its permit; the streams in line then move on the
/// turn's retries. A stream in line watches for STOP_SENDING, having no waker of its own.
///
/// A write through the gate may be dropped at any point (to reset the stream, say): the
/// chunks show what is left, and the stream's places in line go with it.
///
/// ```no_run
/// # async fn demo(mut stream: quinn::SendStream, mut chunks: Vec<bytes::Bytes>) -> Result<(), quinn::WriteError> {
/// // One gate per connection: its blocked streams wait their turn.
/// let gate = moq_quic::WriteGate::default();
/// gate.write(&mut stream, &mut chunks).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WriteGate {
    /// Held by the blocked streams that wait with a waker.
    permits: Semaphore,
    /// Held by the blocked stream in line whose turn it is to retry.
    turn: tokio::sync::Mutex<()>,
    /// Asks permit holders that the transport has not woken for `HOLD` to give it up.
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
/// whose polls cost something (quinn takes the connection lock) stays cheap in a `select!`
/// whose other branches wake the task often. Notes when that last happened.
struct OnWake<F> {
    inner: F,
    woken: Arc<Woken>,
    waker: std::task::Waker,
    first: bool,
    last_woken: tokio::time::Instant,
}

impl<F> OnWake<F> {
    fn new(inner: F) -> Self {
        let woken = Arc::new(Woken::default());
        Self {
            inner,
            waker: std::task::Waker::from(woken.clone()),
            woken,
            first: true,
            last_woken: tokio::time::Instant::now(),
        }
    }

    /// How long since `inner` last woke the task (or was first polled).
    fn quiet(&self) -> std::time::Duration {
        self.last_woken.elapsed()
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
        this.last_woken = tokio::time::Instant::now();
        Pin::new(&mut this.inner).poll(&mut std::task::Context::from_waker(&this.waker))
    }
}

/// How a wait in line for a permit ended.
enum InLine<'g, E> {
    /// The write is over.
    Done(Result<(), E>),
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

impl WriteGate {
    /// Writes every chunk to a quinn stream, waiting for room through the gate.
    ///
    /// ```no_run
    /// # async fn demo(gate: &moq_quic::WriteGate, mut stream: quinn::SendStream) -> Result<(), quinn::WriteError> {
    /// let mut chunks = vec![bytes::Bytes::from_static(b"frame")];
    /// gate.write(&mut stream, &mut chunks).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(
        &self,
        stream: &mut quinn::SendStream,
        chunks: &mut [Bytes],
    ) -> Result<(), quinn::WriteError> {
        self.write_gated(stream, chunks).await
    }

    /// [`WriteGate::write`] for any [`Gated`] stream.
    pub(crate) async fn write_gated<S: Gated>(
        &self,
        stream: &mut S,
        chunks: &mut [Bytes],
    ) -> Result<(), S::Error> {
        loop {
            let permit = match self.wait_in_line(stream, chunks).await {
                InLine::Done(done) => return done,
                InLine::Permit(permit) => permit,
            };
            let start = chunks.iter().position(|c| !c.is_empty()).unwrap_or(0);
            if let Some(done) = self
                .write_holding(permit, stream, &mut chunks[start..])
                .await
            {
                return done;
            }
            // Asked to give the permit up: back to the end of the line.
        }
    }

    /// Waits in line for a permit, retrying without a waker when it is this stream's turn.
    async fn wait_in_line<S: Gated>(
        &self,
        stream: &mut S,
        chunks: &mut [Bytes],
    ) -> InLine<'_, S::Error> {
        // The futures are kept across wake-ups, and with them the places in line.
        let acquire = self.permits.acquire();
        tokio::pin!(acquire);
        let mut turn = Turn::Waiting(Box::pin(self.turn.lock()));
        let retry = tokio::time::sleep(RETRY);
        tokio::pin!(retry);
        // Without a waker of its own here, the stream hears of STOP_SENDING this way.
        let mut stopped = OnWake::new(stream.stopped());
        let mut stop_watched = true;
        let mut try_now = true;
        let mut timed = false;
        loop {
            if std::mem::take(&mut try_now) {
                let found = match stream.try_write(chunks) {
                    Ok(n) => n > 0,
                    Err(e) => return InLine::Done(Err(e)),
                };
                let mine = matches!(turn, Turn::Mine { .. });
                if mine && timed {
                    self.hand_on.notify_waiters();
                }
                if chunks.iter().all(Bytes::is_empty) {
                    return InLine::Done(Ok(()));
                }
                if mine && (found || timed) {
                    // Hand the turn on (the next in line retries at once) and queue again.
                    turn = Turn::Waiting(Box::pin(self.turn.lock()));
                }
            }
            tokio::select! {
                biased;
                permit = &mut acquire => return InLine::Permit(permit.ok()),
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
                err = &mut stopped, if stop_watched => match err {
                    Some(err) => return InLine::Done(Err(err)),
                    None => stop_watched = false,
                },
            }
        }
    }

    /// Writes `chunks`, waiting for the transport with a waker and holding `permit`. `None`
    /// when asked to give the permit up after `HOLD` without a wake-up from the transport:
    /// the write is dropped, and `chunks` shows what is left.
    async fn write_holding<S: Gated>(
        &self,
        permit: Option<tokio::sync::SemaphorePermit<'_>>,
        stream: &mut S,
        chunks: &mut [Bytes],
    ) -> Option<Result<(), S::Error>> {
        // Polled only when the transport wakes it: the quiet time tells a write held up by
        // its own flow control from one the connection's window holds up.
        let mut write = OnWake::new(stream.write(chunks));
        loop {
            let asked = tokio::select! {
                biased;
                written = &mut write => return Some(written),
                () = self.hand_on.notified(), if permit.is_some() => true,
            };
            if asked && write.quiet() >= HOLD {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write the peer stopped, with its code.
    #[derive(Debug, PartialEq)]
    struct Stopped(u64);

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
        stop: Option<tokio::sync::oneshot::Receiver<u64>>,
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

    impl Gated for Flow {
        type Error = Stopped;

        fn write<'a>(
            &'a mut self,
            chunks: &'a mut [Bytes],
        ) -> Pin<Box<dyn Future<Output = Result<(), Stopped>> + Send + 'a>> {
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

        fn try_write(&mut self, chunks: &mut [Bytes]) -> Result<usize, Stopped> {
            Ok(self.take(chunks, None))
        }

        fn stopped(&mut self) -> Pin<Box<dyn Future<Output = Option<Stopped>> + Send>> {
            let stop = self.stop.take();
            Box::pin(async move {
                match stop {
                    Some(stop) => stop.await.ok().map(Stopped),
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

    /// Spawns a write of `len` bytes on a new stream of `window`.
    fn spawn_flow(
        gate: &Arc<WriteGate>,
        mut stream: Flow,
        len: usize,
    ) -> tokio::task::JoinHandle<Result<(), Stopped>> {
        let gate = gate.clone();
        tokio::spawn(async move {
            let mut chunks = vec![Bytes::from(vec![0u8; len])];
            gate.write_gated(&mut stream, &mut chunks).await
        })
    }

    fn spawn_write(
        gate: &Arc<WriteGate>,
        window: &Arc<Mutex<Window>>,
        index: usize,
        credit: usize,
        len: usize,
    ) -> tokio::task::JoinHandle<Result<(), Stopped>> {
        let stream = Flow {
            index,
            credit,
            window: window.clone(),
            stop: None,
        };
        spawn_flow(gate, stream, len)
    }

    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    /// The write's outcome, within `within` (of the paused clock).
    async fn outcome(
        write: tokio::task::JoinHandle<Result<(), Stopped>>,
        within: std::time::Duration,
    ) -> Result<(), Stopped> {
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
            assert_eq!(outcome(write, RETRY).await, Ok(()));
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
            assert_eq!(outcome(write, RETRY * 3).await, Ok(()));
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
        let waiting = spawn_flow(&gate, stream, 10);
        settle().await;
        assert!(!waiting.is_finished());
        stop.send(9).expect("stop");
        settle().await;
        // At once: the clock did not move.
        assert!(waiting.is_finished());
        assert_eq!(waiting.await.expect("the write task"), Err(Stopped(9)));
    }
}
