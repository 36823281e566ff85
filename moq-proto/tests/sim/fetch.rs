//! Fetch flows (spec §6.4; decision D17).

use bytes::Bytes;

use super::common::{BOTH, Lone, knobs, pair_with, path, typed, written};
use super::pair::Pair;
use moq_proto::code::fetch as codes;
use moq_proto::message::{Fetch, StreamType};
use moq_proto::{Command, CommandError, Config, Dir, EndReason, Event, GroupSequence, Role};

fn request(p: &str, group: u64) -> Fetch {
    Fetch {
        path: path(p),
        track: "video".into(),
        priority: 0x40,
        group: GroupSequence(group),
    }
}

#[test]
fn fetch_returns_the_group_in_both_directions_under_every_knob() {
    for server_side in BOTH {
        for (split, reorder) in knobs() {
            let mut pair = pair_with(split, reorder);
            let fetcher = server_side.other();
            pair.side(server_side)
                .session
                .announce(path("/live/cam1"), vec![])
                .unwrap();
            let fetch = pair
                .side(fetcher)
                .session
                .fetch(request("/live/cam1", 300))
                .unwrap();
            pair.drive();
            // The request is the spec's example, and our request side is finished at once.
            let commands = &pair.side(fetcher).commands;
            let mut expected = vec![0x03];
            expected.extend([
                0x14, 0x0a, b'/', b'l', b'i', b'v', b'e', b'/', b'c', b'a', b'm', b'1', 0x05, b'v',
                b'i', b'd', b'e', b'o', 0x40, 0x41, 0x2c,
            ]);
            assert_eq!(written(commands, fetch), expected);
            assert!(commands.contains(&Command::Finish { id: fetch }));
            let events = pair.side(server_side).take_events();
            let [
                Event::FetchRequested {
                    stream,
                    request: got,
                },
            ] = events.as_slice()
            else {
                panic!("{events:?}");
            };
            assert_eq!(got, &request("/live/cam1", 300));
            let stream = *stream;
            let s = &mut pair.side(server_side).session;
            for f in ["HELLO", "", "WORLD"] {
                s.write_fetch_frame(stream, Bytes::from_static(f.as_bytes()))
                    .unwrap();
            }
            s.finish_fetch(stream).unwrap();
            assert_eq!(
                s.write_fetch_frame(stream, Bytes::new()),
                Err(CommandError::UnknownStream(stream))
            );
            pair.drive();
            let events = pair.side(fetcher).take_events();
            assert_eq!(
                pair.side(fetcher).frames_of(fetch),
                vec!["HELLO", "", "WORLD"]
            );
            assert_eq!(
                events.last(),
                Some(&Event::FetchEnded {
                    stream: fetch,
                    reason: EndReason::Finished
                })
            );
            assert_eq!(pair.client.session.open_streams(), 0);
            assert_eq!(pair.server.session.open_streams(), 0);
        }
    }
}

#[test]
fn fetch_reject_code_reaches_the_fetcher() {
    for server_side in BOTH {
        let mut pair = Pair::new();
        let fetcher = server_side.other();
        pair.side(server_side)
            .session
            .announce(path("/a"), vec![])
            .unwrap();
        let fetch = pair.side(fetcher).session.fetch(request("/a", 1)).unwrap();
        pair.drive();
        let events = pair.side(server_side).take_events();
        let [Event::FetchRequested { stream, .. }] = events.as_slice() else {
            panic!("{events:?}");
        };
        let stream = *stream;
        pair.side(server_side)
            .session
            .reject_fetch(stream, codes::TIMEOUT)
            .unwrap();
        assert_eq!(
            pair.side(server_side)
                .session
                .reject_fetch(stream, codes::TIMEOUT),
            Err(CommandError::UnknownStream(stream))
        );
        pair.drive();
        assert_eq!(
            pair.side(fetcher).take_events(),
            vec![Event::FetchEnded {
                stream: fetch,
                reason: EndReason::PeerReset(codes::TIMEOUT)
            }]
        );
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
    }
}

#[test]
fn fetch_of_an_unknown_broadcast_is_cancelled_0x0() {
    for server_side in BOTH {
        let mut pair = Pair::new();
        let fetcher = server_side.other();
        let fetch = pair
            .side(fetcher)
            .session
            .fetch(request("/nobody", 1))
            .unwrap();
        pair.drive();
        assert_eq!(pair.side(server_side).take_events(), vec![]);
        assert_eq!(
            pair.side(fetcher).take_events(),
            vec![Event::FetchEnded {
                stream: fetch,
                reason: EndReason::PeerReset(codes::INTERNAL)
            }]
        );
    }
}

#[test]
fn fetcher_cancel_is_seen_as_stop_0x3() {
    for server_side in BOTH {
        let mut pair = Pair::new();
        let fetcher = server_side.other();
        pair.side(server_side)
            .session
            .announce(path("/a"), vec![])
            .unwrap();
        let fetch = pair.side(fetcher).session.fetch(request("/a", 1)).unwrap();
        pair.drive();
        let events = pair.side(server_side).take_events();
        let [Event::FetchRequested { stream, .. }] = events.as_slice() else {
            panic!("{events:?}");
        };
        let stream = *stream;
        pair.side(server_side)
            .session
            .write_fetch_frame(stream, Bytes::from_static(b"x"))
            .unwrap();
        pair.drive();
        pair.side(fetcher).take_events();
        // The code given is the one the publisher sees.
        pair.side(fetcher)
            .session
            .cancel_fetch(fetch, codes::TIMEOUT)
            .unwrap();
        assert_eq!(
            pair.side(fetcher)
                .session
                .cancel_fetch(fetch, codes::CANCELLED),
            Err(CommandError::UnknownStream(fetch))
        );
        pair.drive();
        assert_eq!(
            pair.side(fetcher).take_events(),
            vec![Event::FetchEnded {
                stream: fetch,
                reason: EndReason::Local
            }]
        );
        assert_eq!(
            pair.side(server_side).take_events(),
            vec![Event::FetchEnded {
                stream,
                reason: EndReason::PeerStopped(codes::TIMEOUT)
            }]
        );
        assert_eq!(
            pair.side(server_side)
                .session
                .write_fetch_frame(stream, Bytes::new()),
            Err(CommandError::UnknownStream(stream))
        );
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
    }
}

#[test]
fn fetch_request_fin_is_never_awaited() {
    // gomoqt's fetch client never FINs its request side (D17).
    let mut lone = Lone::new(Role::Server);
    lone.session.announce(path("/a"), vec![]).unwrap();
    let stream = lone.accept_with(Dir::Bi, &typed(StreamType::Fetch, &request("/a", 7)));
    assert_eq!(
        lone.events(),
        vec![Event::FetchRequested {
            stream,
            request: request("/a", 7)
        }]
    );
    lone.session
        .write_fetch_frame(stream, Bytes::from_static(b"x"))
        .unwrap();
    lone.session.finish_fetch(stream).unwrap();
    let commands = lone.commands();
    assert_eq!(written(&commands, stream), [0x01, b'x']);
    assert_eq!(commands.last(), Some(&Command::Finish { id: stream }));
    // The request FIN arriving after the response is harmless and forgets the stream.
    lone.fin(stream);
    assert_eq!(lone.commands(), vec![]);
    assert_eq!(lone.session.open_streams(), 0);
}

#[test]
fn fetch_limits() {
    // Concurrent fetches: beyond the limit, cancel 0x0.
    let server = {
        let mut config = Config::default();
        config.max_incoming_fetches = 1;
        config.max_queued_bytes_per_fetch = 10;
        config
    };
    let mut pair = Pair::with_config(Config::default(), server);
    pair.server.session.announce(path("/a"), vec![]).unwrap();
    let first = pair.client.session.fetch(request("/a", 1)).unwrap();
    pair.drive();
    let second = pair.client.session.fetch(request("/a", 2)).unwrap();
    pair.drive();
    assert_eq!(
        pair.client.take_events(),
        vec![Event::FetchEnded {
            stream: second,
            reason: EndReason::PeerReset(codes::INTERNAL)
        }]
    );
    // Queued bytes per fetch: a write beyond them is refused, not buffered.
    let events = pair.server.take_events();
    let [Event::FetchRequested { stream, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    pair.starve.insert(super::pair::Side::Server);
    let s = &mut pair.server.session;
    s.write_fetch_frame(*stream, Bytes::from_static(b"12345678"))
        .unwrap();
    assert_eq!(
        s.write_fetch_frame(*stream, Bytes::from_static(b"123456789")),
        Err(CommandError::QueueFull(*stream))
    );
    let _ = first;
}

#[test]
fn a_fetch_cancelled_while_its_stream_opens_is_stopped_once_open() {
    // The adapter gets no command for a stream it does not have yet: the STOP_SENDING
    // waits for the open.
    let drain = |lone: &mut Lone| std::iter::from_fn(|| lone.session.poll_command()).collect();
    let mut lone = Lone::new(Role::Client);
    let fetch = lone.session.fetch(request("/a", 1)).unwrap();
    let commands: Vec<Command> = drain(&mut lone);
    assert_eq!(Lone::opened(&commands), fetch);
    lone.session.cancel_fetch(fetch, codes::CANCELLED).unwrap();
    let commands: Vec<Command> = drain(&mut lone);
    assert!(
        super::common::cancels(&commands).is_empty(),
        "nothing for a stream still opening: {commands:?}"
    );
    lone.session.handle_opened(fetch, lone.now);
    let commands: Vec<Command> = drain(&mut lone);
    assert_eq!(
        super::common::cancels(&commands),
        vec![(fetch, codes::CANCELLED, "stop")]
    );
    // An open that fails instead leaves nothing behind, even if the adapter later reports
    // the stream open.
    let mut lone = Lone::new(Role::Client);
    let fetch = lone.session.fetch(request("/a", 1)).unwrap();
    let _: Vec<Command> = drain(&mut lone);
    lone.session.cancel_fetch(fetch, codes::CANCELLED).unwrap();
    lone.session.handle_open_failed(fetch, lone.now);
    lone.session.handle_opened(fetch, lone.now);
    let commands: Vec<Command> = drain(&mut lone);
    assert!(super::common::cancels(&commands).is_empty(), "{commands:?}");
}
