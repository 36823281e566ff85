//! Malformed and hostile input: every error the codec can report, from real bytes, and the
//! limits that keep a peer from making us wait for (or allocate) what it announces.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Item, goldens, hex};
use moq_proto::message::{
    Announce, AnnounceInterest, AnnounceStatus, Fetch, FrameHeader, GoAway, GroupHeader, Probe,
    StreamType, Subscribe, SubscribeDrop, SubscribeOk, SubscribeParams, SubscribeResponse,
    SubscribeUpdate, UnknownStreamType,
};
use moq_proto::{
    BroadcastPath, DecodeError, EncodeError, GroupSequence, HopId, Limits, Message, PathPrefix,
    StreamDecoder, SubscribeId, VarInt,
};

const MAX: u64 = VarInt::MAX.into_inner();
const MIB: usize = 1024 * 1024;

/// `body` with its minimal varint length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    VarInt::try_from(body.len()).unwrap().encode(&mut out);
    out.extend_from_slice(body);
    out
}

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    VarInt::from_u64(v).unwrap().encode(&mut out);
    out
}

fn decoder(bytes: &[u8]) -> StreamDecoder {
    let mut dec = StreamDecoder::new();
    dec.push(Bytes::copy_from_slice(bytes));
    dec
}

/// The name a decode error carries for a golden message item.
fn message_name(item: &Item) -> &'static str {
    match item {
        Item::Response(SubscribeResponse::Ok(_)) => SubscribeOk::NAME,
        Item::Response(SubscribeResponse::Drop(_)) => SubscribeDrop::NAME,
        other => other.name(),
    }
}

/// Splits an encoded message item into (type byte, if any; length; body).
fn parts(item: &Item) -> (Vec<u8>, u64, Vec<u8>) {
    let bytes = item.encode();
    let ty_len = usize::from(matches!(item, Item::Response(_)));
    let (len, n) = VarInt::peek(&bytes[ty_len..]).unwrap();
    let body = bytes[ty_len + n..].to_vec();
    assert_eq!(body.len() as u64, len.into_inner());
    (bytes[..ty_len].to_vec(), len.into_inner(), body)
}

/// Every message item of the spec examples, each once per example.
fn golden_messages() -> Vec<(&'static str, Item)> {
    goldens()
        .into_iter()
        .flat_map(|g| {
            g.items
                .into_iter()
                .filter(Item::is_message)
                .map(move |i| (g.name, i))
        })
        .collect()
}

// --- Oversized length prefixes -----------------------------------------------------------

/// `ff × 8`: a length of 2^62 − 1, the largest a varint can say.
const HUGE: [u8; 8] = [0xff; 8];

fn assert_too_long<M: Message + PartialEq + std::fmt::Debug>() {
    let expected = DecodeError::MessageTooLong {
        message: M::NAME,
        len: MAX,
        limit: Limits::MAX_MESSAGE_SIZE,
    };
    // With nothing after the prefix, and with a few body bytes: refused, not awaited.
    assert_eq!(M::decode(&HUGE, &Limits::default()).unwrap_err(), expected);
    let mut more = HUGE.to_vec();
    more.extend_from_slice(&[0, 0, 0]);
    assert_eq!(M::decode(&more, &Limits::default()).unwrap_err(), expected);
    // Seven bytes of the prefix are not yet a length: need more.
    assert_eq!(M::decode(&HUGE[..7], &Limits::default()).unwrap(), None);
}

#[test]
fn max_length_prefix_is_message_too_long_on_every_message() {
    assert_too_long::<AnnounceInterest>();
    assert_too_long::<Announce>();
    assert_too_long::<Subscribe>();
    assert_too_long::<SubscribeUpdate>();
    assert_too_long::<SubscribeOk>();
    assert_too_long::<SubscribeDrop>();
    assert_too_long::<Fetch>();
    assert_too_long::<Probe>();
    assert_too_long::<GoAway>();
    assert_too_long::<GroupHeader>();
    for (ty, name) in [(0u8, SubscribeOk::NAME), (1, SubscribeDrop::NAME)] {
        let mut wire = vec![ty];
        wire.extend_from_slice(&HUGE);
        assert_eq!(
            SubscribeResponse::decode(&wire, &Limits::default()),
            Err(DecodeError::MessageTooLong {
                message: name,
                len: MAX,
                limit: Limits::MAX_MESSAGE_SIZE,
            })
        );
    }
    // A frame is limited by the frame size.
    assert_eq!(
        FrameHeader::decode(&HUGE, &Limits::default()),
        Err(DecodeError::FrameTooLarge {
            len: MAX,
            limit: Limits::MAX_FRAME_SIZE,
        })
    );
}

fn assert_too_long_streamed<M: Message + PartialEq + std::fmt::Debug>() {
    let expected = DecodeError::MessageTooLong {
        message: M::NAME,
        len: MAX,
        limit: Limits::MAX_MESSAGE_SIZE,
    };
    // Fed byte by byte: need more until the prefix is whole, then refused at once.
    let mut dec = StreamDecoder::new();
    for (i, b) in HUGE.iter().enumerate() {
        dec.push(Bytes::copy_from_slice(&[*b]));
        let got = dec.decode::<M>(&Limits::default());
        if i < 7 {
            assert_eq!(got, Ok(None), "{} byte {i}", M::NAME);
        } else {
            assert_eq!(got, Err(expected.clone()), "{}", M::NAME);
        }
    }
}

#[test]
fn max_length_prefix_is_message_too_long_through_stream_decoder() {
    assert_too_long_streamed::<AnnounceInterest>();
    assert_too_long_streamed::<Announce>();
    assert_too_long_streamed::<Subscribe>();
    assert_too_long_streamed::<SubscribeUpdate>();
    assert_too_long_streamed::<Fetch>();
    assert_too_long_streamed::<Probe>();
    assert_too_long_streamed::<GoAway>();
    assert_too_long_streamed::<GroupHeader>();
    for ty in [0u8, 1] {
        let mut wire = vec![ty];
        wire.extend_from_slice(&HUGE);
        let mut dec = decoder(&wire);
        assert!(matches!(
            dec.decode_response(&Limits::default()),
            Err(DecodeError::MessageTooLong {
                len: MAX,
                limit: Limits::MAX_MESSAGE_SIZE,
                ..
            })
        ));
        let mut dec = decoder(&wire[..8]);
        assert_eq!(dec.decode_response(&Limits::default()), Ok(None));
    }
    let mut dec = decoder(&HUGE);
    assert_eq!(
        dec.decode_frame(&Limits::default()),
        Err(DecodeError::FrameTooLarge {
            len: MAX,
            limit: Limits::MAX_FRAME_SIZE,
        })
    );
}

#[test]
fn message_length_limit_is_exact() {
    // 1 MiB is allowed (and awaited); 1 MiB + 1 is refused before its body arrives.
    let at = varint(Limits::MAX_MESSAGE_SIZE as u64);
    assert_eq!(GoAway::decode(&at, &Limits::default()), Ok(None));
    assert_eq!(decoder(&at).decode::<GoAway>(&Limits::default()), Ok(None));
    let over = varint(Limits::MAX_MESSAGE_SIZE as u64 + 1);
    let expected = Err(DecodeError::MessageTooLong {
        message: GoAway::NAME,
        len: Limits::MAX_MESSAGE_SIZE as u64 + 1,
        limit: Limits::MAX_MESSAGE_SIZE,
    });
    assert_eq!(GoAway::decode(&over, &Limits::default()), expected);
    assert_eq!(
        decoder(&over).decode::<GoAway>(&Limits::default()),
        expected.map(|_| None)
    );
    // A custom limit applies too.
    let small = Limits {
        max_message_size: 2,
        ..Limits::default()
    };
    assert_eq!(
        Probe::decode(&hex("02 00 00"), &small),
        Ok(Some((Probe::default(), 3)))
    );
    assert!(matches!(
        Probe::decode(&hex("03 00 00 00"), &small),
        Err(DecodeError::MessageTooLong {
            len: 3,
            limit: 2,
            ..
        })
    ));
}

// --- ANNOUNCE hop counts ------------------------------------------------------------------

#[test]
fn announce_hop_count_of_a_million_is_too_many_hops() {
    // Active, empty suffix, hop count 10^6 (`80 0f 42 40`), then three bytes of hops.
    let wire = framed(&hex("01 00 80 0f 42 40 2a 2a 2a"));
    let expected = DecodeError::TooManyHops {
        message: Announce::NAME,
        count: 1_000_000,
        limit: Limits::MAX_HOPS,
    };
    assert_eq!(
        Announce::decode(&wire, &Limits::default()),
        Err(expected.clone())
    );
    assert_eq!(
        decoder(&wire).decode::<Announce>(&Limits::default()),
        Err(expected)
    );
    // One over the limit is refused as well, even with all its hop bytes present.
    let mut body = hex("01 00 40 41");
    body.extend(std::iter::repeat_n(7u8, 65));
    assert!(matches!(
        Announce::decode(&framed(&body), &Limits::default()),
        Err(DecodeError::TooManyHops {
            count: 65,
            limit: 64,
            ..
        })
    ));
    // And a custom limit applies.
    let two = Limits {
        max_hops: 2,
        ..Limits::default()
    };
    assert!(matches!(
        Announce::decode(&framed(&hex("01 00 03 01 02 03")), &two),
        Err(DecodeError::TooManyHops {
            count: 3,
            limit: 2,
            ..
        })
    ));
}

#[test]
fn announce_hop_count_within_limit_but_missing_hops_is_truncated() {
    let wire = framed(&hex("01 00 3c 2a 2a 2a")); // hop count 60, three hop bytes
    let expected = DecodeError::Truncated {
        message: Announce::NAME,
        field: "hop_id",
    };
    assert_eq!(
        Announce::decode(&wire, &Limits::default()),
        Err(expected.clone())
    );
    assert_eq!(
        decoder(&wire).decode::<Announce>(&Limits::default()),
        Err(expected)
    );
    // A multi-byte hop id cut by the end of the body.
    assert_eq!(
        Announce::decode(&framed(&hex("01 00 01 41")), &Limits::default()),
        Err(DecodeError::Truncated {
            message: Announce::NAME,
            field: "hop_id",
        })
    );
}

// --- Streams cut short --------------------------------------------------------------------

#[test]
fn every_example_cut_at_every_offset_needs_more_then_ends_unexpectedly() {
    let limits = Limits::default();
    for g in goldens() {
        let bytes = g.bytes();
        for cut in 0..=bytes.len() {
            let ctx = format!("{} cut at {cut}", g.name);
            let mut dec = decoder(&bytes[..cut]);
            // Items wholly before the cut decode; the one it falls in needs more.
            let mut start = 0;
            let mut pending = None;
            for item in &g.items {
                let end = start + item.encoded_len();
                if end <= cut {
                    let got = item.decode_stream(&mut dec, &limits).unwrap();
                    assert_eq!(got.as_ref(), Some(item), "{ctx}");
                } else {
                    assert_eq!(item.decode_stream(&mut dec, &limits), Ok(None), "{ctx}");
                    pending = Some((item, start));
                    break;
                }
                start = end;
            }
            assert!(!dec.is_finished(), "{ctx}");
            dec.finish();
            match pending {
                // Cut between items (or at 0, or after the last): a clean end.
                Some((item, start)) if start == cut => {
                    assert_eq!(item.decode_stream(&mut dec, &limits), Ok(None), "{ctx}");
                    assert!(dec.is_finished(), "{ctx}");
                }
                None => {
                    assert_eq!(cut, bytes.len(), "{ctx}");
                    assert!(dec.is_finished(), "{ctx}");
                }
                // Cut inside an item: the FIN is an error naming it.
                Some((item, _)) => {
                    assert_eq!(
                        item.decode_stream(&mut dec, &limits),
                        Err(DecodeError::UnexpectedEnd {
                            message: item.name(),
                        }),
                        "{ctx}"
                    );
                    assert!(!dec.is_finished(), "{ctx}");
                }
            }
        }
    }
}

#[test]
fn every_message_cut_short_needs_more_with_the_slice_api() {
    let limits = Limits::default();
    for (name, item) in golden_messages() {
        let bytes = item.encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                item.decode_slice(&bytes[..cut], &limits),
                Ok(None),
                "{name} cut {cut}"
            );
        }
    }
}

// --- Length prefix disagreeing with the fields --------------------------------------------

#[test]
fn length_one_too_large_with_an_extra_byte_is_trailing_bytes() {
    let limits = Limits::default();
    for (name, item) in golden_messages() {
        let (ty, len, mut body) = parts(&item);
        body.push(0x00);
        let mut wire = ty;
        wire.extend(varint(len + 1));
        wire.extend(&body);
        let expected = DecodeError::TrailingBytes {
            message: message_name(&item),
            count: 1,
        };
        assert_eq!(
            item.decode_slice(&wire, &limits),
            Err(expected.clone()),
            "{name}"
        );
        let mut dec = decoder(&wire);
        assert_eq!(
            item.decode_stream(&mut dec, &limits),
            Err(expected),
            "{name}"
        );
    }
}

#[test]
fn length_one_too_small_is_truncated() {
    let limits = Limits::default();
    for (name, item) in golden_messages() {
        let (ty, len, body) = parts(&item);
        let mut wire = ty;
        wire.extend(varint(len - 1));
        wire.extend(&body);
        let err = item.decode_slice(&wire, &limits).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { message, .. } if message == message_name(&item)),
            "{name}: {err:?}"
        );
        let mut dec = decoder(&wire);
        assert_eq!(item.decode_stream(&mut dec, &limits), Err(err), "{name}");
    }
}

#[test]
fn varint_announcing_more_bytes_than_present_is_not_consumed() {
    for (first, width) in [(0x40u8, 2usize), (0x80, 4), (0xc0, 8)] {
        let mut full = vec![first];
        full.resize(width, 0x01);
        for have in 1..width {
            let mut buf: &[u8] = &full[..have];
            assert!(
                VarInt::decode(&mut buf).is_err(),
                "{first:#x} with {have} bytes"
            );
            assert_eq!(buf.len(), have, "nothing consumed");
            assert_eq!(VarInt::peek(&full[..have]), None);
        }
        let mut buf: &[u8] = &full;
        assert!(VarInt::decode(&mut buf).is_ok());
        assert!(buf.is_empty());
    }
    let mut empty: &[u8] = &[];
    assert!(VarInt::decode(&mut empty).is_err());
}

#[test]
fn varint_running_past_the_body_is_truncated() {
    let limits = Limits::default();
    // PROBE body of 4 bytes: bitrate 0, then an 8-byte RTT varint with 3 bytes present.
    assert_eq!(
        Probe::decode(&hex("04 00 c0 00 00"), &limits),
        Err(DecodeError::Truncated {
            message: Probe::NAME,
            field: "rtt",
        })
    );
    // The body ends inside the first field; the next message's bytes are not borrowed.
    assert_eq!(
        Probe::decode(&hex("03 c0 00 00 00 00 00 00 00 00"), &limits),
        Err(DecodeError::Truncated {
            message: Probe::NAME,
            field: "bitrate",
        })
    );
    assert_eq!(
        GroupHeader::decode(&hex("02 01 80 00"), &limits),
        Err(DecodeError::Truncated {
            message: GroupHeader::NAME,
            field: "group_sequence",
        })
    );
    assert_eq!(
        Subscribe::decode(&hex("01 c0"), &limits),
        Err(DecodeError::Truncated {
            message: Subscribe::NAME,
            field: "subscribe_id",
        })
    );
    // A string whose length runs past the body.
    assert_eq!(
        GoAway::decode(&hex("02 05 41"), &limits),
        Err(DecodeError::Truncated {
            message: GoAway::NAME,
            field: "new_session_uri",
        })
    );
}

// --- Frame limits ---------------------------------------------------------------------------

#[test]
fn frame_exactly_at_a_small_limit_is_accepted_and_one_over_refused() {
    let limits = Limits {
        max_frame_size: 1024,
        ..Limits::default()
    };
    let payload = vec![0xabu8; 1024];
    let mut wire = varint(1024);
    wire.extend_from_slice(&payload);
    // The header alone: accepted, waiting for the payload.
    assert_eq!(decoder(&wire[..2]).decode_frame(&limits), Ok(None));
    let mut dec = decoder(&wire);
    assert_eq!(dec.decode_frame(&limits), Ok(Some(Bytes::from(payload))));
    assert_eq!(dec.buffered(), 0);

    let over = varint(1025);
    let expected = DecodeError::FrameTooLarge {
        len: 1025,
        limit: 1024,
    };
    assert_eq!(FrameHeader::decode(&over, &limits), Err(expected.clone()));
    assert_eq!(decoder(&over).decode_frame(&limits), Err(expected.clone()));
    assert_eq!(decoder(&over).decode_payload(&limits), Err(expected));
}

#[test]
fn frame_over_the_default_limit_is_refused_with_only_its_header() {
    let limit = Limits::MAX_FRAME_SIZE;
    assert_eq!(limit, 50 * MIB);
    let over = varint(limit as u64 + 1);
    let expected = DecodeError::FrameTooLarge {
        len: limit as u64 + 1,
        limit,
    };
    assert_eq!(
        FrameHeader::decode(&over, &Limits::default()),
        Err(expected.clone())
    );
    assert_eq!(
        decoder(&over).decode_frame(&Limits::default()),
        Err(expected)
    );
}

#[test]
fn frame_exactly_at_the_default_limit_is_accepted() {
    let limit = Limits::MAX_FRAME_SIZE;
    let mut dec = decoder(&varint(limit as u64));
    assert_eq!(dec.decode_frame(&Limits::default()), Ok(None));
    let payload = Bytes::from(vec![0u8; limit]);
    let range = payload.as_ptr_range();
    dec.push(payload);
    let got = dec.decode_frame(&Limits::default()).unwrap().unwrap();
    assert_eq!(got.len(), limit);
    assert_eq!(got.as_ptr_range(), range, "returned without a copy");
    dec.finish();
    assert!(dec.is_finished());
}

#[test]
fn encoding_a_frame_over_50_mib_is_frame_too_large() {
    let payload = vec![0u8; Limits::MAX_FRAME_SIZE + 1];
    let expected = EncodeError::FrameTooLarge {
        len: Limits::MAX_FRAME_SIZE + 1,
        limit: Limits::MAX_FRAME_SIZE,
    };
    assert_eq!(FrameHeader::for_payload(&payload), Err(expected.clone()));
    assert_eq!(FrameHeader::encode_frame(&payload), Err(expected));
    assert_eq!(
        FrameHeader::for_payload(&payload[..Limits::MAX_FRAME_SIZE]),
        Ok(FrameHeader {
            len: Limits::MAX_FRAME_SIZE,
        })
    );
}

// --- Strings --------------------------------------------------------------------------------

/// Byte sequences that are not UTF-8: a stray continuation byte, a cut multi-byte sequence,
/// an overlong `/`, a surrogate, and 0xff.
const NOT_UTF8: [&[u8]; 5] = [
    &[0x80],
    &[0xe2, 0x82],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
    &[b'a', 0xff],
];

fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

#[test]
fn invalid_utf8_in_any_string_field_is_invalid_utf8() {
    let limits = Limits::default();
    let ok = string(b"/a");
    // Each message body with `s` in one string field; the bodies are otherwise well formed.
    type Case = (&'static str, &'static str, fn(&[u8], &[u8]) -> Vec<u8>);
    let cases: [Case; 7] = [
        (Subscribe::NAME, "path", |_, s| {
            [&[1u8][..], s, &[0], &[0, 0, 0, 0, 0]].concat()
        }),
        (Subscribe::NAME, "track", |ok, s| {
            [&[1u8][..], ok, s, &[0, 0, 0, 0, 0]].concat()
        }),
        (Fetch::NAME, "path", |ok, s| [s, ok, &[0, 0]].concat()),
        (Fetch::NAME, "track", |ok, s| [ok, s, &[0, 0]].concat()),
        (Announce::NAME, "suffix", |_, s| {
            [&[1u8][..], s, &[0]].concat()
        }),
        (AnnounceInterest::NAME, "prefix", |_, s| [s, &[0]].concat()),
        (GoAway::NAME, "new_session_uri", |_, s| s.to_vec()),
    ];
    let decode = |message: &str, wire: &[u8]| match message {
        Subscribe::NAME => Subscribe::decode(wire, &limits).map(|m| m.map(|_| ())),
        Fetch::NAME => Fetch::decode(wire, &limits).map(|m| m.map(|_| ())),
        Announce::NAME => Announce::decode(wire, &limits).map(|m| m.map(|_| ())),
        AnnounceInterest::NAME => AnnounceInterest::decode(wire, &limits).map(|m| m.map(|_| ())),
        _ => GoAway::decode(wire, &limits).map(|m| m.map(|_| ())),
    };
    for (message, field, body) in cases {
        assert_eq!(
            decode(message, &framed(&body(&ok, &ok))),
            Ok(Some(())),
            "{message}"
        );
        for bad in NOT_UTF8 {
            let wire = framed(&body(&ok, &string(bad)));
            assert_eq!(
                decode(message, &wire),
                Err(DecodeError::InvalidUtf8 { message, field }),
                "{message}.{field} {bad:02x?}"
            );
        }
    }
    // Through the stream decoder as well.
    let wire = framed(&[&[1u8][..], &string(&[0xff]), &[0]].concat());
    assert_eq!(
        decoder(&wire).decode::<Announce>(&limits),
        Err(DecodeError::InvalidUtf8 {
            message: Announce::NAME,
            field: "suffix",
        })
    );
}

#[test]
fn paths_with_too_many_segments_are_malformed() {
    let limits = Limits::default();
    let sub =
        |path: &str| framed(&[&[1u8][..], &string(path.as_bytes()), &[0, 0, 0, 0, 0, 0]].concat());
    let at = "/s".repeat(Limits::MAX_PATH_SEGMENTS);
    assert!(Subscribe::decode(&sub(&at), &limits).unwrap().is_some());
    // Empty segments do not count: `//` is one separator.
    let doubled = "//s".repeat(Limits::MAX_PATH_SEGMENTS);
    assert!(
        Subscribe::decode(&sub(&doubled), &limits)
            .unwrap()
            .is_some()
    );
    let over = "/s".repeat(Limits::MAX_PATH_SEGMENTS + 1);
    let err = Subscribe::decode(&sub(&over), &limits).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooManySegments {
            message: Subscribe::NAME,
            field: "path",
            count: Limits::MAX_PATH_SEGMENTS + 1,
            limit: Limits::MAX_PATH_SEGMENTS,
        }
    );
    assert!(err.is_malformed());
    // A thousand parts, as a hostile peer sent, in an ANNOUNCE suffix and an interest prefix.
    let thousand = "/p".repeat(1000);
    let announce = framed(&[&[1u8][..], &string(thousand.as_bytes()), &[0]].concat());
    assert!(matches!(
        Announce::decode(&announce, &limits),
        Err(DecodeError::TooManySegments {
            field: "suffix",
            ..
        })
    ));
    let interest = framed(&[&string(format!("{thousand}/").as_bytes())[..], &[0]].concat());
    assert!(matches!(
        AnnounceInterest::decode(&interest, &limits),
        Err(DecodeError::TooManySegments {
            field: "prefix",
            ..
        })
    ));
}

#[test]
fn string_over_max_string_len_is_field_too_long() {
    let four = Limits {
        max_string_len: 4,
        ..Limits::default()
    };
    let sub = |path: &[u8]| framed(&[&[1u8][..], &string(path), &[0, 0, 0, 0, 0, 0]].concat());
    assert!(Subscribe::decode(&sub(b"/abc"), &four).unwrap().is_some());
    assert_eq!(
        Subscribe::decode(&sub(b"/abcd"), &four),
        Err(DecodeError::FieldTooLong {
            message: Subscribe::NAME,
            field: "path",
            len: 5,
            limit: 4,
        })
    );
    assert_eq!(
        decoder(&framed(&string(b"abcde"))).decode::<GoAway>(&four),
        Err(DecodeError::FieldTooLong {
            message: GoAway::NAME,
            field: "new_session_uri",
            len: 5,
            limit: 4,
        })
    );
    // The default limit: 64 KiB accepted, one more byte refused.
    let at = "u".repeat(Limits::MAX_STRING_LEN);
    let wire = framed(&string(at.as_bytes()));
    assert_eq!(
        GoAway::decode(&wire, &Limits::default()),
        Ok(Some((GoAway { uri: at.clone() }, wire.len())))
    );
    let over = framed(&string(format!("{at}u").as_bytes()));
    assert_eq!(
        GoAway::decode(&over, &Limits::default()),
        Err(DecodeError::FieldTooLong {
            message: GoAway::NAME,
            field: "new_session_uri",
            len: Limits::MAX_STRING_LEN as u64 + 1,
            limit: Limits::MAX_STRING_LEN,
        })
    );
}

fn assert_encode_too_long<M: Message>(m: &M, field: &str, len: usize) {
    let expected = Err(EncodeError::FieldTooLong {
        message: M::NAME,
        field: field_name(field),
        len,
        limit: Limits::MAX_STRING_LEN,
    });
    assert_eq!(m.encoded_len(), expected);
    assert_eq!(m.to_bytes().map(|_| ()), expected.clone().map(|_| ()));
    let mut buf = Vec::new();
    assert_eq!(m.encode(&mut buf), expected.map(|_| ()));
    assert!(buf.is_empty(), "{}: nothing written on error", M::NAME);
}

/// Field names are `&'static str` in errors; map the test's names onto static ones.
fn field_name(field: &str) -> &'static str {
    match field {
        "path" => "path",
        "track" => "track",
        "suffix" => "suffix",
        "prefix" => "prefix",
        _ => "new_session_uri",
    }
}

#[test]
fn encoding_a_string_over_64_kib_is_field_too_long() {
    let over = "x".repeat(Limits::MAX_STRING_LEN + 1);
    let at = "x".repeat(Limits::MAX_STRING_LEN);
    assert_encode_too_long(&GoAway { uri: over.clone() }, "uri", over.len());
    assert!(GoAway { uri: at.clone() }.to_bytes().is_ok());

    let sub = Subscribe {
        id: SubscribeId(1),
        path: BroadcastPath::new("a"),
        track: over.clone(),
        params: SubscribeParams::default(),
    };
    assert_encode_too_long(&sub, "track", over.len());
    // A path is sent `/`-rooted: 64 KiB − 1 characters fill the limit exactly.
    let path = Subscribe {
        path: BroadcastPath::new(&at),
        track: String::new(),
        ..sub.clone()
    };
    assert_encode_too_long(&path, "path", at.len() + 1);
    let fits = Subscribe {
        path: BroadcastPath::new(&at[1..]),
        ..path.clone()
    };
    let bytes = fits.to_bytes().unwrap();
    assert_eq!(
        Subscribe::decode(&bytes, &Limits::default()),
        Ok(Some((fits, bytes.len())))
    );

    let fetch = Fetch {
        path: BroadcastPath::new(&at),
        track: String::new(),
        priority: 0,
        group: GroupSequence(0),
    };
    assert_encode_too_long(&fetch, "path", at.len() + 1);
    let fetch = Fetch {
        path: BroadcastPath::new("a"),
        track: over.clone(),
        ..fetch
    };
    assert_encode_too_long(&fetch, "track", over.len());

    let ann = Announce {
        status: AnnounceStatus::Active,
        suffix: over.clone(),
        hops: vec![],
    };
    assert_encode_too_long(&ann, "suffix", over.len());
    // `/` + 64 KiB − 1 + `/`.
    let interest = AnnounceInterest {
        prefix: PathPrefix::new(&at[1..]),
        exclude_hop: HopId(0),
    };
    assert_encode_too_long(&interest, "prefix", at.len() + 1);
}

// --- Type bytes -------------------------------------------------------------------------------

#[test]
fn unknown_stream_type_bytes_are_unknown() {
    for b in [0x06u8, 0x3e, 0x40, 0xff] {
        assert_eq!(StreamType::from_byte(b), Err(UnknownStreamType(b)));
    }
    // 0x3f is ours: the probe padding extension.
    for b in (0x06..=u8::MAX).filter(|&b| b != 0x3f) {
        assert_eq!(StreamType::from_byte(b), Err(UnknownStreamType(b)));
    }
    assert_eq!(StreamType::from_byte(0x3f), Ok(StreamType::Padding));
}

#[test]
fn response_type_other_than_ok_or_drop_is_invalid() {
    let body = hex("05 00 00 00 00 00");
    for b in [0x02u8, 0x3f, 0x40, 0xff] {
        let expected = Err(DecodeError::InvalidResponseType(b));
        // Refused from the type byte alone, and with a well-formed body after it.
        assert_eq!(
            SubscribeResponse::decode(&[b], &Limits::default()),
            expected
        );
        let wire = [&[b][..], &body].concat();
        assert_eq!(
            SubscribeResponse::decode(&wire, &Limits::default()),
            expected
        );
        assert_eq!(
            decoder(&[b]).decode_response(&Limits::default()),
            expected.clone().map(|_| None)
        );
        assert_eq!(
            decoder(&wire).decode_response(&Limits::default()),
            expected.map(|_| None)
        );
    }
    for b in 0x02..=u8::MAX {
        assert_eq!(
            SubscribeResponse::decode(&[b], &Limits::default()),
            Err(DecodeError::InvalidResponseType(b))
        );
    }
}

// --- Error classes ----------------------------------------------------------------------------

#[test]
fn unknown_announce_status_is_not_malformed() {
    for (status, wire) in [
        (2, framed(&hex("02 04 63 61 6d 31 00"))),
        (3, framed(&hex("03 00 00"))),
        (300, framed(&hex("41 2c 00 00"))),
    ] {
        let err = Announce::decode(&wire, &Limits::default()).unwrap_err();
        assert_eq!(err, DecodeError::UnknownAnnounceStatus(status));
        assert!(!err.is_malformed());
        let err = decoder(&wire)
            .decode::<Announce>(&Limits::default())
            .unwrap_err();
        assert_eq!(err, DecodeError::UnknownAnnounceStatus(status));
    }
}

#[test]
fn every_other_decode_error_is_malformed() {
    let limits = Limits::default();
    let mut cut = decoder(&hex("05 01"));
    cut.finish();
    let errors = [
        GoAway::decode(&HUGE, &limits).unwrap_err(),
        GoAway::decode(&hex("01 05"), &limits).unwrap_err(),
        GoAway::decode(&hex("02 00 00"), &limits).unwrap_err(),
        GoAway::decode(
            &hex("02 05 00"),
            &Limits {
                max_string_len: 4,
                ..limits.clone()
            },
        )
        .unwrap_err(),
        GoAway::decode(&hex("02 01 ff"), &limits).unwrap_err(),
        Announce::decode(&hex("05 01 00 40 41 00"), &limits).unwrap_err(),
        SubscribeResponse::decode(&[2], &limits).unwrap_err(),
        FrameHeader::decode(&HUGE, &limits).unwrap_err(),
        cut.decode::<GoAway>(&limits).unwrap_err(),
    ];
    let mut kinds = Vec::new();
    for err in &errors {
        assert!(err.is_malformed(), "{err:?}");
        assert!(!matches!(err, DecodeError::UnknownAnnounceStatus(_)));
        let kind = std::mem::discriminant(err);
        assert!(!kinds.contains(&kind), "one case per variant: {err:?}");
        kinds.push(kind);
    }
    assert!(matches!(errors[0], DecodeError::MessageTooLong { .. }));
    assert!(matches!(errors[1], DecodeError::Truncated { .. }));
    assert!(matches!(errors[2], DecodeError::TrailingBytes { .. }));
    assert!(matches!(errors[3], DecodeError::FieldTooLong { .. }));
    assert!(matches!(errors[4], DecodeError::InvalidUtf8 { .. }));
    assert!(matches!(errors[5], DecodeError::TooManyHops { .. }));
    assert!(matches!(errors[6], DecodeError::InvalidResponseType(2)));
    assert!(matches!(errors[7], DecodeError::FrameTooLarge { .. }));
    assert!(matches!(errors[8], DecodeError::UnexpectedEnd { .. }));
}

// --- Group ranges -----------------------------------------------------------------------------

#[test]
fn group_range_at_the_top_of_the_varint_range_is_value_out_of_range() {
    let top = GroupSequence(MAX);
    let start = SubscribeParams {
        start: Some(top),
        ..SubscribeParams::default()
    };
    let sub = Subscribe {
        id: SubscribeId(1),
        path: BroadcastPath::new("a"),
        track: String::new(),
        params: start,
    };
    // The error names the message and the field (its value is the one that did not fit).
    let out_of_range = |result: Result<usize, EncodeError>, name: &str, which: &str| {
        assert!(
            matches!(
                result,
                Err(EncodeError::ValueOutOfRange { message, field, value })
                    if message == name && field == which && value >= MAX
            ),
            "{name}.{which}: {result:?}"
        );
    };
    out_of_range(sub.encoded_len(), Subscribe::NAME, "start_group");
    let mut buf = Vec::new();
    assert!(matches!(
        sub.encode(&mut buf),
        Err(EncodeError::ValueOutOfRange { .. })
    ));
    assert!(buf.is_empty());
    assert!(sub.to_bytes().is_err());
    let end = SubscribeParams {
        end: Some(top),
        ..SubscribeParams::default()
    };
    out_of_range(
        SubscribeUpdate { params: end }.encoded_len(),
        SubscribeUpdate::NAME,
        "end_group",
    );
    out_of_range(
        SubscribeOk { params: start }.encoded_len(),
        SubscribeOk::NAME,
        "start_group",
    );
    let drop = SubscribeDrop::new(GroupSequence(0), top, 0);
    out_of_range(drop.encoded_len(), SubscribeDrop::NAME, "end_group");
    let mut buf = Vec::new();
    assert!(SubscribeResponse::Drop(drop).encode(&mut buf).is_err());
    assert!(buf.is_empty(), "no type byte written on error");

    // One below is the largest: wire 2^62 − 1.
    let max = SubscribeUpdate {
        params: SubscribeParams {
            start: Some(GroupSequence(MAX - 1)),
            ..SubscribeParams::default()
        },
    };
    let bytes = max.to_bytes().unwrap();
    assert_eq!(
        &bytes[..],
        &hex("0c 00 00 00 ff ff ff ff ff ff ff ff 00")[..]
    );
    assert_eq!(
        SubscribeUpdate::decode(&bytes, &Limits::default()),
        Ok(Some((max, bytes.len())))
    );
}

#[test]
fn values_beyond_62_bits_do_not_encode() {
    let group = GroupHeader {
        subscribe_id: SubscribeId(MAX + 1),
        sequence: GroupSequence(0),
    };
    assert_eq!(
        group.encoded_len(),
        Err(EncodeError::ValueOutOfRange {
            message: GroupHeader::NAME,
            field: "subscribe_id",
            value: MAX + 1,
        })
    );
    let ann = Announce {
        status: AnnounceStatus::Active,
        suffix: String::new(),
        hops: vec![HopId(u64::MAX)],
    };
    assert!(matches!(
        ann.encoded_len(),
        Err(EncodeError::ValueOutOfRange { .. })
    ));
    let ann = Announce {
        hops: vec![HopId(1); Limits::MAX_HOPS + 1],
        ..ann
    };
    assert_eq!(
        ann.encoded_len(),
        Err(EncodeError::TooManyHops {
            message: Announce::NAME,
            count: Limits::MAX_HOPS + 1,
            limit: Limits::MAX_HOPS,
        })
    );
    // Durations are carried in whole milliseconds; ones that do not fit are refused.
    let probe = Probe {
        bitrate: 0,
        rtt: Duration::MAX,
    };
    assert!(matches!(
        probe.encoded_len(),
        Err(EncodeError::ValueOutOfRange { .. })
    ));
    let update = SubscribeUpdate {
        params: SubscribeParams {
            max_latency: Duration::from_millis(MAX + 1),
            ..SubscribeParams::default()
        },
    };
    assert!(matches!(
        update.encoded_len(),
        Err(EncodeError::ValueOutOfRange { .. })
    ));
}

#[test]
fn subscribe_drop_wire_zero_decodes_to_group_zero() {
    // D3: gomoqt decodes v − 1 and maps wire 0 to group 0. Wire 0 (gomoqt's unset bound)
    // and wire 1 (group 0) read as the same range but stay apart, so that decode → encode
    // gives back the bytes gomoqt sent.
    let limits = Limits::default();
    for (wire, start, end) in [
        ("01 03 00 00 00", None, None),
        ("01 03 01 01 05", Some(0), Some(0)),
        ("01 03 00 03 00", None, Some(2)),
    ] {
        let bytes = hex(wire);
        let (resp, _) = SubscribeResponse::decode(&bytes, &limits).unwrap().unwrap();
        let SubscribeResponse::Drop(drop) = resp else {
            panic!("{wire}: not a drop");
        };
        assert_eq!(
            (drop.start, drop.end),
            (start.map(GroupSequence), end.map(GroupSequence)),
            "{wire}"
        );
        assert_eq!(drop.first(), GroupSequence(start.unwrap_or(0)), "{wire}");
        assert_eq!(drop.last(), GroupSequence(end.unwrap_or(0)), "{wire}");
        let mut again = Vec::new();
        resp.encode(&mut again).unwrap();
        assert_eq!(again, bytes, "{wire}: decode → encode is byte-exact");
    }
    // Group 0 is sent as 1.
    let mut buf = Vec::new();
    SubscribeResponse::Drop(SubscribeDrop::new(GroupSequence(0), GroupSequence(0), 0))
        .encode(&mut buf)
        .unwrap();
    assert_eq!(buf, hex("01 03 01 01 00"));
}

// --- Zero copy --------------------------------------------------------------------------------

#[test]
fn frame_payload_inside_one_chunk_is_a_slice_of_it() {
    let chunk = Bytes::from(hex("05 48 45 4c 4c 4f 03 01 02 03"));
    let range = chunk.as_ptr_range();
    let mut dec = StreamDecoder::new();
    dec.push(chunk);
    let hello = dec.decode_frame(&Limits::default()).unwrap().unwrap();
    assert_eq!(&hello[..], b"HELLO");
    let inner = hello.as_ptr_range();
    assert!(
        range.start <= inner.start && inner.end <= range.end,
        "HELLO was copied"
    );
    assert_eq!(inner.start, range.start.wrapping_add(1));
    let three = dec.decode_frame(&Limits::default()).unwrap().unwrap();
    assert_eq!(&three[..], [1, 2, 3]);
    let inner = three.as_ptr_range();
    assert!(
        range.start <= inner.start && inner.end <= range.end,
        "frame was copied"
    );

    // A payload that arrives alone in its own chunk, after the header's chunk, is that chunk.
    let mut dec = decoder(&[0x05]);
    let payload = Bytes::from_static(b"WORLD");
    let range = payload.as_ptr_range();
    dec.push(payload);
    let got = dec.decode_frame(&Limits::default()).unwrap().unwrap();
    assert_eq!(got.as_ptr_range(), range);

    // A payload straddling chunks is reassembled correctly.
    let mut dec = decoder(&hex("05 48 45"));
    assert_eq!(dec.decode_frame(&Limits::default()), Ok(None));
    dec.push(Bytes::from_static(b"LLO"));
    assert_eq!(
        dec.decode_frame(&Limits::default()),
        Ok(Some(Bytes::from_static(b"HELLO")))
    );
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn an_incomplete_frame_is_not_parsed_again_until_its_bytes_are_in() {
    let mut wire = varint(300);
    wire.extend_from_slice(&[7u8; 300]);
    wire.extend_from_slice(&hex("01 09"));
    let mut dec = decoder(&wire[..10]);
    assert!(dec.can_progress(), "nothing known yet");
    assert_eq!(dec.decode_frame(&Limits::default()), Ok(None));
    assert!(!dec.can_progress(), "the header said 302 bytes");
    dec.push(Bytes::copy_from_slice(&wire[10..301]));
    assert!(!dec.can_progress(), "one byte short");
    assert_eq!(dec.decode_payload(&Limits::default()), Ok(None));
    dec.push(Bytes::copy_from_slice(&wire[301..]));
    assert!(dec.can_progress());
    assert_eq!(
        dec.decode_payload(&Limits::default()).unwrap().unwrap(),
        [7u8; 300][..]
    );
    assert!(dec.can_progress(), "the next frame is unknown again");
    assert_eq!(
        dec.decode_frame(&Limits::default()),
        Ok(Some(Bytes::from_static(&[9])))
    );
    // FIN inside a frame whose length is known: progress, to the error.
    let mut dec = decoder(&hex("05 48 45"));
    assert_eq!(dec.decode_frame(&Limits::default()), Ok(None));
    assert!(!dec.can_progress());
    dec.finish();
    assert!(dec.can_progress());
    assert!(matches!(
        dec.decode_frame(&Limits::default()),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
}

#[test]
fn frame_payload_straddling_chunks_is_their_pieces_split_anywhere() {
    // Two frames, 300 and 5 bytes, fed in chunks of every size: `decode_payload` hands back
    // pieces of the very chunks pushed (no copy), with the bytes and boundaries intact.
    let first: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let mut wire = varint(300);
    wire.extend_from_slice(&first);
    wire.extend_from_slice(&hex("05 48 45 4c 4c 4f"));
    for size in 1..=wire.len() {
        let chunks: Vec<Bytes> = wire.chunks(size).map(Bytes::copy_from_slice).collect();
        let ranges: Vec<_> = chunks.iter().map(|c| c.as_ptr_range()).collect();
        let mut dec = StreamDecoder::new();
        let mut got = Vec::new();
        for chunk in chunks {
            dec.push(chunk);
            while let Some(payload) = dec.decode_payload(&Limits::default()).unwrap() {
                got.push(payload);
            }
        }
        dec.finish();
        assert!(dec.is_finished(), "size {size}");
        assert_eq!(got.len(), 2, "size {size}");
        assert_eq!(got[0], first[..], "size {size}");
        assert_eq!(got[1], b"HELLO"[..], "size {size}");
        for piece in got.iter().flat_map(|p| p.chunks()) {
            let inner = piece.as_ptr_range();
            assert!(
                ranges
                    .iter()
                    .any(|r| r.start <= inner.start && inner.end <= r.end),
                "size {size}: a piece was copied"
            );
        }
        // One piece per chunk the frame touches: 300 bytes after a 2-byte header.
        let spanned = (2 + 300 - 1) / size - 2 / size + 1;
        assert_eq!(got[0].chunks().len(), spanned, "size {size}");
        assert_eq!(got[0].is_contiguous(), spanned == 1, "size {size}");
    }
    // A truncated payload is still an error at FIN.
    let mut dec = decoder(&hex("05 48 45"));
    dec.finish();
    assert!(matches!(
        dec.decode_payload(&Limits::default()),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
}
