//! End-to-end flows over the simulated pair.

use std::time::Duration;

use bytes::Bytes;

use super::pair::{Pair, Side};
use moq_proto::message::{Fetch, SubscribeParams};
use moq_proto::{
    BroadcastPath, CloseReason, Command, CommandError, EndReason, ErrorCode, Event, GroupSequence,
    HopId, PathPrefix, PublisherParams, SubscribeId, code,
};

fn path(s: &str) -> BroadcastPath {
    BroadcastPath::new(s)
}

/// Publishes `/live/cam` on `publisher` and subscribes to its track "video" from the other
/// side; returns the subscriber's id after the publisher accepted.
fn subscribed(pair: &mut Pair, publisher: Side, params: SubscribeParams) -> SubscribeId {
    let subscriber = publisher.other();
    pair.side(publisher)
        .session
        .announce(path("/live/cam"), vec![])
        .unwrap();
    let id = pair
        .side(subscriber)
        .session
        .subscribe(path("/live/cam"), "video", params)
        .unwrap();
    pair.drive();
    let requested = pair.side(publisher).take_events();
    let Some(Event::SubscribeRequested {
        id: pid,
        path: p,
        track,
        ..
    }) = requested.first()
    else {
        panic!("expected SubscribeRequested, got {requested:?}");
    };
    assert_eq!((*pid, p, track.as_str()), (id, &path("live/cam"), "video"));
    pair.side(publisher)
        .session
        .accept_subscribe(id, PublisherParams::default())
        .unwrap();
    pair.drive();
    id
}

#[test]
fn announce_interest_sees_active_then_ended() {
    let mut pair = Pair::new();
    pair.server
        .session
        .announce(path("/live/a"), vec![])
        .unwrap();
    pair.server
        .session
        .announce(path("/other/b"), vec![])
        .unwrap();
    let interest = pair
        .client
        .session
        .announce_interest(PathPrefix::new("/live/"), HopId(0))
        .unwrap();
    pair.drive();
    let events = pair.client.take_events();
    assert_eq!(
        events,
        vec![Event::Announced {
            interest,
            path: path("/live/a"),
            hops: vec![]
        }]
    );
    pair.server
        .session
        .announce(path("/live/c"), vec![HopId(42), HopId(300)])
        .unwrap();
    assert!(pair.server.session.unannounce(&path("/live/a")));
    pair.drive();
    assert_eq!(
        pair.client.take_events(),
        vec![
            Event::Announced {
                interest,
                path: path("/live/c"),
                hops: vec![HopId(42), HopId(300)]
            },
            Event::Unannounced {
                interest,
                path: path("/live/a")
            },
        ]
    );
}

#[test]
fn subscribe_delivers_frames_in_both_directions() {
    for publisher in [Side::Server, Side::Client] {
        let mut pair = Pair::new();
        pair.split = 3;
        let id = subscribed(&mut pair, publisher, SubscribeParams::default());
        assert_eq!(id, SubscribeId(1), "subscribe ids start at 1");
        let subscriber = publisher.other();
        let ok = pair.side(subscriber).take_events();
        assert!(
            matches!(ok.first(), Some(Event::SubscribeOk { id: i, params }) if *i == id && params.start.is_none()),
            "{ok:?}"
        );
        let group = pair
            .side(publisher)
            .session
            .open_group(id, GroupSequence(1))
            .unwrap();
        for f in ["HELLO", "", "WORLD"] {
            pair.side(publisher)
                .session
                .write_frame(group, Bytes::from_static(f.as_bytes()))
                .unwrap();
        }
        pair.side(publisher).session.finish_group(group).unwrap();
        pair.drive();
        let events = pair.side(subscriber).take_events();
        // The resolved SUBSCRIBE_OK (start = 1) precedes the group.
        assert!(
            matches!(
                events.first(),
                Some(Event::SubscribeOk { params, .. }) if params.start == Some(GroupSequence(1))
            ),
            "{events:?}"
        );
        let stream = events
            .iter()
            .find_map(|e| match e {
                Event::GroupReceived {
                    id: i,
                    sequence,
                    stream,
                } if *i == id => {
                    assert_eq!(*sequence, GroupSequence(1));
                    Some(*stream)
                }
                _ => None,
            })
            .expect("group received");
        assert_eq!(
            pair.side(subscriber).frames_of(stream),
            vec!["HELLO", "", "WORLD"]
        );
        assert_eq!(
            events.last(),
            Some(&Event::GroupEnded {
                stream,
                reason: EndReason::Finished
            })
        );
    }
}

#[test]
fn fetch_returns_the_group_then_ends() {
    let mut pair = Pair::new();
    pair.server
        .session
        .announce(path("/interop/server"), vec![])
        .unwrap();
    let request = Fetch {
        path: path("/interop/server"),
        track: String::new(),
        priority: 0,
        group: GroupSequence(0),
    };
    let fetch = pair.client.session.fetch(request.clone()).unwrap();
    pair.drive();
    let events = pair.server.take_events();
    let Some(Event::FetchRequested {
        stream,
        request: got,
    }) = events.first()
    else {
        panic!("{events:?}");
    };
    assert_eq!(got, &request);
    pair.server
        .session
        .write_fetch_frame(*stream, Bytes::from_static(b"HELLO"))
        .unwrap();
    pair.server.session.finish_fetch(*stream).unwrap();
    pair.drive();
    let events = pair.client.take_events();
    assert_eq!(pair.client.frames_of(fetch), vec!["HELLO"]);
    assert_eq!(
        events.last(),
        Some(&Event::FetchEnded {
            stream: fetch,
            reason: EndReason::Finished
        })
    );
}

#[test]
fn probe_reply_arrives_within_one_interval() {
    let mut pair = Pair::new();
    pair.client.session.probe(1_000_000).unwrap();
    pair.drive();
    assert_eq!(
        pair.server.take_events(),
        vec![Event::ProbeTarget { bitrate: 1_000_000 }]
    );
    // One probe interval (100 ms), then the reply's one-way trip (10 ms).
    pair.advance(Duration::from_millis(110));
    let events = pair.client.take_events();
    assert!(
        matches!(events.first(), Some(Event::ProbeResult { rtt, .. }) if *rtt == Duration::from_millis(20)),
        "{events:?}"
    );
    assert_eq!(
        pair.client.session.stats().rtt,
        Some(Duration::from_millis(20))
    );
}

#[test]
fn goaway_refuses_new_requests_and_times_out() {
    let mut pair = Pair::new();
    pair.server
        .session
        .goaway("https://next.example.com")
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.client.take_events(),
        vec![Event::GoAway {
            uri: "https://next.example.com".into()
        }]
    );
    assert_eq!(
        pair.client
            .session
            .subscribe(path("/a"), "t", SubscribeParams::default()),
        Err(CommandError::GoingAway)
    );
    // The client never closes: after the drain timeout the server closes with 0x10.
    pair.advance(Duration::from_secs(6));
    assert!(pair.server.session.is_closed());
    assert!(matches!(
        pair.client.session.close_reason(),
        Some(CloseReason::Peer { code, .. }) if *code == code::session::GOAWAY_TIMEOUT
    ));
}

#[test]
fn connection_loss_ends_everything_with_an_event() {
    let mut pair = Pair::new();
    let id = subscribed(&mut pair, Side::Server, SubscribeParams::default());
    let interest = pair
        .client
        .session
        .announce_interest(PathPrefix::root(), HopId(0))
        .unwrap();
    pair.drive();
    pair.client.take_events();
    let lost = CloseReason::Transport("idle timeout".into());
    pair.client
        .session
        .handle_connection_closed(lost.clone(), pair.now);
    let events: Vec<_> = std::iter::from_fn(|| pair.client.session.poll_event()).collect();
    let end = EndReason::SessionClosed(lost.clone());
    assert!(events.contains(&Event::Unannounced {
        interest,
        path: path("/live/cam")
    }));
    assert!(events.contains(&Event::InterestEnded {
        interest,
        reason: end.clone()
    }));
    assert!(events.contains(&Event::SubscriptionEnded { id, reason: end }));
    assert_eq!(events.last(), Some(&Event::Closed { reason: lost }));
    assert_eq!(pair.client.session.poll_command(), None);
}

#[test]
fn malformed_message_closes_with_protocol_violation() {
    let mut pair = Pair::new();
    let now = pair.now;
    let session = &mut pair.server.session;
    let id = session.handle_accepted(moq_proto::Dir::Bi, now);
    // SUBSCRIBE stream with a length that leaves a trailing byte.
    session.handle_data(
        id,
        Bytes::from_static(&[0x02, 0x08, 0x01, 0x01, b'/', 0, 0, 0, 0, 0]),
        now,
    );
    let commands: Vec<_> = std::iter::from_fn(|| session.poll_command()).collect();
    assert!(
        matches!(commands.as_slice(), [Command::Close { code, .. }] if *code == code::session::PROTOCOL_VIOLATION),
        "{commands:?}"
    );
    assert!(session.is_closed());
}

#[test]
fn unknown_stream_types_are_refused_without_closing() {
    let mut pair = Pair::new();
    let now = pair.now;
    let session = &mut pair.server.session;
    let bi = session.handle_accepted(moq_proto::Dir::Bi, now);
    session.handle_data(bi, Bytes::from_static(&[0x3f, 1, 2]), now);
    let uni = session.handle_accepted(moq_proto::Dir::Uni, now);
    session.handle_data(uni, Bytes::from_static(&[0x02]), now);
    let commands: Vec<_> = std::iter::from_fn(|| session.poll_command()).collect();
    let code = code::UNKNOWN_STREAM_TYPE;
    assert_eq!(
        commands,
        vec![
            Command::Reset { id: bi, code },
            Command::Stop { id: bi, code },
            Command::Stop { id: uni, code },
        ]
    );
    assert!(!session.is_closed());
    assert_eq!(session.open_streams(), 0);
}

#[allow(dead_code)]
fn unused(_: ErrorCode) {}
