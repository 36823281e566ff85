//! Memory on the data path and at rest, measured with a counting global allocator
//! (`stats_alloc` wrapping `System`; the workspace forbids the `unsafe` a hand-written one
//! needs): frames pass through a publisher and a subscriber `Session` without a single heap
//! allocation once their groups are open, and an idle subscription costs under 1 KiB on each
//! side (the benchmark goals).
#![allow(clippy::disallowed_methods)]

use std::alloc::System;
use std::time::Instant;

use bytes::Bytes;
use moq_proto::message::SubscribeParams;
use moq_proto::{
    BroadcastPath, Command, Config, Dir, Event, FrameRead, GroupSequence, PublisherParams, Role,
    Session, StreamId, SubscribeId,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static PAYLOAD: [u8; 1024] = [7; 1024];

/// One side: its session, and its stream ids mapped to the peer's (fixed-size tables, so
/// the harness itself never allocates while measuring).
struct Side {
    session: Session,
    to_peer: Vec<Option<StreamId>>,
    dirs: Vec<Option<Dir>>,
}

/// A publisher and a subscriber, and the loop between them (no IO, no latency).
struct Link {
    publisher: Side,
    subscriber: Side,
    now: Instant,
    frames: usize,
    /// Received groups still being read.
    reading: Vec<moq_proto::StreamId>,
}

impl Link {
    fn new(slots: usize) -> Self {
        let now = Instant::now();
        let side = |role| Side {
            session: Session::new(role, Config::default(), now),
            to_peer: vec![None; slots],
            dirs: vec![None; slots],
        };
        Self {
            publisher: side(Role::Server),
            subscriber: side(Role::Client),
            now,
            frames: 0,
            reading: Vec::new(),
        }
    }

    fn carry(from: &mut Side, to: &mut Side, now: Instant) -> bool {
        let mut moved = false;
        while let Some(command) = from.session.poll_command() {
            moved = true;
            let mut peer = |id: StreamId, to: &mut Side| {
                let dir = from.dirs[id.0 as usize].unwrap_or(Dir::Bi);
                *from.to_peer[id.0 as usize].get_or_insert_with(|| {
                    let peer = to.session.handle_accepted(dir, now);
                    to.to_peer[peer.0 as usize] = Some(id);
                    peer
                })
            };
            match command {
                Command::Open { id, dir, .. } => {
                    from.dirs[id.0 as usize] = Some(dir);
                    from.session.handle_opened(id, now);
                }
                Command::Write { id, data } => {
                    let len = data.len();
                    let p = peer(id, to);
                    to.session.handle_data(p, data, now);
                    from.session.handle_written(id, len, now);
                }
                Command::Finish { id } => {
                    let p = peer(id, to);
                    to.session.handle_fin(p, now);
                }
                Command::SetPriority { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        moved
    }

    /// Moves commands across until both sides are quiet; accepts every subscription.
    fn pump(&mut self) {
        loop {
            let a = Self::carry(&mut self.publisher, &mut self.subscriber, self.now);
            let b = Self::carry(&mut self.subscriber, &mut self.publisher, self.now);
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
                        Ok(FrameRead::Frame(_)) => *frames += 1,
                        Ok(FrameRead::Blocked) => return true,
                        _ => return false,
                    }
                }
            });
            while let Some(event) = self.publisher.session.poll_event() {
                if let Event::SubscribeRequested { id, .. } = event {
                    self.publisher
                        .session
                        .accept_subscribe(id, PublisherParams::default())
                        .unwrap();
                }
            }
            if !a && !b {
                return;
            }
        }
    }

    fn subscribe(&mut self, n: usize) -> Vec<SubscribeId> {
        let path = BroadcastPath::new("/live/cam");
        if !self.publisher.session.is_announced(&path) {
            self.publisher
                .session
                .announce(path.clone(), vec![])
                .unwrap();
        }
        let ids = (0..n)
            .map(|_| {
                self.subscriber
                    .session
                    .subscribe(path.clone(), "video", SubscribeParams::default())
                    .unwrap()
            })
            .collect();
        self.pump();
        ids
    }
}

/// One test, so that nothing else in the process allocates while it measures (the
/// allocator counts for the whole process, the test harness's own threads included).
#[test]
fn frames_allocate_nothing_and_idle_subscriptions_cost_under_1_kib() {
    frames_of_open_groups_allocate_nothing();
    an_idle_subscription_costs_under_1_kib_on_each_side();
    a_group_waiting_for_its_stream_costs_what_the_ledger_charges();
}

/// A group whose stream the peer never lets open (no stream credit), with one small frame
/// queued: what it costs the publisher's session, against what the ledger charges for it
/// ([`moq_proto::STREAM_COST`] plus its bytes).
fn a_group_waiting_for_its_stream_costs_what_the_ledger_charges() {
    const K: u64 = 2000;
    let size = |k: u64| {
        let mut link = Link::new(16);
        let subs = link.subscribe(1);
        let publisher = &mut link.publisher.session;
        let mut charged = 0;
        for seq in 1..=k {
            let group = publisher.open_group(subs[0], GroupSequence(seq)).unwrap();
            publisher
                .write_frame(group, Bytes::from_static(b"x"))
                .unwrap();
            publisher.finish_group(group).unwrap();
            // Opens are asked for and never reported done.
            while publisher.poll_command().is_some() {}
            while publisher.poll_event().is_some() {}
        }
        charged += publisher.ledger().total() as isize;
        (heap_of(link.publisher.session), charged)
    };
    let (h0, c0) = size(0);
    let (h1, c1) = size(K);
    let cost = (h1 - h0) / K as isize;
    let charge = (c1 - c0) / K as isize;
    println!("a group waiting for its stream: {cost} bytes of heap, {charge} charged");
    assert!(
        cost <= charge,
        "a waiting group costs {cost} bytes, the ledger charges {charge}"
    );
}

fn frames_of_open_groups_allocate_nothing() {
    const N: usize = 16;
    let mut link = Link::new(1024);
    let subs = link.subscribe(N);
    let payload = Bytes::from_static(&PAYLOAD);
    let round = |link: &mut Link, seq| {
        let groups: Vec<StreamId> = subs
            .iter()
            .map(|&id| {
                link.publisher
                    .session
                    .open_group(id, GroupSequence(seq))
                    .unwrap()
            })
            .collect();
        link.pump();
        // Warm-up frames, then the measured ones.
        let mut allocations = 0;
        for i in 0..40 {
            let region = Region::new(GLOBAL);
            for &g in &groups {
                link.publisher
                    .session
                    .write_frame(g, payload.clone())
                    .unwrap();
            }
            link.pump();
            let stats = region.change();
            if i >= 10 {
                allocations += stats.allocations + stats.reallocations;
            }
        }
        for &g in &groups {
            link.publisher.session.finish_group(g).unwrap();
        }
        link.pump();
        allocations
    };
    round(&mut link, 1);
    let allocations = round(&mut link, 2);
    assert_eq!(link.frames, 2 * 40 * N, "every frame arrives");
    assert_eq!(allocations, 0, "allocations over {} frames", 30 * N);
}

/// Heap bytes a session owns: what dropping it frees.
fn heap_of(session: Session) -> isize {
    let region = Region::new(GLOBAL);
    drop(session);
    let s = region.change();
    s.bytes_deallocated as isize - s.bytes_allocated as isize - s.bytes_reallocated
}

fn an_idle_subscription_costs_under_1_kib_on_each_side() {
    const K: usize = 1000;
    let sizes = |k: usize| {
        let mut link = Link::new(4 * K + 8);
        // Ten at a time: transient queues stay small, what remains is per-subscription state.
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
    let publisher = (p1 - p0) / K as isize;
    let subscriber = (s1 - s0) / K as isize;
    assert!(
        publisher < 1024 && subscriber < 1024,
        "bytes per idle subscription: publisher {publisher}, subscriber {subscriber}"
    );
}
