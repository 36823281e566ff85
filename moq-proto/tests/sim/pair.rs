//! A deterministic, in-memory pair of sessions: a virtual clock and a simulated transport
//! that turns one side's commands into the other's inputs.
//!
//! Knobs: one-way latency, splitting stream data into chunks of at most `split` bytes,
//! reordering deliveries across streams (per-stream order is kept, as in QUIC), withholding
//! send credit, and failing stream opens.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use moq_proto::{
    CloseReason, Command, Config, Dir, ErrorCode, Event, FrameRead, Payload, Role, Session,
    StreamId, TransportStats,
};

/// Which side of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Side {
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// Something in flight from one side to the other.
#[derive(Clone, Debug)]
enum Packet {
    Data(Bytes),
    Fin,
    Reset(ErrorCode),
    Stop(ErrorCode),
    Close(ErrorCode, String),
}

/// One side: its session, the events it produced, and its view of the streams.
pub(crate) struct Endpoint {
    pub(crate) session: Session,
    pub(crate) events: Vec<Event>,
    /// Every command it emitted, in order, for assertions.
    pub(crate) commands: Vec<Command>,
    /// Every frame its readers read, in order.
    pub(crate) frames: Vec<(StreamId, Payload)>,
    /// Received groups and our fetches, read as soon as frames arrive.
    pub(crate) reader: Reader,
    /// Our stream id → the peer's id for the same stream.
    to_peer: HashMap<StreamId, StreamId>,
    /// Streams we opened and their direction (the peer learns of them on first packet).
    dirs: HashMap<StreamId, Dir>,
    /// Writes handed to the transport whose credit has not been returned.
    withheld: Vec<(StreamId, usize)>,
    /// Bytes this side's transport has sent.
    bytes_sent: u64,
}

impl Endpoint {
    fn new(role: Role, config: Config, now: Instant) -> Self {
        Self {
            session: Session::new(role, config, now),
            events: Vec::new(),
            commands: Vec::new(),
            frames: Vec::new(),
            reader: Reader::default(),
            to_peer: HashMap::new(),
            dirs: HashMap::new(),
            withheld: Vec::new(),
            bytes_sent: 0,
        }
    }

    /// Takes the events collected so far.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The payloads of every frame read on `stream` so far, in order.
    pub(crate) fn frames_of(&self, stream: StreamId) -> Vec<Bytes> {
        frames_of(&self.frames, stream)
    }

    /// Bytes handed to the transport and not accepted by it, on streams not reset: what an
    /// adapter would still be holding.
    #[allow(dead_code)]
    pub(crate) fn withheld_live(&self) -> usize {
        let reset: HashSet<StreamId> = self
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Reset { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        self.withheld
            .iter()
            .filter(|(id, _)| !reset.contains(id))
            .map(|(_, len)| len)
            .sum()
    }
}

/// Two sessions joined by a simulated transport.
pub(crate) struct Pair {
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    pub(crate) now: Instant,
    /// One-way delay of every packet.
    pub(crate) latency: Duration,
    /// Split stream data into chunks of at most this many bytes (0 = no split).
    pub(crate) split: usize,
    /// Deliver packets of different streams in a scrambled order (seeded, deterministic).
    pub(crate) reorder: bool,
    /// Withhold send credit on these sides (writes are not reported accepted).
    pub(crate) starve: HashSet<Side>,
    /// Fail every stream open on these sides.
    pub(crate) fail_opens: HashSet<Side>,
    /// Report transport statistics when asked (else `TransportStats::default()`).
    pub(crate) stats_available: bool,
    /// Packets in flight: (delivery time, sequence) → (destination, sender's stream, packet).
    in_flight: BTreeMap<(Instant, u64), (Side, StreamId, Packet)>,
    seq: u64,
    rng: u64,
    closed: bool,
}

impl Pair {
    pub(crate) fn new() -> Self {
        Self::with_config(Config::default(), Config::default())
    }

    pub(crate) fn with_config(client: Config, server: Config) -> Self {
        let now = Instant::now_for_tests();
        Self {
            client: Endpoint::new(Role::Client, client, now),
            server: Endpoint::new(Role::Server, server, now),
            now,
            latency: Duration::from_millis(10),
            split: 0,
            reorder: false,
            starve: HashSet::new(),
            fail_opens: HashSet::new(),
            stats_available: true,
            in_flight: BTreeMap::new(),
            seq: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            closed: false,
        }
    }

    pub(crate) fn side(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64: deterministic and good enough to scramble delivery order.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn send(&mut self, to: Side, from_stream: StreamId, packet: Packet) {
        let mut at = self.now + self.latency;
        if self.reorder {
            // Up to 4 extra latencies of jitter, but never overtaking an earlier packet
            // of the same stream: QUIC delivers each stream in order.
            let jitter = self.next_rand() % 4 * self.latency.as_micros().max(1) as u64;
            at += Duration::from_micros(jitter);
            if let Some(last) = self
                .in_flight
                .iter()
                .filter(|(_, (side, s, _))| *side == to && *s == from_stream)
                .map(|((t, _), _)| *t)
                .max()
            {
                at = at.max(last);
            }
        }
        self.seq += 1;
        self.in_flight
            .insert((at, self.seq), (to, from_stream, packet));
    }

    /// Carries out every pending command of one side.
    fn drain_commands(&mut self, side: Side) -> bool {
        let mut any = false;
        loop {
            let Some(command) = self.side(side).session.poll_command() else {
                break;
            };
            any = true;
            self.side(side).commands.push(command.clone());
            self.execute(side, command);
        }
        any
    }

    fn execute(&mut self, side: Side, command: Command) {
        let now = self.now;
        let peer = side.other();
        match command {
            Command::Open { id, dir, .. } => {
                if self.fail_opens.contains(&side) {
                    self.side(side).session.handle_open_failed(id, now);
                } else {
                    self.side(side).dirs.insert(id, dir);
                    self.side(side).session.handle_opened(id, now);
                }
            }
            Command::Write { id, data } => {
                let len = data.len();
                self.side(side).bytes_sent += len as u64;
                if self.split > 0 {
                    let mut rest = data;
                    while !rest.is_empty() {
                        let n = rest.len().min(1 + (self.next_rand() as usize) % self.split);
                        let chunk = rest.split_to(n);
                        self.send(peer, id, Packet::Data(chunk));
                    }
                } else {
                    self.send(peer, id, Packet::Data(data));
                }
                if self.starve.contains(&side) {
                    self.side(side).withheld.push((id, len));
                } else {
                    self.side(side).session.handle_written(id, len, now);
                }
            }
            Command::Finish { id } => self.send(peer, id, Packet::Fin),
            Command::Reset { id, code } => self.send(peer, id, Packet::Reset(code)),
            // Opens complete at once here: the stream is open, so the transport resets it.
            Command::CancelOpen { id, code } => {
                if self.side(side).dirs.contains_key(&id) {
                    self.send(peer, id, Packet::Reset(code));
                }
            }
            Command::Stop { id, code } => self.send(peer, id, Packet::Stop(code)),
            Command::SetPriority { .. } => {}
            Command::SampleStats => {
                let stats = if self.stats_available {
                    TransportStats {
                        rtt: Some(self.latency * 2),
                        bytes_sent: Some(self.side(side).bytes_sent),
                        ..TransportStats::default()
                    }
                } else {
                    TransportStats::default()
                };
                self.side(side).session.handle_stats(stats, now);
            }
            Command::Close { code, reason } => {
                self.send(peer, StreamId(u64::MAX), Packet::Close(code, reason));
            }
            other => panic!("the simulated transport does not know {other:?}"),
        }
    }

    /// Delivers one packet to its destination.
    fn deliver(&mut self, to: Side, from_stream: StreamId, packet: Packet) {
        let now = self.now;
        let from = to.other();
        if let Packet::Close(code, reason) = packet {
            if !self.closed {
                self.closed = true;
                self.side(to)
                    .session
                    .handle_connection_closed(CloseReason::Peer { code, reason }, now);
            }
            return;
        }
        if self.side(to).session.is_closed() {
            return;
        }
        // Stop travels back to the opener of the stream's send side: the id is the
        // sender's own; map it to the receiver's view.
        let remote = match self.side(from).to_peer.get(&from_stream) {
            Some(&r) => r,
            None => {
                // First packet of a stream: the receiver learns of it now. A peer-opened
                // stream is named by the receiver.
                let dir = match self.side(from).dirs.get(&from_stream) {
                    Some(&d) => d,
                    None => return, // a stream the peer opened and we answered on
                };
                let r = self.side(to).session.handle_accepted(dir, now);
                self.side(from).to_peer.insert(from_stream, r);
                self.side(to).to_peer.insert(r, from_stream);
                r
            }
        };
        let session = &mut self.side(to).session;
        match packet {
            Packet::Data(data) => session.handle_data(remote, data, now),
            Packet::Fin => session.handle_fin(remote, now),
            Packet::Reset(code) => session.handle_reset(remote, code, now),
            Packet::Stop(code) => session.handle_stop_sending(remote, code, now),
            Packet::Close(..) => {}
        }
    }

    /// Collects events and reads every frame that arrived; true if that made the sessions
    /// emit anything.
    fn collect_events(&mut self) -> bool {
        let mut any = false;
        for side in [Side::Client, Side::Server] {
            let end = self.side(side);
            loop {
                let mut more = false;
                while let Some(e) = end.session.poll_event() {
                    end.reader.note(&e);
                    end.events.push(e);
                    more = true;
                }
                more |= end
                    .reader
                    .read(&mut end.session, end.dirs.keys(), &mut end.frames);
                if !more {
                    break;
                }
                any = true;
            }
        }
        any
    }

    /// Runs until nothing is in flight and no timer is due at the current time.
    pub(crate) fn drive(&mut self) {
        self.run_until(None);
    }

    /// Moves the virtual clock forward by `d`, delivering and firing everything due.
    pub(crate) fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(Some(until));
        self.now = until;
        for side in [Side::Client, Side::Server] {
            self.side(side).session.handle_timeout(until);
        }
        self.run_until(Some(until));
    }

    fn run_until(&mut self, until: Option<Instant>) {
        for _ in 0..1_000_000 {
            let mut progressed = false;
            for side in [Side::Client, Side::Server] {
                progressed |= self.drain_commands(side);
            }
            progressed |= self.collect_events();
            // Next packet or timer.
            let next_packet = self.in_flight.keys().next().map(|(t, _)| *t);
            let next_timer = [Side::Client, Side::Server]
                .iter()
                .filter_map(|&s| match s {
                    Side::Client => self.client.session.poll_timeout(),
                    Side::Server => self.server.session.poll_timeout(),
                })
                .min();
            let limit = until.unwrap_or(self.now);
            let next = [next_packet, next_timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= limit || (until.is_none() && next_packet == Some(t)) => {
                    if t > self.now {
                        self.now = t;
                    }
                    if next_packet == Some(t) {
                        let (key, (to, stream, packet)) =
                            self.in_flight.pop_first().expect("a packet is due");
                        let _ = key;
                        self.deliver(to, stream, packet);
                    } else {
                        let now = self.now;
                        self.client.session.handle_timeout(now);
                        self.server.session.handle_timeout(now);
                    }
                }
                _ if !progressed => return,
                _ => {}
            }
        }
        panic!("the pair did not settle: a livelock");
    }

    /// Returns withheld send credit on a side and stops withholding.
    #[allow(dead_code)]
    pub(crate) fn release_credit(&mut self, side: Side) {
        self.starve.remove(&side);
        let now = self.now;
        let withheld = std::mem::take(&mut self.side(side).withheld);
        for (id, len) in withheld {
            self.side(side).session.handle_written(id, len, now);
        }
    }
}

/// A fixed starting instant for virtual time (tests may read the clock once, here).
trait NowForTests {
    fn now_for_tests() -> Instant;
}

impl NowForTests for Instant {
    #[allow(clippy::disallowed_methods)]
    fn now_for_tests() -> Instant {
        Instant::now()
    }
}

/// Reads received groups and fetches as a reader task would: every frame as soon as it has
/// arrived, until the end.
#[derive(Default)]
pub(crate) struct Reader {
    /// Groups announced by `GroupReceived` and not yet read to their end.
    groups: std::collections::BTreeSet<StreamId>,
    /// Streams read to their end (fetches are tried on every stream we opened).
    done: HashSet<StreamId>,
    /// Leave everything unread (for tests of what the session holds).
    pub(crate) paused: bool,
}

impl Reader {
    pub(crate) fn note(&mut self, event: &Event) {
        if let Event::GroupReceived { stream, .. } = event {
            self.groups.insert(*stream);
        }
    }

    /// Reads what is ready on the groups and on `ours` (our streams: fetches among them);
    /// true if anything was read.
    pub(crate) fn read<'a>(
        &mut self,
        session: &mut Session,
        ours: impl Iterator<Item = &'a StreamId>,
        frames: &mut Vec<(StreamId, Payload)>,
    ) -> bool {
        if self.paused {
            return false;
        }
        let mut candidates: Vec<StreamId> = self.groups.iter().copied().collect();
        candidates.extend(ours.copied().filter(|id| !self.groups.contains(id)));
        candidates.sort();
        let mut any = false;
        for id in candidates {
            if self.done.contains(&id) {
                continue;
            }
            loop {
                match session.read_frame(id) {
                    Ok(FrameRead::Frame(payload)) => {
                        frames.push((id, payload));
                        any = true;
                    }
                    Ok(FrameRead::Blocked) => break,
                    Ok(FrameRead::Ended(_)) => {
                        self.groups.remove(&id);
                        self.done.insert(id);
                        any = true;
                        break;
                    }
                    Err(_) => {
                        // Not a group or fetch we receive (or not yet one).
                        break;
                    }
                }
            }
        }
        any
    }
}

/// The payloads of every frame in `frames` read on `stream`, in order.
pub(crate) fn frames_of(frames: &[(StreamId, Payload)], stream: StreamId) -> Vec<Bytes> {
    frames
        .iter()
        .filter(|(s, _)| *s == stream)
        .map(|(_, p)| p.clone().into_bytes())
        .collect()
}
