//! The one task per session that owns every stream future and feeds the core.
//!
//! Transport events come in through one channel and become `handle_*` inputs; the core's
//! commands become stream operations; its events are routed to readers and writers. Nothing
//! is spawned per stream: every stream future lives in one `FuturesUnordered`, so dropping
//! the driver tears them all down.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use moq_proto::{CloseReason, Command, Dir, ErrorCode, StreamId};
use tokio::sync::{mpsc, oneshot};

use crate::shared::{Shared, Upcall};
use crate::transport::{Connection, RecvStream, SendStream, StreamError};

/// Most chunks handed to the transport in one write.
const MAX_BATCH: usize = 64;

/// How much one read may take from a stream.
const READ_CHUNK: usize = 256 * 1024;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A transport event for the core.
enum Input<C: Connection> {
    Opened(StreamId, C::SendStream, Option<C::RecvStream>),
    OpenFailed(StreamId),
    AcceptedUni(C::RecvStream),
    AcceptedBi(C::SendStream, C::RecvStream),
    Data(StreamId, Bytes),
    Fin(StreamId),
    Reset(StreamId, ErrorCode),
    Stopped(StreamId, ErrorCode),
    Written(StreamId, usize),
    Closed(CloseReason),
}

/// An operation on one stream's send side, in order.
enum SendOp {
    Write(Bytes),
    Finish,
    Reset(ErrorCode),
    Priority(i32),
}

pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

pub(crate) struct Driver<C: Connection> {
    conn: C,
    shared: Arc<Shared>,
    tasks: FuturesUnordered<Task>,
    inputs: mpsc::UnboundedReceiver<Input<C>>,
    input_tx: mpsc::UnboundedSender<Input<C>>,
    senders: HashMap<StreamId, mpsc::UnboundedSender<SendOp>>,
    stoppers: HashMap<StreamId, oneshot::Sender<ErrorCode>>,
    /// Operations for streams still opening (a reset or priority change before the open
    /// completed).
    early: HashMap<StreamId, Vec<SendOp>>,
}

impl<C: Connection> Driver<C> {
    pub(crate) fn new(conn: C, shared: Arc<Shared>) -> Self {
        let (input_tx, inputs) = mpsc::unbounded_channel();
        let driver = Self {
            conn,
            shared,
            tasks: FuturesUnordered::new(),
            inputs,
            input_tx,
            senders: HashMap::new(),
            stoppers: HashMap::new(),
            early: HashMap::new(),
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
            let (deadline, closed) = self.flush();
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
                Some(input) = self.inputs.recv() => {
                    self.apply(input);
                    // Take whatever else is ready in one go, then flush once.
                    while let Ok(input) = self.inputs.try_recv() {
                        self.apply(input);
                    }
                }
                Some(()) = self.tasks.next(), if !self.tasks.is_empty() => {}
                () = sleep => {
                    self.shared.lock().core.handle_timeout(now());
                }
            }
        }
        tracing::debug!("session driver finished");
    }

    /// Carries out the core's commands and routes its events; returns the next deadline
    /// and whether the session has ended.
    fn flush(&mut self) -> (Option<std::time::Instant>, bool) {
        let shared = self.shared.clone();
        let mut upcalls = Vec::new();
        let (deadline, closed) = {
            let mut inner = shared.lock();
            loop {
                let mut progressed = false;
                while let Some(command) = inner.core.poll_command() {
                    progressed = true;
                    self.execute(command, &mut inner.core);
                }
                while let Some(event) = inner.core.poll_event() {
                    progressed = true;
                    inner.route(&shared, event, &mut upcalls);
                }
                if !progressed {
                    break;
                }
            }
            (inner.core.poll_timeout(), inner.core.is_closed())
        };
        for upcall in upcalls {
            match upcall {
                Upcall::Track(router, request, writer) => router.serve_track(request, writer),
                Upcall::Fetch(router, request, writer) => router.serve_fetch(request, writer),
            }
        }
        (deadline, closed)
    }

    fn execute(&mut self, command: Command, core: &mut moq_proto::Session) {
        match command {
            Command::Open { id, dir, priority } => {
                let (conn, tx) = (self.conn.clone(), self.input_tx.clone());
                self.tasks.push(Box::pin(async move {
                    let input = match dir {
                        Dir::Uni => match conn.open_uni().await {
                            Ok(mut send) => {
                                send.set_priority(priority);
                                Input::Opened(id, send, None)
                            }
                            Err(_) => Input::OpenFailed(id),
                        },
                        Dir::Bi => match conn.open_bi().await {
                            Ok((mut send, recv)) => {
                                send.set_priority(priority);
                                Input::Opened(id, send, Some(recv))
                            }
                            Err(_) => Input::OpenFailed(id),
                        },
                    };
                    let _ = tx.send(input);
                }));
            }
            Command::Write { id, data } => self.send_op(id, SendOp::Write(data)),
            Command::Finish { id } => {
                self.send_op(id, SendOp::Finish);
                self.senders.remove(&id);
            }
            Command::Reset { id, code } => {
                self.send_op(id, SendOp::Reset(code));
                self.senders.remove(&id);
            }
            Command::SetPriority { id, priority } => self.send_op(id, SendOp::Priority(priority)),
            Command::Stop { id, code } => {
                if let Some(stop) = self.stoppers.remove(&id) {
                    let _ = stop.send(code);
                }
            }
            Command::SampleStats => {
                let stats = (self.shared.meta.stats)();
                core.handle_stats(stats, now());
            }
            Command::Close { code, reason } => {
                self.conn.close(code, &reason);
            }
            _ => {}
        }
    }

    fn send_op(&mut self, id: StreamId, op: SendOp) {
        match self.senders.get(&id) {
            Some(tx) => {
                let _ = tx.send(op);
            }
            None => self.early.entry(id).or_default().push(op),
        }
    }

    fn apply(&mut self, input: Input<C>) {
        let now = now();
        let shared = self.shared.clone();
        let mut guard = shared.lock();
        let inner = &mut *guard;
        let core = &mut inner.core;
        match input {
            Input::Opened(id, send, recv) => {
                self.spawn_send(id, send);
                if let Some(recv) = recv {
                    self.spawn_recv(id, recv, None);
                }
                // A reset queued while the stream was opening is carried out now.
                if let Some(ops) = self.early.remove(&id) {
                    for op in ops {
                        self.send_op(id, op);
                    }
                }
                core.handle_opened(id, now);
            }
            Input::OpenFailed(id) => {
                self.early.remove(&id);
                core.handle_open_failed(id, now);
            }
            Input::AcceptedUni(recv) => {
                let id = core.handle_accepted(Dir::Uni, now);
                // Only group streams are uni: their reads follow the application's.
                let mine = Arc::new(AtomicUsize::new(0));
                inner.stream_unread.insert(id, mine.clone());
                self.spawn_recv(id, recv, Some(mine));
            }
            Input::AcceptedBi(send, recv) => {
                let id = core.handle_accepted(Dir::Bi, now);
                self.spawn_send(id, send);
                self.spawn_recv(id, recv, None);
            }
            Input::Data(id, data) => core.handle_data(id, data, now),
            Input::Fin(id) => {
                self.stoppers.remove(&id);
                inner.stream_unread.remove(&id);
                core.handle_fin(id, now);
            }
            Input::Reset(id, code) => {
                self.stoppers.remove(&id);
                inner.stream_unread.remove(&id);
                core.handle_reset(id, code, now);
            }
            Input::Stopped(id, code) => {
                self.senders.remove(&id);
                core.handle_stop_sending(id, code, now);
            }
            Input::Written(id, n) => core.handle_written(id, n, now),
            Input::Closed(reason) => core.handle_connection_closed(reason, now),
        }
    }

    fn spawn_send(&mut self, id: StreamId, mut stream: C::SendStream) {
        let (tx, mut ops) = mpsc::unbounded_channel();
        self.senders.insert(id, tx);
        let input = self.input_tx.clone();
        self.tasks.push(Box::pin(async move {
            // Writes already queued go to the transport as one batch.
            let mut batch: Vec<Bytes> = Vec::new();
            let mut next = None;
            loop {
                let op = match next.take() {
                    Some(op) => op,
                    None => match ops.recv().await {
                        Some(op) => op,
                        None => return,
                    },
                };
                match op {
                    SendOp::Write(data) => {
                        batch.push(data);
                        while batch.len() < MAX_BATCH {
                            match ops.try_recv() {
                                Ok(SendOp::Write(data)) => batch.push(data),
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        let n = batch.iter().map(Bytes::len).sum();
                        let written = stream.write_chunks(&mut batch).await;
                        batch.clear();
                        match written {
                            Ok(()) => {
                                let _ = input.send(Input::Written(id, n));
                            }
                            Err(StreamError::Stopped(code)) => {
                                let _ = input.send(Input::Stopped(id, code));
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    SendOp::Finish => {
                        let _ = stream.finish();
                        return;
                    }
                    SendOp::Reset(code) => {
                        stream.reset(code);
                        return;
                    }
                    SendOp::Priority(p) => stream.set_priority(p),
                }
            }
        }));
    }

    /// Reads a stream until it ends. A group stream (`gated` with its unread counter)
    /// pauses while the application has too many unread bytes and some of them are this
    /// group's, so flow control reaches the publisher.
    fn spawn_recv(
        &mut self,
        id: StreamId,
        mut stream: C::RecvStream,
        gated: Option<Arc<AtomicUsize>>,
    ) {
        let (stop_tx, mut stop) = oneshot::channel();
        self.stoppers.insert(id, stop_tx);
        let input = self.input_tx.clone();
        let unread = self.shared.unread.clone();
        self.tasks.push(Box::pin(async move {
            loop {
                if let Some(mine) = &gated {
                    tokio::select! {
                        biased;
                        code = &mut stop => {
                            if let Ok(code) = code {
                                stream.stop(code);
                            }
                            return;
                        }
                        () = unread.wait(mine) => {}
                    }
                }
                tokio::select! {
                    biased;
                    code = &mut stop => {
                        if let Ok(code) = code {
                            stream.stop(code);
                        }
                        return;
                    }
                    read = stream.read_chunk(READ_CHUNK) => {
                        let msg = match read {
                            Ok(Some(data)) => Input::Data(id, data),
                            Ok(None) => Input::Fin(id),
                            Err(StreamError::Reset(code)) => Input::Reset(id, code),
                            Err(_) => return,
                        };
                        let end = !matches!(msg, Input::Data(..));
                        if input.send(msg).is_err() || end {
                            return;
                        }
                    }
                }
            }
        }));
    }
}
