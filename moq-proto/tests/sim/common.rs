//! Helpers shared by the scenario tests: pair set-ups, event filters, and a lone session
//! driven with raw bytes for peer behaviour our own `Session` never produces.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::pair::{Endpoint, Pair, Side};
use moq_proto::message::{FrameHeader, StreamType, SubscribeParams, SubscribeResponse};
use moq_proto::{
    BroadcastPath, Command, Config, Dir, ErrorCode, Event, GroupSequence, Message, PublisherParams,
    Role, Session, StreamId, SubscribeId,
};

pub(crate) fn path(s: &str) -> BroadcastPath {
    BroadcastPath::new(s)
}

/// Subscriber params asking for `[start, end]`.
pub(crate) fn range(start: u64, end: u64) -> SubscribeParams {
    SubscribeParams {
        start: Some(GroupSequence(start)),
        end: Some(GroupSequence(end)),
        ..SubscribeParams::default()
    }
}

/// Publishes `/live/cam` on `publisher` (if not yet), subscribes to its track "video" from
/// the other side, and accepts with `accept`. Returns the subscription id; both sides' events
/// up to the acceptance are consumed.
pub(crate) fn subscribed_with(
    pair: &mut Pair,
    publisher: Side,
    params: SubscribeParams,
    accept: PublisherParams,
) -> SubscribeId {
    let subscriber = publisher.other();
    let cam = path("/live/cam");
    if !pair.side(publisher).session.is_announced(&cam) {
        pair.side(publisher)
            .session
            .announce(cam.clone(), vec![])
            .unwrap();
    }
    let id = pair
        .side(subscriber)
        .session
        .subscribe(cam.clone(), "video", params)
        .unwrap();
    pair.drive();
    let requested = pair.side(publisher).take_events();
    assert!(
        requested.iter().any(|e| matches!(
            e,
            Event::SubscribeRequested { id: i, path: p, track, params: got }
                if *i == id && *p == cam && track == "video" && *got == params
        )),
        "expected SubscribeRequested for {id}, got {requested:?}"
    );
    pair.side(publisher)
        .session
        .accept_subscribe(id, accept)
        .unwrap();
    pair.drive();
    let ok = pair.side(subscriber).take_events();
    assert!(
        ok.iter()
            .any(|e| matches!(e, Event::SubscribeOk { id: i, .. } if *i == id)),
        "expected SubscribeOk for {id}, got {ok:?}"
    );
    id
}

/// [`subscribed_with`] with default publisher params.
pub(crate) fn subscribed(pair: &mut Pair, publisher: Side, params: SubscribeParams) -> SubscribeId {
    subscribed_with(pair, publisher, params, PublisherParams::default())
}

pub(crate) use super::pair::frames_of;

/// The stream of group `sequence` of subscription `id`, from a `GroupReceived` event.
pub(crate) fn group_stream(
    events: &[Event],
    id: SubscribeId,
    sequence: GroupSequence,
) -> Option<StreamId> {
    events.iter().find_map(|e| match e {
        Event::GroupReceived {
            id: i,
            sequence: s,
            stream,
        } if *i == id && *s == sequence => Some(*stream),
        _ => None,
    })
}

/// How a received group ended, from a `GroupEnded` event.
pub(crate) fn group_end(events: &[Event], stream: StreamId) -> Option<moq_proto::EndReason> {
    events.iter().find_map(|e| match e {
        Event::GroupEnded { stream: s, reason } if *s == stream => Some(reason.clone()),
        _ => None,
    })
}

/// Every byte written on `stream`, concatenated, from a list of commands.
pub(crate) fn written(commands: &[Command], stream: StreamId) -> Vec<u8> {
    let mut out = Vec::new();
    for c in commands {
        if let Command::Write { id, data } = c
            && *id == stream
        {
            out.extend_from_slice(data);
        }
    }
    out
}

/// The streams the endpoint opened, in order, with their direction and priority.
pub(crate) fn opens(endpoint: &Endpoint) -> Vec<(StreamId, Dir, i32)> {
    endpoint
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Open { id, dir, priority } => Some((*id, *dir, *priority)),
            _ => None,
        })
        .collect()
}

/// Stream-type byte followed by an encoded message.
pub(crate) fn typed<M: Message>(ty: StreamType, message: &M) -> Vec<u8> {
    let mut out = vec![ty.to_byte()];
    out.extend_from_slice(&message.to_bytes().unwrap());
    out
}

/// An Announce stream's first bytes: its type, then ANNOUNCE_INTEREST for `prefix` (no
/// excluded hop).
pub(crate) fn interest(prefix: moq_proto::PathPrefix) -> Vec<u8> {
    typed(
        StreamType::Announce,
        &moq_proto::message::AnnounceInterest {
            prefix,
            exclude_hop: moq_proto::HopId(0),
        },
    )
}

/// A SUBSCRIBE stream's first bytes: its type, then SUBSCRIBE `id` for `p`, track "video".
pub(crate) fn subscribe_msg(id: u64, p: &str) -> Vec<u8> {
    typed(
        StreamType::Subscribe,
        &moq_proto::message::Subscribe {
            id: moq_proto::SubscribeId(id),
            path: path(p),
            track: "video".into(),
            params: moq_proto::message::SubscribeParams::default(),
        },
    )
}

/// An encoded message.
pub(crate) fn msg<M: Message>(message: &M) -> Vec<u8> {
    message.to_bytes().unwrap().to_vec()
}

/// An encoded subscribe response (type byte and message).
pub(crate) fn response(r: SubscribeResponse) -> Vec<u8> {
    let mut buf = BytesMut::new();
    r.encode(&mut buf).unwrap();
    buf.to_vec()
}

/// An encoded FRAME.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    FrameHeader::for_payload(payload).unwrap().encode(&mut buf);
    buf.put_slice(payload);
    buf.to_vec()
}

/// One session, fed raw peer input: for peer behaviour our own session never produces
/// (a gomoqt quirk, a buggy or hostile peer). Opens succeed at once; send credit comes back
/// unless `starve` is set.
pub(crate) struct Lone {
    pub(crate) session: Session,
    pub(crate) now: Instant,
    pub(crate) starve: bool,
    /// Opens are never reported done (the peer grants no stream credit).
    pub(crate) hold_opens: bool,
    /// Every frame read, in order (see [`Lone::events`]).
    pub(crate) frames: Vec<(StreamId, moq_proto::Payload)>,
    pub(crate) reader: super::pair::Reader,
    /// Streams we opened (fetches among them).
    ours: Vec<StreamId>,
}

impl Lone {
    pub(crate) fn new(role: Role) -> Self {
        Self::with_config(role, Config::default())
    }

    pub(crate) fn with_config(role: Role, config: Config) -> Self {
        let now = Pair::new().now;
        Self {
            session: Session::new(role, config, now),
            now,
            starve: false,
            hold_opens: false,
            frames: Vec::new(),
            reader: super::pair::Reader::default(),
            ours: Vec::new(),
        }
    }

    /// The peer opens a stream.
    pub(crate) fn accept(&mut self, dir: Dir) -> StreamId {
        self.session.handle_accepted(dir, self.now)
    }

    /// The peer opens a stream and sends `bytes` on it.
    pub(crate) fn accept_with(&mut self, dir: Dir, bytes: &[u8]) -> StreamId {
        let id = self.accept(dir);
        self.data(id, bytes);
        id
    }

    pub(crate) fn data(&mut self, id: StreamId, bytes: &[u8]) {
        self.session
            .handle_data(id, Bytes::copy_from_slice(bytes), self.now);
    }

    pub(crate) fn fin(&mut self, id: StreamId) {
        self.session.handle_fin(id, self.now);
    }

    pub(crate) fn reset(&mut self, id: StreamId, code: ErrorCode) {
        self.session.handle_reset(id, code, self.now);
    }

    pub(crate) fn stop(&mut self, id: StreamId, code: ErrorCode) {
        self.session.handle_stop_sending(id, code, self.now);
    }

    /// Moves the clock and fires due timers.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.session.handle_timeout(self.now);
    }

    /// Drains every command, carrying out opens and (unless starved) returning credit.
    pub(crate) fn commands(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        while let Some(c) = self.session.poll_command() {
            match &c {
                Command::Open { id, .. } => {
                    self.ours.push(*id);
                    if !self.hold_opens {
                        self.session.handle_opened(*id, self.now);
                    }
                }
                Command::Write { id, data } if !self.starve => {
                    self.session.handle_written(*id, data.len(), self.now);
                }
                _ => {}
            }
            out.push(c);
        }
        out
    }

    /// The events so far; every frame that arrived is read on the way (into `frames`).
    pub(crate) fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let mut more = false;
            while let Some(e) = self.session.poll_event() {
                self.reader.note(&e);
                out.push(e);
                more = true;
            }
            more |= self
                .reader
                .read(&mut self.session, self.ours.iter(), &mut self.frames);
            if !more {
                return out;
            }
        }
    }

    /// The payloads of every frame read on `stream` so far (see [`Lone::events`]).
    pub(crate) fn frames_of(&self, stream: StreamId) -> Vec<Bytes> {
        frames_of(&self.frames, stream)
    }

    /// The stream id of the first `Open` in `commands`.
    pub(crate) fn opened(commands: &[Command]) -> StreamId {
        commands
            .iter()
            .find_map(|c| match c {
                Command::Open { id, .. } => Some(*id),
                _ => None,
            })
            .expect("an Open command")
    }
}

/// The `Reset` and `Stop` commands of a list, as (stream, code, is_reset).
pub(crate) fn cancels(commands: &[Command]) -> Vec<(StreamId, ErrorCode, &'static str)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Reset { id, code } => Some((*id, *code, "reset")),
            Command::Stop { id, code } => Some((*id, *code, "stop")),
            _ => None,
        })
        .collect()
}

/// Every knob setting a flow should survive: plain, split at every byte, reordered across
/// streams, both at once.
pub(crate) fn knobs() -> Vec<(usize, bool)> {
    vec![(0, false), (1, false), (0, true), (1, true), (7, true)]
}

/// A pair with the given split and reorder knobs.
pub(crate) fn pair_with(split: usize, reorder: bool) -> Pair {
    let mut pair = Pair::new();
    pair.split = split;
    pair.reorder = reorder;
    pair
}

/// Both publisher sides, for flows that must work in either direction.
pub(crate) const BOTH: [Side; 2] = [Side::Server, Side::Client];
