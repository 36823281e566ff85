//! Close, connection loss, malformed input and stream dispatch (spec §3, §5, §7.1; D10).

use std::time::Duration;

use bytes::Bytes;

use super::common::{BOTH, Lone, cancels, group_stream, path, subscribed};
use super::pair::Pair;
use moq_proto::code::session as codes;
use moq_proto::message::{Fetch, SubscribeParams};
use moq_proto::{
    CloseReason, Command, CommandError, Dir, EndReason, ErrorCode, Event, GroupSequence, HopId,
    PathPrefix, Role,
};

#[test]
fn close_code_and_reason_reach_the_peer_in_both_directions() {
    for closer in BOTH {
        let mut pair = Pair::new();
        let peer = closer.other();
        pair.side(closer).session.close(ErrorCode(0x2), "go away");
        // A second close is a no-op.
        pair.side(closer).session.close(ErrorCode(0x1), "again");
        pair.drive();
        assert_eq!(
            pair.side(closer).take_events(),
            vec![Event::Closed {
                reason: CloseReason::Local {
                    code: ErrorCode(0x2),
                    reason: "go away".into()
                }
            }]
        );
        assert_eq!(
            pair.side(peer).take_events(),
            vec![Event::Closed {
                reason: CloseReason::Peer {
                    code: ErrorCode(0x2),
                    reason: "go away".into()
                }
            }]
        );
        let closes: Vec<_> = pair
            .side(closer)
            .commands
            .iter()
            .filter(|c| matches!(c, Command::Close { .. }))
            .collect();
        assert_eq!(closes.len(), 1);
        // Every later command fails.
        let s = &mut pair.side(closer).session;
        assert_eq!(
            s.subscribe(path("/a"), "t", SubscribeParams::default()),
            Err(CommandError::Closed)
        );
        assert_eq!(s.announce(path("/a"), vec![]), Err(CommandError::Closed));
        assert_eq!(s.goaway(""), Err(CommandError::Closed));
        assert_eq!(s.poll_timeout(), None);
    }
}

#[test]
fn close_ends_everything_open_on_both_sides_with_an_event() {
    for closer in BOTH {
        let mut pair = Pair::new();
        let peer = closer.other();
        // From the peer's point of view: a subscription to the closer with an open group, an
        // interest, a fetch, a probe; and a publication the closer holds on the peer.
        let sub = subscribed(&mut pair, closer, SubscribeParams::default());
        let group = pair
            .side(closer)
            .session
            .open_group(sub, GroupSequence(1))
            .unwrap();
        pair.side(closer)
            .session
            .write_frame(group, Bytes::from_static(b"x"))
            .unwrap();
        pair.side(peer)
            .session
            .announce(path("/mine"), vec![])
            .unwrap();
        let publication = pair
            .side(closer)
            .session
            .subscribe(path("/mine"), "t", SubscribeParams::default())
            .unwrap();
        let interest = pair
            .side(peer)
            .session
            .announce_interest(PathPrefix::root(), HopId(0))
            .unwrap();
        let fetch = pair
            .side(peer)
            .session
            .fetch(Fetch {
                path: path("/live/cam"),
                track: "video".into(),
                priority: 0,
                group: GroupSequence(0),
            })
            .unwrap();
        pair.side(peer).session.probe(1000).unwrap();
        pair.drive();
        let events = pair.side(peer).take_events();
        let received = group_stream(&events, sub, GroupSequence(1)).unwrap();
        pair.side(closer).take_events();

        pair.side(closer).session.close(ErrorCode(0x0), "bye");
        pair.drive();
        let reason = CloseReason::Peer {
            code: ErrorCode(0x0),
            reason: "bye".into(),
        };
        let end = EndReason::SessionClosed(reason.clone());
        let events = pair.side(peer).take_events();
        for expected in [
            Event::Unannounced {
                interest,
                path: path("/live/cam"),
            },
            Event::InterestEnded {
                interest,
                reason: end.clone(),
            },
            Event::SubscriptionEnded {
                id: sub,
                reason: end.clone(),
            },
            Event::GroupEnded {
                stream: received,
                reason: end.clone(),
            },
            Event::PublicationEnded {
                id: publication,
                reason: end.clone(),
            },
            Event::FetchEnded {
                stream: fetch,
                reason: end.clone(),
            },
            Event::ProbeEnded {
                reason: end.clone(),
            },
        ] {
            assert!(
                events.contains(&expected),
                "{expected:?} missing from {events:?}"
            );
        }
        assert_eq!(events.last(), Some(&Event::Closed { reason }));
        assert_eq!(pair.side(peer).session.open_streams(), 0);
        assert_eq!(pair.side(peer).session.poll_timeout(), None);

        // The closer reports its own side too, then nothing more is emitted.
        let local = CloseReason::Local {
            code: ErrorCode(0x0),
            reason: "bye".into(),
        };
        let events = pair.side(closer).take_events();
        assert!(events.contains(&Event::PublicationEnded {
            id: sub,
            reason: EndReason::SessionClosed(local.clone())
        }));
        assert!(events.contains(&Event::SubscriptionEnded {
            id: publication,
            reason: EndReason::SessionClosed(local.clone())
        }));
        assert_eq!(events.last(), Some(&Event::Closed { reason: local }));
        assert_eq!(pair.side(closer).session.open_streams(), 0);
        // Inputs after the close change nothing.
        let now = pair.now;
        let s = &mut pair.side(closer).session;
        let id = s.handle_accepted(Dir::Uni, now);
        s.handle_data(id, Bytes::from_static(&[0x00, 0x02, 0x01, 0x01]), now);
        s.handle_timeout(now + Duration::from_secs(100));
        assert_eq!(s.poll_command(), None);
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.open_streams(), 0);
    }
}

#[test]
fn malformed_control_messages_close_with_protocol_violation() {
    // (role, stream direction, bytes): each is malformed per D10.
    let cases: Vec<(&str, Dir, Vec<u8>)> = vec![
        // SUBSCRIBE with a trailing byte.
        (
            "subscribe trailing",
            Dir::Bi,
            vec![0x02, 0x0a, 0x01, 0x01, b'/', 0, 0, 0, 0, 0, 0, 0],
        ),
        // SUBSCRIBE with a field running past the end.
        (
            "subscribe truncated",
            Dir::Bi,
            vec![0x02, 0x03, 0x01, 0x05, b'/'],
        ),
        // ANNOUNCE_INTEREST with invalid UTF-8.
        (
            "interest utf-8",
            Dir::Bi,
            vec![0x01, 0x03, 0x01, 0xff, 0x00],
        ),
        // FETCH over the message size limit.
        (
            "fetch too long",
            Dir::Bi,
            vec![0x03, 0x80, 0x20, 0x00, 0x00],
        ),
        // A one-field (-03) PROBE.
        ("probe one field", Dir::Bi, vec![0x04, 0x01, 0x00]),
        // GOAWAY whose string runs past the message.
        ("goaway truncated", Dir::Bi, vec![0x05, 0x01, 0x05]),
        // GROUP header with a trailing byte.
        (
            "group trailing",
            Dir::Uni,
            vec![0x00, 0x03, 0x01, 0x01, 0x00],
        ),
    ];
    for role in [Role::Client, Role::Server] {
        for (name, dir, bytes) in &cases {
            let mut lone = Lone::new(role);
            lone.session.announce(path("/a"), vec![]).unwrap();
            let _ = lone
                .session
                .subscribe(path("/x"), "t", SubscribeParams::default())
                .unwrap();
            lone.commands();
            lone.accept_with(*dir, bytes);
            let commands = lone.commands();
            assert!(
                matches!(commands.as_slice(), [Command::Close { code, .. }] if *code == codes::PROTOCOL_VIOLATION),
                "{name} ({role:?}): {commands:?}"
            );
            assert!(lone.session.is_closed(), "{name}");
            let events = lone.events();
            assert!(
                matches!(events.last(), Some(Event::Closed { reason: CloseReason::Local { code, .. } }) if *code == codes::PROTOCOL_VIOLATION),
                "{name}: {events:?}"
            );
        }
    }
    // Responses on our subscribe stream: a bad type byte, a FIN inside SUBSCRIBE_OK.
    for (name, bytes, fin) in [
        ("bad response type", vec![0x02, 0x00], false),
        ("fin inside ok", vec![0x00, 0x05, 0x00], true),
    ] {
        let mut lone = Lone::new(Role::Client);
        lone.session
            .subscribe(path("/x"), "t", SubscribeParams::default())
            .unwrap();
        let stream = Lone::opened(&lone.commands());
        lone.data(stream, &bytes);
        if fin {
            lone.fin(stream);
        }
        let commands = lone.commands();
        assert!(
            matches!(commands.as_slice(), [Command::Close { code, .. }] if *code == codes::PROTOCOL_VIOLATION),
            "{name}: {commands:?}"
        );
    }
    // An ANNOUNCE with more hops than the limit, on our interest.
    let mut lone = Lone::new(Role::Client);
    lone.session
        .announce_interest(PathPrefix::root(), HopId(0))
        .unwrap();
    let stream = Lone::opened(&lone.commands());
    let mut announce = vec![0x01, 0x01, b'a', 0x40, 0x41];
    announce.extend(std::iter::repeat_n(0x01, 65));
    let mut bytes = vec![0x40, announce.len() as u8];
    bytes.extend(announce);
    lone.data(stream, &bytes);
    assert!(matches!(
        lone.commands().as_slice(),
        [Command::Close { code, .. }] if *code == codes::PROTOCOL_VIOLATION
    ));
}

#[test]
fn unknown_stream_types_are_refused_on_both_roles_and_the_session_lives_on() {
    for role in [Role::Client, Role::Server] {
        let mut lone = Lone::new(role);
        let code = moq_proto::code::UNKNOWN_STREAM_TYPE;
        // Unknown bidi types, including a multi-byte varint start and a uni-only type.
        for first in [0x06, 0x3f, 0x40, 0xff, 0x00] {
            let id = lone.accept_with(Dir::Bi, &[first, 1, 2, 3]);
            assert_eq!(
                cancels(&lone.commands()),
                vec![(id, code, "reset"), (id, code, "stop")],
                "{role:?} bidi {first:#x}"
            );
        }
        // Unknown uni types, including every bidi-only type.
        for first in [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x80] {
            let id = lone.accept_with(Dir::Uni, &[first, 9]);
            assert_eq!(
                cancels(&lone.commands()),
                vec![(id, code, "stop")],
                "{role:?} uni {first:#x}"
            );
        }
        // Streams that end before their type byte vanish silently.
        let bi = lone.accept(Dir::Bi);
        lone.fin(bi);
        let uni = lone.accept(Dir::Uni);
        lone.fin(uni);
        let commands = lone.commands();
        assert_eq!(cancels(&commands), vec![]);
        assert!(!commands.iter().any(|c| matches!(c, Command::Close { .. })));
        assert_eq!(lone.events(), vec![]);
        assert!(!lone.session.is_closed());
        assert_eq!(lone.session.open_streams(), 0);
        // And the session still works.
        lone.session.announce(path("/x"), vec![]).unwrap();
        let interest = lone.accept_with(Dir::Bi, &[0x01, 0x03, 0x01, b'/', 0x00]);
        let commands = lone.commands();
        assert!(
            commands
                .iter()
                .any(|c| matches!(c, Command::Write { id, .. } if *id == interest)),
            "{commands:?}"
        );
    }
}

#[test]
fn peer_reset_and_stop_on_control_streams_end_the_flow() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        // The publisher aborts the subscription with a Subscribe code.
        pair.side(publisher)
            .session
            .abort_publication(id, ErrorCode(0x4))
            .unwrap();
        pair.drive();
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![Event::SubscriptionEnded {
                id,
                reason: EndReason::PeerReset(ErrorCode(0x4))
            }]
        );
        assert_eq!(
            pair.side(publisher).take_events(),
            vec![Event::PublicationEnded {
                id,
                reason: EndReason::Local
            }]
        );
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
    }
}

#[test]
fn failed_opens_end_each_flow_with_open_failed() {
    for side in BOTH {
        let mut pair = Pair::new();
        let peer = side.other();
        // A subscription from `peer` to `side`, made while opens still work.
        let sub = subscribed(&mut pair, side, SubscribeParams::default());
        pair.side(peer)
            .session
            .announce(path("/theirs"), vec![])
            .unwrap();
        pair.fail_opens.insert(side);
        let s = &mut pair.side(side).session;
        let id = s
            .subscribe(path("/theirs"), "t", SubscribeParams::default())
            .unwrap();
        let interest = s.announce_interest(PathPrefix::root(), HopId(0)).unwrap();
        let fetch = s
            .fetch(Fetch {
                path: path("/theirs"),
                track: String::new(),
                priority: 0,
                group: GroupSequence(0),
            })
            .unwrap();
        s.probe(1).unwrap();
        s.open_group(sub, GroupSequence(1)).unwrap();
        pair.drive();
        let events = pair.side(side).take_events();
        for expected in [
            Event::SubscriptionEnded {
                id,
                reason: EndReason::OpenFailed,
            },
            Event::InterestEnded {
                interest,
                reason: EndReason::OpenFailed,
            },
            Event::FetchEnded {
                stream: fetch,
                reason: EndReason::OpenFailed,
            },
            Event::ProbeEnded {
                reason: EndReason::OpenFailed,
            },
            Event::GroupCancelled {
                id: sub,
                sequence: GroupSequence(1),
                reason: EndReason::OpenFailed,
            },
        ] {
            assert!(
                events.contains(&expected),
                "{expected:?} missing from {events:?}"
            );
        }
        assert_eq!(events.len(), 5, "{events:?}");
        // Of all that, the peer only learns the start the first group resolved; nothing is
        // left behind, and the session lives on.
        assert!(matches!(
            pair.side(peer).take_events().as_slice(),
            [Event::SubscribeOk { id, params }] if *id == sub && params.start == Some(GroupSequence(1))
        ));
        assert_eq!(
            pair.side(side).session.open_streams(),
            1,
            "the subscription's stream"
        );
        assert!(!pair.side(side).session.is_closed());
        // Opens work again: so does everything.
        pair.fail_opens.clear();
        let g = pair
            .side(side)
            .session
            .open_group(sub, GroupSequence(2))
            .unwrap();
        pair.side(side).session.finish_group(g).unwrap();
        pair.drive();
        let events = pair.side(peer).take_events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::GroupReceived { sequence, .. } if *sequence == GroupSequence(2))),
            "{events:?}"
        );
    }
}

#[test]
fn a_frame_over_the_limit_stops_its_group_alone() {
    // A frame announcing 2^28 bytes (over the 50 MiB limit): that group stream is stopped
    // (0x0) and ends cancelled; the subscription and the session go on.
    for role in [Role::Client, Role::Server] {
        let (mut lone, sub) = subscribing(role);
        let group = lone.accept_with(
            Dir::Uni,
            &[0x00, 0x02, sub.0 as u8, 0x01, 0xd0, 0, 0, 0, 0, 0, 0, 0],
        );
        // Found when its reader reads it.
        let events = lone.events();
        assert_eq!(
            cancels(&lone.commands()),
            vec![(group, ErrorCode(0x0), "stop")],
            "{role:?}"
        );
        assert!(
            events.contains(&Event::GroupEnded {
                stream: group,
                reason: EndReason::Cancelled(ErrorCode(0x0)),
            }),
            "{role:?}: {events:?}"
        );
        assert!(!lone.session.is_closed(), "{role:?}");
        assert!(
            lone.session.subscription(sub).is_some(),
            "the subscription goes on"
        );
        // The next group of the same subscription is delivered.
        let next = lone.accept_with(Dir::Uni, &[0x00, 0x02, sub.0 as u8, 0x02, 0x01, b'x']);
        lone.fin(next);
        assert!(lone.events().iter().any(|e| matches!(
            e,
            Event::GroupEnded { stream, reason: EndReason::Finished } if *stream == next
        )));
    }
}

#[test]
fn a_reset_in_the_middle_of_a_frame_delivers_no_part_of_it() {
    // A group stream with one whole frame and the first half of a second, then
    // RESET_STREAM: the whole frame is delivered, the half is not, and the group ends with
    // the peer's code.
    for role in [Role::Client, Role::Server] {
        let (mut lone, sub) = subscribing(role);
        // GROUP(sub, 1), FRAME "abc", then a FRAME header of 10 and 4 of its bytes.
        let group = lone.accept_with(
            Dir::Uni,
            &[
                0x00,
                0x02,
                sub.0 as u8,
                0x01,
                0x03,
                b'a',
                b'b',
                b'c',
                0x0a,
                1,
                2,
                3,
                4,
            ],
        );
        lone.reset(group, ErrorCode(0x5));
        let events = lone.events();
        let frames = lone.frames_of(group);
        assert_eq!(frames, vec![Bytes::from_static(b"abc")], "{role:?}");
        assert!(
            events.contains(&Event::GroupEnded {
                stream: group,
                reason: EndReason::PeerReset(ErrorCode(0x5)),
            }),
            "{role:?}: {events:?}"
        );
        assert!(!lone.session.is_closed());
        assert_eq!(lone.session.stats().control_bytes_buffered, 0);
    }
}

/// A lone session of `role` with one subscription to `/x` "t" on its way.
fn subscribing(role: Role) -> (Lone, moq_proto::SubscribeId) {
    let mut lone = Lone::new(role);
    let sub = lone
        .session
        .subscribe(path("/x"), "t", SubscribeParams::default())
        .unwrap();
    lone.commands();
    (lone, sub)
}
