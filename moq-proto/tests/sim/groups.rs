//! Groups and frames: delivery under every knob, priorities, max latency, aborts and
//! cancels, and the slow subscriber (spec §6.2, §6.3; decision D9).

use std::time::Duration;

use bytes::Bytes;

use super::common::{
    BOTH, Lone, cancels, frame, group_end, group_stream, knobs, opens, pair_with, path, response,
    subscribed, subscribed_with, typed,
};
use super::pair::{Pair, Side};
use moq_proto::code::group as codes;
use moq_proto::message::{
    GroupHeader, StreamType, SubscribeOk, SubscribeParams, SubscribeResponse,
};
use moq_proto::{
    Command, CommandError, Config, Dir, EndReason, ErrorCode, Event, GroupSequence,
    PublisherParams, Role, StreamId, SubscribeId,
};

fn payload(group: u64, frame: usize, len: usize) -> Bytes {
    let mut v = vec![(group & 0xff) as u8; len];
    v[0] = frame as u8;
    Bytes::from(v)
}

/// The order in which group streams got their first `Write` after `from`.
fn write_order(commands: &[Command], streams: &[StreamId]) -> Vec<StreamId> {
    let mut order = Vec::new();
    for c in commands {
        if let Command::Write { id, .. } = c
            && streams.contains(id)
            && !order.contains(id)
        {
            order.push(*id);
        }
    }
    order
}

#[test]
fn frames_arrive_in_order_under_every_knob_in_both_directions() {
    for publisher in BOTH {
        for (split, reorder) in knobs() {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let id = subscribed(&mut pair, publisher, SubscribeParams::default());
            // Three groups written interleaved, one left open until later.
            let p = &mut pair.side(publisher).session;
            let groups: Vec<StreamId> = (1..=3)
                .map(|seq| p.open_group(id, GroupSequence(seq)).unwrap())
                .collect();
            for f in 0..5 {
                for (i, &g) in groups.iter().enumerate() {
                    p.write_frame(g, payload(i as u64 + 1, f, 1 + f * 37))
                        .unwrap();
                }
            }
            // Empty frames are frames.
            p.write_frame(groups[0], Bytes::new()).unwrap();
            p.finish_group(groups[0]).unwrap();
            p.finish_group(groups[1]).unwrap();
            pair.drive();
            let p = &mut pair.side(publisher).session;
            p.write_frame(groups[2], payload(3, 9, 3)).unwrap();
            p.finish_group(groups[2]).unwrap();
            // A group with no frame at all.
            let empty = p.open_group(id, GroupSequence(4)).unwrap();
            p.finish_group(empty).unwrap();
            pair.drive();

            let events = pair.side(subscriber).take_events();
            for seq in 1..=3u64 {
                let stream = group_stream(&events, id, GroupSequence(seq)).unwrap();
                let mut expected: Vec<Bytes> =
                    (0..5).map(|f| payload(seq, f, 1 + f * 37)).collect();
                if seq == 1 {
                    expected.push(Bytes::new());
                }
                if seq == 3 {
                    expected.push(payload(3, 9, 3));
                }
                assert_eq!(
                    pair.side(subscriber).frames_of(stream),
                    expected,
                    "group {seq}, split {split}, reorder {reorder}"
                );
                assert_eq!(group_end(&events, stream), Some(EndReason::Finished));
            }
            let stream = group_stream(&events, id, GroupSequence(4)).unwrap();
            assert_eq!(pair.side(subscriber).frames_of(stream), Vec::<Bytes>::new());
            assert_eq!(group_end(&events, stream), Some(EndReason::Finished));
            // Every group stream is forgotten on both sides once done.
            assert_eq!(
                pair.side(publisher).session.open_streams(),
                1,
                "the subscribe stream"
            );
            assert_eq!(pair.side(subscriber).session.open_streams(), 1);
        }
    }
}

#[test]
fn higher_subscriber_priority_is_emitted_first_under_starved_credit() {
    for publisher in BOTH {
        let config = {
            let mut config = Config::default();
            config.stream_send_window = 1024;
            config
        };
        let mut pair = Pair::with_config(config.clone(), config);
        let low = subscribed(
            &mut pair,
            publisher,
            SubscribeParams {
                priority: 1,
                ..SubscribeParams::default()
            },
        );
        let high = subscribed(
            &mut pair,
            publisher,
            SubscribeParams {
                priority: 200,
                ..SubscribeParams::default()
            },
        );
        pair.starve.insert(publisher);
        let before = pair.side(publisher).commands.len();
        // The low-priority group is opened and written first.
        let p = &mut pair.side(publisher).session;
        let gl = p.open_group(low, GroupSequence(1)).unwrap();
        let gh = p.open_group(high, GroupSequence(1)).unwrap();
        for f in 0..8 {
            p.write_frame(gl, payload(1, f, 1024)).unwrap();
            p.write_frame(gh, payload(1, f, 1024)).unwrap();
        }
        pair.drive();
        let commands = &pair.side(publisher).commands[before..];
        assert_eq!(write_order(commands, &[gl, gh]), vec![gh, gl]);
        // The transport is told the same order.
        let prio = |pair: &mut Pair, g| {
            opens(pair.side(publisher))
                .into_iter()
                .find(|o| o.0 == g)
                .unwrap()
                .2
        };
        assert!(prio(&mut pair, gh) > prio(&mut pair, gl));

        // Credit comes back to the low-priority stream first; the high one still goes first.
        let before = pair.side(publisher).commands.len();
        let now = pair.now;
        pair.side(publisher)
            .session
            .handle_written(gl, usize::MAX, now);
        pair.release_credit(publisher);
        pair.starve.insert(publisher);
        pair.drive();
        let commands = &pair.side(publisher).commands[before..];
        assert_eq!(
            write_order(commands, &[gl, gh]),
            vec![gh, gl],
            "{commands:?}"
        );
        pair.release_credit(publisher);
        pair.drive();
    }
}

#[test]
fn publisher_priority_breaks_ties_between_equal_subscribers() {
    let config = {
        let mut config = Config::default();
        config.stream_send_window = 1024;
        config
    };
    let mut pair = Pair::with_config(config.clone(), config);
    let params = SubscribeParams {
        priority: 7,
        ..SubscribeParams::default()
    };
    let low = subscribed_with(
        &mut pair,
        Side::Server,
        params,
        PublisherParams {
            priority: 1,
            ..PublisherParams::default()
        },
    );
    let high = subscribed_with(
        &mut pair,
        Side::Server,
        params,
        PublisherParams {
            priority: 9,
            ..PublisherParams::default()
        },
    );
    // A higher subscriber priority beats any publisher priority.
    let top = subscribed_with(
        &mut pair,
        Side::Server,
        SubscribeParams {
            priority: 8,
            ..params
        },
        PublisherParams::default(),
    );
    pair.starve.insert(Side::Server);
    let before = pair.server.commands.len();
    let p = &mut pair.server.session;
    let gl = p.open_group(low, GroupSequence(1)).unwrap();
    let gh = p.open_group(high, GroupSequence(1)).unwrap();
    let gt = p.open_group(top, GroupSequence(1)).unwrap();
    for g in [gl, gh, gt] {
        p.write_frame(g, payload(1, 0, 4096)).unwrap();
    }
    pair.drive();
    assert_eq!(
        write_order(&pair.server.commands[before..], &[gl, gh, gt]),
        vec![gt, gh, gl]
    );
}

#[test]
fn ordered_picks_oldest_or_newest_group_first() {
    for (ordered, expected_first) in [(true, 1u64), (false, 3u64)] {
        let config = {
            let mut config = Config::default();
            config.stream_send_window = 512;
            config
        };
        let mut pair = Pair::with_config(config.clone(), config);
        let id = subscribed(
            &mut pair,
            Side::Server,
            SubscribeParams {
                ordered,
                ..SubscribeParams::default()
            },
        );
        pair.starve.insert(Side::Server);
        let before = pair.server.commands.len();
        let p = &mut pair.server.session;
        let groups: Vec<_> = (1..=3)
            .map(|seq| p.open_group(id, GroupSequence(seq)).unwrap())
            .collect();
        for (i, &g) in groups.iter().enumerate() {
            p.write_frame(g, payload(i as u64 + 1, 0, 2048)).unwrap();
        }
        pair.drive();
        let order = write_order(&pair.server.commands[before..], &groups);
        let expected: Vec<StreamId> = if ordered {
            groups.clone()
        } else {
            groups.iter().rev().copied().collect()
        };
        assert_eq!(order, expected, "ordered = {ordered}");
        assert_eq!(order[0], groups[expected_first as usize - 1]);
    }
}

#[test]
fn publisher_resets_groups_older_than_max_latency_with_0x3() {
    for publisher in BOTH {
        for (split, reorder) in [(0, false), (1, true)] {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let id = subscribed(
                &mut pair,
                publisher,
                SubscribeParams {
                    max_latency: Duration::from_millis(100),
                    ..SubscribeParams::default()
                },
            );
            let p = &mut pair.side(publisher).session;
            let old = p.open_group(id, GroupSequence(1)).unwrap();
            p.write_frame(old, payload(1, 0, 10)).unwrap();
            pair.advance(Duration::from_millis(50));
            // Within the limit: nothing expires.
            let mid = pair
                .side(publisher)
                .session
                .open_group(id, GroupSequence(2))
                .unwrap();
            pair.drive();
            assert!(
                !pair
                    .side(publisher)
                    .take_events()
                    .iter()
                    .any(|e| matches!(e, Event::GroupCancelled { .. }))
            );
            pair.advance(Duration::from_millis(60));
            let before = pair.side(publisher).commands.len();
            pair.side(publisher)
                .session
                .open_group(id, GroupSequence(3))
                .unwrap();
            pair.drive();
            assert_eq!(
                cancels(&pair.side(publisher).commands[before..]),
                vec![(old, codes::EXPIRED, "reset")]
            );
            assert_eq!(
                pair.side(publisher).take_events(),
                vec![Event::GroupCancelled {
                    id,
                    sequence: GroupSequence(1),
                    reason: EndReason::Expired
                }]
            );
            assert_eq!(
                pair.side(publisher).session.write_frame(old, Bytes::new()),
                Err(CommandError::UnknownStream(old))
            );
            pair.side(publisher)
                .session
                .write_frame(mid, Bytes::new())
                .unwrap();
            let events = pair.side(subscriber).take_events();
            let stream = group_stream(&events, id, GroupSequence(1)).unwrap();
            assert_eq!(
                group_end(&events, stream),
                Some(EndReason::PeerReset(codes::EXPIRED))
            );
            assert!(pair.side(publisher).session.stats().groups_dropped >= 1);
        }
    }
}

#[test]
fn publisher_uses_the_smaller_of_both_max_latencies() {
    let mut pair = Pair::new();
    let id = subscribed_with(
        &mut pair,
        Side::Server,
        SubscribeParams {
            max_latency: Duration::from_secs(10),
            ..SubscribeParams::default()
        },
        PublisherParams {
            max_latency: Duration::from_millis(100),
            ..PublisherParams::default()
        },
    );
    let old = pair
        .server
        .session
        .open_group(id, GroupSequence(1))
        .unwrap();
    pair.advance(Duration::from_millis(150));
    pair.server
        .session
        .open_group(id, GroupSequence(2))
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.server.take_events(),
        vec![Event::GroupCancelled {
            id,
            sequence: GroupSequence(1),
            reason: EndReason::Expired
        }]
    );
    let _ = old;
}

#[test]
fn subscriber_stops_groups_older_than_max_latency_with_0x3() {
    // A gomoqt publisher never applies max latency (D9): the subscriber must.
    let mut lone = Lone::new(Role::Client);
    let id = lone
        .session
        .subscribe(
            path("/live/cam"),
            "video",
            SubscribeParams {
                max_latency: Duration::from_millis(100),
                ..SubscribeParams::default()
            },
        )
        .unwrap();
    let control = Lone::opened(&lone.commands());
    lone.data(
        control,
        &response(SubscribeResponse::Ok(SubscribeOk::default())),
    );
    let header = |seq| {
        let mut v = typed(
            StreamType::Group,
            &GroupHeader {
                subscribe_id: id,
                sequence: GroupSequence(seq),
            },
        );
        v.extend(frame(b"x"));
        v
    };
    let old = lone.accept_with(Dir::Uni, &header(1));
    lone.advance(Duration::from_millis(100));
    let fresh = lone.accept_with(Dir::Uni, &header(2));
    assert_eq!(
        cancels(&lone.commands()),
        vec![],
        "exactly the limit is not over it"
    );
    lone.advance(Duration::from_millis(1));
    // An older group arriving late does not expire anything newer.
    let late = lone.accept_with(Dir::Uni, &header(0));
    assert_eq!(cancels(&lone.commands()), vec![]);
    // The newest arrives more than the limit after each older one: all three expire.
    lone.advance(Duration::from_millis(150));
    let newest = lone.accept_with(Dir::Uni, &header(3));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (late, codes::EXPIRED, "stop"),
            (old, codes::EXPIRED, "stop"),
            (fresh, codes::EXPIRED, "stop")
        ]
    );
    let events = lone.events();
    for g in [late, old, fresh] {
        assert_eq!(group_end(&events, g), Some(EndReason::Expired));
    }
    assert_eq!(group_end(&events, newest), None);
    // Whatever else arrives on an expired group is ignored.
    lone.data(old, &frame(b"more"));
    assert_eq!(lone.events(), vec![]);
    assert_eq!(lone.session.stats().groups_dropped, 3);
}

#[test]
fn aborted_group_is_seen_as_peer_reset_with_its_code() {
    for publisher in BOTH {
        for (split, reorder) in [(0, false), (1, true)] {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let id = subscribed(&mut pair, publisher, SubscribeParams::default());
            let p = &mut pair.side(publisher).session;
            let g = p.open_group(id, GroupSequence(1)).unwrap();
            p.write_frame(g, payload(1, 0, 100)).unwrap();
            pair.drive();
            pair.side(publisher)
                .session
                .abort_group(g, codes::PUBLISH_ABORTED)
                .unwrap();
            assert_eq!(
                pair.side(publisher)
                    .session
                    .abort_group(g, codes::PUBLISH_ABORTED),
                Err(CommandError::UnknownStream(g))
            );
            pair.drive();
            let events = pair.side(subscriber).take_events();
            let stream = group_stream(&events, id, GroupSequence(1)).unwrap();
            assert_eq!(
                pair.side(subscriber).frames_of(stream),
                vec![payload(1, 0, 100)]
            );
            assert_eq!(
                group_end(&events, stream),
                Some(EndReason::PeerReset(codes::PUBLISH_ABORTED))
            );
            // The subscription itself lives on.
            let g = pair
                .side(publisher)
                .session
                .open_group(id, GroupSequence(2))
                .unwrap();
            pair.side(publisher).session.finish_group(g).unwrap();
            pair.drive();
            let events = pair.side(subscriber).take_events();
            let stream = group_stream(&events, id, GroupSequence(2)).unwrap();
            assert_eq!(group_end(&events, stream), Some(EndReason::Finished));
            assert_eq!(pair.side(publisher).session.open_streams(), 1);
            assert_eq!(pair.side(subscriber).session.open_streams(), 1);
        }
    }
}

#[test]
fn cancelled_group_is_seen_as_peer_stopped_by_the_publisher() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        let g = pair
            .side(publisher)
            .session
            .open_group(id, GroupSequence(1))
            .unwrap();
        pair.drive();
        let events = pair.side(subscriber).take_events();
        let stream = group_stream(&events, id, GroupSequence(1)).unwrap();
        pair.side(subscriber)
            .session
            .cancel_group(stream, ErrorCode(0x3))
            .unwrap();
        assert_eq!(
            pair.side(subscriber)
                .session
                .cancel_group(stream, ErrorCode(0x3)),
            Err(CommandError::UnknownStream(stream))
        );
        pair.drive();
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![Event::GroupEnded {
                stream,
                reason: EndReason::Local
            }]
        );
        assert_eq!(
            pair.side(publisher).take_events(),
            vec![Event::GroupCancelled {
                id,
                sequence: GroupSequence(1),
                reason: EndReason::PeerStopped(ErrorCode(0x3))
            }]
        );
        // The publisher reset the stream in turn, with the same code.
        assert!(cancels(&pair.side(publisher).commands).contains(&(g, ErrorCode(0x3), "reset")));
        assert_eq!(
            pair.side(publisher).session.write_frame(g, Bytes::new()),
            Err(CommandError::UnknownStream(g))
        );
        assert_eq!(pair.side(publisher).session.open_streams(), 1);
        assert_eq!(pair.side(subscriber).session.open_streams(), 1);
    }
}

#[test]
fn a_stopped_or_expired_group_gives_its_queued_bytes_back() {
    const FRAME: usize = 1024;
    for publisher in BOTH {
        let config = {
            let mut config = Config::default();
            config.stream_send_window = 2 * FRAME;
            config
        };
        let mut pair = Pair::with_config(config.clone(), config);
        let subscriber = publisher.other();
        let params = SubscribeParams {
            max_latency: Duration::from_millis(100),
            ..SubscribeParams::default()
        };
        let id = subscribed(&mut pair, publisher, params);
        pair.starve.insert(publisher);
        let p = &mut pair.side(publisher).session;
        let g = p.open_group(id, GroupSequence(1)).unwrap();
        for f in 0..8 {
            p.write_frame(g, payload(1, f, FRAME)).unwrap();
        }
        assert!(p.stats().queued_bytes > 0);
        pair.drive();
        // The subscriber stops the group: its unsent bytes leave the count.
        let events = pair.side(subscriber).take_events();
        let stream = group_stream(&events, id, GroupSequence(1)).unwrap();
        pair.side(subscriber)
            .session
            .cancel_group(stream, codes::SUBSCRIBE_CANCELLED)
            .unwrap();
        pair.drive();
        assert_eq!(pair.side(publisher).session.stats().queued_bytes, 0);

        // Expiry: group 2 is still queued when group 3 opens past the max latency.
        let p = &mut pair.side(publisher).session;
        let g = p.open_group(id, GroupSequence(2)).unwrap();
        for f in 0..8 {
            p.write_frame(g, payload(2, f, FRAME)).unwrap();
        }
        pair.advance(Duration::from_millis(200));
        let p = &mut pair.side(publisher).session;
        p.open_group(id, GroupSequence(3)).unwrap();
        assert_eq!(p.stats().groups_dropped, 1);
        assert_eq!(p.stats().queued_bytes, 0);
    }
}

#[test]
fn slow_subscriber_memory_is_bounded_and_the_oldest_groups_drop() {
    // A small send window keeps the bytes queued in the core; a large one hands them all to
    // the transport, where a subscriber that never reads leaves them unaccepted. Both count.
    for window in [2 * slow::FRAME, 1 << 20] {
        slow_subscriber_with_window(window);
    }
}

mod slow {
    pub(super) const FRAME: usize = 1024;
    pub(super) const FRAMES: usize = 8;
    pub(super) const LIMIT: usize = 16 * 1024;
    /// A group's bytes in the core: its header and each frame's header and payload.
    pub(super) const GROUP: usize = 8 + FRAMES * (FRAME + 2);
}

fn slow_subscriber_with_window(window: usize) {
    use slow::{FRAME, FRAMES, GROUP, LIMIT};
    for publisher in BOTH {
        let config = {
            let mut config = Config::default();
            config.stream_send_window = window;
            config.max_queued_bytes_per_subscription = LIMIT;
            config
        };
        let mut pair = Pair::with_config(config.clone(), config);
        let subscriber = publisher.other();
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        pair.starve.insert(publisher);
        let mut groups = Vec::new();
        let mut peak = 0;
        let mut stats_peak = 0;
        for seq in 1..=40u64 {
            let p = &mut pair.side(publisher).session;
            let g = p.open_group(id, GroupSequence(seq)).unwrap();
            for f in 0..FRAMES {
                p.write_frame(g, payload(seq, f, FRAME)).unwrap();
                peak = peak.max(p.queued_bytes_total());
                stats_peak = stats_peak.max(p.stats().queued_bytes as usize);
                assert!(p.stats().queued_bytes as usize <= LIMIT + GROUP);
                assert!(
                    p.queued_bytes_total() <= LIMIT + GROUP,
                    "group {seq} frame {f}: {} bytes queued",
                    p.queued_bytes_total()
                );
            }
            p.finish_group(g).unwrap();
            groups.push(g);
            pair.drive();
            let side = pair.side(publisher);
            peak = peak.max(side.session.queued_bytes_total() + side.withheld_live());
            assert!(
                side.withheld_live() + side.session.queued_bytes_total() <= LIMIT + GROUP,
                "window {window}, group {seq}: {} bytes held by the transport, {} in the core",
                side.withheld_live(),
                side.session.queued_bytes_total()
            );
        }
        assert!(
            peak > LIMIT / 2,
            "the test must fill the queue: peak {peak}"
        );
        assert!(stats_peak > LIMIT / 2, "stats report it: {stats_peak}");

        let events = pair.side(publisher).take_events();
        let dropped: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::GroupCancelled {
                    id: i,
                    sequence,
                    reason: EndReason::Dropped,
                } if *i == id => Some(sequence.0),
                _ => None,
            })
            .collect();
        assert!(dropped.len() >= 20, "window {window}: dropped {dropped:?}");
        assert!(
            dropped.windows(2).all(|w| w[0] < w[1]),
            "oldest first: {dropped:?}"
        );
        assert!(!dropped.contains(&40), "the newest group is kept");
        assert_eq!(
            pair.side(publisher).session.stats().groups_dropped,
            dropped.len() as u64
        );

        // Credit returns: the subscriber learns of every drop, and the newest group arrives
        // whole.
        pair.release_credit(publisher);
        pair.drive();
        let events = pair.side(subscriber).take_events();
        let mut told: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::SubscribeDropped {
                    id: i, start, end, ..
                } if *i == id => {
                    assert_eq!(start, end);
                    Some(start.0)
                }
                _ => None,
            })
            .collect();
        told.sort();
        assert_eq!(told, dropped);
        let newest = group_stream(&events, id, GroupSequence(40)).unwrap();
        let expected: Vec<Bytes> = (0..FRAMES).map(|f| payload(40, f, FRAME)).collect();
        assert_eq!(pair.side(subscriber).frames_of(newest), expected);
        assert_eq!(group_end(&events, newest), Some(EndReason::Finished));
        // Every group is accounted for: delivered whole, or reset by the publisher.
        for seq in 1..=40u64 {
            if let Some(stream) = group_stream(&events, id, GroupSequence(seq)) {
                match group_end(&events, stream) {
                    Some(EndReason::Finished) => {
                        assert!(!dropped.contains(&seq));
                        assert_eq!(pair.side(subscriber).frames_of(stream).len(), FRAMES);
                    }
                    Some(EndReason::PeerReset(_)) => assert!(dropped.contains(&seq)),
                    other => panic!("group {seq} ended {other:?}"),
                }
            }
        }
        assert_eq!(pair.side(publisher).session.queued_bytes_total(), 0);
    }
}

#[test]
fn the_session_budget_bounds_many_slow_subscriptions_together() {
    // Each subscription stays under its own limit; together they pass the session's, and
    // the heaviest ones lose their oldest groups until the session is back under it.
    const FRAME: usize = 1024;
    const FRAMES: usize = 4;
    const SESSION: usize = 16 * 1024;
    const GROUP: usize = 8 + FRAMES * (FRAME + 2);
    for publisher in BOTH {
        let config = {
            let mut config = Config::default();
            config.stream_send_window = 1 << 20;
            config.max_queued_bytes_per_subscription = 1 << 20;
            config.max_queued_bytes = SESSION;
            config
        };
        let mut pair = Pair::with_config(config.clone(), config);
        let ids: Vec<SubscribeId> = (0..4)
            .map(|_| subscribed(&mut pair, publisher, SubscribeParams::default()))
            .collect();
        pair.starve.insert(publisher);
        let mut peak = 0;
        for seq in 1..=10u64 {
            for &id in &ids {
                let p = &mut pair.side(publisher).session;
                let g = p.open_group(id, GroupSequence(seq)).unwrap();
                for f in 0..FRAMES {
                    p.write_frame(g, payload(seq, f, FRAME)).unwrap();
                    let unsent = p.stats().unsent_bytes as usize;
                    assert_eq!(unsent, p.unsent_bytes_total());
                    assert!(unsent <= SESSION + GROUP, "{unsent} bytes unsent");
                    peak = peak.max(unsent);
                }
                p.finish_group(g).unwrap();
            }
            pair.drive();
            let side = pair.side(publisher);
            assert!(
                side.withheld_live() <= SESSION + GROUP,
                "group {seq}: {} bytes held by the transport",
                side.withheld_live()
            );
        }
        assert!(peak > SESSION / 2, "the test must fill the budget: {peak}");
        let dropped = pair
            .side(publisher)
            .take_events()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::GroupCancelled {
                        reason: EndReason::Dropped,
                        ..
                    }
                )
            })
            .count();
        assert!(dropped >= 20, "{dropped} groups dropped");
        // Credit returns: everything left is delivered and the count goes back to zero.
        pair.release_credit(publisher);
        pair.drive();
        let p = &pair.side(publisher).session;
        assert_eq!(p.stats().unsent_bytes, 0);
        assert_eq!(p.unsent_bytes_total(), 0);
    }
}

#[test]
fn one_endless_group_to_a_subscriber_that_never_reads_is_bounded_too() {
    // A single group, never finished, to a starved subscriber: once the group's own bytes
    // pass the limit it is dropped like any other, so it holds at most the limit plus one
    // frame; a single frame larger than the limit still goes through.
    const FRAME: usize = 4096;
    const LIMIT: usize = 64 * 1024;
    for publisher in BOTH {
        let config = {
            let mut config = Config::default();
            config.stream_send_window = 1 << 20;
            config.max_queued_bytes_per_subscription = LIMIT;
            config
        };
        let mut pair = Pair::with_config(config.clone(), config);
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        pair.starve.insert(publisher);
        let p = &mut pair.side(publisher).session;
        // One frame of twice the limit is accepted.
        let big = p.open_group(id, GroupSequence(1)).unwrap();
        p.write_frame(big, payload(1, 0, 2 * LIMIT)).unwrap();
        p.finish_group(big).unwrap();
        let g = p.open_group(id, GroupSequence(2)).unwrap();
        let mut writes = 0;
        let mut peak = 0;
        for f in 0..1000 {
            match p.write_frame(g, payload(2, f, FRAME)) {
                Ok(()) => writes += 1,
                Err(CommandError::UnknownStream(_)) => break,
                Err(e) => panic!("{e}"),
            }
            peak = peak.max(p.stats().unsent_bytes as usize);
        }
        assert!(writes < 1000, "the endless group was cut");
        assert!(peak <= 2 * LIMIT + 2 * FRAME + 64, "{peak} bytes unsent");
        pair.drive();
        let dropped: Vec<u64> = pair
            .side(publisher)
            .take_events()
            .iter()
            .filter_map(|e| match e {
                Event::GroupCancelled {
                    sequence,
                    reason: EndReason::Dropped,
                    ..
                } => Some(sequence.0),
                _ => None,
            })
            .collect();
        assert!(dropped.contains(&2), "{dropped:?}");
    }
}

#[test]
fn a_burst_of_tiny_frames_reaches_the_transport_as_few_chunks() {
    // 10 000 empty frames (one header byte each) and 10 000 one-byte frames, queued before
    // the transport is polled: a few 16 KiB chunks, not a chunk or two per frame. A large
    // payload still goes as it is (no copy).
    let mut pair = Pair::new();
    let id = subscribed(&mut pair, Side::Server, SubscribeParams::default());
    let p = &mut pair.server.session;
    let g = p.open_group(id, GroupSequence(1)).unwrap();
    for _ in 0..10_000 {
        p.write_frame(g, Bytes::new()).unwrap();
        p.write_frame(g, Bytes::from_static(b"x")).unwrap();
    }
    let big = Bytes::from(vec![7u8; 64 * 1024]);
    p.write_frame(g, big.clone()).unwrap();
    p.finish_group(g).unwrap();
    pair.drive();
    let writes: Vec<Bytes> = pair
        .server
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Write { id: s, data } if *s == g => Some(data.clone()),
            _ => None,
        })
        .collect();
    let total: usize = writes.iter().map(Bytes::len).sum();
    // The GROUP header, 30 000 bytes of small frames, and the big frame's header and payload.
    assert_eq!(total, 4 + 10_000 + 20_000 + 4 + big.len());
    assert!(writes.len() <= 6, "{} chunks", writes.len());
    assert!(
        writes.iter().any(|w| w.as_ptr() == big.as_ptr()),
        "the large payload is handed over without a copy"
    );
}

#[test]
fn frame_and_group_counters_in_stats() {
    let mut pair = Pair::new();
    let id = subscribed(&mut pair, Side::Server, SubscribeParams::default());
    for seq in 0..3 {
        let g = pair
            .server
            .session
            .open_group(id, GroupSequence(seq))
            .unwrap();
        for f in 0..4 {
            pair.server
                .session
                .write_frame(g, payload(seq, f, 100))
                .unwrap();
        }
        pair.server.session.finish_group(g).unwrap();
    }
    pair.drive();
    let s = pair.server.session.stats();
    let c = pair.client.session.stats();
    assert_eq!((s.groups_sent, s.frames_sent), (3, 12));
    assert_eq!((c.groups_received, c.frames_received), (3, 12));
    assert_eq!((s.groups_received, c.groups_sent), (0, 0));
    // Without transport counters, bytes are the stream bytes each way.
    assert_eq!(s.bytes_sent, c.bytes_received);
    assert_eq!(c.bytes_sent, s.bytes_received);
    assert!(s.bytes_sent > 1200);
    assert_eq!((s.rtt, s.estimated_bitrate), (None, None));
    let _ = SubscribeId(0);
}

#[test]
fn a_publisher_priority_change_reaches_a_group_stream_still_opening() {
    let mut pair = Pair::new();
    let publisher = Side::Server;
    let id = subscribed(&mut pair, publisher, SubscribeParams::default());
    let before = pair.side(publisher).commands.len();
    let g = pair
        .side(publisher)
        .session
        .open_group(id, GroupSequence(1))
        .unwrap();
    // Before the transport has opened the stream, the publisher's priority changes.
    pair.side(publisher)
        .session
        .update_publisher(
            id,
            PublisherParams {
                priority: 9,
                ..PublisherParams::default()
            },
        )
        .unwrap();
    pair.drive();
    let commands = &pair.side(publisher).commands[before..];
    let opened_at = commands
        .iter()
        .find_map(|c| match c {
            Command::Open { id, priority, .. } if *id == g => Some(*priority),
            _ => None,
        })
        .expect("the group stream was opened");
    let expected = (9 << 14) | 1;
    assert_ne!(opened_at, expected, "opened before the change");
    assert!(
        commands.contains(&Command::SetPriority {
            id: g,
            priority: expected
        }),
        "{commands:?}"
    );
}

/// The transport priority each stream was last given (its Open, then any SetPriority).
fn priorities(commands: &[Command]) -> std::collections::HashMap<StreamId, i32> {
    let mut out = std::collections::HashMap::new();
    for c in commands {
        match c {
            Command::Open { id, priority, .. } | Command::SetPriority { id, priority } => {
                out.insert(*id, *priority);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn group_order_holds_across_the_14_bit_wrap() {
    // Groups 16 383 and 16 384 differ in their low 14 bits the wrong way round; newest-first
    // must still put 16 384 first, oldest-first 16 383, and a jump far ahead re-prioritises
    // the groups still open.
    for ordered in [false, true] {
        let mut pair = Pair::new();
        let params = SubscribeParams {
            ordered,
            ..SubscribeParams::default()
        };
        let id = subscribed(&mut pair, Side::Server, params);
        let p = &mut pair.server.session;
        let near: Vec<StreamId> = [16_382u64, 16_383, 16_384, 16_385]
            .iter()
            .map(|&s| p.open_group(id, GroupSequence(s)).unwrap())
            .collect();
        pair.drive();
        let given = priorities(&pair.server.commands);
        let got: Vec<i32> = near.iter().map(|s| given[s]).collect();
        for w in got.windows(2) {
            match ordered {
                false => assert!(w[0] < w[1], "newest first: {got:?}"),
                true => assert!(w[0] > w[1], "oldest first: {got:?}"),
            }
        }
        // A jump far ahead: the new group goes first (or last), the old ones, now more
        // than half a field behind, tie at the other end.
        let far = pair
            .server
            .session
            .open_group(id, GroupSequence(40_000))
            .unwrap();
        pair.drive();
        let given = priorities(&pair.server.commands);
        for old in &near {
            match ordered {
                false => assert!(given[old] < given[&far], "{given:?}"),
                true => assert!(given[old] > given[&far], "{given:?}"),
            }
        }
    }
}
