//! The one task per session that owns the stream futures, and the core's timers.
//!
//! It accepts the peer's streams, opens ours, closes the connection, calls application
//! handlers, and fires the core's timers. The stream futures (each stream's send task and
//! receive loop) live in its one `FuturesUnordered`: nothing is spawned per stream, and
//! dropping the driver tears them all down. Those futures feed the core themselves, under
//! the session lock (see `Shared::flush`); a group stream is handed to its reader once the
//! group header is in (see `crate::shared::source`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use moq_proto::{CloseReason, Dir, StreamId};
use tokio::sync::{mpsc, oneshot};

use crate::publish::{FetchRequest, FetchWriter, Router, TrackRequest, TrackWriter};
use crate::shared::send::{Next, SendQueue};
use crate::shared::source::{READ_BATCH, Source};
use crate::shared::{Request, Shared, Signal, Stopper, Upcall, now};
use crate::transport::{Connection, RecvStream, SendStream, StreamError};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A transport event only the driver can take in: it creates stream tasks.
enum Input<C: Connection> {
    Opened(StreamId, C::SendStream, Option<C::RecvStream>),
    OpenFailed(StreamId, Dir),
    AcceptedUni(C::RecvStream),
    AcceptedBi(C::SendStream, C::RecvStream),
    Closed(CloseReason),
}

pub(crate) struct Driver<C: Connection> {
    conn: C,
    shared: Arc<Shared>,
    tasks: FuturesUnordered<Task>,
    inputs: mpsc::UnboundedReceiver<Input<C>>,
    input_tx: mpsc::UnboundedSender<Input<C>>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// Serves the peer's subscriptions and fetches.
    router: Option<Router>,
    /// Opens waiting for stream credit, per direction.
    opens_uni: Opens,
    opens_bi: Opens,
}

/// The opens of one direction: one at a time waits for stream credit (so new credit wakes
/// one waiter, not every queued open), the rest wait in order, and any can be given up.
#[derive(Default)]
struct Opens {
    /// Waiting, by id (ids grow, so this is the order they were asked for), with their
    /// priority.
    queued: std::collections::BTreeMap<StreamId, i32>,
    /// The one whose open is under way, and the code to reset it with if it was given up
    /// meanwhile.
    in_flight: Option<(StreamId, Option<moq_proto::ErrorCode>)>,
}

impl<C: Connection> Driver<C> {
    pub(crate) fn new(
        conn: C,
        shared: Arc<Shared>,
        requests: mpsc::UnboundedReceiver<Request>,
        router: Option<Router>,
    ) -> Self {
        let (input_tx, inputs) = mpsc::unbounded_channel();
        let driver = Self {
            conn,
            shared,
            tasks: FuturesUnordered::new(),
            inputs,
            input_tx,
            requests,
            router,
            opens_uni: Opens::default(),
            opens_bi: Opens::default(),
        };
        driver.start_accepting();
        driver
    }

    fn start_accepting(&self) {
        let (conn, tx) = (self.conn.clone(), self.input_tx.clone());
        self.tasks.push(Box::pin(async move {
            while let Ok(recv) = conn.accept_uni().await {
                if tx.send(Input::AcceptedUni(recv)).is_err() {
                    return;
                }
            }
        }));
        let (conn, tx) = (self.conn.clone(), self.input_tx.clone());
        self.tasks.push(Box::pin(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                if tx.send(Input::AcceptedBi(send, recv)).is_err() {
                    return;
                }
            }
        }));
        let (conn, tx) = (self.conn.clone(), self.input_tx.clone());
        self.tasks.push(Box::pin(async move {
            let reason = conn.closed().await;
            let _ = tx.send(Input::Closed(reason));
        }));
    }

    /// Runs until the session ends.
    pub(crate) async fn run(mut self) {
        loop {
            let (deadline, closed) = {
                let mut inner = self.shared.lock();
                let deadline = inner.core.poll_timeout();
                inner.io.armed = deadline;
                (deadline, inner.core.is_closed())
            };
            // Taken after the check: a flush that closed the session queued its requests
            // (the connection close among them) before releasing the lock.
            while let Ok(request) = self.requests.try_recv() {
                self.request(request);
            }
            if closed {
                break;
            }
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                Some(request) = self.requests.recv() => self.request(request),
                Some(input) = self.inputs.recv() => {
                    self.apply(input);
                    while let Ok(input) = self.inputs.try_recv() {
                        self.apply(input);
                    }
                }
                Some(()) = self.tasks.next(), if !self.tasks.is_empty() => {}
                () = sleep => {
                    let mut inner = self.shared.lock();
                    inner.core.handle_timeout(now());
                    self.shared.flush(inner);
                }
            }
        }
        // Handlers not called are dropped here (their writers end), unlocked; so are the
        // streams still waiting in the session's tables.
        self.requests.close();
        while self.requests.try_recv().is_ok() {}
        let io = std::mem::take(&mut self.shared.lock().io);
        drop(io);
        tracing::debug!("session driver finished");
    }

    fn opens(&mut self, dir: Dir) -> &mut Opens {
        match dir {
            Dir::Uni => &mut self.opens_uni,
            Dir::Bi => &mut self.opens_bi,
        }
    }

    /// Starts the next open of `dir` if none is under way.
    fn next_open(&mut self, dir: Dir) {
        let opens = self.opens(dir);
        if opens.in_flight.is_some() {
            return;
        }
        let Some((id, priority)) = opens.queued.pop_first() else {
            return;
        };
        opens.in_flight = Some((id, None));
        let (conn, tx) = (self.conn.clone(), self.input_tx.clone());
        self.tasks.push(Box::pin(async move {
            let input = match dir {
                Dir::Uni => match conn.open_uni().await {
                    Ok(mut send) => {
                        send.set_priority(priority);
                        Input::Opened(id, send, None)
                    }
                    Err(_) => Input::OpenFailed(id, dir),
                },
                Dir::Bi => match conn.open_bi().await {
                    Ok((mut send, recv)) => {
                        send.set_priority(priority);
                        Input::Opened(id, send, Some(recv))
                    }
                    Err(_) => Input::OpenFailed(id, dir),
                },
            };
            let _ = tx.send(input);
        }));
    }

    /// The open of `id` under way in `dir` ended (opened or failed): starts the next one,
    /// and returns the code it was given up with meanwhile, if it was.
    fn open_done(&mut self, id: StreamId, dir: Dir) -> Option<moq_proto::ErrorCode> {
        let cancelled = self
            .opens(dir)
            .in_flight
            .take()
            .and_then(|(open, code)| code.filter(|_| open == id));
        self.next_open(dir);
        cancelled
    }

    fn request(&mut self, request: Request) {
        match request {
            Request::Open { id, dir, priority } => {
                self.opens(dir).queued.insert(id, priority);
                self.next_open(dir);
            }
            // Only unidirectional opens are given up (see `Command::CancelOpen`).
            Request::CancelOpen { id, code } => {
                let opens = &mut self.opens_uni;
                if opens.queued.remove(&id).is_none()
                    && let Some((open, cancelled)) = opens.in_flight.as_mut()
                    && *open == id
                {
                    *cancelled = Some(code);
                }
            }
            Request::Close { code, reason } => self.conn.close(code, &reason),
            Request::Upcalls(upcalls) => {
                for upcall in upcalls {
                    self.upcall(upcall);
                }
            }
        }
    }

    /// Calls the router with a request to serve and the writer that serves it (or drops
    /// the writer, which refuses it, if there is no router).
    fn upcall(&self, upcall: Upcall) {
        let shared = self.shared.clone();
        match upcall {
            Upcall::Track {
                id,
                path,
                track,
                params,
            } => {
                let writer = TrackWriter::new(shared, id, params);
                let request = TrackRequest {
                    path,
                    track,
                    params,
                };
                if let Some(router) = &self.router {
                    router.serve_track(request, writer);
                }
            }
            Upcall::Fetch { stream, request } => {
                let writer = FetchWriter::new(shared, stream);
                if let Some(router) = &self.router {
                    router.serve_fetch(FetchRequest::from(request), writer);
                }
            }
        }
    }

    fn apply(&mut self, input: Input<C>) {
        let now = now();
        let shared = self.shared.clone();
        let mut guard = shared.lock();
        let inner = &mut *guard;
        match input {
            Input::Opened(id, mut send, recv) => {
                let dir = if recv.is_some() { Dir::Bi } else { Dir::Uni };
                if let Some(code) = self.open_done(id, dir) {
                    // Given up while it opened: the session has forgotten it.
                    send.reset(code);
                    if let Some(mut recv) = recv {
                        recv.stop(code);
                    }
                    drop(guard);
                    return;
                }
                // The core emits nothing for a stream before this: its writes, and any
                // reset or stop decided while it opened, come from `handle_opened`.
                let tx = self.spawn_send(id, send);
                if !tx.is_ended() {
                    inner.io.senders.insert(id, tx);
                }
                if let Some(recv) = recv {
                    match inner.io.stoppers.get(&id) {
                        // A fetch: its reader reads the response.
                        Some(Stopper::Slot(slot)) => {
                            slot.fill(Source::new(Box::new(recv), Box::default()));
                        }
                        _ => {
                            let stop = self.spawn_recv(id, recv, false);
                            inner.io.stoppers.insert(id, Stopper::Task(stop));
                        }
                    }
                }
                inner.core.handle_opened(id, now);
            }
            Input::OpenFailed(id, dir) => {
                if self.open_done(id, dir).is_none() {
                    inner.core.handle_open_failed(id, now);
                }
            }
            Input::AcceptedUni(recv) => {
                let id = inner.core.handle_accepted(Dir::Uni, now);
                // Only group streams are uni: read until the header, then handed over.
                let stop = self.spawn_recv(id, recv, true);
                inner.io.stoppers.insert(id, Stopper::Task(stop));
            }
            Input::AcceptedBi(send, recv) => {
                let id = inner.core.handle_accepted(Dir::Bi, now);
                let tx = self.spawn_send(id, send);
                inner.io.senders.insert(id, tx);
                let stop = self.spawn_recv(id, recv, false);
                inner.io.stoppers.insert(id, Stopper::Task(stop));
            }
            Input::Closed(reason) => inner.core.handle_connection_closed(reason, now),
        }
        shared.flush(guard);
    }

    /// Starts the task that writes what one stream could not take at once, and reports
    /// to the core what the transport took. Returns the stream's queue.
    fn spawn_send(&mut self, id: StreamId, stream: C::SendStream) -> Arc<SendQueue> {
        let queue = Arc::new(SendQueue::new(Box::new(stream)));
        self.tasks
            .push(Box::pin(send_task(queue.clone(), self.shared.clone(), id)));
        queue
    }

    /// Starts the task that reads one stream and feeds the core: a control stream until it
    /// ends; a group stream (`group`) until its GROUP header is routed, when the stream goes
    /// to the group's reader. A new group stream is not read while the session holds more
    /// unread bytes than its budget, so flow control reaches the publisher. Returns its
    /// STOP_SENDING switch.
    fn spawn_recv(
        &mut self,
        id: StreamId,
        mut stream: C::RecvStream,
        group: bool,
    ) -> oneshot::Sender<Signal> {
        let (signal_tx, mut signal) = oneshot::channel::<Signal>();
        let shared = self.shared.clone();
        self.tasks.push(Box::pin(async move {
            let mut chunks: Box<[Bytes; READ_BATCH]> = Box::default();
            let told = loop {
                if group {
                    tokio::select! {
                        biased;
                        told = &mut signal => break told,
                        () = shared.budget.wait(&shared) => {}
                    }
                }
                tokio::select! {
                    biased;
                    told = &mut signal => break told,
                    read = stream.read_chunks(&mut chunks[..]) => {
                        if shared.feed(id, read, &mut chunks[..]) {
                            return;
                        }
                    }
                }
            };
            match told {
                Ok(Signal::Stop(code)) => stream.stop(code),
                // Stopped meanwhile, the slot stops it with the core's code.
                Ok(Signal::Handover(slot)) => slot.fill(Source::new(Box::new(stream), chunks)),
                // The session is gone.
                Err(_) => {}
            }
        }));
        signal_tx
    }
}

/// The send task of stream `id`: writes what could not be written at once, waiting for
/// flow control, and reports to the core what the transport took.
async fn send_task(queue: Arc<SendQueue>, shared: Arc<Shared>, id: StreamId) {
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        match queue.next(&mut batch) {
            Next::Done => return,
            Next::Wait => queue.queued().await,
            Next::Write(mut stream, mut chunks) => {
                let n = chunks.iter().map(Bytes::len).sum();
                let written = queue.write_unless_reset(&mut *stream, &mut chunks).await;
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
                        inner.core.handle_written(id, n, now());
                        shared.flush(inner);
                    }
                    Err(StreamError::Stopped(code)) => {
                        queue.end();
                        let mut inner = shared.lock();
                        inner.io.senders.remove(&id);
                        inner.core.handle_stop_sending(id, code, now());
                        shared.flush(inner);
                        return;
                    }
                    Err(_) => {
                        // The connection is gone (its end is reported by the driver).
                        queue.end();
                        shared.lock().io.senders.remove(&id);
                        return;
                    }
                }
            }
        }
    }
}
