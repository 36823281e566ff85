//! Streams that owe a message: the incomplete-message timeout and the session's budget for
//! bytes of control messages that have not fully arrived.

use std::time::Duration;

use super::common::{Lone, cancels, path, subscribe_msg, typed};
use moq_proto::code::{probe as probe_codes, subscribe as subscribe_codes};
use moq_proto::message::{Probe, StreamType};
use moq_proto::{Config, Dir, ErrorCode, Limits, Message, Role};

/// A peer that trickles a SUBSCRIBE one byte a second (slowloris) has its stream
/// cancelled with Subscribe code 0x5 once the timeout passes; the session goes on.
#[test]
fn a_trickled_subscribe_is_cancelled_with_0x5_after_the_timeout() {
    let mut lone = Lone::new(Role::Server);
    let long = format!("/{}", "x".repeat(200));
    lone.session.announce(path(&long), vec![]).unwrap();
    let bytes = subscribe_msg(1, &long);
    let id = lone.accept_with(Dir::Bi, &bytes[..4]);
    let timeout = Config::default().incomplete_message_timeout;
    let mut cancelled_at = None;
    for (sent, second) in (4..).zip(1..=(timeout.as_secs() + 5)) {
        lone.advance(Duration::from_secs(1));
        let got = cancels(&lone.commands());
        if !got.is_empty() {
            assert_eq!(
                got,
                vec![
                    (id, subscribe_codes::TIMEOUT, "reset"),
                    (id, subscribe_codes::TIMEOUT, "stop")
                ]
            );
            cancelled_at = Some(second);
            break;
        }
        lone.data(id, &bytes[sent..sent + 1]);
    }
    assert_eq!(cancelled_at, Some(timeout.as_secs()), "cut at the timeout");
    assert!(!lone.session.is_closed());
    let stats = lone.session.stats();
    assert_eq!(stats.streams_abandoned, 1);
    assert_eq!(stats.control_bytes_buffered, 0);
    assert_eq!(lone.session.open_streams(), 0);
    assert_eq!(lone.session.poll_timeout(), None, "no timer left behind");
}

/// Streams opened and left silent (no type byte) are cancelled 0x0 at the timeout:
/// reset and stop for a bidirectional one, stop for a unidirectional one.
#[test]
fn a_stream_that_never_sends_its_type_is_cancelled() {
    let mut lone = Lone::new(Role::Server);
    let bi = lone.accept(Dir::Bi);
    let uni = lone.accept(Dir::Uni);
    // A uni stream with its type but no GROUP header owes one too.
    let group = lone.accept_with(Dir::Uni, &[StreamType::Group.to_byte()]);
    let timeout = Config::default().incomplete_message_timeout;
    lone.advance(timeout - Duration::from_millis(1));
    assert!(
        cancels(&lone.commands()).is_empty(),
        "not before the timeout"
    );
    lone.advance(Duration::from_millis(1));
    let mut got = cancels(&lone.commands());
    got.sort();
    let zero = ErrorCode(0);
    let mut want = vec![
        (bi, zero, "reset"),
        (bi, zero, "stop"),
        (uni, zero, "stop"),
        (group, zero, "stop"),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(!lone.session.is_closed());
    assert_eq!(lone.session.stats().streams_abandoned, 3);
    assert_eq!(lone.session.open_streams(), 0);
}

/// A control stream that keeps completing messages is never cut, even when a partial
/// message sits in its buffer between them for longer in total than the timeout.
#[test]
fn a_stream_that_keeps_completing_messages_stays() {
    let mut lone = Lone::new(Role::Server);
    let timeout = Config::default().incomplete_message_timeout;
    let probe = |bitrate| {
        Probe {
            bitrate,
            rtt: Duration::ZERO,
        }
        .to_bytes()
        .unwrap()
        .to_vec()
    };
    let first = typed(
        StreamType::Probe,
        &Probe {
            bitrate: 1000,
            rtt: Duration::ZERO,
        },
    );
    let id = lone.accept_with(Dir::Bi, &first);
    // Each step completes the pending message and leaves half of the next one.
    let mut pending = probe(2000);
    lone.data(id, &pending[..1]);
    for step in 0..(3 * timeout.as_secs()) {
        lone.advance(timeout / 2);
        let next = probe(3000 + step);
        let mut chunk = pending[1..].to_vec();
        chunk.extend_from_slice(&next[..1]);
        lone.data(id, &chunk);
        pending = next;
        let got = cancels(&lone.commands());
        assert!(
            !got.iter().any(|(s, ..)| *s == id),
            "step {step}: the probe stream was cut: {got:?}"
        );
    }
    assert_eq!(lone.session.stats().streams_abandoned, 0);
    // Then it stalls mid-message: cut with the probe timeout code.
    lone.advance(timeout);
    assert_eq!(
        cancels(&lone.commands()),
        vec![
            (id, probe_codes::TIMEOUT, "reset"),
            (id, probe_codes::TIMEOUT, "stop")
        ]
    );
}

/// Many streams each holding part of a large message: the one that takes the session past
/// its budget is cancelled 0x0, the others stay, and the bytes held stay under the budget.
#[test]
fn partial_messages_are_bounded_across_streams() {
    const BUDGET: usize = 64 * 1024;
    let mut config = Config::default();
    config.max_buffered_control_bytes = BUDGET;
    config.limits = Limits {
        max_message_size: 60 * 1024,
        ..Limits::default()
    };
    let mut lone = Lone::with_config(Role::Server, config);
    // Type 0x02, then a SUBSCRIBE length of 50 000 (a 4-byte varint), then 10 000 bytes.
    let mut head = vec![StreamType::Subscribe.to_byte(), 0x80, 0x00, 0xc3, 0x50];
    head.extend(std::iter::repeat_n(0u8, 10_000));
    let mut streams = Vec::new();
    let mut cut = Vec::new();
    for _ in 0..10 {
        let id = lone.accept_with(Dir::Bi, &head);
        streams.push(id);
        let got = cancels(&lone.commands());
        if !got.is_empty() {
            assert_eq!(
                got,
                vec![(id, ErrorCode(0), "reset"), (id, ErrorCode(0), "stop")]
            );
            cut.push(id);
        }
        let held = lone.session.stats().control_bytes_buffered as usize;
        assert!(held <= BUDGET, "{held} bytes held");
    }
    // 6 streams fit (60 030 bytes); every later one passes the budget and is cut.
    assert_eq!(cut, streams[6..].to_vec());
    assert_eq!(lone.session.stats().streams_abandoned, 4);
    assert!(!lone.session.is_closed());
    // A stream that ends frees its share: a new one fits again.
    lone.reset(streams[0], ErrorCode(0));
    lone.commands();
    let id = lone.accept_with(Dir::Bi, &head);
    assert!(cancels(&lone.commands()).iter().all(|(s, ..)| *s != id));
}
