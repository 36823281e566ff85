//! Goaway flows (spec §6.6; decision D6).

use std::time::Duration;

use bytes::Bytes;

use super::common::{BOTH, Lone, group_stream, path, subscribed, written};
use super::pair::Pair;
use moq_proto::code::session as codes;
use moq_proto::message::{Fetch, SubscribeParams};
use moq_proto::{
    CloseReason, Command, CommandError, Config, Dir, Event, GroupSequence, HopId, PathPrefix, Role,
};

#[test]
fn goaway_in_both_directions_reports_the_uri_and_refuses_new_requests() {
    for sender in BOTH {
        let mut pair = Pair::new();
        let receiver = sender.other();
        // A subscription from the receiver to the sender exists before GOAWAY.
        let id = subscribed(&mut pair, sender, SubscribeParams::default());
        pair.side(sender)
            .session
            .goaway("https://next.example.com")
            .unwrap();
        // Sending twice is harmless and sends nothing more.
        pair.side(sender).session.goaway("https://other").unwrap();
        pair.drive();
        assert_eq!(
            pair.side(receiver).take_events(),
            vec![Event::GoAway {
                uri: "https://next.example.com".into()
            }]
        );
        // One GOAWAY stream, with the spec's example bytes, finished at once.
        let commands = pair.side(sender).commands.clone();
        let goaway = commands
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Open {
                    id, dir: Dir::Bi, ..
                } => Some(*id),
                _ => None,
            })
            .unwrap();
        let mut expected = vec![0x05, 0x19, 0x18];
        expected.extend(b"https://next.example.com");
        assert_eq!(written(&commands, goaway), expected);
        assert!(commands.contains(&Command::Finish { id: goaway }));

        // Both sides refuse new requests, with a clear error.
        for side in [sender, receiver] {
            let s = &mut pair.side(side).session;
            assert!(s.is_going_away());
            assert_eq!(
                s.subscribe(path("/a"), "t", SubscribeParams::default()),
                Err(CommandError::GoingAway)
            );
            assert_eq!(
                s.announce_interest(PathPrefix::root(), HopId(0)),
                Err(CommandError::GoingAway)
            );
            assert_eq!(
                s.fetch(Fetch {
                    path: path("/a"),
                    track: String::new(),
                    priority: 0,
                    group: GroupSequence(0)
                }),
                Err(CommandError::GoingAway)
            );
            assert_eq!(s.probe(1), Err(CommandError::GoingAway));
        }
        // Work already under way goes on.
        let g = pair
            .side(sender)
            .session
            .open_group(id, GroupSequence(1))
            .unwrap();
        pair.side(sender)
            .session
            .write_frame(g, Bytes::from_static(b"still here"))
            .unwrap();
        pair.side(sender).session.finish_group(g).unwrap();
        pair.drive();
        let events = pair.side(receiver).take_events();
        let stream = group_stream(&events, id, GroupSequence(1)).unwrap();
        assert_eq!(pair.side(receiver).frames_of(stream), vec!["still here"]);

        // The receiver migrates, then closes with 0x0; the sender's drain timer is moot.
        pair.side(receiver)
            .session
            .close(codes::NO_ERROR, "migrated");
        pair.drive();
        assert!(matches!(
            pair.side(sender).session.close_reason(),
            Some(CloseReason::Peer { code, reason }) if *code == codes::NO_ERROR && reason == "migrated"
        ));
        pair.advance(Duration::from_secs(10));
        assert!(
            !pair
                .side(sender)
                .commands
                .iter()
                .any(|c| matches!(c, Command::Close { .. })),
            "the sender never closes itself"
        );
    }
}

#[test]
fn goaway_sender_closes_with_0x10_after_the_deadline() {
    for sender in BOTH {
        let config = {
            let mut config = Config::default();
            config.goaway_timeout = Duration::from_secs(2);
            config
        };
        let mut pair = Pair::with_config(config.clone(), config);
        let receiver = sender.other();
        pair.side(sender).session.goaway("").unwrap();
        pair.drive();
        assert_eq!(
            pair.side(receiver).take_events(),
            vec![Event::GoAway { uri: String::new() }]
        );
        pair.advance(Duration::from_millis(1900));
        assert!(!pair.side(sender).session.is_closed());
        pair.advance(Duration::from_millis(200));
        assert!(matches!(
            pair.side(sender).session.close_reason(),
            Some(CloseReason::Local { code, .. }) if *code == codes::GOAWAY_TIMEOUT
        ));
        assert!(matches!(
            pair.side(receiver).session.close_reason(),
            Some(CloseReason::Peer { code, .. }) if *code == codes::GOAWAY_TIMEOUT
        ));
    }
}

#[test]
fn goaway_stream_that_ends_without_goaway_says_nothing() {
    let mut lone = Lone::new(Role::Client);
    let stream = lone.accept_with(Dir::Bi, &[0x05]);
    lone.fin(stream);
    assert_eq!(lone.events(), vec![]);
    assert_eq!(lone.commands(), vec![Command::Finish { id: stream }]);
    assert!(!lone.session.is_going_away());
    assert_eq!(lone.session.open_streams(), 0);
    // A second GOAWAY (on another stream) is not reported twice.
    let a = lone.accept_with(Dir::Bi, &[0x05, 0x02, 0x01, b'a']);
    let b = lone.accept_with(Dir::Bi, &[0x05, 0x02, 0x01, b'b']);
    assert_eq!(lone.events(), vec![Event::GoAway { uri: "a".into() }]);
    lone.fin(a);
    lone.fin(b);
    lone.commands();
    assert_eq!(lone.session.open_streams(), 0);
}
