//! Golden tests: every hex example of spec §4 decodes to its typed value and encodes back to
//! exactly the same bytes, with the slice API and through a `StreamDecoder` fed byte by byte.

mod common;

use bytes::Bytes;
use common::{Golden, Item, encode_all, goldens, hex};
use moq_proto::message::{
    Announce, FrameHeader, StreamType, Subscribe, SubscribeDrop, SubscribeParams, SubscribeResponse,
};
use moq_proto::{BroadcastPath, GroupSequence, Limits, Message, PathPrefix, StreamDecoder};

#[test]
fn spec_examples_decode_to_typed_values_and_reencode_exactly() {
    let limits = Limits::default();
    for g in goldens() {
        let bytes = g.bytes();
        let mut pos = 0;
        for expected in &g.items {
            let rest = &bytes[pos..];
            let (item, used) = expected
                .decode_slice(rest, &limits)
                .unwrap_or_else(|e| panic!("{}: {e}", g.name))
                .unwrap_or_else(|| panic!("{}: incomplete {}", g.name, expected.name()));
            assert_eq!(&item, expected, "{}", g.name);
            let encoded = item.encode();
            assert_eq!(
                encoded,
                &rest[..used],
                "{}: re-encoding {}",
                g.name,
                expected.name()
            );
            assert_eq!(item.encoded_len(), used, "{}: encoded_len", g.name);
            pos += used;
        }
        assert_eq!(
            pos,
            bytes.len(),
            "{}: bytes left after the last item",
            g.name
        );
        assert_eq!(
            encode_all(&g.items),
            bytes,
            "{}: encoding the typed values",
            g.name
        );
    }
}

/// Feeds `g` one byte at a time and checks each item appears exactly when its last byte
/// arrives, never earlier, and that the stream then ends cleanly.
fn byte_by_byte(g: &Golden) {
    let limits = Limits::default();
    let bytes = g.bytes();
    let mut ends = Vec::new();
    let mut end = 0;
    for item in &g.items {
        end += item.encoded_len();
        ends.push(end);
    }
    assert_eq!(end, bytes.len(), "{}", g.name);

    let mut dec = StreamDecoder::new();
    let mut next = 0;
    for (i, &b) in bytes.iter().enumerate() {
        dec.push(Bytes::copy_from_slice(&[b]));
        while let Some(expected) = g.items.get(next) {
            match expected.decode_stream(&mut dec, &limits) {
                Ok(Some(item)) => {
                    assert_eq!(&item, expected, "{}", g.name);
                    assert_eq!(
                        i + 1,
                        ends[next],
                        "{}: {} decoded early",
                        g.name,
                        item.name()
                    );
                    next += 1;
                }
                Ok(None) => {
                    assert!(
                        i + 1 < ends[next],
                        "{}: {} not decoded",
                        g.name,
                        expected.name()
                    );
                    break;
                }
                Err(e) => panic!("{}: byte {i}: {e}", g.name),
            }
        }
    }
    assert_eq!(next, g.items.len(), "{}", g.name);
    assert_eq!(dec.buffered(), 0, "{}", g.name);
    assert!(!dec.is_finished(), "{}: finished before FIN", g.name);
    dec.finish();
    assert!(dec.is_finished(), "{}", g.name);
    // A clean end: asking for one more item of the last kind is "nothing", not an error.
    let last = g.items.last().unwrap();
    assert_eq!(
        last.decode_stream(&mut dec, &limits),
        Ok(None),
        "{}",
        g.name
    );
}

#[test]
fn spec_examples_decode_through_stream_decoder_one_byte_at_a_time() {
    for g in goldens() {
        byte_by_byte(&g);
    }
}

#[test]
fn spec_examples_decode_through_stream_decoder_in_one_chunk() {
    let limits = Limits::default();
    for g in goldens() {
        let mut dec = StreamDecoder::new();
        dec.push(Bytes::from(g.bytes()));
        dec.finish();
        for expected in &g.items {
            let item = expected.decode_stream(&mut dec, &limits).unwrap();
            assert_eq!(item.as_ref(), Some(expected), "{}", g.name);
        }
        assert!(dec.is_finished(), "{}", g.name);
    }
}

#[test]
fn every_golden_stream_starts_with_its_type_byte_or_is_a_reply() {
    // The examples that start with a stream-type byte must name the right stream; the rest
    // are replies (ANNOUNCE, SUBSCRIBE_UPDATE, responses, frames, the PROBE reply).
    for g in goldens() {
        let bytes = g.bytes();
        if let Some(Item::Type(t)) = g.items.first() {
            assert_eq!(StreamType::from_byte(bytes[0]), Ok(*t), "{}", g.name);
        }
    }
    assert_eq!(StreamType::Group.to_byte(), 0x00);
    assert_eq!(StreamType::Announce.to_byte(), 0x01);
    assert_eq!(StreamType::Subscribe.to_byte(), 0x02);
    assert_eq!(StreamType::Fetch.to_byte(), 0x03);
    assert_eq!(StreamType::Probe.to_byte(), 0x04);
    assert_eq!(StreamType::Goaway.to_byte(), 0x05);
}

#[test]
fn announce_example_quoted_and_hex_forms_are_the_same_bytes() {
    assert_eq!(
        hex(r#"11 01 0e "interop/server" 00"#),
        hex("11 01 0e 69 6e 74 65 72 6f 70 2f 73 65 72 76 65 72 00")
    );
}

#[test]
fn slashless_paths_are_sent_slash_rooted() {
    // D20: moq-net's `interop/server` and gomoqt's `/interop/server` are one broadcast, and
    // we always send the gomoqt form: the §4.3 example bytes.
    let sub = Subscribe {
        id: 1.into(),
        path: BroadcastPath::new("interop/server/"),
        track: String::new(),
        params: SubscribeParams::default(),
    };
    let mut wire = vec![StreamType::Subscribe.to_byte()];
    sub.encode(&mut wire).unwrap();
    assert_eq!(
        wire,
        hex(r#"02 17 01 0f "/interop/server" 00 00 00 00 00 00"#)
    );
}

#[test]
fn draft_encoded_drop_reads_one_lower() {
    // D3: the -04 text would send groups 5..7 as `01 03 05 07 00`; we read seq + 1 as gomoqt
    // does, so that reads as 4..6, and we never send it.
    let (resp, used) = SubscribeResponse::decode(&hex("01 03 05 07 00"), &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(used, 5);
    assert_eq!(
        resp,
        SubscribeResponse::Drop(SubscribeDrop::new(GroupSequence(4), GroupSequence(6), 0))
    );
}

#[test]
fn announce_suffix_joins_the_interest_prefix() {
    // §4.2: the interop/server ANNOUNCE under prefix `/` names `/interop/server`.
    let (ann, _) = Announce::decode(&hex(r#"11 01 0e "interop/server" 00"#), &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        PathPrefix::root().join(&ann.suffix),
        BroadcastPath::new("/interop/server")
    );
}

#[test]
fn frame_header_of_the_hello_example() {
    let header = FrameHeader::for_payload(b"HELLO").unwrap();
    assert_eq!(header, FrameHeader { len: 5 });
    let mut wire = Vec::new();
    header.encode(&mut wire);
    assert_eq!(wire, [0x05]);
    assert_eq!(
        FrameHeader::decode(&hex("05 48 45 4c 4c 4f"), &Limits::default()),
        Ok(Some((FrameHeader { len: 5 }, 1)))
    );
}
