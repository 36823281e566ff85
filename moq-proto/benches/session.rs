//! Session benchmark: a publisher and a subscriber `Session` joined by a loop that moves each
//! side's commands into the other's inputs, with no IO, no latency and no copies.
//!
//! Rows:
//! - **delivery**, for N = 1, 16 and 256 subscriptions to one track: groups of 30 frames of
//!   1 KiB, every group sent to every subscription. Prints input events (`handle_*` calls on
//!   both sides) per second, nanoseconds and allocations per delivered frame (amortised
//!   over whole groups, stream set-up included, and within an open group), and payload MB/s.
//! - **idle state**: heap bytes each side holds per idle subscription, from the heap growth
//!   when 1000 subscriptions are added and answered.
//! - **idle polls**: the cost of `poll_command` + `poll_event` + `poll_timeout` with nothing
//!   to do, next to few and next to many idle subscriptions.
//!
//! Run with `cargo bench -p moq-proto --bench session`. A plain timing loop (no framework);
//! allocations are counted by `stats_alloc` wrapping `System` (the workspace forbids the
//! `unsafe` a hand-written counting allocator needs).
// Benchmarks read the wall clock; the core never does (see moq-proto/clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_proto::message::SubscribeParams;
use moq_proto::{
    BroadcastPath, Command, Config, Dir, Event, FrameRead, GroupSequence, PublisherParams, Role,
    Session, StreamId, SubscribeId,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The payload of every frame: static, so cloning it never allocates.
static PAYLOAD: [u8; 1024] = [0x5a; 1024];
const FRAMES_PER_GROUP: usize = 30;
/// Unmapped entry of a stream-id map.
const NONE: u64 = u64::MAX;

/// One side of the link.
struct Side {
    session: Session,
    /// Our stream id → the peer's id for the same stream (`NONE` if not yet known).
    to_peer: Vec<u64>,
    /// Direction of the streams we opened, by id.
    dirs: Vec<Option<Dir>>,
}

impl Side {
    fn new(role: Role, now: Instant, streams: usize) -> Self {
        Self {
            session: Session::new(role, Config::default(), now),
            to_peer: Vec::with_capacity(streams),
            dirs: Vec::with_capacity(streams),
        }
    }

    fn slot<T: Clone>(v: &mut Vec<T>, id: StreamId, fill: T) -> &mut T {
        let i = id.0 as usize;
        if v.len() <= i {
            v.resize(i + 1, fill);
        }
        &mut v[i]
    }
}

/// Two sessions and the loop between them.
struct Link {
    publisher: Side,
    subscriber: Side,
    now: Instant,
    /// `handle_*` calls made on either session.
    inputs: u64,
    /// Frames the subscriber application received.
    frames: u64,
    /// Received groups still being read.
    reading: Vec<moq_proto::StreamId>,
    /// Incoming subscriptions the publisher has been asked for, to accept.
    requested: Vec<SubscribeId>,
}

impl Link {
    fn new(streams: usize) -> Self {
        let now = Instant::now();
        Self {
            publisher: Side::new(Role::Server, now, streams),
            subscriber: Side::new(Role::Client, now, streams),
            now,
            inputs: 0,
            frames: 0,
            reading: Vec::new(),
            requested: Vec::new(),
        }
    }

    /// Moves commands across until both sides are quiet; collects the events.
    fn pump(&mut self) {
        loop {
            let moved = Self::carry(&mut self.publisher, &mut self.subscriber, self.now)
                + Self::carry(&mut self.subscriber, &mut self.publisher, self.now);
            self.inputs += moved;
            while let Some(event) = self.subscriber.session.poll_event() {
                if let Event::GroupReceived { stream, .. } = event {
                    self.reading.push(stream);
                }
            }
            let session = &mut self.subscriber.session;
            let frames = &mut self.frames;
            self.reading.retain(|&stream| {
                loop {
                    match session.read_frame(stream) {
                        Ok(FrameRead::Frame(payload)) => {
                            debug_assert_eq!(payload.len(), PAYLOAD.len());
                            *frames += 1;
                        }
                        Ok(FrameRead::Blocked) => return true,
                        _ => return false,
                    }
                }
            });
            while let Some(event) = self.publisher.session.poll_event() {
                if let Event::SubscribeRequested { id, .. } = event {
                    self.requested.push(id);
                }
            }
            if moved == 0 {
                return;
            }
        }
    }

    /// Carries out every pending command of `from`; returns the inputs it made.
    fn carry(from: &mut Side, to: &mut Side, now: Instant) -> u64 {
        let mut inputs = 0;
        while let Some(command) = from.session.poll_command() {
            match command {
                Command::Open { id, dir, .. } => {
                    *Side::slot(&mut from.dirs, id, None) = Some(dir);
                    from.session.handle_opened(id, now);
                    inputs += 1;
                }
                Command::Write { id, data } => {
                    let len = data.len();
                    let peer = Self::peer(from, to, id, now, &mut inputs);
                    to.session.handle_data(peer, data, now);
                    from.session.handle_written(id, len, now);
                    inputs += 2;
                }
                Command::Finish { id } => {
                    let peer = Self::peer(from, to, id, now, &mut inputs);
                    to.session.handle_fin(peer, now);
                    inputs += 1;
                }
                Command::Reset { id, code } => {
                    let peer = Self::peer(from, to, id, now, &mut inputs);
                    to.session.handle_reset(peer, code, now);
                    inputs += 1;
                }
                Command::Stop { id, code } => {
                    let peer = Self::peer(from, to, id, now, &mut inputs);
                    to.session.handle_stop_sending(peer, code, now);
                    inputs += 1;
                }
                _ => {}
            }
        }
        inputs
    }

    /// The peer's id for one of `from`'s streams, accepting it on first use.
    fn peer(
        from: &mut Side,
        to: &mut Side,
        id: StreamId,
        now: Instant,
        inputs: &mut u64,
    ) -> StreamId {
        let mapped = *Side::slot(&mut from.to_peer, id, NONE);
        if mapped != NONE {
            return StreamId(mapped);
        }
        let dir = Side::slot(&mut from.dirs, id, None).unwrap_or(Dir::Bi);
        let peer = to.session.handle_accepted(dir, now);
        *inputs += 1;
        *Side::slot(&mut from.to_peer, id, NONE) = peer.0;
        *Side::slot(&mut to.to_peer, peer, NONE) = id.0;
        peer
    }

    /// `n` subscriptions to the one track, accepted.
    fn subscribe(&mut self, n: usize) -> Vec<SubscribeId> {
        let path = BroadcastPath::new("/bench/track");
        if !self.publisher.session.is_announced(&path) {
            self.publisher
                .session
                .announce(path.clone(), vec![])
                .unwrap();
        }
        let ids: Vec<_> = (0..n)
            .map(|_| {
                self.subscriber
                    .session
                    .subscribe(path.clone(), "video", SubscribeParams::default())
                    .unwrap()
            })
            .collect();
        self.pump();
        for id in std::mem::take(&mut self.requested) {
            self.publisher
                .session
                .accept_subscribe(id, PublisherParams::default())
                .unwrap();
        }
        self.pump();
        ids
    }
}

/// Allocations (incl. reallocations) and net heap bytes during `f`.
fn measure<T>(f: impl FnOnce() -> T) -> (T, u64, isize) {
    let region = Region::new(GLOBAL);
    let out = f();
    let s = region.change();
    let net = s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated;
    (out, (s.allocations + s.reallocations) as u64, net)
}

fn delivery(n: usize) {
    // Enough stream-id slots for every group of the run, reserved up front so the link's
    // own maps never allocate inside the measurement.
    let groups = (20_000 / n).max(8) as u64;
    let mut link = Link::new(8 + 2 * n * (groups as usize + 20));
    let subs = link.subscribe(n);
    let payload = Bytes::from_static(&PAYLOAD);
    let mut seq = 0u64;
    let mut group = |link: &mut Link| {
        seq += 1;
        let streams: Vec<StreamId> = subs
            .iter()
            .map(|&id| {
                link.publisher
                    .session
                    .open_group(id, GroupSequence(seq))
                    .unwrap()
            })
            .collect();
        for _ in 0..FRAMES_PER_GROUP {
            for &g in &streams {
                link.publisher
                    .session
                    .write_frame(g, payload.clone())
                    .unwrap();
            }
            link.pump();
        }
        for &g in &streams {
            link.publisher.session.finish_group(g).unwrap();
        }
        link.pump();
    };
    // Warm up: queues, maps and the frame-header arena reach their steady size.
    for _ in 0..10 {
        group(&mut link);
    }
    let (inputs0, frames0) = (link.inputs, link.frames);
    let start = Instant::now();
    let ((), allocs, _) = measure(|| {
        for _ in 0..groups {
            group(&mut link);
        }
    });
    let elapsed = start.elapsed();
    let inputs = link.inputs - inputs0;
    let frames = link.frames - frames0;
    assert_eq!(
        frames,
        groups * FRAMES_PER_GROUP as u64 * n as u64,
        "every frame arrives"
    );

    // Within one open group: frames only.
    seq += 1;
    let streams: Vec<StreamId> = subs
        .iter()
        .map(|&id| {
            link.publisher
                .session
                .open_group(id, GroupSequence(seq))
                .unwrap()
        })
        .collect();
    link.pump();
    let frames1 = link.frames;
    let ((), inner_allocs, _) = measure(|| {
        for _ in 0..FRAMES_PER_GROUP {
            for &g in &streams {
                link.publisher
                    .session
                    .write_frame(g, payload.clone())
                    .unwrap();
            }
            link.pump();
        }
    });
    let inner_frames = link.frames - frames1;

    let secs = elapsed.as_secs_f64();
    println!(
        "delivery N={n:<4} {frames:>8} frames  {:>6.2} M input events/s  {:>7.0} ns/frame  \
         {:>5.3} allocs/frame (whole groups)  {:>5.3} allocs/frame (open group)  {:>6.0} MB/s",
        inputs as f64 / secs / 1e6,
        elapsed.as_nanos() as f64 / frames as f64,
        allocs as f64 / frames as f64,
        inner_allocs as f64 / inner_frames as f64,
        (frames as f64 * PAYLOAD.len() as f64) / secs / 1e6,
    );
}

/// Heap bytes a session owns: what dropping it frees.
fn heap_of(session: Session) -> isize {
    let ((), _, net) = measure(|| drop(session));
    -net
}

fn idle_state() {
    const K: usize = 1000;
    // Added ten at a time, so that transient queues (events, commands, timers) stay small and
    // what is measured is the state each subscription keeps.
    let sizes = |k: usize| {
        let mut link = Link::new(8 + 4 * k);
        for _ in 0..k / 10 {
            link.subscribe(10);
        }
        let Link {
            publisher,
            subscriber,
            ..
        } = link;
        (heap_of(publisher.session), heap_of(subscriber.session))
    };
    let (p0, s0) = sizes(0);
    let (p1, s1) = sizes(K);
    let per_pub = (p1 - p0) as f64 / K as f64;
    let per_sub = (s1 - s0) as f64 / K as f64;
    println!(
        "idle state: {per_sub:>6.0} B per idle subscription on the subscriber, {per_pub:>6.0} B \
         on the publisher, {:>6.0} B both ends ({K} subscriptions)",
        per_sub + per_pub
    );
}

fn idle_polls() {
    for k in [1usize, 10_000] {
        let mut link = Link::new(8 + 4 * k);
        link.subscribe(k);
        let s = &mut link.subscriber.session;
        let p = &mut link.publisher.session;
        // Calibrate to about 0.2 s.
        let mut iters = 1u64 << 16;
        let per = loop {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(s.poll_command());
                black_box(s.poll_event());
                black_box(s.poll_timeout());
                black_box(p.poll_command());
                black_box(p.poll_event());
                black_box(p.poll_timeout());
            }
            let elapsed = start.elapsed();
            if elapsed >= Duration::from_millis(200) {
                break elapsed.as_nanos() as f64 / iters as f64 / 2.0;
            }
            iters *= 2;
        };
        println!(
            "idle poll_command+poll_event+poll_timeout with {k:>6} idle subscriptions: \
             {per:>6.1} ns per session"
        );
    }
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if run("delivery") {
        for n in [1, 16, 256] {
            delivery(n);
        }
    }
    if run("idle") {
        idle_state();
        idle_polls();
    }
}
