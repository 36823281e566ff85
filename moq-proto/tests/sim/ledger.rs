//! One ledger per connection: whatever the peer sends or leaves unread, what the session
//! holds for it stays under `Config::max_connection_bytes`, the largest holder is shed
//! first, and what is shed says so.

use bytes::Bytes;

use super::common::{Lone, cancels, interest, typed};
use moq_proto::message::{GroupHeader, StreamType, Subscribe, SubscribeParams};
use moq_proto::{
    BroadcastPath, Command, Config, Dir, EndReason, FrameRead, GroupSequence, PathPrefix, Role,
    SubscribeId, VarInt,
};

const MIB: usize = 1024 * 1024;

fn config(cap: usize) -> Config {
    let mut config = Config::default();
    config.max_connection_bytes = cap;
    config
}

/// A server with a `cap`, serving the peer's subscription 1 to `/x` "t", accepted.
fn serving(cap: usize) -> Lone {
    let mut config = config(cap);
    config.serve_unannounced = true;
    let mut lone = Lone::with_config(Role::Server, config);
    lone.accept_with(
        Dir::Bi,
        &typed(
            StreamType::Subscribe,
            &Subscribe {
                id: SubscribeId(1),
                path: BroadcastPath::new("/x"),
                track: "t".into(),
                params: Default::default(),
            },
        ),
    );
    lone.events();
    lone.session
        .accept_subscribe(SubscribeId(1), Default::default())
        .unwrap();
    drain(&mut lone);
    lone
}

/// Drains, and checks what the connection holds once the input is taken in.
fn drain(lone: &mut Lone) -> Vec<Command> {
    let commands = lone.commands();
    let ledger = lone.session.ledger();
    assert!(
        lone.session.is_closed()
            || ledger.total() <= lone.session.config().max_connection_bytes as u64,
        "over the cap after a drain: {ledger:?}"
    );
    commands
}

#[test]
fn frames_left_one_byte_short_are_shed_largest_first() {
    // A publisher opens eight groups and starts a 900 KiB frame on each, in packet-sized
    // chunks, never finishing one: 7 MiB against a 2 MiB cap.
    let mut lone = Lone::with_config(Role::Client, config(2 * MIB));
    lone.reader.paused = true;
    let sub = lone
        .session
        .subscribe(
            moq_proto::BroadcastPath::new("/x"),
            "t",
            SubscribeParams::default(),
        )
        .unwrap();
    lone.commands();
    let mut groups = Vec::new();
    for seq in 1..=8u64 {
        let mut head = typed(
            StreamType::Group,
            &GroupHeader {
                subscribe_id: sub,
                sequence: GroupSequence(seq),
            },
        );
        let len = 900 * 1024;
        VarInt::try_from(len as u64).unwrap().encode(&mut head);
        groups.push((Some(lone.accept_with(Dir::Uni, &head)), len));
        lone.events();
        drain(&mut lone);
    }
    let chunk = Bytes::from(vec![0x5a; 1200]);
    let mut shed = 0;
    for _ in 0..(899 * 1024 / 1200) {
        for (group, _) in groups.iter_mut() {
            let Some(id) = *group else { continue };
            match lone.session.read_frame(id) {
                Ok(FrameRead::Blocked) => {
                    lone.session.handle_data(id, chunk.clone(), lone.now);
                    drain(&mut lone);
                }
                // What was shed reads as shed.
                Ok(FrameRead::Ended(EndReason::Shed)) => {
                    shed += 1;
                    *group = None;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let stats = lone.session.stats();
    println!(
        "partial frames: ledger peak {:?}, total {}, {shed} groups shed",
        stats.ledger_peak, stats.ledger_peak_total
    );
    // Charged as the datagrams their chunks keep alive (1500 bytes per 1200-byte chunk),
    // one 900 KiB frame holds 1.15 MB: one fits under 2 MiB, two do not.
    assert_eq!(shed, 7, "{stats:?}");
    assert_eq!(stats.ledger_shed, 7);
    assert!(stats.ledger_peak_total <= 2 * MIB as u64);
    assert!(
        stats.ledger_peak_total > MIB as u64,
        "the survivors kept going"
    );
    // Each was stopped with Group 0x0.
    assert!(!lone.session.is_closed());
}

#[test]
fn announcements_to_interests_that_are_never_read_are_bounded() {
    // 200 broadcasts with 4000-byte paths, and eight interests on the root whose streams
    // the peer never reads (no write is ever accepted): 6.4 MB of ANNOUNCEs if they were
    // queued. They are read from the broadcasts as each stream takes them: each interest
    // holds at most its send-ahead (4 KiB) and one message.
    let mut lone = Lone::with_config(Role::Server, config(MIB));
    lone.starve = true;
    for i in 0..200 {
        let mut p = format!("/flood/{i}/");
        p.push_str(&"x".repeat(4000 - p.len()));
        lone.session
            .announce(BroadcastPath::new(&p), vec![])
            .unwrap();
    }
    drain(&mut lone);
    for _ in 0..8 {
        lone.accept_with(Dir::Bi, &interest(PathPrefix::root()));
        let commands = drain(&mut lone);
        assert!(cancels(&commands).is_empty(), "{:?}", cancels(&commands));
    }
    // More broadcasts, behind the walk of every interest: each is marked, not queued, and
    // the marks are charged.
    for i in 0..20 {
        let mut p = format!("/early/{i}/");
        p.push_str(&"x".repeat(4000 - p.len()));
        lone.session
            .announce(BroadcastPath::new(&p), vec![])
            .unwrap();
    }
    assert!(cancels(&drain(&mut lone)).is_empty());
    let stats = lone.session.stats();
    println!(
        "announce flood: ledger {:?}, peak {}, shed {}",
        stats.ledger, stats.ledger_peak_total, stats.ledger_shed
    );
    let per_interest = 4096 + 4010;
    let marks = 20 * (96 + 4000);
    assert!(
        stats.ledger.control_out <= 8 * (per_interest + marks) as u64,
        "{stats:?}"
    );
    assert!(
        stats.ledger.control_out >= 8 * (4096 + marks) as u64,
        "{stats:?}"
    );
    assert_eq!(stats.ledger_shed, 0, "{stats:?}");
    assert!(!lone.session.is_closed());
}

#[test]
fn a_subscriber_that_never_takes_a_byte_costs_at_most_the_cap() {
    // A subscriber that grants no credit at all (no write is ever accepted): 20 000 groups
    // of one small frame each. Groups are dropped oldest first (empty ones and ones still
    // opening too: each holds a stream), and the ledger never passes its cap.
    let mut lone = serving(MIB);
    lone.starve = true;
    let mut opened = 0;
    for seq in 1..=20_000u64 {
        let Ok(group) = lone.session.open_group(SubscribeId(1), GroupSequence(seq)) else {
            break;
        };
        let _ = lone.session.write_frame(group, Bytes::from_static(b"x"));
        let _ = lone.session.finish_group(group);
        opened += 1;
        drain(&mut lone);
    }
    let stats = lone.session.stats();
    println!(
        "no credit: {opened} groups opened, {:?}, shed {}, dropped {}",
        stats.ledger, stats.ledger_shed, stats.groups_dropped
    );
    assert!(stats.groups_dropped > 0);
    assert!(stats.ledger_peak_total <= MIB as u64);
}

/// A client subscribed to `/x` "t" with group 1 open and `bytes` of it after the header.
fn group_with(bytes: &[u8]) -> (Lone, moq_proto::StreamId) {
    let mut lone = Lone::new(Role::Client);
    lone.reader.paused = true;
    let sub = lone
        .session
        .subscribe(BroadcastPath::new("/x"), "t", SubscribeParams::default())
        .unwrap();
    lone.commands();
    let mut head = typed(
        StreamType::Group,
        &GroupHeader {
            subscribe_id: sub,
            sequence: GroupSequence(1),
        },
    );
    head.extend_from_slice(bytes);
    let group = lone.accept_with(Dir::Uni, &head);
    lone.events();
    lone.commands();
    (lone, group)
}

#[test]
fn a_frame_stalled_midway_is_expired_after_the_stall_timeout() {
    // A 100-byte frame of which 10 arrive, then nothing.
    let mut started = vec![100u8];
    started.extend_from_slice(&[1; 10]);
    let (mut lone, group) = group_with(&started);
    let timeout = lone.session.config().frame_stall_timeout;
    assert_eq!(lone.session.read_frame(group), Ok(FrameRead::Blocked));
    // Bytes that trickle in move the deadline.
    lone.advance(timeout / 2);
    lone.data(group, &[1; 10]);
    lone.advance(timeout * 3 / 4);
    assert!(
        cancels(&lone.commands()).is_empty(),
        "trickling, not stalled"
    );
    assert_eq!(lone.session.read_frame(group), Ok(FrameRead::Blocked));
    lone.advance(timeout / 2);
    assert_eq!(
        cancels(&lone.commands()),
        vec![(group, moq_proto::code::group::EXPIRED, "stop")]
    );
    assert_eq!(
        lone.session.read_frame(group),
        Ok(FrameRead::Ended(EndReason::Expired))
    );
    assert_eq!(lone.session.unread_bytes(), 0);
}

#[test]
fn a_group_quiet_between_frames_is_not_expired() {
    // One whole frame, read; then the publisher is quiet for two stall timeouts (within the
    // subscription's own 30 s wait for SUBSCRIBE_OK): live media between frames, not a
    // stall.
    let (mut lone, group) = group_with(&[3, 1, 2, 3]);
    let timeout = lone.session.config().frame_stall_timeout;
    assert!(matches!(
        lone.session.read_frame(group),
        Ok(FrameRead::Frame(_))
    ));
    assert_eq!(lone.session.read_frame(group), Ok(FrameRead::Blocked));
    lone.advance(timeout * 2);
    let commands = lone.commands();
    assert!(cancels(&commands).is_empty(), "{commands:?}");
    lone.data(group, &[2, 4, 5]);
    assert!(matches!(
        lone.session.read_frame(group),
        Ok(FrameRead::Frame(_))
    ));
}

#[test]
fn groups_for_a_subscriber_that_grants_no_stream_credit_give_up_their_opens() {
    // The subscriber never lets a stream open: 20 000 groups queue as opens. The ledger
    // counts each, drops the oldest, and every dropped one's open is given up
    // (Command::CancelOpen): nothing is kept for them.
    let mut lone = serving(MIB);
    lone.hold_opens = true;
    let (mut opens, mut cancelled) = (0, 0);
    for seq in 1..=20_000u64 {
        let group = lone
            .session
            .open_group(SubscribeId(1), GroupSequence(seq))
            .unwrap();
        let _ = lone.session.write_frame(group, Bytes::from_static(b"x"));
        let _ = lone.session.finish_group(group);
        for command in drain(&mut lone) {
            match command {
                Command::Open { .. } => opens += 1,
                Command::CancelOpen { .. } => cancelled += 1,
                _ => {}
            }
        }
    }
    let stats = lone.session.stats();
    let waiting = opens - cancelled;
    println!(
        "no stream credit: {opens} opens asked for, {cancelled} given up, {waiting} waiting; {:?}",
        stats.ledger
    );
    assert_eq!(opens, 20_000);
    assert!(
        waiting * moq_proto::STREAM_COST <= MIB,
        "{waiting} opens waiting"
    );
    assert_eq!(stats.groups_dropped, cancelled as u64);
    assert!(stats.ledger.streams <= MIB as u64);
}
