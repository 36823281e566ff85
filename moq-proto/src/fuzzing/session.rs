//! The session fuzz entry point: a server [`Session`] fed an arbitrary sequence of timed
//! inputs and application commands, decoded by hand from the fuzzer's bytes (so it builds
//! on stable without the `arbitrary` feature, for the regression replay).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{
    Announce, AnnounceInterest, AnnounceStatus, Fetch, FrameHeader, GoAway, GroupHeader, Probe,
    StreamType, Subscribe, SubscribeDrop, SubscribeOk, SubscribeParams, SubscribeResponse,
    SubscribeUpdate,
};
use crate::{
    BroadcastPath, CloseReason, Command, Config, Dir, ErrorCode, Event, FrameRead, GroupSequence,
    HopId, Message, PathPrefix, PublisherParams, Role, Session, StreamId, SubscribeId,
    TransportStats,
};

/// Paths and prefixes small enough that fuzzed messages hit announced broadcasts.
const PATHS: [&str; 4] = ["/a", "/live/b", "/live/c/d", ""];
const PREFIXES: [&str; 6] = ["/", "", "/live/", "live", "/a", "/x/"];

/// Reads the fuzzer's bytes as a stream of small choices; zeros once exhausted.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A small number, mostly below 8, sometimes large.
    fn small(&mut self) -> u64 {
        match self.u8() {
            b @ 0..=239 => u64::from(b % 8),
            240..=247 => u64::from(self.u16()),
            _ => u64::from_be_bytes(std::array::from_fn(|_| self.u8())) >> 2,
        }
    }

    fn bytes(&mut self, max: usize) -> Bytes {
        let n = usize::from(self.u8()).min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Bytes::copy_from_slice(head)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        let i = usize::from(self.u16()) % items.len();
        items.get(i).copied()
    }

    fn path(&mut self) -> BroadcastPath {
        let i = usize::from(self.u8()) % PATHS.len();
        BroadcastPath::new(PATHS.get(i).copied().unwrap_or_default())
    }

    fn params(&mut self) -> SubscribeParams {
        let range = |input: &mut Self| input.bool().then(|| GroupSequence(input.small()));
        SubscribeParams {
            priority: self.u8(),
            ordered: self.bool(),
            max_latency: Duration::from_millis(self.small().saturating_mul(50)),
            start: range(self),
            end: range(self),
        }
    }

    fn code(&mut self) -> ErrorCode {
        ErrorCode(self.small())
    }
}

/// Bytes a peer might send: a well-formed message of some kind (so the fuzzer reaches deep
/// states quickly), a stream-type byte, or raw bytes.
fn peer_bytes(input: &mut Input<'_>) -> Bytes {
    fn encode<M: Message>(ty: Option<StreamType>, message: &M) -> Bytes {
        let mut buf = BytesMut::new();
        if let Some(ty) = ty {
            buf.put_u8(ty.to_byte());
        }
        // Every template below is encodable; an error just sends nothing.
        let _ = message.encode(&mut buf);
        buf.freeze()
    }
    let typed = |input: &mut Input<'_>, ty| input.bool().then_some(ty);
    match input.u8() % 12 {
        0 => {
            let ty = typed(input, StreamType::Announce);
            let i = usize::from(input.u8()) % PREFIXES.len();
            let prefix = PathPrefix::from_wire(PREFIXES.get(i).copied().unwrap_or("/").into());
            encode(
                ty,
                &AnnounceInterest {
                    prefix,
                    exclude_hop: HopId(input.small()),
                },
            )
        }
        1 => {
            let ty = typed(input, StreamType::Subscribe);
            encode(
                ty,
                &Subscribe {
                    id: SubscribeId(input.small()),
                    path: input.path(),
                    track: if input.bool() {
                        "t".into()
                    } else {
                        String::new()
                    },
                    params: input.params(),
                },
            )
        }
        2 => encode(
            None,
            &SubscribeUpdate {
                params: input.params(),
            },
        ),
        3 => {
            let ty = typed(input, StreamType::Group);
            encode(
                ty,
                &GroupHeader {
                    subscribe_id: SubscribeId(input.small()),
                    sequence: GroupSequence(input.small()),
                },
            )
        }
        4 => {
            let payload = input.bytes(64);
            let mut buf = BytesMut::new();
            if let Ok(header) = FrameHeader::for_payload(&payload) {
                header.encode(&mut buf);
            }
            buf.put_slice(&payload);
            buf.freeze()
        }
        5 => {
            let ty = typed(input, StreamType::Fetch);
            encode(
                ty,
                &Fetch {
                    path: input.path(),
                    track: String::new(),
                    priority: input.u8(),
                    group: GroupSequence(input.small()),
                },
            )
        }
        6 => {
            let ty = typed(input, StreamType::Probe);
            encode(
                ty,
                &Probe {
                    bitrate: input.small().saturating_mul(100_000),
                    rtt: Duration::from_millis(input.small()),
                },
            )
        }
        7 => {
            let ty = typed(input, StreamType::Goaway);
            encode(
                ty,
                &GoAway {
                    uri: if input.bool() {
                        "https://x".into()
                    } else {
                        String::new()
                    },
                },
            )
        }
        8 => {
            let response = if input.bool() {
                SubscribeResponse::Ok(SubscribeOk {
                    params: input.params(),
                })
            } else {
                SubscribeResponse::Drop(SubscribeDrop {
                    start: input.bool().then(|| GroupSequence(input.small())),
                    end: input.bool().then(|| GroupSequence(input.small())),
                    code: input.small(),
                })
            };
            let mut buf = BytesMut::new();
            let _ = response.encode(&mut buf);
            buf.freeze()
        }
        9 => {
            let status = if input.bool() {
                AnnounceStatus::Active
            } else {
                AnnounceStatus::Ended
            };
            let suffix = PATHS
                .get(usize::from(input.u8()) % PATHS.len())
                .copied()
                .unwrap_or_default();
            let hops = (0..input.u8() % 3).map(|_| HopId(input.small())).collect();
            encode(
                None,
                &Announce {
                    status,
                    suffix: suffix.trim_start_matches('/').into(),
                    hops,
                },
            )
        }
        10 => Bytes::copy_from_slice(&[input.u8() % 8]),
        _ => input.bytes(255),
    }
}

/// What the harness knows of the session's streams, to check its commands.
#[derive(Default)]
struct Streams {
    /// Every id the session named (accepted or asked to open), with its direction and
    /// whether we opened it.
    named: HashMap<StreamId, (Dir, bool)>,
    /// Opened streams the transport has reported open.
    open: HashSet<StreamId>,
    /// Send sides finished or reset.
    send_done: HashSet<StreamId>,
    /// Receive sides stopped.
    stopped: HashSet<StreamId>,
    /// Candidates for peer input: accepted streams and bidi streams we opened.
    peer: Vec<StreamId>,
    /// Streams we opened, for the transport's reports.
    ours: Vec<StreamId>,
    /// Opens the session gave up (`Command::CancelOpen`): never named again.
    cancelled: HashSet<StreamId>,
}

/// Handles for the application commands, learnt from return values and events.
#[derive(Default)]
struct Handles {
    incoming: Vec<SubscribeId>,
    subscriptions: Vec<SubscribeId>,
    groups_out: Vec<StreamId>,
    groups_in: Vec<StreamId>,
    fetches_in: Vec<StreamId>,
    fetches_out: Vec<StreamId>,
    interests: Vec<StreamId>,
}

/// Arbitrary timed inputs and application commands on a server session.
///
/// Properties: no panic; no command names a stream the session never named, writes only
/// after the transport opened the stream and never after its send side ended, no stop
/// twice; `poll_timeout` is never before the latest `now`; events and commands stay
/// proportional to the input; after [`Event::Closed`] nothing more happens but one pending
/// `Close`; and once the connection is reported closed, no stream, queued byte or timer is
/// left. `start` is the session's first `now` (the caller's: the core never reads a clock).
pub fn session(data: &[u8], start: Instant) {
    let mut input = Input { data };
    let config = Config {
        // Small limits, so the fuzzer reaches them.
        max_incoming_subscriptions: 4,
        max_incoming_announce_streams: 2,
        max_announce_entries: 3,
        max_incoming_fetches: 2,
        max_announce_queue: 4,
        announce_rate: 20,
        announce_burst: 4,
        stream_send_window: 64,
        max_queued_bytes_per_subscription: 256,
        max_queued_bytes_per_fetch: 256,
        max_connection_bytes: 32 * 1024,
        ..Config::default()
    };
    let mut now = start;
    let mut latest = start;
    let mut session = Session::new(Role::Server, config, now);
    let mut streams = Streams::default();
    let mut handles = Handles::default();
    let mut closed = false;
    let mut closes = 0usize;
    let mut outputs = 0usize;
    let mut steps = 0usize;

    while !input.is_empty() {
        steps += 1;
        // Time moves forward (sometimes far, sometimes backwards, which counts as no move).
        match input.u8() {
            0..=199 => {}
            b @ 200..=249 => now += Duration::from_millis(u64::from(b - 199) * 20),
            250..=253 => now += Duration::from_secs(u64::from(input.u8())),
            _ => now = start,
        }
        if step(&mut input, &mut session, &mut streams, &mut handles, now) {
            latest = latest.max(now);
        }
        drain(
            &mut session,
            &mut streams,
            &mut handles,
            &mut closed,
            &mut closes,
            &mut outputs,
        );
        if let Some(deadline) = session.poll_timeout() {
            assert!(
                deadline >= latest,
                "a timer in the past: {deadline:?} < {latest:?}"
            );
        }
        assert_eq!(
            session.stats().unsent_bytes,
            session.unsent_bytes_total() as u64,
            "the running count of unsent group and fetch bytes drifted"
        );
        assert_eq!(
            session.unread_bytes(),
            session.unread_bytes_total(),
            "the running count of unread group and fetch bytes drifted"
        );
        assert_eq!(
            session.ledger().control_out as usize,
            session.unsent_control_total(),
            "the running count of unsent control bytes drifted"
        );
        assert!(
            session.is_closed()
                || session.ledger().total() <= session.config().max_connection_bytes as u64,
            "the ledger is over its cap after a drain: {:?}",
            session.ledger()
        );
        assert!(
            session.stats().control_bytes_buffered as usize
                <= session.config().max_buffered_control_bytes,
            "incomplete control messages hold more than their budget"
        );
        assert!(
            session.open_streams() <= streams.named.len(),
            "more streams than were ever named"
        );
        assert!(
            outputs <= 64 * (data.len() + steps),
            "{outputs} outputs for {} input bytes",
            data.len()
        );
    }

    // The connection goes: everything is released.
    session.handle_connection_closed(CloseReason::Transport("fuzz".into()), latest);
    drain(
        &mut session,
        &mut streams,
        &mut handles,
        &mut closed,
        &mut closes,
        &mut outputs,
    );
    assert!(closed, "Event::Closed after the connection closed");
    assert_eq!(session.open_streams(), 0, "streams left after the close");
    assert_eq!(
        session.queued_bytes_total(),
        0,
        "bytes left after the close"
    );
    assert_eq!(session.poll_timeout(), None, "a timer left after the close");
    assert_eq!(
        session.unread_bytes(),
        0,
        "unread bytes left after the close"
    );
}

/// One input or command, chosen by the next byte. Returns whether `now` was given to the
/// session (application commands take no time: they use the latest input's).
fn step(
    input: &mut Input<'_>,
    session: &mut Session,
    streams: &mut Streams,
    handles: &mut Handles,
    now: Instant,
) -> bool {
    let mut gave = false;
    // A stream for peer input: mostly a known one, sometimes one never named.
    let peer_stream = |input: &mut Input<'_>, streams: &Streams| {
        if input.u8() < 250 {
            input.pick(&streams.peer)
        } else {
            Some(StreamId(u64::MAX - u64::from(input.u8())))
        }
    };
    match input.u8() % 32 {
        0 | 1 => {
            let dir = if input.bool() { Dir::Bi } else { Dir::Uni };
            gave = true;
            let id = session.handle_accepted(dir, now);
            assert!(
                streams.named.insert(id, (dir, false)).is_none(),
                "stream id {id} reused"
            );
            streams.peer.push(id);
            let bytes = peer_bytes(input);
            session.handle_data(id, bytes, now);
        }
        2..=7 => {
            if let Some(id) = peer_stream(input, streams) {
                let bytes = peer_bytes(input);
                gave = true;
                session.handle_data(id, bytes, now);
            }
        }
        8 => {
            if let Some(id) = peer_stream(input, streams) {
                gave = true;
                session.handle_fin(id, now);
            }
        }
        9 => {
            if let Some(id) = peer_stream(input, streams) {
                gave = true;
                session.handle_reset(id, input.code(), now);
            }
        }
        10 => {
            if let Some(id) = input.pick(&streams.ours).or(input.pick(&streams.peer)) {
                gave = true;
                session.handle_stop_sending(id, input.code(), now);
            }
        }
        11 => {
            if let Some(id) = input.pick(&streams.ours) {
                // A cancelled open that completed anyway is the adapter's to reset: the
                // session may be told (it ignores it), but never names it again.
                if streams.named.contains_key(&id) && !streams.cancelled.contains(&id) {
                    streams.open.insert(id);
                }
                gave = true;
                session.handle_opened(id, now);
            }
        }
        12 => {
            if let Some(id) = input.pick(&streams.ours) {
                gave = true;
                session.handle_open_failed(id, now);
            }
        }
        13 => {
            if let Some(id) = input.pick(&streams.ours).or(input.pick(&streams.peer)) {
                let n = usize::from(input.u16());
                gave = true;
                session.handle_written(id, n, now);
            }
        }
        14 => {
            let stats = TransportStats {
                rtt: input.bool().then(|| Duration::from_millis(input.small())),
                bytes_sent: input.bool().then(|| input.small().saturating_mul(1000)),
                bytes_received: input.bool().then(|| input.small()),
                congestion_window: input.bool().then(|| input.small()),
                lost_packets: input.bool().then(|| input.small()),
                lost_bytes: input.bool().then(|| input.small()),
                bytes_acked: input.bool().then(|| input.small()),
                congestion_events: input.bool().then(|| input.small()),
            };
            gave = true;
            session.handle_stats(stats, now);
        }
        15 => {
            gave = true;
            session.handle_timeout(now);
        }
        // Rarely: the connection goes.
        16 if input.u8() == 0 => {
            gave = true;
            session.handle_connection_closed(
                CloseReason::Peer {
                    code: input.code(),
                    reason: String::new(),
                },
                now,
            );
        }
        // Application commands. Their errors are fine; only panics and bad outputs are not.
        17..=31 => command(input, session, handles),
        _ => {}
    }
    gave
}

/// One application command, chosen by the next byte.
fn command(input: &mut Input<'_>, session: &mut Session, handles: &mut Handles) {
    match input.u8() % 15 {
        0 => {
            let path = input.path();
            let hops = (0..input.u8() % 3).map(|_| HopId(input.small())).collect();
            let _ = session.announce(path, hops);
        }
        1 => {
            let path = input.path();
            session.unannounce(&path);
        }
        2 => {
            let path = input.path();
            let params = input.params();
            if let Ok(id) = session.subscribe(path, "t", params) {
                handles.subscriptions.push(id);
            }
        }
        3 => {
            if let Some(id) = input.pick(&handles.subscriptions) {
                match input.u8() % 3 {
                    0 => {
                        let params = input.params();
                        let _ = session.update_subscription(id, params);
                    }
                    1 => {
                        let _ = session.unsubscribe(id);
                    }
                    _ => {
                        let _ = session.subscription(id);
                    }
                }
            }
        }
        4 => {
            if let Some(id) = input.pick(&handles.incoming) {
                let _ = match input.u8() % 6 {
                    0 | 1 => session.accept_subscribe(
                        id,
                        PublisherParams {
                            priority: input.u8(),
                            ordered: input.bool(),
                            max_latency: Duration::from_millis(input.small().saturating_mul(50)),
                        },
                    ),
                    2 => session.reject_subscribe(id, input.code()),
                    3 => session.drop_groups(
                        id,
                        GroupSequence(input.small()),
                        GroupSequence(input.small()),
                        input.code(),
                    ),
                    4 => session.finish_publication(id),
                    _ => session.abort_publication(id, input.code()),
                };
            }
        }
        5 | 6 => {
            if let Some(id) = input.pick(&handles.incoming)
                && let Ok(group) = session.open_group(id, GroupSequence(input.small()))
            {
                handles.groups_out.push(group);
            }
        }
        7..=9 => {
            if let Some(group) = input.pick(&handles.groups_out) {
                let _ = match input.u8() % 8 {
                    0 => session.finish_group(group),
                    1 => session.abort_group(group, input.code()),
                    n => session.write_frame(group, Bytes::from(vec![n; 16 * usize::from(n)])),
                };
            }
        }
        10 => {
            if let Some(id) = input.pick(&handles.fetches_in) {
                let _ = match input.u8() % 4 {
                    0 => session.finish_fetch(id),
                    1 => session.reject_fetch(id, input.code()),
                    _ => session.write_fetch_frame(id, input.bytes(100)),
                };
            }
        }
        11 => {
            let request = Fetch {
                path: input.path(),
                track: String::new(),
                priority: input.u8(),
                group: GroupSequence(input.small()),
            };
            if let Ok(id) = session.fetch(request) {
                handles.fetches_out.push(id);
            }
            if input.bool()
                && let Some(id) = input.pick(&handles.fetches_out)
            {
                let _ = session.cancel_fetch(id, crate::code::fetch::CANCELLED);
            }
        }
        12 => {
            let _ = match input.u8() % 3 {
                0 => session.probe(input.small().saturating_mul(100_000)),
                1 => session.stop_probe(),
                _ => session.goaway(if input.bool() { "https://y" } else { "" }),
            };
        }
        13 => {
            let i = usize::from(input.u8()) % PREFIXES.len();
            let prefix = PathPrefix::new(PREFIXES.get(i).copied().unwrap_or("/"));
            if let Ok(id) = session.announce_interest(prefix, HopId(input.small())) {
                handles.interests.push(id);
            }
            if input.bool()
                && let Some(id) = input.pick(&handles.interests)
            {
                let _ = session.stop_interest(id);
            }
        }
        _ => match input.u8() % 5 {
            0 => {
                if let Some(id) = input.pick(&handles.groups_in) {
                    let _ = session.cancel_group(id, input.code());
                }
            }
            2 => {
                let data = if input.bool() {
                    &handles.groups_in
                } else {
                    &handles.fetches_out
                };
                if let Some(id) = input.pick(data) {
                    read_frames(session, id, usize::from(input.u8() % 8));
                }
            }
            1 => session.close(input.code(), "fuzz"),
            _ => {
                let _ = session.stats();
            }
        },
    }
}

/// Reads up to `n` frames of a received group or fetch, checking what comes back.
fn read_frames(session: &mut Session, id: StreamId, n: usize) {
    for _ in 0..n {
        match session.read_frame(id) {
            Ok(FrameRead::Frame(_)) => {}
            Ok(FrameRead::Blocked) | Err(_) => return,
            Ok(FrameRead::Ended(_)) => {
                // Forgotten once its end is read (unless the session ended: then every
                // read answers with that).
                assert!(
                    session.is_closed() || session.read_frame(id).is_err(),
                    "stream {id} read again after its end"
                );
                return;
            }
        }
    }
}

/// Drains commands and events, checking each.
fn drain(
    session: &mut Session,
    streams: &mut Streams,
    handles: &mut Handles,
    closed: &mut bool,
    closes: &mut usize,
    outputs: &mut usize,
) {
    while let Some(command) = session.poll_command() {
        *outputs += 1;
        if *closed {
            assert!(
                matches!(command, Command::Close { .. }),
                "{command:?} after Event::Closed"
            );
        }
        match &command {
            Command::Open { id, dir, .. } => {
                assert!(
                    streams.named.insert(*id, (*dir, true)).is_none(),
                    "Open of an id already named: {id}"
                );
                streams.ours.push(*id);
                if *dir == Dir::Bi {
                    streams.peer.push(*id);
                }
            }
            Command::Write { id, .. } | Command::Finish { id } => {
                let (dir, ours) = named(streams, *id, &command);
                assert!(ours || dir == Dir::Bi, "{command:?} on a peer's uni stream");
                assert!(
                    !ours || streams.open.contains(id),
                    "{command:?} before the stream was opened"
                );
                assert!(
                    !streams.send_done.contains(id),
                    "{command:?} after the send side ended"
                );
                if matches!(command, Command::Finish { .. }) {
                    streams.send_done.insert(*id);
                }
            }
            Command::Reset { id, .. } => {
                let (dir, ours) = named(streams, *id, &command);
                assert!(ours || dir == Dir::Bi, "{command:?} on a peer's uni stream");
                assert!(
                    !ours || streams.open.contains(id),
                    "{command:?} before the stream was opened"
                );
                assert!(
                    streams.send_done.insert(*id),
                    "{command:?} after the send side ended"
                );
            }
            Command::Stop { id, .. } => {
                let (dir, ours) = named(streams, *id, &command);
                assert!(!ours || dir == Dir::Bi, "{command:?} on our own uni stream");
                assert!(
                    !ours || streams.open.contains(id),
                    "{command:?} before the stream was opened"
                );
                assert!(streams.stopped.insert(*id), "{command:?} twice");
            }
            Command::SetPriority { id, .. } => {
                named(streams, *id, &command);
            }
            Command::CancelOpen { id, .. } => {
                let (dir, ours) = named(streams, *id, &command);
                assert!(
                    ours && dir == Dir::Uni,
                    "{command:?} on a stream it may not cancel"
                );
                assert!(
                    !streams.open.contains(id),
                    "{command:?} after the stream was reported open"
                );
                assert!(streams.cancelled.insert(*id), "{command:?} twice");
                streams.send_done.insert(*id);
            }
            Command::SampleStats => {}
            Command::Close { .. } => {
                *closes += 1;
                assert_eq!(*closes, 1, "more than one Close");
            }
        }
    }
    while let Some(event) = session.poll_event() {
        *outputs += 1;
        assert!(!*closed, "{event:?} after Event::Closed");
        match event {
            Event::Closed { .. } => *closed = true,
            Event::SubscribeRequested { id, .. } => handles.incoming.push(id),
            Event::GroupReceived { stream, .. } => handles.groups_in.push(stream),
            Event::FetchRequested { stream, .. } => handles.fetches_in.push(stream),
            _ => {}
        }
    }
}

/// The direction and origin of a stream a command names; panics if it was never named, or
/// if its open was given up (only `CancelOpen` itself names it then).
fn named(streams: &Streams, id: StreamId, command: &Command) -> (Dir, bool) {
    assert!(
        !streams.cancelled.contains(&id),
        "{command:?} names a stream whose open was cancelled"
    );
    match streams.named.get(&id) {
        Some(&v) => v,
        None => panic!("{command:?} names a stream the session never named"),
    }
}
