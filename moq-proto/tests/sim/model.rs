//! Model test: random operation sequences on the pair, checked after every step against a
//! small reference model of what each side must believe.
//!
//! The server publishes (announce, unannounce, accept or reject, groups and frames); the
//! client listens (announce interests) and subscribes (subscribe, update, unsubscribe).
//! Operations between two `Drive`s happen at the same instant, before anything is
//! delivered, so the model settles their effects at each `Drive`:
//! - every live interest believes exactly the announced paths its prefix and exclude hop
//!   select;
//! - a subscription to an unannounced path is refused with 0x3; otherwise the server holds
//!   it until the client unsubscribes (or the server rejects it);
//! - every frame written on a group of a live subscription arrives, in order, and a group
//!   ends as the publisher ended it;
//! - neither session closes, and no stream outlives its flow.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::pair::Pair;
use moq_proto::code::{group as group_codes, subscribe as sub_codes};
use moq_proto::message::SubscribeParams;
use moq_proto::{
    BroadcastPath, CommandError, EndReason, Event, GroupSequence, HopId, PathPrefix,
    PublisherParams, StreamId, SubscribeId,
};

const PATHS: [&str; 5] = ["/a", "/b", "/live/c", "/live/d/e", "/livestream"];
const PREFIXES: [&str; 5] = ["/", "/live/", "/a/", "/live/d/", "live"];

#[derive(Clone, Debug)]
enum Op {
    Announce {
        path: usize,
        hop: u64,
    },
    Unannounce {
        path: usize,
    },
    Interest {
        prefix: usize,
        exclude: u64,
    },
    StopInterest {
        pick: usize,
    },
    Subscribe {
        path: usize,
    },
    Update {
        pick: usize,
        priority: u8,
        ordered: bool,
    },
    Unsubscribe {
        pick: usize,
    },
    Accept {
        pick: usize,
    },
    Reject {
        pick: usize,
    },
    OpenGroup {
        pick: usize,
    },
    WriteFrame {
        pick: usize,
        len: usize,
    },
    FinishGroup {
        pick: usize,
    },
    AbortGroup {
        pick: usize,
    },
    Drive,
}

fn op() -> impl Strategy<Value = Op> {
    let pick = any::<usize>();
    prop_oneof![
        3 => (0..PATHS.len(), 0..3u64).prop_map(|(path, hop)| Op::Announce { path, hop }),
        1 => (0..PATHS.len()).prop_map(|path| Op::Unannounce { path }),
        2 => (0..PREFIXES.len(), 0..3u64)
            .prop_map(|(prefix, exclude)| Op::Interest { prefix, exclude }),
        1 => pick.prop_map(|pick| Op::StopInterest { pick }),
        3 => (0..PATHS.len()).prop_map(|path| Op::Subscribe { path }),
        1 => (pick, any::<u8>(), any::<bool>())
            .prop_map(|(pick, priority, ordered)| Op::Update { pick, priority, ordered }),
        1 => pick.prop_map(|pick| Op::Unsubscribe { pick }),
        3 => pick.prop_map(|pick| Op::Accept { pick }),
        1 => pick.prop_map(|pick| Op::Reject { pick }),
        3 => pick.prop_map(|pick| Op::OpenGroup { pick }),
        6 => (pick, 0..200usize).prop_map(|(pick, len)| Op::WriteFrame { pick, len }),
        2 => pick.prop_map(|pick| Op::FinishGroup { pick }),
        1 => pick.prop_map(|pick| Op::AbortGroup { pick }),
        5 => Just(Op::Drive),
    ]
}

/// The server's view of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// SUBSCRIBE not delivered yet.
    Unaware,
    /// Reported, not answered.
    Requested,
    Accepted,
    /// Refused, or ended by the client.
    Gone,
}

#[derive(Debug)]
struct Sub {
    id: SubscribeId,
    path: usize,
    /// The client still holds it.
    client_live: bool,
    /// Why the client's subscription ended, once it did.
    ended: Option<EndReason>,
    server: Server,
    /// The client unsubscribed; the server has not heard yet.
    unsubscribed: bool,
    /// The server rejected it; the client has not heard yet.
    rejected: bool,
    /// The server accepted it; the client has not heard yet.
    accepted: bool,
    /// The client's latest values.
    params: SubscribeParams,
    next_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum GroupState {
    Open,
    Finished,
    Aborted(moq_proto::ErrorCode),
}

#[derive(Debug)]
struct Group {
    sub: usize,
    seq: GroupSequence,
    /// The server's stream.
    stream: StreamId,
    frames: Vec<Bytes>,
    state: GroupState,
    /// The server still tracks it (its subscription is alive there).
    server_live: bool,
}

#[derive(Debug)]
struct Interest {
    stream: StreamId,
    prefix: PathPrefix,
    exclude: u64,
    live: bool,
}

#[derive(Default)]
struct Model {
    /// Announced paths and their hop (0 = none).
    announced: BTreeMap<usize, u64>,
    interests: Vec<Interest>,
    subs: Vec<Sub>,
    groups: Vec<Group>,
}

impl Model {
    fn hops(hop: u64) -> Vec<HopId> {
        if hop == 0 { vec![] } else { vec![HopId(hop)] }
    }

    /// What an interest must believe.
    fn expected(&self, interest: &Interest) -> BTreeSet<BroadcastPath> {
        self.announced
            .iter()
            .filter(|&(_, &hop)| interest.exclude == 0 || hop != interest.exclude)
            .map(|(&p, _)| BroadcastPath::new(PATHS[p]))
            .filter(|p| interest.prefix.matches(p))
            .collect()
    }
}

/// What the client has learnt, from its events.
#[derive(Default)]
struct Belief {
    active: BTreeMap<StreamId, BTreeSet<BroadcastPath>>,
    ended_interests: BTreeSet<StreamId>,
    ended_subs: HashMap<SubscribeId, EndReason>,
    ok: BTreeSet<SubscribeId>,
    groups: HashMap<(SubscribeId, GroupSequence), StreamId>,
    group_end: HashMap<StreamId, EndReason>,
}

impl Belief {
    fn absorb(&mut self, events: Vec<Event>) {
        for e in events {
            match e {
                Event::Announced { interest, path, .. } => {
                    let fresh = self
                        .active
                        .entry(interest)
                        .or_default()
                        .insert(path.clone());
                    assert!(fresh, "{path:?} announced twice on {interest}");
                }
                Event::Unannounced { interest, path } => {
                    let was = self.active.entry(interest).or_default().remove(&path);
                    assert!(was, "{path:?} ended without being active on {interest}");
                }
                Event::InterestEnded { interest, reason } => {
                    assert_eq!(reason, EndReason::Local, "interest {interest} ended");
                    assert!(self.active.get(&interest).is_none_or(BTreeSet::is_empty));
                    self.ended_interests.insert(interest);
                }
                Event::SubscribeOk { id, .. } => {
                    self.ok.insert(id);
                }
                Event::SubscriptionEnded { id, reason } => {
                    assert!(
                        self.ended_subs.insert(id, reason).is_none(),
                        "{id} ended twice"
                    );
                }
                Event::GroupReceived {
                    id,
                    sequence,
                    stream,
                } => {
                    assert!(
                        self.groups.insert((id, sequence), stream).is_none(),
                        "group {sequence} of {id} received twice"
                    );
                }
                Event::GroupEnded { stream, reason } => {
                    assert!(self.group_end.insert(stream, reason).is_none());
                }
                Event::SubscribeDropped { .. } => panic!("nothing is dropped in this model"),
                other => panic!("unexpected client event {other:?}"),
            }
        }
    }
}

/// Picks the `pick`-th (modulo) of the indices that satisfy `f`.
fn choose<T>(items: &[T], pick: usize, f: impl Fn(&T) -> bool) -> Option<usize> {
    let candidates: Vec<usize> = (0..items.len()).filter(|&i| f(&items[i])).collect();
    (!candidates.is_empty()).then(|| candidates[pick % candidates.len()])
}

fn payload(group: usize, index: usize, len: usize) -> Bytes {
    let mut v = vec![group as u8; len];
    if let Some(b) = v.first_mut() {
        *b = index as u8;
    }
    Bytes::from(v)
}

fn run(ops: Vec<Op>, split: usize, reorder: bool) {
    let mut pair = Pair::new();
    pair.split = split;
    pair.reorder = reorder;
    let mut model = Model::default();
    let mut belief = Belief::default();

    for op in ops.into_iter().chain(std::iter::once(Op::Drive)) {
        step(&mut pair, &mut model, &mut belief, &op);
        check_now(&mut pair, &model);
    }
    // Finally: timers fire (unsubscribe grace), nothing may be left behind.
    pair.advance(Duration::from_secs(2));
    belief.absorb(pair.client.take_events());
    server_events(&mut pair, &mut model);
    check_settled(&mut pair, &model, &belief);
    let open_received = belief
        .groups
        .values()
        .filter(|s| !belief.group_end.contains_key(s))
        .count();
    let live_interests = model.interests.iter().filter(|i| i.live).count();
    let live_subs = model.subs.iter().filter(|s| s.client_live).count();
    assert_eq!(
        pair.client.session.open_streams(),
        live_interests + live_subs + open_received,
        "client streams"
    );
    let publications = model
        .subs
        .iter()
        .filter(|s| matches!(s.server, Server::Requested | Server::Accepted))
        .count();
    let open_groups = model
        .groups
        .iter()
        .filter(|g| g.server_live && g.state == GroupState::Open)
        .count();
    assert_eq!(
        pair.server.session.open_streams(),
        live_interests + publications + open_groups,
        "server streams"
    );
}

fn step(pair: &mut Pair, model: &mut Model, belief: &mut Belief, op: &Op) {
    match *op {
        Op::Announce { path, hop } => {
            pair.server
                .session
                .announce(BroadcastPath::new(PATHS[path]), Model::hops(hop))
                .unwrap();
            model.announced.insert(path, hop);
        }
        Op::Unannounce { path } => {
            let was = pair
                .server
                .session
                .unannounce(&BroadcastPath::new(PATHS[path]));
            assert_eq!(was, model.announced.remove(&path).is_some());
        }
        Op::Interest { prefix, exclude } => {
            let prefix = PathPrefix::new(PREFIXES[prefix]);
            let stream = pair
                .client
                .session
                .announce_interest(prefix.clone(), HopId(exclude))
                .unwrap();
            model.interests.push(Interest {
                stream,
                prefix,
                exclude,
                live: true,
            });
        }
        Op::StopInterest { pick } => {
            if let Some(i) = choose(&model.interests, pick, |i| i.live) {
                let interest = &mut model.interests[i];
                pair.client.session.stop_interest(interest.stream).unwrap();
                interest.live = false;
                // Its entries end at once, locally.
                belief.absorb(pair.client.take_events_now());
                assert!(belief.ended_interests.contains(&interest.stream));
            }
        }
        Op::Subscribe { path } => {
            let id = pair
                .client
                .session
                .subscribe(
                    BroadcastPath::new(PATHS[path]),
                    "t",
                    SubscribeParams::default(),
                )
                .unwrap();
            assert_eq!(id, SubscribeId(model.subs.len() as u64 + 1));
            model.subs.push(Sub {
                id,
                path,
                client_live: true,
                ended: None,
                server: Server::Unaware,
                unsubscribed: false,
                rejected: false,
                accepted: false,
                params: SubscribeParams::default(),
                next_seq: 1,
            });
        }
        Op::Update {
            pick,
            priority,
            ordered,
        } => {
            if let Some(i) = choose(&model.subs, pick, |s| s.client_live) {
                let s = &mut model.subs[i];
                s.params.priority = priority;
                s.params.ordered = ordered;
                pair.client
                    .session
                    .update_subscription(s.id, s.params)
                    .unwrap();
            }
        }
        Op::Unsubscribe { pick } => {
            if let Some(i) = choose(&model.subs, pick, |s| s.client_live) {
                let s = &mut model.subs[i];
                pair.client.session.unsubscribe(s.id).unwrap();
                s.client_live = false;
                s.ended = Some(EndReason::Local);
                s.unsubscribed = true;
            }
        }
        Op::Accept { pick } => {
            if let Some(i) = choose(&model.subs, pick, |s| s.server == Server::Requested) {
                let s = &mut model.subs[i];
                pair.server
                    .session
                    .accept_subscribe(s.id, PublisherParams::default())
                    .unwrap();
                s.server = Server::Accepted;
                s.accepted = true;
            }
        }
        Op::Reject { pick } => {
            if let Some(i) = choose(&model.subs, pick, |s| s.server == Server::Requested) {
                let s = &mut model.subs[i];
                pair.server
                    .session
                    .reject_subscribe(s.id, sub_codes::NOT_FOUND)
                    .unwrap();
                s.server = Server::Gone;
                s.rejected = true;
            }
        }
        Op::OpenGroup { pick } => {
            if let Some(i) = choose(&model.subs, pick, |s| s.server == Server::Accepted) {
                let s = &mut model.subs[i];
                let seq = GroupSequence(s.next_seq);
                s.next_seq += 1;
                let stream = pair.server.session.open_group(s.id, seq).unwrap();
                model.groups.push(Group {
                    sub: i,
                    seq,
                    stream,
                    frames: Vec::new(),
                    state: GroupState::Open,
                    server_live: true,
                });
            }
        }
        Op::WriteFrame { pick, len } => {
            // Any group, live or not: the session must refuse the dead ones.
            if let Some(i) = choose(&model.groups, pick, |_| true) {
                let g = &mut model.groups[i];
                let data = payload(i, g.frames.len(), len);
                let result = pair.server.session.write_frame(g.stream, data.clone());
                if g.server_live && g.state == GroupState::Open {
                    result.unwrap();
                    g.frames.push(data);
                } else {
                    assert_eq!(result, Err(CommandError::UnknownStream(g.stream)));
                }
            }
        }
        Op::FinishGroup { pick } => {
            if let Some(i) = choose(&model.groups, pick, |g| {
                g.server_live && g.state == GroupState::Open
            }) {
                let g = &mut model.groups[i];
                pair.server.session.finish_group(g.stream).unwrap();
                g.state = GroupState::Finished;
            }
        }
        Op::AbortGroup { pick } => {
            if let Some(i) = choose(&model.groups, pick, |g| {
                g.server_live && g.state == GroupState::Open
            }) {
                let g = &mut model.groups[i];
                let code = group_codes::PUBLISH_ABORTED;
                pair.server.session.abort_group(g.stream, code).unwrap();
                g.state = GroupState::Aborted(code);
            }
        }
        Op::Drive => {
            settle(model);
            pair.drive();
            belief.absorb(pair.client.take_events());
            server_events(pair, model);
            check_settled(pair, model, belief);
        }
    }
}

/// What a `Drive` delivers, decided from the state before it.
fn settle(model: &mut Model) {
    for i in 0..model.subs.len() {
        let announced = model.announced.contains_key(&model.subs[i].path);
        let s = &mut model.subs[i];
        if s.server == Server::Unaware {
            s.server = if announced && !s.unsubscribed {
                Server::Requested
            } else {
                Server::Gone
            };
            if !announced && s.client_live {
                s.client_live = false;
                s.ended = Some(EndReason::PeerReset(sub_codes::NOT_FOUND));
            }
        } else if s.unsubscribed {
            s.server = Server::Gone;
        }
        if s.rejected && s.client_live {
            s.client_live = false;
            s.ended = Some(EndReason::PeerReset(sub_codes::NOT_FOUND));
        }
        s.unsubscribed = false;
        s.rejected = false;
    }
    for g in &mut model.groups {
        if model.subs[g.sub].server == Server::Gone {
            g.server_live = false;
        }
    }
}

/// Checks the server's events against the model (requests, updates, ends).
fn server_events(pair: &mut Pair, model: &mut Model) {
    for e in pair.server.take_events() {
        match e {
            Event::InterestReceived { .. } | Event::SubscriptionUpdated { .. } => {}
            Event::SubscribeRequested { id, .. } => {
                let s = &model.subs[id.0 as usize - 1];
                assert!(
                    matches!(s.server, Server::Requested | Server::Gone),
                    "{id} requested while {:?}",
                    s.server
                );
            }
            Event::PublicationEnded { id, reason } => {
                let s = &model.subs[id.0 as usize - 1];
                assert_eq!(s.server, Server::Gone, "{id} ended on the server");
                assert_eq!(reason, EndReason::Finished);
            }
            Event::GroupCancelled { id, reason, .. } => {
                // Only a group stopped by an unsubscribing client.
                assert_eq!(model.subs[id.0 as usize - 1].server, Server::Gone);
                assert_eq!(
                    reason,
                    EndReason::PeerStopped(group_codes::SUBSCRIBE_CANCELLED)
                );
            }
            other => panic!("unexpected server event {other:?}"),
        }
    }
}

/// Invariants that hold at every step.
fn check_now(pair: &mut Pair, model: &Model) {
    assert!(
        !pair.client.session.is_closed(),
        "{:?}",
        pair.client.session.close_reason()
    );
    assert!(
        !pair.server.session.is_closed(),
        "{:?}",
        pair.server.session.close_reason()
    );
    for (p, path) in PATHS.iter().enumerate() {
        assert_eq!(
            pair.server.session.is_announced(&BroadcastPath::new(path)),
            model.announced.contains_key(&p)
        );
    }
    for s in &model.subs {
        assert_eq!(
            pair.client.session.subscription(s.id).is_some(),
            s.client_live,
            "{:?}",
            s
        );
    }
}

/// What must hold once everything in flight is delivered.
fn check_settled(pair: &mut Pair, model: &Model, belief: &Belief) {
    for interest in &model.interests {
        let believed = belief
            .active
            .get(&interest.stream)
            .cloned()
            .unwrap_or_default();
        let expected = if interest.live {
            model.expected(interest)
        } else {
            BTreeSet::new()
        };
        assert_eq!(believed, expected, "interest {:?}", interest);
        assert_eq!(
            belief.ended_interests.contains(&interest.stream),
            !interest.live
        );
    }
    for s in &model.subs {
        assert_eq!(belief.ended_subs.get(&s.id), s.ended.as_ref(), "{s:?}");
        assert_eq!(
            pair.server.session.publication(s.id).is_some(),
            matches!(s.server, Server::Requested | Server::Accepted),
            "{s:?}"
        );
        if let Some((_, _, params)) = pair.server.session.publication(s.id) {
            assert_eq!(params, s.params, "updates applied");
        }
        if s.client_live && s.server == Server::Accepted {
            assert!(
                belief.ok.contains(&s.id),
                "{s:?} accepted but no SubscribeOk"
            );
        }
    }
    for g in &model.groups {
        let s = &model.subs[g.sub];
        if !s.client_live {
            continue;
        }
        let stream = belief.groups.get(&(s.id, g.seq)).copied();
        let frames = stream
            .map(|st| pair.client.frames_of(st))
            .unwrap_or_default();
        let end = stream.and_then(|st| belief.group_end.get(&st).cloned());
        match &g.state {
            GroupState::Open => {
                assert!(stream.is_some(), "open group {g:?} not received");
                assert_eq!(frames, g.frames, "{g:?}");
                assert_eq!(end, None);
            }
            GroupState::Finished => {
                assert_eq!(frames, g.frames, "{g:?}");
                assert_eq!(end, Some(EndReason::Finished), "{g:?}");
            }
            GroupState::Aborted(code) => {
                assert!(g.frames.starts_with(&frames), "{g:?}: {frames:?}");
                if stream.is_some() {
                    assert_eq!(end, Some(EndReason::PeerReset(*code)), "{g:?}");
                }
            }
        }
    }
}

impl super::pair::Endpoint {
    /// The events the session holds right now (before any delivery).
    fn take_events_now(&mut self) -> Vec<Event> {
        let mut events = self.take_events();
        events.extend(std::iter::from_fn(|| self.session.poll_event()));
        events
    }
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=n for a longer search.
    #[test]
    fn random_operations_match_the_model(
        ops in proptest::collection::vec(op(), 1..80),
        split in prop_oneof![Just(0usize), Just(1), Just(3), Just(16)],
        reorder in any::<bool>(),
    ) {
        run(ops, split, reorder);
    }
}
