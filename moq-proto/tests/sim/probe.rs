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
    // The rate is taken over two intervals (twice the RTT, at least two intervals): half
    // of the window at +20 % moves it by 6 %, still silence.
    assert_eq!(tick(&mut lone, 15_000), vec![], "+6 %");
    // The whole window at +20 %: reply.
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
    // Without padding, the responder's estimate is what it sent.
    let mut no_padding = moq_proto::Config::default();
    no_padding.probe_padding = false;
    let mut pair = Pair::with_config(Default::default(), no_padding);
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

/// Answers a SampleStats with `stats`; returns every command that followed.
fn sample_commands(lone: &mut Lone, stats: TransportStats) -> Vec<Command> {
    lone.session.handle_stats(stats, lone.now);
    lone.commands()
}

/// Bytes written on streams other than `probe`, and the streams opened, from `commands`.
fn padding_of(commands: &[Command], probe: StreamId) -> (usize, Vec<(StreamId, Dir, i32)>) {
    let mut bytes = 0;
    let mut opened = Vec::new();
    for c in commands {
        match c {
            Command::Write { id, data } if *id != probe => bytes += data.len(),
            Command::Open { id, dir, priority } => opened.push((*id, *dir, *priority)),
            _ => {}
        }
    }
    (bytes, opened)
}

#[test]
fn responder_pads_up_to_the_target_below_every_stream() {
    // Target 1 Mb/s: 12 500 bytes per 100 ms interval.
    let (mut lone, stream) = responder();
    let cmds = sample_commands(&mut lone, stats(Some(20), Some(0)));
    let (bytes, opened) = padding_of(&cmds, stream);
    assert_eq!(opened.len(), 1);
    let (pad, dir, priority) = opened[0];
    assert_eq!(
        (dir, priority),
        (Dir::Uni, i32::MIN),
        "below every media stream"
    );
    let first = written(&cmds, pad);
    assert_eq!(first[0], StreamType::Padding.to_byte());
    assert!(first[1..].iter().all(|&b| b == 0));
    assert_eq!(bytes, 12_500, "the type byte counts as padding");
    assert_eq!(lone.session.stats().padding_bytes, 12_500);
    // Each interval tops the padding up to one interval's worth: the transport took it all.
    let mut sent = 0;
    for _ in 0..5 {
        lone.advance(Duration::from_millis(100));
        sent += 12_500;
        let cmds = sample_commands(&mut lone, stats(Some(20), Some(sent)));
        let (bytes, opened) = padding_of(&cmds, stream);
        // Less the probe replies sent in the interval: every byte but padding counts.
        assert!((12_400..=12_500).contains(&bytes), "{bytes}");
        assert!(opened.is_empty());
    }
    // The transport stops taking it (the path is slower): no more than one interval's
    // worth waits, whatever the number of intervals.
    lone.starve = true;
    for _ in 0..5 {
        lone.advance(Duration::from_millis(100));
        let cmds = sample_commands(&mut lone, stats(Some(20), Some(sent)));
        let (bytes, _) = padding_of(&cmds, stream);
        assert!(bytes <= 12_500, "{bytes}");
    }
    assert!(lone.session.stats().padding_bytes <= 7 * 12_500);
}

#[test]
fn padding_never_exceeds_twice_the_congestion_windows_rate() {
    let (mut lone, stream) = responder();
    // A target of 100 Mb/s, a window of 12 000 bytes per 100 ms RTT: 0.96 Mb/s allowed;
    // twice that for the interval is 24 000 bytes.
    lone.data(stream, &msg(&probe(100_000_000)));
    lone.events();
    let window = TransportStats {
        congestion_window: Some(12_000),
        ..stats(Some(100), Some(0))
    };
    let cmds = sample_commands(&mut lone, window);
    assert_eq!(padding_of(&cmds, stream).0, 24_000);
}

#[test]
fn padding_per_interval_is_bounded_whatever_the_target() {
    // The largest target the wire carries, a congestion window of a gigabyte and an RTT of
    // a microsecond: still at most one stream send window of padding, type byte included.
    let (mut lone, stream) = responder();
    lone.data(stream, &msg(&probe((1 << 62) - 1)));
    lone.events();
    let extreme = TransportStats {
        rtt: Some(Duration::from_micros(1)),
        congestion_window: Some(1 << 30),
        ..stats(None, Some(0))
    };
    let cmds = sample_commands(&mut lone, extreme);
    let config = moq_proto::Config::default();
    // The padding rate's ceiling, for one 100 ms interval.
    let ceiling = (config.probe_padding_max_rate / 80) as usize;
    assert!(ceiling < config.stream_send_window);
    assert_eq!(padding_of(&cmds, stream).0, ceiling);
}

#[test]
fn padding_over_time_is_bounded_by_the_sessions_bucket() {
    // A peer asks for the largest target for 20 s on a path that would carry anything:
    // the session pads its burst, then no faster than the bucket refills.
    let (mut lone, stream) = responder();
    lone.data(stream, &msg(&probe((1 << 62) - 1)));
    lone.events();
    let config = moq_proto::Config::default();
    let (mut total, mut sent, mut last_5s) = (0u64, 0u64, 0u64);
    let intervals = 200;
    for i in 0..intervals {
        let cmds = sample_commands(
            &mut lone,
            TransportStats {
                rtt: Some(Duration::from_millis(1)),
                congestion_window: Some(1 << 30),
                ..stats(None, Some(sent))
            },
        );
        let padded = padding_of(&cmds, stream).0 as u64;
        total += padded;
        sent += padded;
        if i >= intervals - 50 {
            last_5s += padded;
        }
        lone.advance(Duration::from_millis(100));
        lone.commands();
    }
    let refill = config.probe_padding_refill_rate / 8;
    // Type bytes of the padding streams reopened after the bucket ran dry are not charged.
    let bound = config.probe_padding_burst + refill * 20 + intervals;
    println!("20 s of padding: {total} bytes, bound {bound}; last 5 s: {last_5s}");
    assert!(total <= bound, "{total} > {bound}");
    assert!(
        total >= config.probe_padding_burst,
        "the burst is used: {total}"
    );
    // Once the burst is spent, the refill rate is the padding rate.
    let expected = refill * 5;
    assert!(
        last_5s.abs_diff(expected) <= expected / 10 + 50,
        "{last_5s} in the last 5 s, expected about {expected}"
    );
}

#[test]
fn padding_stops_when_the_target_is_withdrawn_met_by_media_or_the_probe_ends() {
    // Withdrawn: target 0 resets the padding stream at once.
    let (mut lone, stream) = responder();
    let cmds = sample_commands(&mut lone, stats(Some(20), Some(0)));
    let pad = padding_of(&cmds, stream).1[0].0;
    lone.data(stream, &msg(&probe(0)));
    let cmds = lone.commands();
    assert_eq!(cancels(&cmds), vec![(pad, codes::PADDING_DONE, "reset")]);
    lone.advance(Duration::from_millis(100));
    let cmds = sample_commands(&mut lone, stats(Some(20), Some(12_500)));
    assert_eq!(
        padding_of(&cmds, stream),
        (0, vec![]),
        "no padding at target 0"
    );

    // The probe ends (FIN): padding stops.
    let (mut lone, stream) = responder();
    let cmds = sample_commands(&mut lone, stats(Some(20), Some(0)));
    let pad = padding_of(&cmds, stream).1[0].0;
    lone.fin(stream);
    assert_eq!(
        cancels(&lone.commands()),
        vec![(pad, codes::PADDING_DONE, "reset")]
    );

    // Media meets the target: the application's bytes alone fill it, no padding.
    let mut lone = Lone::new(Role::Server);
    lone.session
        .announce(super::common::path("/a"), vec![])
        .unwrap();
    lone.accept_with(Dir::Bi, &super::common::subscribe_msg(1, "/a"));
    let id = moq_proto::SubscribeId(1);
    lone.session
        .accept_subscribe(id, Default::default())
        .unwrap();
    lone.events();
    let stream = lone.accept_with(Dir::Bi, &typed(StreamType::Probe, &probe(80_000)));
    lone.commands();
    let cmds = sample_commands(&mut lone, stats(Some(20), Some(0)));
    let pad = padding_of(&cmds, stream).1[0].0;
    lone.advance(Duration::from_millis(100));
    lone.commands();
    // 2 000 bytes of media in the interval: 160 kb/s, over the 80 kb/s target.
    let g = lone
        .session
        .open_group(id, moq_proto::GroupSequence(0))
        .unwrap();
    lone.session
        .write_frame(g, bytes::Bytes::from(vec![7; 2000]))
        .unwrap();
    lone.commands();
    let cmds = sample_commands(&mut lone, stats(Some(20), Some(3000)));
    assert_eq!(cancels(&cmds), vec![(pad, codes::PADDING_DONE, "reset")]);
}

#[test]
fn a_peer_that_stops_the_padding_stream_is_not_padded_again() {
    let (mut lone, stream) = responder();
    let cmds = sample_commands(&mut lone, stats(Some(20), Some(0)));
    let pad = padding_of(&cmds, stream).1[0].0;
    // A peer that does not know the type stops it with 0x1 (spec §3).
    lone.stop(pad, moq_proto::code::UNKNOWN_STREAM_TYPE);
    lone.commands();
    for i in 1..=5 {
        lone.advance(Duration::from_millis(100));
        let cmds = sample_commands(&mut lone, stats(Some(20), Some(i * 12_500)));
        assert_eq!(padding_of(&cmds, stream), (0, vec![]));
    }
    // Unable to pad, it reports what congestion control allows (here 4 Mb/s), up to the
    // target, when that is more than it delivered (600 kb/s over the last 200 ms).
    lone.advance(Duration::from_millis(100));
    let window = TransportStats {
        congestion_window: Some(50_000),
        ..stats(Some(100), Some(5 * 12_500 + 2_500))
    };
    lone.session.handle_stats(window, lone.now);
    lone.commands();
    assert_eq!(lone.session.stats().send_bitrate, Some(1_000_000));
}

#[test]
fn padding_between_two_sessions_is_discarded_and_raises_the_estimate_to_the_target() {
    let mut pair = Pair::new();
    pair.client.session.probe(2_000_000).unwrap();
    pair.drive();
    for _ in 0..10 {
        pair.advance(Duration::from_millis(100));
    }
    let server = pair.server.session.stats();
    // 2 Mb/s for 1 s, less the first interval.
    assert!(server.padding_bytes >= 200_000, "{server:?}");
    // The pair's transport carries everything at once: the estimate is the target.
    let estimate = pair.client.session.stats().estimated_bitrate.unwrap();
    assert!(estimate.abs_diff(2_000_000) * 10 <= 2_000_000, "{estimate}");
    // The client discarded it all: no event, no stream held, no error.
    let events = pair.client.take_events();
    assert!(
        events
            .iter()
            .all(|e| matches!(e, Event::ProbeResult { .. })),
        "{events:?}"
    );
    assert!(pair.client.session.open_streams() <= 2);
    assert_eq!(pair.client.session.stats().streams_abandoned, 0);
}

#[test]
fn the_estimate_follows_acknowledged_bytes_when_the_transport_counts_them() {
    // The sender hands 4 Mb/s to the network, but the path delivers only 1 Mb/s: the rest
    // sits in a queue, not yet declared lost. Acknowledged bytes tell the truth.
    let (mut lone, stream) = responder();
    let interval = Duration::from_millis(100);
    let at = |sent: u64, acked: u64| TransportStats {
        rtt: Some(Duration::from_millis(20)),
        bytes_sent: Some(sent),
        bytes_acked: Some(acked),
        ..TransportStats::default()
    };
    assert_eq!(sample(&mut lone, stream, at(0, 0)), vec![]);
    lone.advance(interval);
    lone.commands();
    assert_eq!(
        sample(&mut lone, stream, at(50_000, 12_500)),
        vec![Probe {
            bitrate: 1_000_000,
            rtt: Duration::from_millis(20)
        }]
    );
    // Without acknowledged bytes, the same counters read as what was sent.
    let (mut lone, stream) = responder();
    let at = |sent: u64| TransportStats {
        bytes_acked: None,
        ..at(sent, 0)
    };
    assert_eq!(sample(&mut lone, stream, at(0)), vec![]);
    lone.advance(interval);
    lone.commands();
    assert_eq!(
        sample(&mut lone, stream, at(50_000)),
        vec![Probe {
            bitrate: 4_000_000,
            rtt: Duration::from_millis(20)
        }]
    );
}

#[test]
fn padding_stopped_while_its_stream_opens_gives_up_the_open() {
    let (mut lone, stream) = responder();
    // The padding stream's open is asked for, and not yet done.
    lone.session
        .handle_stats(stats(Some(20), Some(0)), lone.now);
    let commands: Vec<Command> = std::iter::from_fn(|| lone.session.poll_command()).collect();
    let pad = padding_of(&commands, stream).1[0].0;
    // The target is withdrawn meanwhile: the open is given up (the adapter resets the
    // stream with this code should it open anyway), and the session forgets it.
    lone.data(stream, &msg(&probe(0)));
    let commands: Vec<Command> = std::iter::from_fn(|| lone.session.poll_command()).collect();
    assert_eq!(
        commands,
        vec![Command::CancelOpen {
            id: pad,
            code: codes::PADDING_DONE
        }]
    );
    lone.session.handle_opened(pad, lone.now);
    assert_eq!(lone.commands(), vec![], "nothing for a stream it forgot");
}

#[test]
fn a_long_probe_interval_and_an_acknowledged_counter_that_goes_back_are_measured() {
    // A 2 s interval is longer than the estimate's longest window: the window stretches to
    // two intervals rather than fail.
    let mut config = moq_proto::Config::default();
    config.probe_interval = Duration::from_secs(2);
    let mut lone = Lone::with_config(Role::Server, config);
    let stream = lone.accept_with(Dir::Bi, &typed(StreamType::Probe, &probe(1_000_000)));
    lone.events();
    lone.commands();
    let at = |sent: u64, acked: u64| TransportStats {
        rtt: Some(Duration::from_millis(20)),
        bytes_sent: Some(sent),
        bytes_acked: Some(acked),
        ..TransportStats::default()
    };
    assert_eq!(sample(&mut lone, stream, at(100_000, 100_000)), vec![]);
    lone.advance(Duration::from_secs(2));
    lone.commands();
    // 250 000 bytes acknowledged in 2 s: 1 Mb/s.
    assert_eq!(
        sample(&mut lone, stream, at(400_000, 350_000))[0].bitrate,
        1_000_000
    );
    // The acknowledged counter starts again from 0 (a new path): the window (two intervals,
    // back to the first sample) falls back to bytes sent, 800 000 in 4 s, rather than read
    // as nothing delivered.
    lone.advance(Duration::from_secs(2));
    lone.commands();
    assert_eq!(
        sample(&mut lone, stream, at(900_000, 1_000))[0].bitrate,
        1_600_000
    );
}

#[test]
fn a_puller_takes_the_newest_replies_and_a_flood_keeps_sixteen() {
    let mut lone = Lone::new(Role::Client);
    lone.session.probe(2_000_000).unwrap();
    let stream = Lone::opened(&lone.commands());
    assert!(lone.session.probing());
    lone.data(stream, &msg(&probe(1)));
    assert_eq!(lone.session.poll_probe_reply(), Some((1, Duration::ZERO)));
    assert_eq!(lone.session.poll_probe_reply(), None);
    // A flood costs nothing: the newest PROBE_REPLIES_KEPT wait, in order.
    let mut flood = Vec::new();
    for bitrate in 2..1002u64 {
        flood.extend_from_slice(&msg(&probe(bitrate)));
    }
    lone.data(stream, &flood);
    let kept: Vec<u64> = std::iter::from_fn(|| lone.session.poll_probe_reply())
        .map(|(bitrate, _)| bitrate)
        .collect();
    assert_eq!(kept.len(), moq_proto::PROBE_REPLIES_KEPT);
    assert_eq!(kept, (986..1002).collect::<Vec<_>>());
    // The events say the same, one per reply.
    assert_eq!(lone.events().len(), 1001);
    // Once the probe ends, nothing more comes.
    lone.session.stop_probe().unwrap();
    assert!(!lone.session.probing());
}
