//! The sans-IO session: one per connection, every moq-lite-04 flow on both sides.

mod announce;
mod bucket;
mod command;
mod config;
mod data;
mod error;
mod event;
mod fetch;
mod incomplete;
mod ledger;
mod probe;
mod publish;
mod ranges;
mod stats;
mod streams;
mod subscribe;
mod timer;

use command::StreamMap;
pub use command::{Command, Dir, StreamId};
pub use config::Config;
pub use error::CommandError;
pub use event::{CloseReason, EndReason, Event, FrameRead};
pub use ledger::{Ledger, STREAM_COST};
pub use probe::PROBE_REPLIES_KEPT;
pub use publish::PublisherParams;
pub use stats::{SessionStats, TransportStats};
pub use subscribe::SubscriptionItem;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::code::{self, ErrorCode};
use crate::message::{GoAway, StreamType};
use crate::{BroadcastPath, DecodeError, HopId, SubscribeId};

use announce::{InterestIn, InterestOut};
use fetch::FetchIn;
use probe::{ProbeIn, ProbeOut};
use publish::{GroupOut, Publication};
use streams::{Held, Input, Kind, Stream};
use subscribe::{GroupIn, SubOut};
use timer::{Timer, Timers};

/// Which end of the connection this session is. Both ends publish and subscribe; the role
/// only matters for GOAWAY etiquette and logs.
///
/// ```
/// # fn demo(now: std::time::Instant) { // time comes in as an argument
/// use moq_proto::{Config, Role, Session};
/// // The dialling end of a session driven by hand (see docs/embedding.md).
/// let session = Session::new(Role::Client, Config::default(), now);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Role {
    /// The end that dialled.
    Client,
    /// The end that accepted.
    Server,
}

/// One moq-lite-04 session, driven by explicit inputs and emitting explicit outputs.
///
/// # The drain rule
///
/// After **every** input (`handle_*`) and every command, call [`Session::poll_command`] until
/// it returns `None` and carry each command out in order, then [`Session::poll_event`] until
/// it returns `None` and hand each event to the application; then sleep until
/// [`Session::poll_timeout`] or the next input, whichever comes first, and call
/// [`Session::handle_timeout`] when the deadline passes (a spurious call is harmless).
///
/// Methods come in four kinds, as in quinn-proto:
/// - getters ([`Session::stats`], [`Session::is_closed`], ...);
/// - inputs, `handle_*`, each taking `now`: what the transport reports;
/// - commands, imperative verbs ([`Session::subscribe`], [`Session::announce`], ...): what
///   the application wants;
/// - outputs, `poll_*`: what must happen next. They come from queues filled when state
///   changes, so an idle poll costs O(1) whatever the number of subscriptions.
///
/// The session owns stream ids ([`StreamId`]): it names a stream when it asks for it to be
/// opened and when the adapter reports a peer's stream, and the adapter keeps the map to real
/// transport streams. It never reads a clock: a `now` earlier than the last one is taken as
/// the last one.
///
/// Commands take no `now`: a deadline a command arms (the subscribe response timeout, the
/// GOAWAY drain) counts from the latest input's `now`. After a quiet spell, report the time
/// before issuing a command ([`Session::handle_timeout`] does, harmlessly), or the deadline
/// may already be in the past.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: Config,
    now: Instant,
    closed: Option<CloseReason>,

    // Transport plumbing.
    next_stream: u64,
    streams: StreamMap<Stream>,
    /// The RESET_STREAM or STOP_SENDING decided for a stream the transport is still opening:
    /// emitted once the open completes, so that the adapter never gets a command for a
    /// stream it does not have. Only such streams have an entry.
    opening: StreamMap<Held>,
    /// Streams with a write or FIN to emit: (priority, stream), highest first (see streams).
    ready: std::collections::BinaryHeap<(i32, std::cmp::Reverse<StreamId>)>,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    timers: Timers,

    // Announce.
    /// Our broadcasts, in path order (an interest's first report walks them).
    broadcasts: std::collections::BTreeMap<BroadcastPath, Vec<HopId>>,
    interests_in: StreamMap<InterestIn>,
    interests_out: StreamMap<InterestOut>,

    // Subscribe, as subscriber.
    next_subscribe_id: u64,
    subs_out: HashMap<SubscribeId, SubOut>,
    /// Our subscriptions a handle holds (see [`Session::lease_subscription`]): what they
    /// brought that the handle has not taken, and their end once they ended.
    sub_leases: HashMap<SubscribeId, subscribe::SubLease>,
    groups_in: StreamMap<GroupIn>,

    // Subscribe, as publisher.
    pubs: HashMap<SubscribeId, Publication>,
    /// Incoming subscriptions a handle holds (see [`Session::lease_publication`]), with
    /// their end once they ended, kept until the handle lets go.
    pub_leases: HashMap<SubscribeId, Option<EndReason>>,
    /// Subscribe IDs the peer has used, as ranges (capped: see `on_subscribe`).
    seen_subscribe_ids: ranges::Ranges,
    groups_out: StreamMap<GroupOut>,

    // Fetch.
    fetches_out: StreamMap<data::DataIn>,
    fetches_in: StreamMap<FetchIn>,

    // Probe.
    probe_out: Option<ProbeOut>,
    /// Replies to our probe not taken yet (see [`Session::poll_probe_reply`]): the newest
    /// [`PROBE_REPLIES_KEPT`].
    probe_replies: std::collections::VecDeque<(u64, std::time::Duration)>,
    probe_in: Option<ProbeIn>,
    /// The peer stopped our padding stream: it takes no padding (see `probe`).
    padding_refused: bool,
    /// Padding bytes this session may send (see [`Config::probe_padding_burst`]).
    padding: bucket::TokenBucket,
    /// ANNOUNCE messages the peer may send us (see [`Config::announce_rate`]).
    announce_tokens: bucket::TokenBucket,
    /// Our interests whose input waits for [`Session::announce_tokens`], in stream order.
    announce_throttled: std::collections::BTreeSet<StreamId>,

    // Goaway.
    goaway_sent: bool,
    goaway_received: bool,

    /// Streams that owe us a message, with the bytes each holds toward it (see `incomplete`).
    incomplete: StreamMap<usize>,
    /// Their sum: bounded by [`Config::max_buffered_control_bytes`].
    incomplete_bytes: usize,
    /// Group and fetch bytes the transport has not accepted yet, across every stream: bounded
    /// by [`Config::max_queued_bytes`].
    unsent_data: usize,
    /// Received group and fetch bytes no reader has read yet (see `data`).
    unread_data: usize,
    /// The connection's ledger (see `ledger`).
    ledger: ledger::LedgerState,

    stats: stats::Counters,
    /// Shared buffer that frame headers are carved from (see `frame_header`).
    header_arena: bytes::BytesMut,
}

impl Session {
    /// A new session, live at once: moq-lite-04 has no handshake (spec §1).
    pub fn new(role: Role, config: Config, now: Instant) -> Self {
        let padding = bucket::TokenBucket::new(
            config.probe_padding_burst,
            config.probe_padding_refill_rate / 8,
            now,
        );
        let announce_tokens =
            bucket::TokenBucket::new(config.announce_burst, config.announce_rate, now);
        Self {
            role,
            config,
            now,
            closed: None,
            next_stream: 0,
            streams: StreamMap::default(),
            opening: StreamMap::default(),
            ready: Default::default(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            timers: Timers::default(),
            broadcasts: Default::default(),
            interests_in: StreamMap::default(),
            interests_out: StreamMap::default(),
            next_subscribe_id: 1,
            subs_out: HashMap::new(),
            sub_leases: HashMap::new(),
            groups_in: StreamMap::default(),
            pubs: HashMap::new(),
            pub_leases: HashMap::new(),
            seen_subscribe_ids: ranges::Ranges::default(),
            groups_out: StreamMap::default(),
            fetches_out: StreamMap::default(),
            fetches_in: StreamMap::default(),
            probe_out: None,
            probe_replies: std::collections::VecDeque::new(),
            probe_in: None,
            padding_refused: false,
            padding,
            announce_tokens,
            announce_throttled: Default::default(),
            goaway_sent: false,
            goaway_received: false,
            incomplete: StreamMap::default(),
            incomplete_bytes: 0,
            unsent_data: 0,
            unread_data: 0,
            ledger: ledger::LedgerState::default(),
            stats: stats::Counters::default(),
            header_arena: bytes::BytesMut::new(),
        }
    }

    // ---- Getters ----

    /// Which end this session is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Turns [`Config::serve_unannounced`] on or off from now on.
    pub fn set_serve_unannounced(&mut self, on: bool) {
        self.config.serve_unannounced = on;
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Whether a GOAWAY was sent or received: new requests are refused.
    pub fn is_going_away(&self) -> bool {
        self.goaway_sent || self.goaway_received
    }

    /// The number of streams the session tracks (open in at least one direction).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    // ---- Outputs ----

    /// The next thing the application must learn, or `None` when drained.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ---- Inputs ----

    /// A timer deadline passed. Harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// The peer opened a stream. Returns the id the session gives it; report its data,
    /// FIN and resets under that id.
    pub fn handle_accepted(&mut self, dir: Dir, now: Instant) -> StreamId {
        let id = self.alloc_stream();
        self.advance_clock(now);
        if self.closed.is_none() {
            self.streams.insert(id, Stream::accepted(dir));
            self.watch_incomplete(id, false);
        }
        self.advance(now);
        id
    }

    /// One chunk on a stream's receive side that is not a reader's: decoded now.
    pub(super) fn receive(&mut self, id: StreamId, data: Bytes) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let Some(recv) = stream.recv.as_mut() else {
            return;
        };
        // Control streams, and streams that still owe their first message, are watched; a
        // group or fetch past its header is not.
        let watched = stream.owes || !stream.kind.carries_data();
        recv.push(data);
        let held = recv.buffered();
        // Most chunks of a large frame only add to it: nothing to decode yet.
        let decode = recv.can_progress();
        if decode {
            self.process(id);
        }
        if watched {
            let progressed = decode
                && self
                    .streams
                    .get(&id)
                    .and_then(|s| s.recv.as_ref())
                    .is_none_or(|r| r.buffered() < held);
            self.watch_incomplete(id, progressed);
        }
    }

    /// The peer finished its send side of a stream (FIN) after the bytes already reported.
    pub fn handle_fin(&mut self, id: StreamId, now: Instant) {
        if let Some(stream) = self.streams.get_mut(&id)
            && let Some(recv) = stream.recv.as_mut()
        {
            recv.finish();
            if stream.kind == Kind::GroupIn {
                self.on_group_complete(id);
            }
            self.process(id);
            self.watch_incomplete(id, false);
        }
        self.advance(now);
    }

    /// The peer reset its send side of a stream (RESET_STREAM).
    pub fn handle_reset(&mut self, id: StreamId, code: ErrorCode, now: Instant) {
        if self.defer_reset(id, code) {
            // Its reader gets the whole frames before the reset, then the reset.
        } else if let Some(stream) = self.streams.get_mut(&id)
            && stream.recv.take().is_some()
        {
            self.forget_incomplete(id);
            self.on_peer_reset(id, code);
            self.reap(id);
        }
        self.advance(now);
    }

    /// The peer asked us to stop sending on a stream (STOP_SENDING). The session resets its
    /// send side with the same code.
    pub fn handle_stop_sending(&mut self, id: StreamId, code: ErrorCode, now: Instant) {
        if self.streams.get(&id).is_some_and(|s| s.send.is_some()) {
            self.reset_send(id, code);
            self.on_peer_stop(id, code);
            self.reap(id);
        }
        self.advance(now);
    }

    /// The transport opened a stream the session asked for with [`Command::Open`]: writes
    /// may now flow.
    pub fn handle_opened(&mut self, id: StreamId, now: Instant) {
        if let Some(held) = self.opening.remove(&id) {
            // Decided while it was opening: the transport has it now.
            if let Some(code) = held.reset {
                self.commands.push_back(Command::Reset { id, code });
            }
            if let Some(code) = held.stop {
                self.commands.push_back(Command::Stop { id, code });
            }
        }
        if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) {
            send.opened = true;
            // The priority changed while the stream was opening.
            if let Some(priority) = send.take_priority_change() {
                self.commands
                    .push_back(Command::SetPriority { id, priority });
            }
            self.refresh_ready(id);
        }
        self.advance(now);
    }

    /// The transport could not open a stream the session asked for.
    pub fn handle_open_failed(&mut self, id: StreamId, now: Instant) {
        self.opening.remove(&id);
        if self.streams.contains_key(&id) {
            self.on_open_failed(id);
            if let Some(stream) = self.streams.get_mut(&id) {
                if let Some(send) = stream.send.take() {
                    if send.data {
                        self.unsent_data -= send.unsent();
                    } else {
                        self.ledger.unsent_control -= send.unsent();
                    }
                }
                stream.recv = None;
            }
            self.reap(id);
        }
        self.advance(now);
    }

    /// Transport statistics read for [`Session::stats`] only: kept for the stats, but not
    /// taken as a probe sample, so reading stats never changes what a probe reports.
    pub fn handle_stats_read(&mut self, stats: TransportStats, now: Instant) {
        self.advance_clock(now);
        self.note_transport(stats);
        self.advance(now);
    }

    /// Transport statistics sampled for the probe (in reply to [`Command::SampleStats`]).
    pub fn handle_stats(&mut self, stats: TransportStats, now: Instant) {
        self.advance_clock(now);
        self.on_stats(stats);
        self.advance(now);
    }

    /// The connection is gone. Every open subscription, announcement, fetch and probe ends
    /// with an event naming the cause, then [`Event::Closed`].
    pub fn handle_connection_closed(&mut self, reason: CloseReason, now: Instant) {
        self.advance_clock(now);
        self.terminate(reason);
    }

    // ---- Commands: session ----

    /// Closes the session with a code and reason. Everything open ends with an event.
    pub fn close(&mut self, code: ErrorCode, reason: &str) {
        if self.closed.is_some() {
            return;
        }
        self.commands.push_back(Command::Close {
            code,
            reason: reason.to_owned(),
        });
        self.terminate(CloseReason::Local {
            code,
            reason: reason.to_owned(),
        });
    }

    /// Sends GOAWAY (spec §6.6): stops new requests, finishes the Goaway stream at once, and
    /// closes the session with 0x10 if the peer has not closed it within
    /// [`Config::goaway_timeout`].
    pub fn goaway(&mut self, uri: &str) -> Result<(), CommandError> {
        self.check_open()?;
        if self.goaway_sent {
            return Ok(());
        }
        let message = GoAway {
            uri: uri.to_owned(),
        };
        let id = self.open_stream(Dir::Bi, Kind::GoawayOut, i32::MAX);
        self.send_typed(id, StreamType::Goaway, &message)?;
        self.finish_send(id);
        self.goaway_sent = true;
        self.timers
            .set(Timer::GoawayDrain, self.now + self.config.goaway_timeout);
        Ok(())
    }

    // ---- Internals shared by the flows ----

    fn check_open(&self) -> Result<(), CommandError> {
        if self.closed.is_some() {
            Err(CommandError::Closed)
        } else {
            Ok(())
        }
    }

    /// For new outgoing requests: refused once closed or going away.
    fn check_new_request(&self) -> Result<(), CommandError> {
        self.check_open()?;
        if self.is_going_away() {
            return Err(CommandError::GoingAway);
        }
        Ok(())
    }

    fn advance_clock(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Moves the clock forward and fires every due timer.
    fn advance(&mut self, now: Instant) {
        self.advance_clock(now);
        while let Some(timer) = self.timers.pop_due(self.now) {
            if self.closed.is_some() {
                break;
            }
            self.on_timer(timer);
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::SubscribeResponse(id) => self.on_subscribe_timeout(id),
            Timer::UnsubscribeGrace(id) => self.on_unsubscribe_grace(id),
            Timer::SubscribeLinger(id) => self.on_subscribe_linger(id),
            Timer::ProbeSample => self.on_probe_sample_due(),
            Timer::GoawayDrain => self.close(code::session::GOAWAY_TIMEOUT, "goaway timeout"),
            Timer::Incomplete(id) => self.on_incomplete_timeout(id),
            Timer::Stalled(id) => self.on_stall_timeout(id),
            Timer::AnnounceRate => self.on_announce_tokens(),
        }
    }

    /// Closes with ProtocolViolation for malformed peer input (decision D10).
    fn protocol_violation(&mut self, err: &DecodeError) {
        self.close(code::session::PROTOCOL_VIOLATION, &err.to_string());
    }

    /// Ends everything with `reason`, then reports [`Event::Closed`].
    fn terminate(&mut self, reason: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason.clone());
        let end = EndReason::SessionClosed(reason.clone());
        self.end_all_interests(&end);
        self.end_all_subscriptions(&end);
        self.end_all_publications(&end);
        self.end_all_fetches(&end);
        self.end_probes(&end);
        // Readers learn the end from `read_frame`, which answers for every stream now.
        self.groups_in.clear();
        self.fetches_out.clear();
        self.unread_data = 0;
        self.streams.clear();
        // What was held for streams still opening goes with the connection.
        self.opening.clear();
        self.incomplete.clear();
        self.incomplete_bytes = 0;
        self.unsent_data = 0;
        self.ledger.unsent_control = 0;
        self.ready.clear();
        self.timers.clear();
        // Only a Close command may still be pending.
        self.commands.retain(|c| matches!(c, Command::Close { .. }));
        self.events.push_back(Event::Closed { reason });
    }

    fn on_peer_reset(&mut self, id: StreamId, code: ErrorCode) {
        let Some(role) = self.streams.get(&id).map(|s| s.kind) else {
            return;
        };
        let reason = EndReason::PeerReset(code);
        match role {
            Kind::AnnounceOut => self.end_interest_out(id, reason),
            Kind::AnnounceIn => self.end_interest_in(id),
            Kind::SubscribeOut(sub) => self.end_subscription(sub, reason),
            Kind::SubscribeIn(Some(sub)) => self.end_publication(sub, reason, None),
            Kind::GroupIn => self.end_group_in(id, reason),
            Kind::FetchOut => self.end_fetch_out(id, reason),
            Kind::ProbeOut => self.end_probe_out(reason),
            Kind::ProbeIn => self.end_probe_in(id),
            // The peer's half of these carries nothing more we need.
            Kind::Pending
            | Kind::SubscribeIn(None)
            | Kind::GroupOut
            | Kind::FetchIn
            | Kind::GoawayIn
            | Kind::GoawayOut
            | Kind::PaddingOut
            | Kind::Ignored => {
                self.reset_send(id, code);
            }
        }
    }

    fn on_peer_stop(&mut self, id: StreamId, code: ErrorCode) {
        let Some(role) = self.streams.get(&id).map(|s| s.kind) else {
            return;
        };
        let reason = EndReason::PeerStopped(code);
        match role {
            Kind::GroupOut => self.end_group_out(id, reason),
            Kind::FetchIn => self.end_fetch_in(id, reason),
            Kind::AnnounceIn => self.end_interest_in(id),
            Kind::SubscribeIn(Some(sub)) => self.end_publication(sub, reason, None),
            Kind::SubscribeOut(sub) => self.end_subscription(sub, reason),
            Kind::AnnounceOut => self.end_interest_out(id, reason),
            Kind::FetchOut => self.end_fetch_out(id, reason),
            Kind::ProbeOut => self.end_probe_out(reason),
            Kind::ProbeIn => self.end_probe_in(id),
            Kind::PaddingOut => self.on_padding_refused(id, code),
            Kind::Pending
            | Kind::SubscribeIn(None)
            | Kind::GroupIn
            | Kind::GoawayIn
            | Kind::GoawayOut
            | Kind::Ignored => {}
        }
    }

    fn on_open_failed(&mut self, id: StreamId) {
        let Some(role) = self.streams.get(&id).map(|s| s.kind) else {
            return;
        };
        let reason = EndReason::OpenFailed;
        match role {
            Kind::GroupOut => self.end_group_out(id, reason),
            Kind::SubscribeOut(sub) => self.end_subscription(sub, reason),
            Kind::AnnounceOut => self.end_interest_out(id, reason),
            Kind::FetchOut => self.end_fetch_out(id, reason),
            Kind::ProbeOut => self.end_probe_out(reason),
            Kind::PaddingOut => self.on_padding_gone(id),
            _ => {}
        }
    }

    /// Dispatches buffered input on a stream to its flow until nothing more decodes, then
    /// releases an idle control stream's receive buffer.
    fn process(&mut self, id: StreamId) {
        self.process_input(id);
        if let Some(stream) = self.streams.get_mut(&id)
            && !stream.kind.carries_data()
            && let Some(recv) = stream.recv.as_mut()
            && recv.buffered() == 0
        {
            recv.shrink_to_fit();
        }
    }

    fn process_input(&mut self, id: StreamId) {
        loop {
            if self.closed.is_some() {
                return;
            }
            let Some(stream) = self.streams.get_mut(&id) else {
                return;
            };
            let Some(recv) = stream.recv.as_mut() else {
                return;
            };
            let progressed = match stream.kind {
                Kind::Pending => {
                    let dir = stream.dir;
                    match recv.read_u8() {
                        Some(b) => {
                            self.on_stream_type(id, dir, b);
                            true
                        }
                        None => {
                            if recv.is_finished() {
                                // Ended before its type byte: drop it silently.
                                stream.recv = None;
                                self.finish_send(id);
                                self.reap(id);
                            }
                            false
                        }
                    }
                }
                Kind::AnnounceIn => self.recv_announce_interest(id),
                Kind::AnnounceOut => self.recv_announce(id),
                Kind::SubscribeIn(sub) => self.recv_subscribe(id, sub),
                Kind::SubscribeOut(sub) => self.recv_subscribe_response(id, sub),
                Kind::GroupIn => self.recv_group(id),
                Kind::FetchIn => self.recv_fetch_request(id),
                // Our fetch's response: its reader pulls the frames (see `data`).
                Kind::FetchOut => false,
                Kind::ProbeIn => self.recv_probe_in(id),
                Kind::ProbeOut => self.recv_probe_out(id),
                Kind::GoawayIn => self.recv_goaway(id),
                Kind::GroupOut | Kind::GoawayOut | Kind::PaddingOut | Kind::Ignored => {
                    self.recv_nothing(id)
                }
            };
            if !progressed {
                return;
            }
        }
    }

    /// The first byte of a peer stream (spec §3).
    fn on_stream_type(&mut self, id: StreamId, dir: Dir, byte: u8) {
        let ty = StreamType::from_byte(byte)
            .ok()
            .filter(|ty| ty.is_bidi() == (dir == Dir::Bi));
        let role = match ty {
            None => {
                // Unknown type (or the wrong direction for a known one): never fatal.
                self.reset_send(id, code::UNKNOWN_STREAM_TYPE);
                self.stop_recv(id, code::UNKNOWN_STREAM_TYPE);
                self.reap(id);
                return;
            }
            Some(StreamType::Group) => Kind::GroupIn,
            Some(StreamType::Announce) => Kind::AnnounceIn,
            Some(StreamType::Subscribe) => Kind::SubscribeIn(None),
            Some(StreamType::Fetch) => Kind::FetchIn,
            Some(StreamType::Probe) => Kind::ProbeIn,
            Some(StreamType::Goaway) => Kind::GoawayIn,
            // The peer's probe padding: discarded as it arrives.
            Some(StreamType::Padding) => Kind::Ignored,
        };
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.kind = role;
        }
        match role {
            Kind::AnnounceIn => self.on_announce_stream(id),
            Kind::FetchIn => self.on_fetch_stream(id),
            Kind::ProbeIn => self.on_probe_stream(id),
            _ => {}
        }
    }

    /// A GOAWAY from the peer (spec §6.6): refuse new requests and tell the application.
    fn recv_goaway(&mut self, id: StreamId) -> bool {
        match self.decode::<GoAway>(id) {
            Input::Item(message) => {
                if !self.goaway_received {
                    self.goaway_received = true;
                    self.events.push_back(Event::GoAway { uri: message.uri });
                }
                // One GOAWAY per stream: the rest of the stream is not parsed.
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.kind = Kind::Ignored;
                }
                true
            }
            Input::End => {
                // FIN before any GOAWAY: nothing was said; close our side.
                self.finish_send(id);
                self.reap(id);
                false
            }
            Input::Pending | Input::Failed | Input::Invalid => false,
        }
    }

    /// A stream whose peer half carries nothing more: close ours when it ends.
    fn recv_nothing(&mut self, id: StreamId) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        let Some(recv) = stream.recv.as_mut() else {
            return false;
        };
        // Nothing more is defined on this stream: discard what arrives.
        recv.discard();
        if recv.is_finished() {
            stream.recv = None;
            self.finish_send(id);
            self.reap(id);
        }
        false
    }
}
