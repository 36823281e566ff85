//! moq-lite-04 on one thread, with no async runtime.
//!
//! Two sans-IO cores meet in one loop: [`moq_proto::Session`] (MOQ) and
//! [`quinn_proto::Connection`] (QUIC), over a [`std::net::UdpSocket`]. The loop
//! ([`Connection::turn`]) carries the session's commands into QUIC streams, QUIC's stream
//! data and events into the session, sends what QUIC has to send, and waits for a datagram
//! or for the earlier of the two cores' deadlines. It is the worked example of
//! docs/embedding.md: a smol, glommio, game-loop or embedded driver has the same shape.
//!
//! The application works on [`Connection::session`] (subscribe, announce interest, fetch,
//! probe, close, ...) and learns what happened from [`Connection::next_event`]; it reads a
//! group's or fetch's frames with [`Connection::read_frame`]. Each of those drives the loop
//! until it has an answer or its deadline passes; nothing runs between calls.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use moq_blocking::Connection;
//! use moq_proto::{Config, Event, FrameRead, HopId, PathPrefix};
//! use moq_tls::ServerTrust;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = "127.0.0.1:4443".parse()?;
//! let mut conn = Connection::connect(addr, "localhost", &ServerTrust::Insecure, Config::default())?;
//! conn.session().announce_interest(PathPrefix::root(), HopId(0))?;
//! let deadline = Instant::now() + Duration::from_secs(5);
//! while let Some(event) = conn.next_event(deadline)? {
//!     if let Event::Announced { path, .. } = event {
//!         println!("{path}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Stream data is handed to the session as it arrives: what no reader has taken is held in
//! the session and counted in its ledger ([`moq_proto::Ledger`]), which bounds it (past
//! its cap the largest holder is shed). Reading every stream at once keeps one group's
//! stream from waiting behind another's data for the connection's flow-control credit.

mod watch;

pub use watch::{Watch, Watched, watch};

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use moq_proto::{
    CloseReason, Command, CommandError, Config, Dir, ErrorCode, Event, FrameRead, Role, Session,
    StreamId, TransportStats,
};
use moq_tls::ServerTrust;
use quinn_proto::{
    ClientConfig, ConnectionError, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig,
    ReadError, StreamEvent, TransportConfig, VarInt, WriteError,
};

/// The ALPN token of moq-lite-04 over native QUIC.
pub const ALPN: &[u8] = b"moq-lite-04";

/// How long [`Connection::connect`] waits for the QUIC handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Datagrams read in one turn before the cores run again.
const READS_PER_TURN: usize = 64;

/// Why the connection could not be made or went on no further.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The UDP socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// QUIC refused to start the connection (for example an invalid server name).
    #[error("connect: {0}")]
    Connect(#[from] quinn_proto::ConnectError),
    /// The handshake did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error("the QUIC handshake did not finish in time")]
    HandshakeTimeout,
    /// The connection ended before the handshake finished.
    #[error("connection failed: {0}")]
    Handshake(ConnectionError),
    /// The session refused a command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A read's deadline passed with nothing to return.
    #[error("timed out")]
    Timeout,
}

/// One stream as both cores know it.
#[derive(Debug)]
struct Stream {
    quic: quinn_proto::StreamId,
    /// Our send side is open (writes may follow).
    send: bool,
    /// Its receive side is open (data may follow).
    recv: bool,
    /// Writes QUIC has not taken yet, in order, and whether FIN follows them.
    unsent: VecDeque<Bytes>,
    fin: bool,
}

/// A moq-lite-04 client session over native QUIC, driven on the calling thread.
pub struct Connection {
    socket: UdpSocket,
    endpoint: Endpoint,
    handle: ConnectionHandle,
    quic: quinn_proto::Connection,
    session: Session,
    streams: HashMap<StreamId, Stream>,
    by_quic: HashMap<quinn_proto::StreamId, StreamId>,
    /// Opens waiting for stream credit: unidirectional, bidirectional.
    waiting: [VecDeque<(StreamId, i32)>; 2],
    /// The session's events, in order, until the application takes them.
    events: VecDeque<Event>,
    /// Why the QUIC connection ended (closed by either side, or lost), once it has.
    lost: Option<ConnectionError>,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.quic.remote_address())
            .field("streams", &self.streams.len())
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

/// The transport settings: the same windows as the async adapters' defaults.
fn transport() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(256));
    t.max_concurrent_uni_streams(VarInt::from_u32(256));
    t.stream_receive_window(VarInt::from_u32(4 * 1024 * 1024));
    t.receive_window(VarInt::from_u32(16 * 1024 * 1024));
    t.send_window(16 * 1024 * 1024);
    t.keep_alive_interval(Some(Duration::from_secs(4)));
    t
}

impl Connection {
    /// Connects to a moq-lite-04 server over native QUIC and waits for the handshake.
    /// `server_name` is checked against the certificate as `trust` says.
    pub fn connect(
        addr: SocketAddr,
        server_name: &str,
        trust: &ServerTrust,
        config: Config,
    ) -> Result<Self, Error> {
        let local: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        let crypto = moq_tls::client_crypto(trust, ALPN)?;
        let mut client = ClientConfig::new(Arc::new(crypto));
        client.transport_config(Arc::new(transport()));
        let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None);
        let now = Instant::now();
        let (handle, quic) = endpoint.connect(now, client, addr, server_name)?;
        let mut conn = Self {
            socket,
            endpoint,
            handle,
            quic,
            session: Session::new(Role::Client, config, now),
            streams: HashMap::new(),
            by_quic: HashMap::new(),
            waiting: [VecDeque::new(), VecDeque::new()],
            events: VecDeque::new(),
            lost: None,
            recv_buf: vec![0; 65_536],
            send_buf: Vec::with_capacity(1500),
        };
        let deadline = now + HANDSHAKE_TIMEOUT;
        while conn.quic.is_handshaking() {
            if Instant::now() >= deadline {
                return Err(Error::HandshakeTimeout);
            }
            conn.turn(Some(deadline))?;
            if let Some(reason) = conn.lost.take() {
                return Err(Error::Handshake(reason));
            }
        }
        Ok(conn)
    }

    /// The MOQ session: issue commands on it (subscribe, announce interest, fetch, probe,
    /// close, ...). They take effect on the next [`Connection::turn`], which every method
    /// here that waits runs.
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.quic.remote_address()
    }

    /// The next event of the session, driving the connection until there is one or
    /// `deadline` passes (`None`). After [`Event::Closed`], `None` at once.
    pub fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, Error> {
        loop {
            self.flush();
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if self.lost.is_some() || Instant::now() >= deadline {
                return Ok(None);
            }
            self.turn(Some(deadline))?;
        }
    }

    /// The next frame (or the end) of a received group or fetch, driving the connection
    /// until it has one; [`Error::Timeout`] if `deadline` passes first. Never
    /// [`FrameRead::Blocked`]. Events that happen meanwhile wait for
    /// [`Connection::next_event`].
    pub fn read_frame(&mut self, stream: StreamId, deadline: Instant) -> Result<FrameRead, Error> {
        loop {
            match self.session.read_frame(stream)? {
                FrameRead::Blocked => {}
                other => {
                    // Reading may have given credit back or ended a stream.
                    self.flush();
                    return Ok(other);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            self.turn(Some(deadline))?;
        }
    }

    /// Closes the session with `code` and `reason` and sends the close; the connection is
    /// done.
    pub fn close(mut self, code: ErrorCode, reason: &str) -> Result<(), Error> {
        self.session.close(code, reason);
        self.flush();
        Ok(())
    }

    /// The transport's statistics, as the session's probe reads them.
    pub fn transport_stats(&self) -> TransportStats {
        let stats = self.quic.stats();
        TransportStats {
            rtt: Some(stats.path.rtt),
            bytes_sent: Some(stats.udp_tx.bytes),
            bytes_received: Some(stats.udp_rx.bytes),
            congestion_window: Some(stats.path.cwnd),
            lost_packets: Some(stats.path.lost_packets),
            lost_bytes: Some(stats.path.lost_bytes),
            congestion_events: Some(stats.path.congestion_events),
            ..TransportStats::default()
        }
    }

    /// One turn of the loop: carry out what both cores have to do, then wait for a
    /// datagram until the earliest of their deadlines and `deadline`, and take in what
    /// came.
    pub fn turn(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        self.flush();
        let now = Instant::now();
        let wake = [
            self.quic.poll_timeout(),
            self.session.poll_timeout(),
            deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = wake.map(|at| at.saturating_duration_since(now));
        if wait != Some(Duration::ZERO) && self.lost.is_none() {
            // A zero timeout means "block forever" to the socket: at least a millisecond.
            self.socket
                .set_read_timeout(wait.map(|w| w.max(Duration::from_millis(1))))?;
            if self.receive()? {
                // More may be queued: take it without waiting.
                self.socket.set_nonblocking(true)?;
                for _ in 1..READS_PER_TURN {
                    if !self.receive()? {
                        break;
                    }
                }
                self.socket.set_nonblocking(false)?;
            }
        }
        let now = Instant::now();
        if self.quic.poll_timeout().is_some_and(|at| at <= now) {
            self.quic.handle_timeout(now);
        }
        if self.session.poll_timeout().is_some_and(|at| at <= now) {
            self.session.handle_timeout(now);
        }
        self.flush();
        Ok(())
    }

    /// Reads one datagram into QUIC; `false` if none came (timeout or would block).
    fn receive(&mut self) -> Result<bool, Error> {
        let (n, from) = match self.socket.recv_from(&mut self.recv_buf) {
            Ok(read) => read,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(false);
            }
            // A previous send's ICMP error (the peer's port is closed): nothing to read.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let data = BytesMut::from(&self.recv_buf[..n]);
        let mut response = Vec::new();
        match self
            .endpoint
            .handle(Instant::now(), from, None, None, data, &mut response)
        {
            Some(DatagramEvent::ConnectionEvent(handle, event)) if handle == self.handle => {
                self.quic.handle_event(event);
            }
            Some(DatagramEvent::Response(transmit)) => {
                self.socket
                    .send_to(&response[..transmit.size], transmit.destination)?;
            }
            // A client endpoint takes no connection; another handle is not ours.
            _ => {}
        }
        Ok(true)
    }

    /// Runs both cores until neither has anything to do: QUIC's events into the session,
    /// the session's commands into QUIC, the session's events into the queue, QUIC's
    /// packets onto the socket.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.quic.poll_endpoint_events() {
                if let Some(event) = self.endpoint.handle_event(self.handle, event) {
                    self.quic.handle_event(event);
                }
            }
            while let Some(event) = self.quic.poll() {
                progressed = true;
                self.on_quic_event(event);
            }
            while let Some(command) = self.session.poll_command() {
                progressed = true;
                self.on_command(command);
            }
            while let Some(event) = self.session.poll_event() {
                self.events.push_back(event);
            }
            let now = Instant::now();
            while let Some(transmit) = self.quic.poll_transmit(now, 1, &mut self.send_buf) {
                // A datagram that cannot be sent is lost: QUIC recovers from it.
                let _ = self
                    .socket
                    .send_to(&self.send_buf[..transmit.size], transmit.destination);
                self.send_buf.clear();
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_quic_event(&mut self, event: quinn_proto::Event) {
        let now = Instant::now();
        match event {
            quinn_proto::Event::Stream(StreamEvent::Opened { dir }) => {
                while let Some(quic) = self.quic.streams().accept(dir) {
                    let id = self.session.handle_accepted(ours(dir), now);
                    self.add_stream(id, quic, dir == quinn_proto::Dir::Bi, true);
                    self.read(quic);
                }
            }
            quinn_proto::Event::Stream(StreamEvent::Readable { id }) => self.read(id),
            quinn_proto::Event::Stream(StreamEvent::Writable { id }) => {
                if let Some(&ours) = self.by_quic.get(&id) {
                    self.write(ours);
                }
            }
            quinn_proto::Event::Stream(StreamEvent::Stopped { id, error_code }) => {
                if let Some(&ours) = self.by_quic.get(&id) {
                    if let Some(stream) = self.streams.get_mut(&ours) {
                        stream.unsent.clear();
                    }
                    self.session
                        .handle_stop_sending(ours, ErrorCode(error_code.into_inner()), now);
                }
            }
            quinn_proto::Event::Stream(StreamEvent::Available { dir }) => self.open_waiting(dir),
            quinn_proto::Event::ConnectionLost { reason: lost } => {
                let reason = match &lost {
                    ConnectionError::ApplicationClosed(close) => CloseReason::Peer {
                        code: ErrorCode(close.error_code.into_inner()),
                        reason: String::from_utf8_lossy(&close.reason).into_owned(),
                    },
                    other => CloseReason::Transport(other.to_string()),
                };
                self.lost = Some(lost);
                self.session.handle_connection_closed(reason, now);
            }
            _ => {}
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Open { id, dir, priority } => {
                let index = dir_index(dir);
                if self.waiting[index].is_empty()
                    && let Some(quic) = self.quic.streams().open(theirs(dir))
                {
                    self.opened(id, quic, dir, priority);
                } else {
                    self.waiting[index].push_back((id, priority));
                }
            }
            Command::CancelOpen { id, .. } => {
                for queue in &mut self.waiting {
                    queue.retain(|(waiting, _)| *waiting != id);
                }
            }
            Command::Write { id, data } => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.unsent.push_back(data);
                    self.write(id);
                }
            }
            Command::Finish { id } => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.fin = true;
                    self.write(id);
                }
            }
            Command::Reset { id, code } => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.unsent.clear();
                    stream.send = false;
                    let _ = self.quic.send_stream(stream.quic).reset(varint(code));
                    self.retire(id);
                }
            }
            Command::Stop { id, code } => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.recv = false;
                    let _ = self.quic.recv_stream(stream.quic).stop(varint(code));
                    self.retire(id);
                }
            }
            Command::SetPriority { id, priority } => {
                if let Some(stream) = self.streams.get(&id) {
                    let _ = self.quic.send_stream(stream.quic).set_priority(priority);
                }
            }
            Command::SampleStats => {
                let stats = self.transport_stats();
                self.session.handle_stats(stats, now);
            }
            Command::Close { code, reason } => {
                self.quic
                    .close(now, varint(code), Bytes::from(reason.into_bytes()));
            }
            _ => {}
        }
    }

    /// Opens what waits for credit in `dir`, in order, while QUIC grants it.
    fn open_waiting(&mut self, dir: quinn_proto::Dir) {
        let dir = ours(dir);
        let index = dir_index(dir);
        while let Some(&(id, priority)) = self.waiting[index].front() {
            let Some(quic) = self.quic.streams().open(theirs(dir)) else {
                return;
            };
            self.waiting[index].pop_front();
            self.opened(id, quic, dir, priority);
        }
    }

    fn opened(&mut self, id: StreamId, quic: quinn_proto::StreamId, dir: Dir, priority: i32) {
        let _ = self.quic.send_stream(quic).set_priority(priority);
        self.add_stream(id, quic, true, dir == Dir::Bi);
        self.session.handle_opened(id, Instant::now());
    }

    fn add_stream(&mut self, id: StreamId, quic: quinn_proto::StreamId, send: bool, recv: bool) {
        self.streams.insert(
            id,
            Stream {
                quic,
                send,
                recv,
                unsent: VecDeque::new(),
                fin: false,
            },
        );
        self.by_quic.insert(quic, id);
    }

    /// Forgets a stream once both its sides are done.
    fn retire(&mut self, id: StreamId) {
        if let Some(stream) = self.streams.get(&id)
            && !stream.send
            && !stream.recv
        {
            self.by_quic.remove(&stream.quic);
            self.streams.remove(&id);
        }
    }

    /// Hands a stream's waiting writes to QUIC as far as it takes them, then the FIN.
    fn write(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let mut send = self.quic.send_stream(stream.quic);
        let mut written = 0;
        while !stream.unsent.is_empty() {
            let chunks = stream.unsent.make_contiguous();
            match send.write_chunks(chunks) {
                Ok(done) => {
                    // Whole chunks taken are counted in `chunks`; a chunk taken in part
                    // was advanced in place.
                    written += done.bytes;
                    stream.unsent.drain(..done.chunks);
                    if done.bytes == 0 {
                        break;
                    }
                }
                Err(WriteError::Blocked) => break,
                Err(_) => {
                    // Stopped or closed: what is left will not go.
                    stream.unsent.clear();
                    break;
                }
            }
        }
        let finish = stream.unsent.is_empty() && stream.fin && stream.send;
        if finish {
            let _ = send.finish();
            stream.send = false;
            stream.fin = false;
        }
        if written > 0 {
            self.session.handle_written(id, written, Instant::now());
        }
        if finish {
            self.retire(id);
        }
    }

    /// Hands a stream's received data, FIN or reset to the session.
    fn read(&mut self, quic: quinn_proto::StreamId) {
        let Some(&id) = self.by_quic.get(&quic) else {
            return;
        };
        let mut chunks_in = Vec::new();
        let mut fin = false;
        let mut reset = None;
        let mut recv = self.quic.recv_stream(quic);
        if let Ok(mut chunks) = recv.read(true) {
            loop {
                match chunks.next(usize::MAX) {
                    Ok(Some(chunk)) => chunks_in.push(chunk.bytes),
                    Ok(None) => {
                        fin = true;
                        break;
                    }
                    Err(ReadError::Blocked) => break,
                    Err(ReadError::Reset(code)) => {
                        reset = Some(code);
                        break;
                    }
                }
            }
            // Credit goes back with the next packet.
            let _ = chunks.finalize();
        }
        let now = Instant::now();
        if !chunks_in.is_empty() {
            self.session.handle_chunks(id, &mut chunks_in, now);
        }
        if fin || reset.is_some() {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.recv = false;
            }
            match reset {
                Some(code) => self
                    .session
                    .handle_reset(id, ErrorCode(code.into_inner()), now),
                None => self.session.handle_fin(id, now),
            }
            self.retire(id);
        }
    }
}

fn ours(dir: quinn_proto::Dir) -> Dir {
    match dir {
        quinn_proto::Dir::Uni => Dir::Uni,
        quinn_proto::Dir::Bi => Dir::Bi,
    }
}

fn theirs(dir: Dir) -> quinn_proto::Dir {
    match dir {
        Dir::Uni => quinn_proto::Dir::Uni,
        _ => quinn_proto::Dir::Bi,
    }
}

fn dir_index(dir: Dir) -> usize {
    usize::from(dir != Dir::Uni)
}

/// An application error code as QUIC carries it (codes past 2^62 cannot be sent: the
/// largest instead).
fn varint(code: ErrorCode) -> VarInt {
    VarInt::from_u64(code.0).unwrap_or(VarInt::MAX)
}
