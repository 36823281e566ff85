//! Probe flows (spec §6.5; decisions D5, D7).

use std::time::Duration;

use super::common::{BOTH, Lone, cancels, msg, opens, typed, written};
use super::pair::Pair;
use moq_proto::code::probe as codes;
use moq_proto::message::{Probe, StreamType};
use moq_proto::{Command, Dir, EndReason, Event, Role, StreamId, TransportStats};

fn probe(bitrate: u64) -> Probe {
    Probe {
        bitrate,
        rtt: Duration::ZERO,
    }
}

/// A server responder with one probe stream open; its prompt SampleStats is returned.
fn responder() -> (Lone, StreamId) {
    let mut lone = Lone::new(Role::Server);
    let stream = lone.accept_with(Dir::Bi, &typed(StreamType::Probe, &probe(1_000_000)));
    assert_eq!(
        lone.events(),
        vec![Event::ProbeTarget { bitrate: 1_000_000 }]
    );
    assert_eq!(lone.commands(), vec![Command::SampleStats]);
    (lone, stream)
}

/// Answers a SampleStats with `stats`; returns the PROBE replies written.
fn sample(lone: &mut Lone, stream: StreamId, stats: TransportStats) -> Vec<Probe> {
    lone.session.handle_stats(stats, lone.now);
    let bytes = written(&lone.commands(), stream);
    let mut replies = Vec::new();
    let mut rest = &bytes[..];
    while let Some((reply, used)) =
        <Probe as moq_proto::Message>::decode(rest, &Default::default()).unwrap()
    {
        replies.push(reply);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    replies
}

fn stats(rtt_ms: Option<u64>, sent: Option<u64>) -> TransportStats {
    TransportStats {
        rtt: rtt_ms.map(Duration::from_millis),
        bytes_sent: sent,
        ..TransportStats::default()
    }
}

#[test]
fn probe_targets_travel_on_one_stream_and_replies_come_back_in_both_directions() {
    for prober in BOTH {
        let mut pair = Pair::new();
        let responder = prober.other();
        pair.side(prober).session.probe(1_000_000).unwrap();
        pair.drive();
        pair.side(prober).session.probe(2_500_000).unwrap();
        pair.drive();
        assert_eq!(
            pair.side(responder).take_events(),
            vec![
                Event::ProbeTarget { bitrate: 1_000_000 },
                Event::ProbeTarget { bitrate: 2_500_000 }
            ]
        );
        assert_eq!(pair.side(responder).session.probe_target(), Some(2_500_000));
        assert_eq!(opens(pair.side(prober)).len(), 1, "one probe stream");
        // The first reply comes within one probe interval, with a measured rate and the
        // transport's RTT.
        assert_eq!(
            pair.side(prober).take_events(),
            vec![],
            "no placeholder reply"
        );
        pair.advance(Duration::from_millis(100));
        let events = pair.side(prober).take_events();
        assert!(
            matches!(events.first(), Some(Event::ProbeResult { rtt, .. }) if *rtt == Duration::from_millis(20)),
            "{events:?}"
        );
        let stats = pair.side(prober).session.stats();
        assert_eq!(stats.rtt, Some(Duration::from_millis(20)));
        // Stopping closes both sides.
        pair.side(prober).session.stop_probe().unwrap();
        pair.drive();
        assert_eq!(
            pair.side(prober).take_events(),
            vec![Event::ProbeEnded {
                reason: EndReason::Local
            }]
        );
        assert_eq!(pair.side(responder).session.probe_target(), None);
        pair.advance(Duration::from_secs(1));
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
        assert_eq!(pair.client.session.poll_timeout(), None, "no sampling left");
        assert_eq!(pair.server.session.poll_timeout(), None, "no sampling left");
    }
}

#[test]
fn responder_replies_to_a_prober_that_only_reads() {
    // @moq/lite opens the probe stream and reads replies without ever writing a PROBE: the
    // responder measures from the moment the stream opens and answers all the same.
    let mut lone = Lone::new(Role::Server);
    let stream = lone.accept_with(Dir::Bi, &[StreamType::Probe.to_byte()]);
    assert_eq!(lone.events(), vec![], "no target was asked for");
    assert_eq!(lone.commands(), vec![Command::SampleStats]);
    // The first sample is the baseline; one interval later the reply carries a measured
    // rate: 1 250 bytes in 100 ms.
    assert_eq!(
        sample(&mut lone, stream, stats(Some(12), Some(1000))),
        vec![]
    );
    lone.advance(Duration::from_millis(100));
    assert_eq!(lone.commands(), vec![Command::SampleStats]);
    assert_eq!(
        sample(&mut lone, stream, stats(Some(12), Some(2250))),
        vec![Probe {
            bitrate: 100_000,
            rtt: Duration::from_millis(12)
        }]
    );
    // A PROBE that arrives later is a target as usual, with no second prompt sample.
    lone.data(stream, &msg(&probe(500_000)));
    assert_eq!(lone.events(), vec![Event::ProbeTarget { bitrate: 500_000 }]);
    assert_eq!(lone.commands(), vec![]);
}

#[test]
fn responder_replaces_an_older_probe_stream_with_0x0() {
    let (mut lone, old) = responder();
    let new = lone.accept_with(Dir::Bi, &typed(StreamType::Probe, &probe(3_000)));
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (old, codes::INTERNAL, "reset"),
            (old, codes::INTERNAL, "stop")
        ]
    );
    assert_eq!(lone.events(), vec![Event::ProbeTarget { bitrate: 3_000 }]);
    assert_eq!(lone.session.probe_target(), Some(3_000));
    // Whatever the old stream still delivers is ignored; replies go to the new one.
    lone.data(old, &msg(&probe(9)));
    assert_eq!(lone.events(), vec![]);
    assert_eq!(
        sample(&mut lone, new, stats(Some(30), None)),
        vec![Probe {
            bitrate: 0,
            rtt: Duration::from_millis(30)
        }]
    );
    assert!(!lone.session.is_closed());
}

#[test]
fn responder_without_stats_cancels_with_0x2() {
    // Over the pair: the transport exposes nothing.
    for prober in BOTH {
        let mut pair = Pair::new();
        pair.stats_available = false;
        pair.side(prober).session.probe(1_000_000).unwrap();
        pair.drive();
        assert_eq!(
            pair.side(prober).take_events(),
            vec![Event::ProbeEnded {
                reason: EndReason::PeerReset(codes::NOT_SUPPORTED)
            }]
        );
        assert_eq!(pair.client.session.open_streams(), 0);
        assert_eq!(pair.server.session.open_streams(), 0);
    }
    // On one session, with the exact commands.
    let (mut lone, stream) = responder();
    lone.session
        .handle_stats(TransportStats::default(), lone.now);
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (stream, codes::NOT_SUPPORTED, "reset"),
            (stream, codes::NOT_SUPPORTED, "stop")
        ]
    );
    assert_eq!(lone.session.poll_timeout(), None);
}

#[test]
fn rtt_alone_is_enough_to_reply() {
    let (mut lone, stream) = responder();
    assert_eq!(
        sample(&mut lone, stream, stats(Some(35), None)),
        vec![Probe {
            bitrate: 0,
            rtt: Duration::from_millis(35)
        }]
    );
}

#[test]
fn responder_replies_on_change_above_the_threshold_and_at_least_every_10s() {
    let (mut lone, stream) = responder();
    let interval = Duration::from_millis(100);
    let mut sent = 0u64;
    // 1 Mb/s = 12 500 bytes per 100 ms.
    let mut tick = |lone: &mut Lone, bytes_per_interval: u64| {
        lone.advance(interval);
        assert_eq!(
            lone.commands(),
            vec![Command::SampleStats],
            "sampled every interval"
        );
        sent += bytes_per_interval;
        sample(lone, stream, stats(Some(20), Some(sent)))
    };
    // The first sample has no rate yet: it is the baseline, and no placeholder goes out.
    assert_eq!(sample(&mut lone, stream, stats(Some(20), Some(0))), vec![]);
    // The rate appears one interval later: the first reply.
    assert_eq!(
        tick(&mut lone, 12_500),
        vec![Probe {
            bitrate: 1_000_000,
            rtt: Duration::from_millis(20)
        }]
    );
    // Steady, or within 10 %: silence.
    assert_eq!(tick(&mut lone, 12_500), vec![]);
    assert_eq!(tick(&mut lone, 13_500), vec![], "+8 %");
    assert_eq!(tick(&mut lone, 11_500), vec![], "-8 %");
    // More than 10 %: reply.
    assert_eq!(
        tick(&mut lone, 15_000),
        vec![Probe {
            bitrate: 1_200_000,
            rtt: Duration::from_millis(20)
        }]
    );
    // Steady for 10 s: exactly one reply, when the last one is 10 s old.
    let mut replies = Vec::new();
    for i in 0..100 {
        for r in tick(&mut lone, 15_000) {
            replies.push((i, r));
        }
    }
    assert_eq!(
        replies,
        vec![(
            99,
            Probe {
                bitrate: 1_200_000,
                rtt: Duration::from_millis(20)
            }
        )]
    );
}

#[test]
fn probe_end_and_reset_reach_the_prober() {
    for prober in BOTH {
        let mut pair = Pair::new();
        pair.side(prober).session.probe(1).unwrap();
        pair.drive();
        pair.side(prober).take_events();
        // The peer's transport closes: the probe ends with the cause.
        let reason = moq_proto::CloseReason::Transport("gone".into());
        let now = pair.now;
        pair.side(prober)
            .session
            .handle_connection_closed(reason.clone(), now);
        let events: Vec<_> =
            std::iter::from_fn(|| pair.side(prober).session.poll_event()).collect();
        assert_eq!(
            events,
            vec![
                Event::ProbeEnded {
                    reason: EndReason::SessionClosed(reason.clone())
                },
                Event::Closed { reason }
            ]
        );
    }
}

#[test]
fn stats_follow_the_transport_and_the_peers_probe_replies() {
    let mut pair = Pair::new();
    // The server sends steadily, so its responder measures a send rate.
    let id = super::common::subscribed(
        &mut pair,
        super::pair::Side::Server,
        moq_proto::message::SubscribeParams::default(),
    );
    pair.client.session.probe(5_000_000).unwrap();
    pair.drive();
    for seq in 0..10 {
        let g = pair
            .server
            .session
            .open_group(id, moq_proto::GroupSequence(seq))
            .unwrap();
        pair.server
            .session
            .write_frame(g, bytes::Bytes::from(vec![0; 1250]))
            .unwrap();
        pair.server.session.finish_group(g).unwrap();
        pair.advance(Duration::from_millis(100));
    }
    let server = pair.server.session.stats();
    let client = pair.client.session.stats();
    // The responder's transport reported RTT and bytes: they win over stream counts.
    assert_eq!(server.rtt, Some(Duration::from_millis(20)));
    assert!(server.bytes_sent > 12_500, "{server:?}");
    // About 1250 bytes per 100 ms: 100 kb/s, plus the control traffic.
    let rate = server.send_bitrate.unwrap();
    assert!((90_000..=140_000).contains(&rate), "{rate}");
    // The prober learns the peer's estimate (as of its last reply: replies follow changes
    // over 10 %) and RTT from the replies.
    let estimate = client.estimated_bitrate.unwrap();
    assert!(estimate.abs_diff(rate) * 10 <= rate, "{estimate} vs {rate}");
    assert_eq!(client.rtt, Some(Duration::from_millis(20)));
    assert_eq!(client.send_bitrate, None);
    assert_eq!((client.groups_received, server.groups_sent), (10, 10));
}

#[test]
fn a_reply_with_a_bitrate_and_no_rtt_keeps_the_bitrate_and_leaves_rtt_unknown() {
    // gomoqt's replies carry RTT 0 (unknown). The bitrate is kept; the RTT stays what the
    // transport says, or unknown without one; a later reply with an RTT fills it in.
    let mut lone = Lone::new(Role::Client);
    lone.session.probe(2_000_000).unwrap();
    let stream = Lone::opened(&lone.commands());
    lone.data(stream, &msg(&probe(750_000)));
    assert_eq!(
        lone.events(),
        vec![Event::ProbeResult {
            bitrate: 750_000,
            rtt: Duration::ZERO
        }]
    );
    let stats = lone.session.stats();
    assert_eq!(stats.estimated_bitrate, Some(750_000));
    assert_eq!(stats.rtt, None, "no RTT is made up");
    lone.data(
        stream,
        &msg(&Probe {
            bitrate: 0,
            rtt: Duration::from_millis(42),
        }),
    );
    lone.events();
    let stats = lone.session.stats();
    assert_eq!(
        stats.estimated_bitrate,
        Some(750_000),
        "a reply without a bitrate keeps the last one"
    );
    assert_eq!(stats.rtt, Some(Duration::from_millis(42)));
    assert!(!lone.session.is_closed());
}

#[test]
fn reading_stats_does_not_change_what_the_probe_reports() {
    // An application that polls stats between samples: the probe's rate still counts from
    // its own previous sample, and no reply comes out of a stats read.
    let (mut lone, stream) = responder();
    assert_eq!(sample(&mut lone, stream, stats(Some(20), Some(0))), vec![]);
    for sent in [5_000, 9_000, 11_000] {
        lone.session
            .handle_stats_read(stats(Some(20), Some(sent)), lone.now);
        assert_eq!(written(&lone.commands(), stream), Vec::<u8>::new());
    }
    lone.advance(Duration::from_millis(100));
    assert_eq!(lone.commands(), vec![Command::SampleStats]);
    assert_eq!(
        sample(&mut lone, stream, stats(Some(20), Some(12_500))),
        vec![Probe {
            bitrate: 1_000_000,
            rtt: Duration::from_millis(20)
        }],
        "12 500 bytes over the 100 ms since the probe's last sample"
    );
    // The stats read still shows the latest counters.
    lone.session.handle_stats_read(
        TransportStats {
            congestion_window: Some(64_000),
            lost_packets: Some(3),
            ..stats(Some(21), Some(13_000))
        },
        lone.now,
    );
    let s = lone.session.stats();
    assert_eq!(s.rtt, Some(Duration::from_millis(21)));
    assert_eq!(s.congestion_window, Some(64_000));
    assert_eq!(s.lost_packets, Some(3));
}

#[test]
fn replies_on_a_peer_opened_stream_go_above_every_group() {
    // The transport gives a peer's stream its default priority; before the first reply the
    // session raises it to the control priority.
    let mut lone2 = Lone::new(Role::Server);
    let other = lone2.accept_with(Dir::Bi, &typed(StreamType::Probe, &probe(1_000_000)));
    lone2.events();
    assert_eq!(lone2.commands(), vec![Command::SampleStats]);
    lone2.session.handle_stats(stats(Some(20), None), lone2.now);
    let commands = lone2.commands();
    let priority = commands
        .iter()
        .position(|c| matches!(c, Command::SetPriority { id, priority } if *id == other && *priority == i32::MAX));
    let write = commands
        .iter()
        .position(|c| matches!(c, Command::Write { id, .. } if *id == other));
    assert!(
        matches!((priority, write), (Some(p), Some(w)) if p < w),
        "{commands:?}"
    );
}
