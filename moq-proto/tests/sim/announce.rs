//! Announce flows (spec §6.1, §5; decisions D11, D14, D15, D20).

use super::common::{BOTH, Lone, cancels, interest, knobs, msg, pair_with, path, written};
use super::pair::Pair;
use moq_proto::code::announce as codes;
use moq_proto::message::{Announce, AnnounceStatus};
use moq_proto::{
    BroadcastPath, Command, Config, Dir, EndReason, ErrorCode, Event, HopId, Message, PathPrefix,
    Role,
};

fn active(suffix: &str, hops: &[u64]) -> Vec<u8> {
    msg(&Announce {
        status: AnnounceStatus::Active,
        suffix: suffix.into(),
        hops: hops.iter().map(|&h| HopId(h)).collect(),
    })
}

fn ended(suffix: &str) -> Vec<u8> {
    msg(&Announce {
        status: AnnounceStatus::Ended,
        suffix: suffix.into(),
        hops: vec![],
    })
}

/// A client session with one announce interest under `/`, the stream opened.
fn listening() -> (Lone, moq_proto::StreamId) {
    let mut lone = Lone::new(Role::Client);
    let interest = lone
        .session
        .announce_interest(PathPrefix::root(), HopId(0))
        .unwrap();
    let commands = lone.commands();
    assert_eq!(Lone::opened(&commands), interest);
    assert_eq!(written(&commands, interest), [0x01, 0x03, 0x01, b'/', 0x00]);
    (lone, interest)
}

#[test]
fn interest_gets_snapshot_then_changes_in_both_directions() {
    for publisher in BOTH {
        for (split, reorder) in knobs() {
            let mut pair = pair_with(split, reorder);
            let subscriber = publisher.other();
            let p = &mut pair.side(publisher).session;
            p.announce(path("/live/a"), vec![]).unwrap();
            p.announce(path("/other/b"), vec![]).unwrap();
            let interest = pair
                .side(subscriber)
                .session
                .announce_interest(PathPrefix::new("/live/"), HopId(0))
                .unwrap();
            pair.drive();
            assert_eq!(
                pair.side(subscriber).take_events(),
                vec![Event::Announced {
                    interest,
                    path: path("/live/a"),
                    hops: vec![]
                }],
                "snapshot, publisher {publisher:?} split {split} reorder {reorder}"
            );
            let events = pair.side(publisher).take_events();
            assert!(matches!(
                events.as_slice(),
                [Event::InterestReceived { prefix, .. }] if prefix.as_wire() == "/live/"
            ));

            let p = &mut pair.side(publisher).session;
            p.announce(path("/live/c"), vec![HopId(42), HopId(300)])
                .unwrap();
            assert!(p.unannounce(&path("/live/a")));
            assert!(!p.unannounce(&path("/live/a")), "already withdrawn");
            p.announce(path("/other/d"), vec![]).unwrap();
            // Same hops again: nothing; other hops: ENDED then ACTIVE.
            p.announce(path("/live/c"), vec![HopId(42), HopId(300)])
                .unwrap();
            p.announce(path("/live/c"), vec![HopId(1)]).unwrap();
            pair.drive();
            let c = path("/live/c");
            assert_eq!(
                pair.side(subscriber).take_events(),
                vec![
                    Event::Announced {
                        interest,
                        path: c.clone(),
                        hops: vec![HopId(42), HopId(300)]
                    },
                    Event::Unannounced {
                        interest,
                        path: path("/live/a")
                    },
                    Event::Unannounced {
                        interest,
                        path: c.clone()
                    },
                    Event::Announced {
                        interest,
                        path: c,
                        hops: vec![HopId(1)]
                    },
                ]
            );
        }
    }
}

#[test]
fn exclude_hop_filters_broadcasts_carrying_that_hop() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        let p = &mut pair.side(publisher).session;
        p.announce(path("/a"), vec![HopId(7)]).unwrap();
        p.announce(path("/b"), vec![HopId(8)]).unwrap();
        p.announce(path("/c"), vec![]).unwrap();
        p.announce(path("/z"), vec![HopId(0)]).unwrap();
        let s = &mut pair.side(subscriber).session;
        let excluding = s.announce_interest(PathPrefix::root(), HopId(7)).unwrap();
        let all = s.announce_interest(PathPrefix::root(), HopId(0)).unwrap();
        pair.drive();
        let announced = |events: &[Event], interest| {
            let mut paths: Vec<BroadcastPath> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Announced {
                        interest: i, path, ..
                    } if *i == interest => Some(path.clone()),
                    _ => None,
                })
                .collect();
            paths.sort();
            paths
        };
        let events = pair.side(subscriber).take_events();
        assert_eq!(
            announced(&events, excluding),
            vec![path("/b"), path("/c"), path("/z")]
        );
        assert_eq!(
            announced(&events, all),
            vec![path("/a"), path("/b"), path("/c"), path("/z")],
            "exclude hop 0 excludes nothing, not even hop id 0"
        );

        // Later announcements are filtered the same way, and so are their ENDs.
        let p = &mut pair.side(publisher).session;
        p.announce(path("/d"), vec![HopId(1), HopId(7)]).unwrap();
        p.announce(path("/e"), vec![HopId(9)]).unwrap();
        p.unannounce(&path("/d"));
        pair.drive();
        let events = pair.side(subscriber).take_events();
        assert_eq!(announced(&events, excluding), vec![path("/e")]);
        assert_eq!(announced(&events, all), vec![path("/d"), path("/e")]);
        assert!(!events.iter().any(|e| matches!(
            e,
            Event::Unannounced { interest, .. } if *interest == excluding
        )));
    }
}

#[test]
fn responder_accepts_any_prefix_form() {
    let mut lone = Lone::new(Role::Server);
    let cam = path("/live/cam");
    lone.session.announce(cam.clone(), vec![HopId(3)]).unwrap();
    // Every form gomoqt or moq-net may send, and some neither would.
    for raw in [
        "",
        "/",
        "live",
        "/live",
        "live/",
        "/live/",
        "//live//",
        "/live/c",
        "live/cam",
        "/live/cam",
    ] {
        let stream = lone.accept_with(Dir::Bi, &interest(PathPrefix::from_wire(raw.into())));
        let commands = lone.commands();
        let bytes = written(&commands, stream);
        let (announce, used) = Announce::decode(&bytes, &Default::default())
            .unwrap()
            .unwrap_or_else(|| panic!("prefix {raw:?}: no ANNOUNCE in {commands:?}"));
        assert_eq!(used, bytes.len(), "prefix {raw:?}: one ANNOUNCE");
        assert_eq!(announce.status, AnnounceStatus::Active);
        assert_eq!(announce.hops, vec![HopId(3)]);
        // Plain concatenation names the broadcast, in either path reading.
        assert_eq!(
            BroadcastPath::new(&format!("{raw}{}", announce.suffix)),
            cam,
            "prefix {raw:?} suffix {:?}",
            announce.suffix
        );
        assert!(matches!(
            lone.events().as_slice(),
            [Event::InterestReceived { stream: s, prefix }] if *s == stream && prefix.as_wire() == raw
        ));
    }
    // Prefixes that do not match get nothing, and nothing breaks.
    for raw in ["/other/", "liv/", "/live/cam/x", "/livestream", "\u{1F600}"] {
        let stream = lone.accept_with(Dir::Bi, &interest(PathPrefix::from_wire(raw.into())));
        assert_eq!(written(&lone.commands(), stream), b"", "prefix {raw:?}");
    }
    assert!(!lone.session.is_closed());
    // A new broadcast reaches every matching interest, whatever its prefix form.
    lone.events();
    lone.session.announce(path("/live/two"), vec![]).unwrap();
    let writes = lone
        .commands()
        .iter()
        .filter(|c| matches!(c, Command::Write { .. }))
        .count();
    // "", "/", "live", "/live", "live/", "/live/", "//live//" match /live/two.
    assert_eq!(writes, 7);
}

#[test]
fn duplicate_active_status_cancels_with_0x1() {
    let (mut lone, interest) = listening();
    let mut input = active("a", &[]);
    input.extend(active("a", &[]));
    lone.data(interest, &input);
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (interest, codes::DUPLICATED, "reset"),
            (interest, codes::DUPLICATED, "stop")
        ]
    );
    assert_eq!(
        lone.events(),
        vec![
            Event::Announced {
                interest,
                path: path("/a"),
                hops: vec![]
            },
            Event::Unannounced {
                interest,
                path: path("/a")
            },
            Event::InterestEnded {
                interest,
                reason: EndReason::Cancelled(codes::DUPLICATED)
            },
        ]
    );
    assert!(!lone.session.is_closed());
    assert_eq!(lone.session.open_streams(), 0);
}

#[test]
fn ended_without_active_cancels_with_0x1() {
    let (mut lone, interest) = listening();
    let mut input = active("a", &[]);
    input.extend(ended("a"));
    input.extend(ended("a"));
    lone.data(interest, &input);
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (interest, codes::DUPLICATED, "reset"),
            (interest, codes::DUPLICATED, "stop")
        ]
    );
    let events = lone.events();
    assert_eq!(
        events.last(),
        Some(&Event::InterestEnded {
            interest,
            reason: EndReason::Cancelled(codes::DUPLICATED)
        })
    );
    // ENDED for a path never announced, on a fresh stream.
    let (mut lone, interest) = listening();
    lone.data(interest, &ended("never"));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (interest, codes::DUPLICATED, "reset"),
            (interest, codes::DUPLICATED, "stop")
        ]
    );
}

#[test]
fn unknown_status_cancels_with_0x2() {
    let (mut lone, interest) = listening();
    let mut input = active("a", &[]);
    // ANNOUNCE { status 2, suffix "b", no hops }
    input.extend([0x04, 0x02, 0x01, b'b', 0x00]);
    lone.data(interest, &input);
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (interest, codes::INVALID_STATUS, "reset"),
            (interest, codes::INVALID_STATUS, "stop")
        ]
    );
    assert_eq!(
        lone.events(),
        vec![
            Event::Announced {
                interest,
                path: path("/a"),
                hops: vec![]
            },
            Event::Unannounced {
                interest,
                path: path("/a")
            },
            Event::InterestEnded {
                interest,
                reason: EndReason::Cancelled(codes::INVALID_STATUS)
            },
        ]
    );
    assert!(!lone.session.is_closed(), "a bad status is stream-scoped");
}

#[test]
fn end_of_the_announce_stream_ends_every_entry() {
    // FIN.
    let (mut lone, interest) = listening();
    let mut input = active("b", &[1]);
    input.extend(active("a", &[]));
    input.extend(active("c", &[]));
    input.extend(ended("c"));
    lone.data(interest, &input);
    lone.fin(interest);
    let events = lone.events();
    assert_eq!(
        events[4..],
        [
            Event::Unannounced {
                interest,
                path: path("/a")
            },
            Event::Unannounced {
                interest,
                path: path("/b")
            },
            Event::InterestEnded {
                interest,
                reason: EndReason::Finished
            },
        ]
    );
    // We close our side in turn, and forget the stream.
    assert_eq!(lone.commands(), vec![Command::Finish { id: interest }]);
    assert_eq!(lone.session.open_streams(), 0);

    // Reset.
    let (mut lone, interest) = listening();
    lone.data(interest, &active("a", &[]));
    lone.reset(interest, ErrorCode(0x0));
    let events = lone.events();
    assert_eq!(
        events[1..],
        [
            Event::Unannounced {
                interest,
                path: path("/a")
            },
            Event::InterestEnded {
                interest,
                reason: EndReason::PeerReset(ErrorCode(0x0))
            },
        ]
    );
}

#[test]
fn stop_interest_ends_entries_and_both_sides_close() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        pair.side(publisher)
            .session
            .announce(path("/x"), vec![])
            .unwrap();
        let interest = pair
            .side(subscriber)
            .session
            .announce_interest(PathPrefix::root(), HopId(0))
            .unwrap();
        pair.drive();
        pair.side(subscriber).take_events();
        pair.side(subscriber)
            .session
            .stop_interest(interest)
            .unwrap();
        pair.drive();
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![
                Event::Unannounced {
                    interest,
                    path: path("/x")
                },
                Event::InterestEnded {
                    interest,
                    reason: EndReason::Local
                },
            ]
        );
        // Later announcements go nowhere, and no stream is left behind.
        pair.side(publisher)
            .session
            .announce(path("/y"), vec![])
            .unwrap();
        pair.drive();
        assert_eq!(pair.side(subscriber).take_events(), vec![]);
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
    }
}

#[test]
fn cancel_interest_resets_with_the_code_and_ends_entries() {
    for publisher in BOTH {
        let mut pair = Pair::new();
        let subscriber = publisher.other();
        pair.side(publisher)
            .session
            .announce(path("/x"), vec![])
            .unwrap();
        let interest = pair
            .side(subscriber)
            .session
            .announce_interest(PathPrefix::root(), HopId(0))
            .unwrap();
        pair.drive();
        pair.side(subscriber).take_events();
        pair.side(subscriber)
            .session
            .cancel_interest(interest, codes::BANNED_PREFIX)
            .unwrap();
        assert!(
            pair.side(subscriber)
                .session
                .cancel_interest(interest, codes::BANNED_PREFIX)
                .is_err()
        );
        pair.drive();
        assert_eq!(
            pair.side(subscriber).take_events(),
            vec![
                Event::Unannounced {
                    interest,
                    path: path("/x")
                },
                Event::InterestEnded {
                    interest,
                    reason: EndReason::Cancelled(codes::BANNED_PREFIX)
                },
            ]
        );
        assert!(
            cancels(&pair.side(subscriber).commands)
                .iter()
                .all(|c| c.1 == codes::BANNED_PREFIX)
        );
        assert!(!cancels(&pair.side(subscriber).commands).is_empty());
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
    }
}

/// A path of `len` bytes under `/`, starting with `head`.
fn long_path(head: &str, len: usize) -> BroadcastPath {
    let mut p = format!("/{head}/");
    p.push_str(&"x".repeat(len - p.len()));
    path(&p)
}

/// A server with broadcasts `/m/…` of 1000 bytes, enough to fill an announce stream's
/// send-ahead, and one peer interest on the root whose stream takes nothing; with the
/// commands so far.
fn stalled_interest(config: Config) -> (Lone, moq_proto::StreamId, Vec<Command>) {
    let mut lone = Lone::with_config(Role::Server, config);
    lone.starve = true;
    for i in 0..8 {
        lone.session
            .announce(long_path(&format!("m/{i}"), 1000), vec![])
            .unwrap();
    }
    let stream = lone.accept_with(Dir::Bi, &interest(PathPrefix::root()));
    let commands = lone.commands();
    (lone, stream, commands)
}

/// The ANNOUNCE messages written on `stream`, as (status, suffix).
fn announced(commands: &[Command], stream: moq_proto::StreamId) -> Vec<(AnnounceStatus, String)> {
    let bytes = written(commands, stream);
    let mut rest = &bytes[..];
    let mut got = Vec::new();
    while let Some((message, used)) = Announce::decode(rest, &Default::default()).unwrap() {
        got.push((message.status, message.suffix));
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    got
}

#[test]
fn slow_announce_consumer_is_cancelled_0x0() {
    let mut config = Config::default();
    config.max_announce_queue = 4;
    let (mut lone, stream, _) = stalled_interest(config);
    // Four changed broadcasts wait; the fifth makes a slow consumer.
    for i in 0..4 {
        lone.session
            .announce(path(&format!("/a{i}")), vec![])
            .unwrap();
    }
    assert!(cancels(&lone.commands()).is_empty());
    lone.session.announce(path("/a4"), vec![]).unwrap();
    let commands = lone.commands();
    assert_eq!(
        cancels(&commands),
        [
            (stream, codes::INTERNAL, "reset"),
            (stream, codes::INTERNAL, "stop")
        ]
    );
    assert_eq!(
        lone.session.ledger().control_out,
        0,
        "its marks are given back"
    );
    assert!(!lone.session.is_closed());
}

#[test]
fn a_broadcast_that_comes_and_goes_before_it_is_sent_costs_nothing() {
    let mut config = Config::default();
    config.max_announce_queue = 4;
    let (mut lone, stream, mut commands) = stalled_interest(config);
    let before = lone.session.ledger().control_out;
    // A hundred thousand changes to two paths: two marks, never a cancel.
    for _ in 0..50_000 {
        lone.session.announce(path("/a"), vec![]).unwrap();
        lone.session.announce(path("/b"), vec![HopId(7)]).unwrap();
        assert!(lone.session.unannounce(&path("/a")));
        assert!(lone.session.unannounce(&path("/b")));
    }
    lone.session.announce(path("/b"), vec![HopId(9)]).unwrap();
    commands.extend(lone.commands());
    assert!(cancels(&commands).is_empty());
    let marks = lone.session.ledger().control_out - before;
    assert!(marks <= 2 * (96 + 2 + 8), "two marks: {marks}");
    // The peer reads: it learns the broadcasts, then `/b` with its last hops; `/a` never.
    lone.starve = false;
    let unsent = lone.session.ledger().control_out as usize;
    lone.session.handle_written(stream, unsent, lone.now);
    commands.extend(lone.commands());
    let got = announced(&commands, stream);
    assert_eq!(got.len(), 9);
    assert!(got.contains(&(AnnounceStatus::Active, "b".to_owned())));
    assert!(
        got.iter()
            .all(|(status, suffix)| *status == AnnounceStatus::Active && suffix != "a")
    );
    assert_eq!(lone.session.ledger().control_out, 0);
}

#[test]
fn a_broadcast_back_with_other_hops_is_ended_then_active() {
    let (mut lone, stream, mut commands) = stalled_interest(Config::default());
    let first = long_path("m/0", 1000);
    // Already told active; withdrawn and back with other hops while nothing is read.
    assert!(lone.session.unannounce(&first));
    lone.session
        .announce(first.clone(), vec![HopId(5)])
        .unwrap();
    commands.extend(lone.commands());
    lone.starve = false;
    for _ in 0..4 {
        lone.session.handle_written(stream, 1 << 20, lone.now);
        commands.extend(lone.commands());
    }
    let got = announced(&commands, stream);
    let suffix = first.as_str().to_owned();
    let of_first: Vec<_> = got
        .iter()
        .filter(|(_, s)| *s == suffix)
        .map(|(status, _)| *status)
        .collect();
    use AnnounceStatus::{Active, Ended};
    assert_eq!(of_first, [Active, Ended, Active]);
    assert_eq!(got.len(), 8 + 2);
}

/// A client with one interest on the root, reporting `burst` changes at once, then 100 a
/// second.
fn rate_limited(burst: u64) -> (Lone, moq_proto::StreamId) {
    let mut config = Config::default();
    config.announce_burst = burst;
    config.announce_rate = 100;
    let mut lone = Lone::with_config(Role::Client, config);
    let interest = lone
        .session
        .announce_interest(PathPrefix::root(), HopId(0))
        .unwrap();
    lone.commands();
    (lone, interest)
}

/// The announcement events among `events`.
fn reported(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| matches!(e, Event::Announced { .. } | Event::Unannounced { .. }))
        .collect()
}

#[test]
fn announcements_are_reported_at_the_configured_rate() {
    // The peer announces 60 broadcasts at once: 10 are reported, then 100 a second, in the
    // order they came.
    let (mut lone, interest) = rate_limited(10);
    let mut bytes = Vec::new();
    for i in 0..60 {
        bytes.extend(active(&format!("p{i:02}"), &[]));
    }
    lone.data(interest, &bytes);
    lone.commands();
    let mut got: Vec<Event> = lone.events();
    assert_eq!(reported(&got).len(), 10, "the burst");
    assert!(lone.session.stats().announce_throttled > 0);
    // Then one each 10 ms, as the clock moves a millisecond at a time.
    for ms in 1..=500u64 {
        lone.advance(std::time::Duration::from_millis(1));
        lone.commands();
        got.extend(lone.events());
        if ms == 250 {
            assert_eq!(reported(&got).len(), 35, "at 250 ms");
        }
    }
    let paths: Vec<String> = got
        .iter()
        .map(|e| match e {
            Event::Announced { path, .. } => path.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<String> = (0..60).map(|i| format!("/p{i:02}")).collect();
    assert_eq!(paths, want);
    let stats = lone.session.stats();
    assert_eq!(stats.announcements_received, 60);
    assert_eq!(stats.announcements_reported, 60);
    assert!(!lone.session.is_closed());
}

#[test]
fn a_rate_of_zero_reports_the_burst_and_then_nothing_and_sets_no_timer() {
    let mut config = Config::default();
    config.announce_burst = 1;
    config.announce_rate = 0;
    let mut lone = Lone::with_config(Role::Client, config);
    let interest = lone
        .session
        .announce_interest(PathPrefix::root(), HopId(0))
        .unwrap();
    lone.commands();
    let mut bytes = active("a", &[]);
    bytes.extend(active("b", &[]));
    lone.data(interest, &bytes);
    lone.commands();
    assert_eq!(reported(&lone.events()).len(), 1);
    // No token ever comes back: no deadline to wake for, and nothing in an hour.
    assert_eq!(lone.session.poll_timeout(), None);
    lone.advance(std::time::Duration::from_secs(3600));
    lone.commands();
    assert!(reported(&lone.events()).is_empty());
}

#[test]
fn churn_past_the_rate_is_coalesced_per_path() {
    // The burst is spent; then 10 000 changes to three paths arrive at once.
    let (mut lone, interest) = rate_limited(1);
    lone.data(interest, &active("spent", &[]));
    lone.commands();
    assert_eq!(reported(&lone.events()).len(), 1);
    let mut bytes = Vec::new();
    for _ in 0..2500 {
        bytes.extend(active("gone", &[]));
        bytes.extend(ended("gone"));
        bytes.extend(active("back", &[1]));
        bytes.extend(ended("back"));
    }
    // "back" ends as it was: nothing. "new" changes hops: one report.
    bytes.extend(active("new", &[2]));
    bytes.extend(ended("new"));
    bytes.extend(active("new", &[3]));
    lone.data(interest, &bytes);
    lone.commands();
    assert!(reported(&lone.events()).is_empty(), "no token yet");
    lone.advance(std::time::Duration::from_secs(1));
    lone.commands();
    let events = lone.events();
    assert_eq!(
        reported(&events),
        [&Event::Announced {
            interest,
            path: path("/new"),
            hops: vec![HopId(3)]
        }]
    );
    let stats = lone.session.stats();
    assert_eq!(stats.announcements_received, 10_004);
    assert_eq!(stats.announcements_reported, 2);
    // The end of the stream ends what the application was told.
    lone.fin(interest);
    lone.commands();
    let events = lone.events();
    let mut ended: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Unannounced { path, .. } => Some(path.to_string()),
            _ => None,
        })
        .collect();
    ended.sort();
    assert_eq!(ended, ["/new", "/spent"]);
}

#[test]
fn announce_limits_cancel_with_0x0() {
    // Entries per stream, on the subscriber.
    let client = {
        let mut config = Config::default();
        config.max_announce_entries = 2;
        config
    };
    let mut pair = Pair::with_config(client, Config::default());
    for p in ["/a", "/b", "/c"] {
        pair.server.session.announce(path(p), vec![]).unwrap();
    }
    let interest = pair
        .client
        .session
        .announce_interest(PathPrefix::root(), HopId(0))
        .unwrap();
    pair.drive();
    let events = pair.client.take_events();
    assert_eq!(
        events.last(),
        Some(&Event::InterestEnded {
            interest,
            reason: EndReason::Cancelled(codes::INTERNAL)
        }),
        "{events:?}"
    );
    // Announce streams per session, on the publisher.
    let server = {
        let mut config = Config::default();
        config.max_incoming_announce_streams = 1;
        config
    };
    let mut pair = Pair::with_config(Config::default(), server);
    let first = pair
        .client
        .session
        .announce_interest(PathPrefix::root(), HopId(0))
        .unwrap();
    pair.drive();
    let second = pair
        .client
        .session
        .announce_interest(PathPrefix::new("/x/"), HopId(0))
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.client.take_events(),
        vec![Event::InterestEnded {
            interest: second,
            reason: EndReason::PeerReset(codes::INTERNAL)
        }]
    );
    pair.server.session.announce(path("/a"), vec![]).unwrap();
    pair.drive();
    assert_eq!(
        pair.client.take_events(),
        vec![Event::Announced {
            interest: first,
            path: path("/a"),
            hops: vec![]
        }]
    );
}

#[test]
fn anything_after_announce_interest_is_a_protocol_violation() {
    let mut lone = Lone::new(Role::Server);
    let mut input = interest(PathPrefix::root());
    input.push(0x00);
    lone.accept_with(Dir::Bi, &input);
    let commands = lone.commands();
    assert!(
        matches!(commands.as_slice(), [Command::Close { code, .. }] if *code == moq_proto::code::session::PROTOCOL_VIOLATION),
        "{commands:?}"
    );
}

#[test]
fn the_first_announcements_come_in_path_order() {
    // The snapshot an interest gets follows the paths' order, whatever the table's order.
    let mut lone = Lone::new(Role::Server);
    let paths = [
        "/m/zeta", "/m/alpha", "/m/mu", "/m/beta", "/m/omega", "/m/kappa",
    ];
    for p in paths {
        lone.session.announce(path(p), vec![]).unwrap();
    }
    let stream = lone.accept_with(Dir::Bi, &interest(PathPrefix::new("/m/")));
    let bytes = written(&lone.commands(), stream);
    let mut rest = &bytes[..];
    let mut got = Vec::new();
    while let Some((message, used)) = Announce::decode(rest, &Default::default()).unwrap() {
        got.push(message.suffix);
        rest = &rest[used..];
    }
    let mut want: Vec<String> = paths.iter().map(|p| p["/m/".len()..].to_owned()).collect();
    want.sort();
    assert_eq!(got, want);
}
