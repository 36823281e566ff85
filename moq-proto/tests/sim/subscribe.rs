//! Subscribe flows (spec §6.2, §5; decisions D3, D4, D8, D12, D13).

use std::time::Duration;

use bytes::Bytes;

use super::common::{
    BOTH, Lone, cancels, frame, group_end, group_stream, knobs, pair_with, path, range, response,
    subscribe_msg, subscribed, subscribed_with, typed, written,
};
use super::pair::Pair;
use moq_proto::code::{group as group_codes, subscribe as codes};
use moq_proto::message::{
    GroupHeader, StreamType, SubscribeDrop, SubscribeOk, SubscribeParams, SubscribeResponse,
};
use moq_proto::{
    Command, CommandError, Config, Dir, EndReason, Event, GroupSequence, PublisherParams, Role,
    StreamId, SubscribeId,
};

fn ok(params: SubscribeParams) -> Vec<u8> {
    response(SubscribeResponse::Ok(SubscribeOk { params }))
}

fn drop_msg(start: u64, end: u64, code: u64) -> Vec<u8> {
    response(SubscribeResponse::Drop(SubscribeDrop::new(
        GroupSequence(start),
        GroupSequence(end),
        code,
    )))
}

fn group(id: u64, seq: u64) -> Vec<u8> {
    typed(
        StreamType::Group,
        &GroupHeader {
            subscribe_id: SubscribeId(id),
            sequence: GroupSequence(seq),
        },
    )
}

/// A client subscribed to `/live/cam` "video" with `params`, its stream opened, no answer yet.
fn subscriber(params: SubscribeParams) -> (Lone, SubscribeId, StreamId) {
    let mut lone = Lone::new(Role::Client);
    let id = lone
        .session
        .subscribe(path("/live/cam"), "video", params)
        .unwrap();
    let stream = Lone::opened(&lone.commands());
    (lone, id, stream)
}

#[test]
fn subscribe_ids_start_at_1_and_are_never_reused() {
    let mut pair = Pair::new();
    pair.server.session.announce(path("/a"), vec![]).unwrap();
    let c = &mut pair.client.session;
    let ids: Vec<_> = (0..3)
        .map(|_| {
            c.subscribe(path("/a"), "t", SubscribeParams::default())
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [SubscribeId(1), SubscribeId(2), SubscribeId(3)]);
    c.unsubscribe(SubscribeId(2)).unwrap();
    pair.drive();
    let c = &mut pair.client.session;
    assert_eq!(
        c.subscribe(path("/a"), "t", SubscribeParams::default()),
        Ok(SubscribeId(4))
    );
    assert_eq!(
        c.unsubscribe(SubscribeId(2)),
        Err(CommandError::UnknownSubscription(SubscribeId(2)))
    );
}

#[test]
fn subscribe_ok_is_sent_at_once_and_resolved_by_the_first_group() {
    for publisher in BOTH {
        for (split, reorder) in knobs() {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let accept = PublisherParams {
                priority: 2,
                ordered: true,
                max_latency: Duration::from_millis(1000),
            };
            let cam = path("/live/cam");
            pair.side(publisher)
                .session
                .announce(cam.clone(), vec![])
                .unwrap();
            let id = pair
                .side(subscriber)
                .session
                .subscribe(cam, "video", SubscribeParams::default())
                .unwrap();
            pair.drive();
            pair.side(publisher).take_events();
            pair.side(publisher)
                .session
                .accept_subscribe(id, accept)
                .unwrap();
            assert_eq!(
                pair.side(publisher).session.accept_subscribe(id, accept),
                Err(CommandError::AlreadyAnswered(id))
            );
            pair.drive();
            let first = SubscribeParams {
                priority: 2,
                ordered: true,
                max_latency: Duration::from_millis(1000),
                start: None,
                end: None,
            };
            assert_eq!(
                pair.side(subscriber).take_events(),
                vec![Event::SubscribeOk { id, params: first }]
            );
            // Exactly the spec's example bytes: `00 06 02 01 43 e8 00 00` (ordered = 1).
            assert!(
                pair.side(publisher).commands.iter().any(|c| matches!(
                    c, Command::Write { data, .. } if data[..] == [0x00, 0x06, 0x02, 0x01, 0x43, 0xe8, 0x00, 0x00]
                )),
                "SUBSCRIBE_OK bytes"
            );
            let g = pair
                .side(publisher)
                .session
                .open_group(id, GroupSequence(5))
                .unwrap();
            pair.side(publisher).session.finish_group(g).unwrap();
            pair.drive();
            let events = pair.side(subscriber).take_events();
            assert!(
                events.contains(&Event::SubscribeOk {
                    id,
                    params: SubscribeParams {
                        start: Some(GroupSequence(5)),
                        ..first
                    }
                }),
                "resolved OK, {events:?}"
            );
            assert_eq!(
                pair.side(subscriber).session.subscription(id),
                Some((
                    SubscribeParams::default(),
                    Some(SubscribeParams {
                        start: Some(GroupSequence(5)),
                        ..first
                    })
                ))
            );
        }
    }
}

#[test]
fn subscribe_ok_with_a_known_start_needs_no_second_ok() {
    let mut pair = Pair::new();
    let id = subscribed(&mut pair, super::pair::Side::Server, range(3, 9));
    let g = pair
        .server
        .session
        .open_group(id, GroupSequence(3))
        .unwrap();
    pair.server.session.finish_group(g).unwrap();
    pair.drive();
    let events = pair.client.take_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::SubscribeOk { .. })),
        "{events:?}"
    );
    assert_eq!(
        pair.client
            .session
            .subscription(id)
            .unwrap()
            .1
            .unwrap()
            .start,
        Some(GroupSequence(3))
    );
}

#[test]
fn subscribe_update_is_applied_in_both_directions() {
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
        pair.side(subscriber).take_events();
        let update = SubscribeParams {
            priority: 0x10,
            ordered: false,
            max_latency: Duration::ZERO,
            start: None,
            end: Some(GroupSequence(20)),
        };
        pair.side(subscriber)
            .session
            .update_subscription(id, update)
            .unwrap();
        let before = pair.side(publisher).commands.len();
        pair.drive();
        // The spec's example bytes: `05 10 00 00 00 15`.
        assert!(
            pair.side(subscriber).commands.iter().any(|c| matches!(
                c, Command::Write { data, .. } if data[..] == [0x05, 0x10, 0x00, 0x00, 0x00, 0x15]
            )),
            "SUBSCRIBE_UPDATE bytes"
        );
        assert_eq!(
            pair.side(publisher).take_events(),
            vec![Event::SubscriptionUpdated { id, params: update }]
        );
        let (_, track, params) = pair.side(publisher).session.publication(id).unwrap();
        assert_eq!((track, params), ("video", update));
        // The open group's transport priority follows the new subscriber priority.
        let expected = (0x10 << 22) | 1;
        assert!(
            pair.side(publisher).commands[before..].contains(&Command::SetPriority {
                id: g,
                priority: expected
            }),
            "{:?}",
            &pair.side(publisher).commands[before..]
        );
        // The new range is enforced by the publisher.
        assert_eq!(
            pair.side(publisher)
                .session
                .open_group(id, GroupSequence(21)),
            Err(CommandError::OutOfRange {
                id,
                sequence: GroupSequence(21)
            })
        );
    }
}

#[test]
fn unknown_broadcast_is_refused_with_0x3() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        let id = pair
            .side(subscriber)
            .session
            .subscribe(path("/nobody"), "video", SubscribeParams::default())
            .unwrap();
        pair.drive();
        assert_eq!(pair.side(publisher).take_events(), vec![]);
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![Event::SubscriptionEnded {
                id,
                reason: EndReason::PeerReset(codes::NOT_FOUND)
            }]
        );
        assert!(
            cancels(&pair.side(publisher).commands)
                .iter()
                .all(|c| c.1 == codes::NOT_FOUND)
        );
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
    }
}

#[test]
fn serve_unannounced_passes_an_unknown_broadcast_to_the_application() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        pair.side(publisher).session.set_serve_unannounced(true);
        let id = pair
            .side(subscriber)
            .session
            .subscribe(path("/nobody"), "video", SubscribeParams::default())
            .unwrap();
        pair.drive();
        assert!(matches!(
            pair.side(publisher).take_events().as_slice(),
            [Event::SubscribeRequested { id: got, path: p, .. }] if *got == id && *p == path("/nobody")
        ));
        // The application answers, here with 0x4 (unauthorized).
        pair.side(publisher)
            .session
            .reject_subscribe(id, codes::UNAUTHORIZED)
            .unwrap();
        pair.drive();
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![Event::SubscriptionEnded {
                id,
                reason: EndReason::PeerReset(codes::UNAUTHORIZED)
            }]
        );
    }
}

#[test]
fn unknown_track_is_refused_with_0x3() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        pair.side(publisher)
            .session
            .announce(path("/live/cam"), vec![])
            .unwrap();
        let id = pair
            .side(subscriber)
            .session
            .subscribe(path("/live/cam"), "nope", SubscribeParams::default())
            .unwrap();
        pair.drive();
        let events = pair.side(publisher).take_events();
        assert!(matches!(
            events.as_slice(),
            [Event::SubscribeRequested { track, .. }] if track == "nope"
        ));
        pair.side(publisher)
            .session
            .reject_subscribe(id, codes::NOT_FOUND)
            .unwrap();
        pair.drive();
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![Event::SubscriptionEnded {
                id,
                reason: EndReason::PeerReset(codes::NOT_FOUND)
            }]
        );
        assert_eq!(
            pair.side(publisher)
                .session
                .open_group(id, GroupSequence(0)),
            Err(CommandError::UnknownSubscription(id))
        );
    }
}

#[test]
fn reused_subscribe_id_is_cancelled_with_0x2() {
    let mut lone = Lone::new(Role::Server);
    lone.session.announce(path("/a"), vec![]).unwrap();
    let first = lone.accept_with(Dir::Bi, &subscribe_msg(1, "/a"));
    assert!(matches!(
        lone.events().as_slice(),
        [Event::SubscribeRequested {
            id: SubscribeId(1),
            ..
        }]
    ));
    let second = lone.accept_with(Dir::Bi, &subscribe_msg(1, "/a"));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (second, codes::DUPLICATE_ID, "reset"),
            (second, codes::DUPLICATE_ID, "stop")
        ]
    );
    assert_eq!(lone.events(), vec![]);
    // The first is untouched...
    lone.session
        .accept_subscribe(SubscribeId(1), PublisherParams::default())
        .unwrap();
    assert_eq!(
        written(&lone.commands(), first),
        ok(SubscribeParams::default())
    );
    // ...and the ID stays used after it ends (draft §7.5: never reused in a session).
    lone.fin(first);
    lone.commands();
    lone.events();
    let third = lone.accept_with(Dir::Bi, &subscribe_msg(1, "/a"));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (third, codes::DUPLICATE_ID, "reset"),
            (third, codes::DUPLICATE_ID, "stop")
        ]
    );
    assert!(!lone.session.is_closed());
}

#[test]
fn scattered_subscribe_ids_cost_a_bounded_memory() {
    // A peer that skips every other ID makes each one its own range: the session keeps the
    // most recent 1024 ranges, so old IDs are forgotten (reusing one harms no one) while
    // recent ones and every ID in use are still refused as duplicates.
    let mut lone = Lone::new(Role::Server);
    lone.session.announce(path("/a"), vec![]).unwrap();
    let mut last = None;
    for id in (2..=10_000u64).step_by(2) {
        let stream = lone.accept_with(Dir::Bi, &subscribe_msg(id, "/a"));
        lone.fin(stream);
        lone.commands();
        lone.events();
        last = Some(id);
    }
    let last = last.unwrap();
    let live = lone.accept_with(Dir::Bi, &subscribe_msg(1, "/a"));
    lone.commands();
    for dup in [last, 1] {
        let again = lone.accept_with(Dir::Bi, &subscribe_msg(dup, "/a"));
        assert_eq!(
            cancels(&lone.commands()),
            vec![
                (again, codes::DUPLICATE_ID, "reset"),
                (again, codes::DUPLICATE_ID, "stop")
            ],
            "ID {dup}"
        );
    }
    lone.events();
    // ID 2, used first, is beyond what is remembered: a new subscription.
    lone.accept_with(Dir::Bi, &subscribe_msg(2, "/a"));
    assert!(cancels(&lone.commands()).is_empty());
    assert!(matches!(
        lone.events().as_slice(),
        [Event::SubscribeRequested {
            id: SubscribeId(2),
            ..
        }]
    ));
    let _ = live;
    assert!(!lone.session.is_closed());
}

#[test]
fn response_timeout_cancels_with_0x5() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        pair.side(publisher)
            .session
            .announce(path("/live/cam"), vec![])
            .unwrap();
        let id = pair
            .side(subscriber)
            .session
            .subscribe(path("/live/cam"), "video", SubscribeParams::default())
            .unwrap();
        pair.drive();
        // The publisher's application never answers.
        pair.advance(Duration::from_secs(29));
        assert_eq!(pair.side(subscriber).take_events(), vec![]);
        let before = pair.side(subscriber).commands.len();
        pair.advance(Duration::from_secs(1));
        let stream = match pair.side(subscriber).commands[..before]
            .iter()
            .find(|c| matches!(c, Command::Open { .. }))
        {
            Some(Command::Open { id, .. }) => *id,
            _ => unreachable!(),
        };
        assert_eq!(
            cancels(&pair.side(subscriber).commands[before..]),
            vec![
                (stream, codes::TIMEOUT, "reset"),
                (stream, codes::TIMEOUT, "stop")
            ]
        );
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![Event::SubscriptionEnded {
                id,
                reason: EndReason::Cancelled(codes::TIMEOUT)
            }]
        );
        let events = pair.side(publisher).take_events();
        assert_eq!(
            events.last(),
            Some(&Event::PublicationEnded {
                id,
                reason: EndReason::PeerReset(codes::TIMEOUT)
            })
        );
    }
}

#[test]
fn response_timeout_is_configurable_and_disarmed_by_ok() {
    let config = {
        let mut config = Config::default();
        config.subscribe_timeout = Duration::from_secs(2);
        config
    };
    let mut pair = Pair::with_config(config.clone(), config);
    pair.server.session.announce(path("/a"), vec![]).unwrap();
    let slow = pair
        .client
        .session
        .subscribe(path("/a"), "t", SubscribeParams::default())
        .unwrap();
    let fast = pair
        .client
        .session
        .subscribe(path("/a"), "t", SubscribeParams::default())
        .unwrap();
    pair.drive();
    pair.server
        .session
        .accept_subscribe(fast, PublisherParams::default())
        .unwrap();
    pair.drive();
    pair.client.take_events();
    pair.advance(Duration::from_millis(2100));
    assert_eq!(
        pair.client.take_events(),
        vec![Event::SubscriptionEnded {
            id: slow,
            reason: EndReason::Cancelled(codes::TIMEOUT)
        }]
    );
    pair.advance(Duration::from_secs(60));
    assert_eq!(pair.client.take_events(), vec![]);
    assert!(pair.client.session.subscription(fast).is_some());
}

#[test]
fn group_before_ok_is_accepted() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    let mut input = group(id.0, 7);
    input.extend(frame(b"early"));
    let g = lone.accept_with(Dir::Uni, &input);
    lone.fin(g);
    assert_eq!(
        lone.events(),
        vec![
            Event::GroupReceived {
                id,
                sequence: GroupSequence(7),
                stream: g
            },
            Event::GroupEnded {
                stream: g,
                reason: EndReason::Finished
            },
        ]
    );
    assert_eq!(lone.frames_of(g), vec![Bytes::from_static(b"early")]);
    assert_eq!(cancels(&lone.commands()), vec![]);
    // The OK still counts when it comes.
    lone.data(stream, &ok(SubscribeParams::default()));
    assert_eq!(
        lone.events(),
        vec![Event::SubscribeOk {
            id,
            params: SubscribeParams::default()
        }]
    );
}

#[test]
fn ok_at_any_time_updates_the_publisher_values() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    let first = SubscribeParams {
        start: Some(GroupSequence(1)),
        ..SubscribeParams::default()
    };
    let later = SubscribeParams {
        priority: 9,
        max_latency: Duration::from_millis(250),
        ..first
    };
    lone.data(stream, &ok(first));
    let g = lone.accept_with(Dir::Uni, &group(id.0, 1));
    lone.data(stream, &ok(later));
    assert_eq!(
        lone.events(),
        vec![
            Event::SubscribeOk { id, params: first },
            Event::GroupReceived {
                id,
                sequence: GroupSequence(1),
                stream: g
            },
            Event::SubscribeOk { id, params: later },
        ]
    );
    assert_eq!(lone.session.subscription(id).unwrap().1, Some(later));
    // Several OKs split across chunks one byte at a time.
    let mut both = ok(first);
    both.extend(ok(later));
    for b in both {
        lone.data(stream, &[b]);
    }
    assert_eq!(lone.events().len(), 2);
}

#[test]
fn fin_without_ok_means_ended() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    lone.fin(stream);
    assert_eq!(
        lone.events(),
        vec![Event::SubscriptionEnded {
            id,
            reason: EndReason::Finished
        }]
    );
    // Our side closes in turn; nothing is cancelled and nothing is left behind.
    assert_eq!(lone.commands(), vec![Command::Finish { id: stream }]);
    assert_eq!(lone.session.open_streams(), 0);
    // No timeout fires later for it.
    lone.advance(Duration::from_secs(31));
    assert_eq!(lone.commands(), vec![]);
    assert_eq!(lone.events(), vec![]);
}

#[test]
fn drop_as_first_response_cancels_with_0x0() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    lone.data(stream, &drop_msg(1, 2, 0));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (stream, codes::INTERNAL, "reset"),
            (stream, codes::INTERNAL, "stop")
        ]
    );
    assert_eq!(
        lone.events(),
        vec![Event::SubscriptionEnded {
            id,
            reason: EndReason::Cancelled(codes::INTERNAL)
        }]
    );
    assert!(!lone.session.is_closed());
}

#[test]
fn reading_continues_after_drop() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    let mut input = ok(SubscribeParams::default());
    input.extend(drop_msg(5, 7, 0));
    input.extend(ok(range(1, 100)));
    input.extend(drop_msg(9, 9, 3));
    lone.data(stream, &input);
    let g = lone.accept_with(Dir::Uni, &group(id.0, 8));
    assert_eq!(
        lone.events(),
        vec![
            Event::SubscribeOk {
                id,
                params: SubscribeParams::default()
            },
            Event::SubscribeDropped {
                id,
                start: GroupSequence(5),
                end: GroupSequence(7),
                code: codes::INTERNAL
            },
            Event::SubscribeOk {
                id,
                params: range(1, 100)
            },
            Event::SubscribeDropped {
                id,
                start: GroupSequence(9),
                end: GroupSequence(9),
                code: codes::NOT_FOUND
            },
            Event::GroupReceived {
                id,
                sequence: GroupSequence(8),
                stream: g
            },
        ]
    );
}

#[test]
fn publisher_drop_groups_reaches_the_subscriber_with_its_range() {
    for publisher in BOTH {
        for (split, reorder) in knobs() {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let id = subscribed(&mut pair, publisher, SubscribeParams::default());
            let before = pair.side(publisher).commands.len();
            pair.side(publisher)
                .session
                .drop_groups(id, GroupSequence(5), GroupSequence(7), codes::INTERNAL)
                .unwrap();
            pair.side(publisher)
                .session
                .drop_groups(id, GroupSequence(0), GroupSequence(0), codes::UNAUTHORIZED)
                .unwrap();
            pair.drive();
            assert_eq!(
                pair.side(subscriber).take_events(),
                vec![
                    Event::SubscribeDropped {
                        id,
                        start: GroupSequence(5),
                        end: GroupSequence(7),
                        code: codes::INTERNAL
                    },
                    Event::SubscribeDropped {
                        id,
                        start: GroupSequence(0),
                        end: GroupSequence(0),
                        code: codes::UNAUTHORIZED
                    },
                ]
            );
            // On the wire as gomoqt encodes it (D3): `01 03 06 08 00`.
            let writes: Vec<u8> = pair.side(publisher).commands[before..]
                .iter()
                .flat_map(|c| match c {
                    Command::Write { data, .. } => data.to_vec(),
                    _ => vec![],
                })
                .collect();
            assert_eq!(
                writes,
                [0x01, 0x03, 0x06, 0x08, 0x00, 0x01, 0x03, 0x01, 0x01, 0x04]
            );
        }
    }
}

#[test]
fn unsubscribe_closes_both_sides_and_their_groups() {
    for publisher in BOTH {
        for (split, reorder) in knobs() {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let id = subscribed(&mut pair, publisher, SubscribeParams::default());
            let g = pair
                .side(publisher)
                .session
                .open_group(id, GroupSequence(1))
                .unwrap();
            pair.side(publisher)
                .session
                .write_frame(g, Bytes::from_static(b"a"))
                .unwrap();
            pair.drive();
            let events = pair.side(subscriber).take_events();
            let received = group_stream(&events, id, GroupSequence(1)).unwrap();
            let before = pair.side(subscriber).commands.len();
            pair.side(subscriber).session.unsubscribe(id).unwrap();
            assert_eq!(
                pair.side(subscriber).session.unsubscribe(id),
                Err(CommandError::UnknownSubscription(id))
            );
            pair.drive();
            assert!(
                cancels(&pair.side(subscriber).commands[before..]).contains(&(
                    received,
                    group_codes::SUBSCRIBE_CANCELLED,
                    "stop"
                ))
            );
            assert_eq!(
                pair.side(subscriber).take_events(),
                vec![
                    Event::GroupEnded {
                        stream: received,
                        reason: EndReason::Local
                    },
                    Event::SubscriptionEnded {
                        id,
                        reason: EndReason::Local
                    },
                ]
            );
            let events = pair.side(publisher).take_events();
            assert!(
                events.contains(&Event::PublicationEnded {
                    id,
                    reason: EndReason::Finished
                }),
                "{events:?}"
            );
            // The open group is gone on the publisher too.
            assert_eq!(
                pair.side(publisher)
                    .session
                    .write_frame(g, Bytes::from_static(b"b")),
                Err(CommandError::UnknownStream(g))
            );
            pair.advance(Duration::from_secs(2));
            assert_eq!(
                pair.client.session.open_streams(),
                0,
                "split {split} reorder {reorder}"
            );
            assert_eq!(
                pair.server.session.open_streams(),
                0,
                "split {split} reorder {reorder}"
            );
        }
    }
}

#[test]
fn unsubscribe_stops_a_publisher_that_never_closes_after_the_grace() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    lone.data(stream, &ok(SubscribeParams::default()));
    lone.session.unsubscribe(id).unwrap();
    assert_eq!(lone.commands(), vec![Command::Finish { id: stream }]);
    lone.advance(Duration::from_millis(999));
    assert_eq!(lone.commands(), vec![]);
    lone.advance(Duration::from_millis(1));
    assert_eq!(
        lone.commands(),
        vec![Command::Stop {
            id: stream,
            code: codes::INTERNAL
        }]
    );
    assert_eq!(lone.session.open_streams(), 0);
}

#[test]
fn bounded_subscription_finishes_when_its_range_is_complete() {
    for publisher in BOTH {
        for (split, reorder) in knobs() {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let id = subscribed(&mut pair, publisher, range(1, 3));
            for seq in 1..=3 {
                let g = pair
                    .side(publisher)
                    .session
                    .open_group(id, GroupSequence(seq))
                    .unwrap();
                for f in 0..3u8 {
                    pair.side(publisher)
                        .session
                        .write_frame(g, Bytes::from(vec![seq as u8, f]))
                        .unwrap();
                }
                pair.side(publisher).session.finish_group(g).unwrap();
            }
            pair.drive();
            let events = pair.side(subscriber).take_events();
            for seq in 1..=3u64 {
                let stream = group_stream(&events, id, GroupSequence(seq)).unwrap_or_else(|| {
                    panic!("group {seq}, split {split} reorder {reorder}: {events:?}")
                });
                let expected: Vec<Bytes> =
                    (0..3u8).map(|f| Bytes::from(vec![seq as u8, f])).collect();
                assert_eq!(pair.side(subscriber).frames_of(stream), expected);
                assert_eq!(group_end(&events, stream), Some(EndReason::Finished));
            }
            assert!(
                events.contains(&Event::SubscriptionEnded {
                    id,
                    reason: EndReason::Finished
                }),
                "{events:?}"
            );
            assert_eq!(
                pair.side(publisher)
                    .session
                    .open_group(id, GroupSequence(2)),
                Err(CommandError::UnknownSubscription(id)),
            );
        }
    }
}

#[test]
fn bounded_subscription_counts_drops_and_aborts_toward_completion() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        let id = subscribed(&mut pair, publisher, range(1, 4));
        let p = &mut pair.side(publisher).session;
        let g = p.open_group(id, GroupSequence(1)).unwrap();
        p.finish_group(g).unwrap();
        p.drop_groups(id, GroupSequence(2), GroupSequence(3), codes::INTERNAL)
            .unwrap();
        pair.drive();
        assert!(
            !pair
                .side(subscriber)
                .take_events()
                .iter()
                .any(|e| matches!(e, Event::SubscriptionEnded { .. })),
            "group 4 is still due"
        );
        let p = &mut pair.side(publisher).session;
        let g = p.open_group(id, GroupSequence(4)).unwrap();
        p.abort_group(g, group_codes::PUBLISH_ABORTED).unwrap();
        pair.drive();
        // The publisher is done (its range is accounted for) and FINs; group 4 was reset
        // before its header went out, so the subscriber cannot know it will never come and
        // waits out the linger for streams still on their way.
        assert!(
            pair.side(publisher)
                .session
                .open_group(id, GroupSequence(4))
                .is_err()
        );
        assert_eq!(pair.side(subscriber).take_events(), vec![]);
        pair.advance(Duration::from_millis(900));
        assert_eq!(pair.side(subscriber).take_events(), vec![]);
        pair.advance(Duration::from_millis(200));
        let events = pair.side(subscriber).take_events();
        assert_eq!(
            events.last(),
            Some(&Event::SubscriptionEnded {
                id,
                reason: EndReason::Finished
            }),
            "{events:?}"
        );
    }
}

#[test]
fn open_group_outside_the_range_is_an_error() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let id = subscribed(&mut pair, publisher, range(5, 6));
        let p = &mut pair.side(publisher).session;
        for seq in [0, 4, 7, 1000] {
            assert_eq!(
                p.open_group(id, GroupSequence(seq)),
                Err(CommandError::OutOfRange {
                    id,
                    sequence: GroupSequence(seq)
                })
            );
        }
        let g = p.open_group(id, GroupSequence(6)).unwrap();
        assert_eq!(
            p.open_group(id, GroupSequence(6)),
            Err(CommandError::DuplicateGroup {
                id,
                sequence: GroupSequence(6)
            })
        );
        p.finish_group(g).unwrap();
        assert_eq!(
            p.open_group(id, GroupSequence(6)),
            Err(CommandError::DuplicateGroup {
                id,
                sequence: GroupSequence(6)
            })
        );

        // "Latest": the first group resolves the start; older groups are then out of range.
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        let p = &mut pair.side(publisher).session;
        p.open_group(id, GroupSequence(10)).unwrap();
        assert_eq!(
            p.open_group(id, GroupSequence(9)),
            Err(CommandError::OutOfRange {
                id,
                sequence: GroupSequence(9)
            })
        );
        p.open_group(id, GroupSequence(11)).unwrap();
    }
}

#[test]
fn subscriber_stops_out_of_range_groups_with_0x2() {
    let (mut lone, id, stream) = subscriber(range(5, 6));
    lone.data(stream, &ok(range(5, 6)));
    let low = lone.accept_with(Dir::Uni, &group(id.0, 4));
    let high = lone.accept_with(Dir::Uni, &group(id.0, 7));
    let inside = lone.accept_with(Dir::Uni, &group(id.0, 5));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (low, group_codes::OUT_OF_RANGE, "stop"),
            (high, group_codes::OUT_OF_RANGE, "stop")
        ]
    );
    let events = lone.events();
    assert_eq!(
        events.last(),
        Some(&Event::GroupReceived {
            id,
            sequence: GroupSequence(5),
            stream: inside
        })
    );
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn subscriber_stops_groups_the_narrowed_range_excludes() {
    // The publisher opens a group before our SUBSCRIBE_UPDATE reaches it.
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        pair.side(subscriber)
            .session
            .update_subscription(id, range(0, 2))
            .unwrap();
        let g = pair
            .side(publisher)
            .session
            .open_group(id, GroupSequence(5))
            .unwrap();
        pair.drive();
        let events = pair.side(publisher).take_events();
        assert!(
            events.starts_with(&[
                Event::SubscriptionUpdated {
                    id,
                    params: range(0, 2)
                },
                Event::GroupCancelled {
                    id,
                    sequence: GroupSequence(5),
                    reason: EndReason::PeerStopped(group_codes::OUT_OF_RANGE)
                },
            ]),
            "{events:?}"
        );
        assert_eq!(
            pair.side(publisher).session.write_frame(g, Bytes::new()),
            Err(CommandError::UnknownStream(g))
        );
        assert!(
            !pair
                .side(subscriber)
                .take_events()
                .iter()
                .any(|e| matches!(e, Event::GroupReceived { .. }))
        );
    }
}

#[test]
fn group_for_an_unknown_subscription_is_stopped_0x7() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    lone.data(stream, &ok(SubscribeParams::default()));
    let unknown = lone.accept_with(Dir::Uni, &group(99, 1));
    let zero = lone.accept_with(Dir::Uni, &group(0, 1));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (unknown, group_codes::INVALID_SUBSCRIBE_ID, "stop"),
            (zero, group_codes::INVALID_SUBSCRIBE_ID, "stop")
        ]
    );
    // One of ours that has ended: 0x4.
    lone.session.unsubscribe(id).unwrap();
    lone.commands();
    let late = lone.accept_with(Dir::Uni, &group(id.0, 1));
    assert_eq!(
        cancels(&lone.commands()),
        vec![(late, group_codes::SUBSCRIBE_CANCELLED, "stop")]
    );
    assert!(!lone.session.is_closed());
    assert_eq!(
        lone.session.open_streams(),
        1,
        "only the subscribe stream, in its grace"
    );
}

#[test]
fn incoming_subscription_limits_use_the_spec_codes() {
    let server = {
        let mut config = Config::default();
        config.max_incoming_subscriptions = 1;
        config
    };
    let mut pair = Pair::with_config(Config::default(), server);
    pair.server.session.announce(path("/a"), vec![]).unwrap();
    let c = &mut pair.client.session;
    let first = c
        .subscribe(path("/a"), "t", SubscribeParams::default())
        .unwrap();
    let second = c
        .subscribe(path("/a"), "t", SubscribeParams::default())
        .unwrap();
    let backwards = c.subscribe(path("/a"), "t", range(5, 4)).unwrap();
    pair.drive();
    let events = pair.client.take_events();
    assert!(events.contains(&Event::SubscriptionEnded {
        id: second,
        reason: EndReason::PeerReset(codes::INTERNAL)
    }));
    assert!(events.contains(&Event::SubscriptionEnded {
        id: backwards,
        reason: EndReason::PeerReset(codes::INTERNAL)
    }));
    assert!(pair.client.session.subscription(first).is_some());
    // Within the limit, a range that ends before it starts is refused with 0x1.
    let mut pair = Pair::new();
    pair.server.session.announce(path("/a"), vec![]).unwrap();
    let backwards = pair
        .client
        .session
        .subscribe(path("/a"), "t", range(5, 4))
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.client.take_events(),
        vec![Event::SubscriptionEnded {
            id: backwards,
            reason: EndReason::PeerReset(codes::INVALID_RANGE)
        }]
    );
}

#[test]
fn subscription_to_a_broadcast_of_the_client_works_with_split_1() {
    // A gomoqt server subscribes to its clients (spec §10 item 2): the client publishes.
    let mut pair = pair_with(1, true);
    let id = subscribed_with(
        &mut pair,
        super::pair::Side::Client,
        SubscribeParams::default(),
        PublisherParams::default(),
    );
    let g = pair
        .client
        .session
        .open_group(id, GroupSequence(0))
        .unwrap();
    pair.client
        .session
        .write_frame(g, Bytes::from_static(b"from the client"))
        .unwrap();
    pair.client.session.finish_group(g).unwrap();
    pair.drive();
    let events = pair.server.take_events();
    let stream = group_stream(&events, id, GroupSequence(0)).unwrap();
    assert_eq!(pair.server.frames_of(stream), vec!["from the client"]);
}

#[test]
fn update_that_shrinks_the_range_to_what_was_delivered_finishes_it() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        let id = subscribed(&mut pair, publisher, range(1, 10));
        for seq in 1..=3 {
            let p = &mut pair.side(publisher).session;
            let g = p.open_group(id, GroupSequence(seq)).unwrap();
            p.finish_group(g).unwrap();
        }
        pair.drive();
        pair.side(subscriber).take_events();
        pair.side(subscriber)
            .session
            .update_subscription(id, range(1, 3))
            .unwrap();
        pair.drive();
        let events = pair.side(subscriber).take_events();
        assert_eq!(
            events,
            vec![Event::SubscriptionEnded {
                id,
                reason: EndReason::Finished
            }]
        );
    }
}

#[test]
fn update_with_an_explicit_start_moves_the_publisher_start() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        // "Latest": the first group (10) resolves the start.
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        pair.side(publisher)
            .session
            .open_group(id, GroupSequence(10))
            .unwrap();
        pair.drive();
        // The subscriber now wants older groups too.
        pair.side(subscriber)
            .session
            .update_subscription(id, range(5, 12))
            .unwrap();
        pair.drive();
        let p = &mut pair.side(publisher).session;
        p.open_group(id, GroupSequence(5)).unwrap();
        assert_eq!(
            p.open_group(id, GroupSequence(4)),
            Err(CommandError::OutOfRange {
                id,
                sequence: GroupSequence(4)
            })
        );
        // "Latest" in an update keeps the start already resolved.
        pair.side(subscriber)
            .session
            .update_subscription(
                id,
                SubscribeParams {
                    end: Some(GroupSequence(12)),
                    ..SubscribeParams::default()
                },
            )
            .unwrap();
        pair.drive();
        assert_eq!(
            pair.side(publisher)
                .session
                .open_group(id, GroupSequence(4)),
            Err(CommandError::OutOfRange {
                id,
                sequence: GroupSequence(4)
            })
        );
        pair.side(publisher)
            .session
            .open_group(id, GroupSequence(6))
            .unwrap();
    }
}

#[test]
fn finished_subscription_still_accepts_groups_on_their_way_then_ends() {
    // An unbounded subscription whose publisher ends the track while a group stream is
    // still in flight (QUIC does not order streams): the group is delivered, not stopped.
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    lone.data(stream, &ok(SubscribeParams::default()));
    lone.events();
    lone.fin(stream);
    assert_eq!(lone.events(), vec![]);
    assert_eq!(lone.commands(), vec![Command::Finish { id: stream }]);
    lone.advance(Duration::from_millis(500));
    let mut input = group(id.0, 3);
    input.extend(frame(b"late"));
    let g = lone.accept_with(Dir::Uni, &input);
    lone.fin(g);
    assert_eq!(cancels(&lone.commands()), vec![]);
    assert_eq!(
        lone.events(),
        vec![
            Event::GroupReceived {
                id,
                sequence: GroupSequence(3),
                stream: g
            },
            Event::GroupEnded {
                stream: g,
                reason: EndReason::Finished
            },
        ]
    );
    assert_eq!(lone.frames_of(g), vec![Bytes::from_static(b"late")]);
    lone.advance(Duration::from_millis(500));
    assert_eq!(
        lone.events(),
        vec![Event::SubscriptionEnded {
            id,
            reason: EndReason::Finished
        }]
    );
    // After that, a group for it is refused as for any ended subscription.
    let late = lone.accept_with(Dir::Uni, &group(id.0, 4));
    assert_eq!(
        cancels(&lone.commands()),
        vec![(late, group_codes::SUBSCRIBE_CANCELLED, "stop")]
    );
    assert_eq!(lone.session.open_streams(), 0);
    // Unsubscribing while it lingers ends it at once.
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    lone.data(stream, &ok(SubscribeParams::default()));
    lone.fin(stream);
    lone.events();
    lone.session.unsubscribe(id).unwrap();
    assert_eq!(
        lone.events(),
        vec![Event::SubscriptionEnded {
            id,
            reason: EndReason::Local
        }]
    );
    lone.advance(Duration::from_secs(2));
    assert_eq!(lone.events(), vec![]);
}

#[test]
fn publisher_sees_stop_sending_on_the_subscribe_stream_as_the_end() {
    // What our own unsubscribe grace (and a gomoqt subscriber) does: STOP_SENDING 0x0.
    let mut lone = Lone::new(Role::Server);
    lone.session.announce(path("/a"), vec![]).unwrap();
    let stream = lone.accept_with(Dir::Bi, &subscribe_msg(1, "/a"));
    let id = SubscribeId(1);
    lone.session
        .accept_subscribe(id, PublisherParams::default())
        .unwrap();
    let g = lone.session.open_group(id, GroupSequence(0)).unwrap();
    lone.commands();
    lone.events();
    lone.stop(stream, codes::INTERNAL);
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (stream, codes::INTERNAL, "reset"),
            (g, group_codes::SUBSCRIBE_CANCELLED, "reset")
        ]
    );
    assert_eq!(
        lone.events(),
        vec![Event::PublicationEnded {
            id,
            reason: EndReason::PeerStopped(codes::INTERNAL)
        }]
    );
    // The subscriber's FIN then closes the last half.
    lone.fin(stream);
    assert_eq!(lone.commands(), vec![]);
    assert_eq!(lone.session.open_streams(), 0);
}

#[test]
fn commands_count_time_from_the_latest_input() {
    // Commands take no `now`: a deadline they arm counts from the latest input. After a
    // quiet minute the adapter must report the time first (the documented drain rule);
    // otherwise the response timeout would already be in the past.
    let (mut lone, _, _) = subscriber(SubscribeParams::default());
    lone.events();
    lone.now += Duration::from_secs(60);
    let stale = lone
        .session
        .subscribe(path("/x"), "t", SubscribeParams::default())
        .unwrap();
    assert!(
        lone.session.poll_timeout().unwrap() < lone.now,
        "armed from the stale clock"
    );
    lone.session.handle_timeout(lone.now);
    assert_eq!(
        lone.events().last(),
        Some(&Event::SubscriptionEnded {
            id: stale,
            reason: EndReason::Cancelled(codes::TIMEOUT)
        })
    );
    // Reported first, the time is right.
    lone.now += Duration::from_secs(60);
    lone.session.handle_timeout(lone.now);
    let fresh = lone
        .session
        .subscribe(path("/x"), "t", SubscribeParams::default())
        .unwrap();
    assert_eq!(
        lone.session.poll_timeout(),
        Some(lone.now + Duration::from_secs(30))
    );
    lone.advance(Duration::from_secs(29));
    assert!(lone.session.subscription(fresh).is_some());
}

#[test]
fn response_timeout_counts_from_the_subscribe_under_latency() {
    // A round trip just under the timeout: the OK arrives in time.
    for (one_way, times_out) in [
        (Duration::from_secs(14), false),
        (Duration::from_secs(16), true),
    ] {
        let mut pair = Pair::new();
        pair.latency = one_way;
        pair.server
            .session
            .announce(path("/live/cam"), vec![])
            .unwrap();
        let id = pair
            .client
            .session
            .subscribe(path("/live/cam"), "video", SubscribeParams::default())
            .unwrap();
        // Deliver the SUBSCRIBE, accept at once, then let time run.
        pair.advance(one_way);
        for e in pair.server.take_events() {
            if let Event::SubscribeRequested { id, .. } = e {
                pair.server
                    .session
                    .accept_subscribe(id, PublisherParams::default())
                    .unwrap();
            }
        }
        pair.advance(Duration::from_secs(40));
        let events = pair.client.take_events();
        if times_out {
            assert_eq!(
                events,
                vec![Event::SubscriptionEnded {
                    id,
                    reason: EndReason::Cancelled(codes::TIMEOUT)
                }],
                "one way {one_way:?}"
            );
        } else {
            assert!(
                matches!(events.as_slice(), [Event::SubscribeOk { id: i, .. }] if *i == id),
                "one way {one_way:?}: {events:?}"
            );
        }
    }
}

#[test]
fn a_leased_subscription_queues_its_groups_and_drops_and_keeps_its_end() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    assert!(lone.session.lease_subscription(id));
    assert!(lone.session.is_subscription_leased(id));
    assert_eq!(lone.session.poll_subscription(id), None);
    lone.data(stream, &ok(SubscribeParams::default()));
    let one = lone.accept_with(Dir::Uni, &group(id.0, 1));
    lone.data(stream, &drop_msg(2, 3, 0));
    let four = lone.accept_with(Dir::Uni, &group(id.0, 4));
    // In arrival order, as the events say.
    assert_eq!(
        lone.session.poll_subscription(id),
        Some(moq_proto::SubscriptionItem::Group {
            stream: one,
            sequence: GroupSequence(1)
        })
    );
    assert_eq!(
        lone.session.poll_subscription(id),
        Some(moq_proto::SubscriptionItem::Dropped {
            start: GroupSequence(2),
            end: GroupSequence(3),
            code: moq_proto::ErrorCode(0)
        })
    );
    assert!(lone.session.subscription_publisher(id).is_some());
    // The publisher resets the subscription: the end waits behind the untaken group.
    lone.session
        .handle_reset(stream, codes::NOT_FOUND, lone.now);
    assert!(lone.session.subscription_end(id).is_some());
    assert_eq!(
        lone.session.poll_subscription(id),
        Some(moq_proto::SubscriptionItem::Group {
            stream: four,
            sequence: GroupSequence(4)
        })
    );
    assert!(
        lone.session.subscription_publisher(id).is_some(),
        "kept past the end"
    );
    // Released: forgotten.
    lone.session.release_subscription(id);
    assert!(!lone.session.is_subscription_leased(id));
    assert_eq!(lone.session.subscription_end(id), None);
}

#[test]
fn releasing_a_subscription_stops_the_groups_it_did_not_take() {
    let (mut lone, id, stream) = subscriber(SubscribeParams::default());
    lone.session.lease_subscription(id);
    lone.data(stream, &ok(SubscribeParams::default()));
    let one = lone.accept_with(Dir::Uni, &group(id.0, 1));
    lone.commands();
    lone.session.unsubscribe(id).unwrap();
    lone.session.release_subscription(id);
    let commands = lone.commands();
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, Command::Stop { id: s, code } if *s == one && *code == group_codes::SUBSCRIBE_CANCELLED)),
        "{commands:?}"
    );
}
