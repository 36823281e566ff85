//! Property tests: every message round-trips with arbitrary field values, and a random
//! sequence of messages on one stream, split into random chunks, decodes to the same items.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Item, encode_all};
use moq_proto::message::{
    Announce, AnnounceInterest, AnnounceStatus, Fetch, FrameHeader, GoAway, GroupHeader, Probe,
    StreamType, Subscribe, SubscribeDrop, SubscribeOk, SubscribeParams, SubscribeResponse,
    SubscribeUpdate,
};
use moq_proto::{
    BroadcastPath, GroupSequence, HopId, Limits, Message, PathPrefix, StreamDecoder, SubscribeId,
    VarInt,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

const MAX: u64 = VarInt::MAX.into_inner();

/// Any varint value, spread over the four encoded widths.
fn varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..64u64,
        64..16_384u64,
        16_384..(1u64 << 30),
        (1u64 << 30)..=MAX
    ]
}

/// A group sequence whose seq + 1 still fits a varint.
fn sequence() -> impl Strategy<Value = GroupSequence> {
    prop_oneof![
        0..64u64,
        64..16_384u64,
        16_384..(1u64 << 30),
        (1u64 << 30)..MAX
    ]
    .prop_map(GroupSequence)
}

fn range() -> impl Strategy<Value = Option<GroupSequence>> {
    proptest::option::of(sequence())
}

/// Arbitrary unicode, up to 64 characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..=64).prop_map(String::from_iter),
        "[a-z0-9/]{0,24}",
    ]
}

fn path() -> impl Strategy<Value = BroadcastPath> {
    text().prop_map(|s| BroadcastPath::new(&s))
}

fn prefix() -> impl Strategy<Value = PathPrefix> {
    prop_oneof![
        text().prop_map(PathPrefix::from_wire),
        text().prop_map(|s| PathPrefix::new(&s)),
    ]
}

fn millis() -> impl Strategy<Value = Duration> {
    varint().prop_map(Duration::from_millis)
}

fn params() -> impl Strategy<Value = SubscribeParams> {
    (any::<u8>(), any::<bool>(), millis(), range(), range()).prop_map(
        |(priority, ordered, max_latency, start, end)| SubscribeParams {
            priority,
            ordered,
            max_latency,
            start,
            end,
        },
    )
}

fn announce_interest() -> impl Strategy<Value = AnnounceInterest> {
    (prefix(), varint()).prop_map(|(prefix, hop)| AnnounceInterest {
        prefix,
        exclude_hop: HopId(hop),
    })
}

fn announce() -> impl Strategy<Value = Announce> {
    (
        prop_oneof![Just(AnnounceStatus::Active), Just(AnnounceStatus::Ended)],
        text(),
        vec(varint().prop_map(HopId), 0..=Limits::MAX_HOPS),
    )
        .prop_map(|(status, suffix, hops)| Announce {
            status,
            suffix,
            hops,
        })
}

fn subscribe() -> impl Strategy<Value = Subscribe> {
    (varint(), path(), text(), params()).prop_map(|(id, path, track, params)| Subscribe {
        id: SubscribeId(id),
        path,
        track,
        params,
    })
}

fn subscribe_update() -> impl Strategy<Value = SubscribeUpdate> {
    params().prop_map(|params| SubscribeUpdate { params })
}

fn subscribe_drop() -> impl Strategy<Value = SubscribeDrop> {
    (
        proptest::option::of(sequence()),
        proptest::option::of(sequence()),
        varint(),
    )
        .prop_map(|(start, end, code)| SubscribeDrop { start, end, code })
}

fn response() -> impl Strategy<Value = SubscribeResponse> {
    prop_oneof![
        params().prop_map(|params| SubscribeResponse::Ok(SubscribeOk { params })),
        subscribe_drop().prop_map(SubscribeResponse::Drop),
    ]
}

fn fetch() -> impl Strategy<Value = Fetch> {
    (path(), text(), any::<u8>(), varint()).prop_map(|(path, track, priority, group)| Fetch {
        path,
        track,
        priority,
        group: GroupSequence(group),
    })
}

fn probe() -> impl Strategy<Value = Probe> {
    (varint(), millis()).prop_map(|(bitrate, rtt)| Probe { bitrate, rtt })
}

fn goaway() -> impl Strategy<Value = GoAway> {
    text().prop_map(|uri| GoAway { uri })
}

fn group() -> impl Strategy<Value = GroupHeader> {
    (varint(), varint()).prop_map(|(id, seq)| GroupHeader {
        subscribe_id: SubscribeId(id),
        sequence: GroupSequence(seq),
    })
}

fn frame() -> impl Strategy<Value = Item> {
    prop_oneof![vec(any::<u8>(), 0..8), vec(any::<u8>(), 0..300)]
        .prop_map(|p| Item::Frame(Bytes::from(p)))
}

/// Encodes `m`, checks the size and the bytes, and decodes it back.
fn round_trip<M: Message + PartialEq + std::fmt::Debug>(m: &M) -> Result<(), TestCaseError> {
    let bytes = m
        .to_bytes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(m.encoded_len(), Ok(bytes.len()));
    let (back, used) = M::decode(&bytes, &Limits::default())
        .map_err(|e| TestCaseError::fail(format!("{e}: {bytes:02x?}")))?
        .ok_or_else(|| TestCaseError::fail("incomplete"))?;
    prop_assert_eq!(used, bytes.len());
    prop_assert_eq!(&back, m);
    // Every proper prefix is "need more", never an error or a message.
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        prop_assert_eq!(M::decode(&bytes[..cut], &Limits::default()), Ok(None));
    }
    Ok(())
}

proptest! {
    #[test]
    fn announce_interest_round_trips(m in announce_interest()) {
        round_trip(&m)?;
    }

    #[test]
    fn announce_round_trips(m in announce()) {
        round_trip(&m)?;
    }

    #[test]
    fn subscribe_round_trips(m in subscribe()) {
        round_trip(&m)?;
    }

    #[test]
    fn subscribe_path_round_trips_in_normalised_form(s in text()) {
        // Any path form decodes to the normalised path, sent `/`-rooted.
        let m = Subscribe {
            id: SubscribeId(1),
            path: BroadcastPath::new(&s),
            track: String::new(),
            params: SubscribeParams::default(),
        };
        let bytes = m.to_bytes().unwrap();
        // Message length, id 1 (one byte), path length, then the path's leading `/`.
        let (_, n) = VarInt::peek(&bytes).unwrap();
        let (path_len, m) = VarInt::peek(&bytes[n + 1..]).unwrap();
        let wire = &bytes[n + 1 + m..n + 1 + m + path_len.into_inner() as usize];
        let expected = BroadcastPath::new(&s).to_wire();
        prop_assert_eq!(wire, expected.as_bytes());
        prop_assert_eq!(wire[0], b'/');
        let (back, _) = Subscribe::decode(&bytes, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(&back.path, &BroadcastPath::new(&s));
        prop_assert!(!back.path.as_str().starts_with('/'));
        prop_assert!(!back.path.as_str().ends_with('/'));
        prop_assert!(!back.path.as_str().contains("//"));
    }

    #[test]
    fn subscribe_update_round_trips(m in subscribe_update()) {
        round_trip(&m)?;
    }

    #[test]
    fn subscribe_ok_round_trips(params in params()) {
        round_trip(&SubscribeOk { params })?;
    }

    #[test]
    fn subscribe_drop_round_trips(m in subscribe_drop()) {
        round_trip(&m)?;
    }

    #[test]
    fn subscribe_response_round_trips(m in response()) {
        let mut bytes = Vec::new();
        m.encode(&mut bytes).unwrap();
        prop_assert_eq!(m.encoded_len(), Ok(bytes.len()));
        let expected_type = match m {
            SubscribeResponse::Ok(_) => 0,
            SubscribeResponse::Drop(_) => 1,
        };
        prop_assert_eq!(bytes[0], expected_type);
        let decoded = SubscribeResponse::decode(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(decoded, Some((m, bytes.len())));
        prop_assert_eq!(SubscribeResponse::decode(&bytes[..bytes.len() - 1], &Limits::default()), Ok(None));
    }

    #[test]
    fn fetch_round_trips(m in fetch()) {
        round_trip(&m)?;
    }

    #[test]
    fn probe_round_trips(m in probe()) {
        round_trip(&m)?;
    }

    #[test]
    fn goaway_round_trips(m in goaway()) {
        round_trip(&m)?;
    }

    #[test]
    fn group_header_round_trips(m in group()) {
        round_trip(&m)?;
    }

    #[test]
    fn frame_header_round_trips(len in 0..=Limits::MAX_FRAME_SIZE) {
        let header = FrameHeader { len };
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), header.encoded_len());
        prop_assert_eq!(
            FrameHeader::decode(&bytes, &Limits::default()),
            Ok(Some((header, bytes.len())))
        );
    }

    #[test]
    fn frame_round_trips(payload in vec(any::<u8>(), 0..2000)) {
        let wire = FrameHeader::encode_frame(&payload).unwrap();
        let (header, used) = FrameHeader::decode(&wire, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(header, FrameHeader::for_payload(&payload).unwrap());
        prop_assert_eq!(&wire[used..], &payload[..]);
    }
}

#[test]
fn announce_with_the_maximum_hop_count_round_trips() {
    // 64 hops: the count itself is a two-byte varint (`40 40`).
    for count in [63, 64] {
        let m = Announce {
            status: AnnounceStatus::Active,
            suffix: "cam".to_owned(),
            hops: (0..count).map(HopId).collect(),
        };
        let bytes = m.to_bytes().unwrap();
        assert_eq!(m.encoded_len(), Ok(bytes.len()));
        assert_eq!(
            Announce::decode(&bytes, &Limits::default()),
            Ok(Some((m, bytes.len()))),
            "{count} hops"
        );
    }
}

/// A valid sequence of items on one stream (one direction of it).
fn stream_items() -> impl Strategy<Value = Vec<Item>> {
    let ty = |t| Item::Type(t);
    prop_oneof![
        // Subscribe stream, subscriber side: SUBSCRIBE then SUBSCRIBE_UPDATE*.
        (subscribe(), vec(subscribe_update(), 0..8)).prop_map(move |(s, u)| {
            let mut v = vec![ty(StreamType::Subscribe), Item::Subscribe(s)];
            v.extend(u.into_iter().map(Item::SubscribeUpdate));
            v
        }),
        // Subscribe stream, publisher side: responses.
        vec(response(), 1..8).prop_map(|r| r.into_iter().map(Item::Response).collect()),
        // Announce stream: ANNOUNCE_INTEREST, and the ANNOUNCE* reply.
        announce_interest()
            .prop_map(move |m| vec![ty(StreamType::Announce), Item::AnnounceInterest(m)]),
        vec(announce(), 1..8).prop_map(|a| a.into_iter().map(Item::Announce).collect()),
        // Group stream: GROUP then FRAME*.
        (group(), vec(frame(), 0..8)).prop_map(move |(g, f)| {
            let mut v = vec![ty(StreamType::Group), Item::Group(g)];
            v.extend(f);
            v
        }),
        // Fetch stream: FETCH, and the FRAME* reply.
        fetch().prop_map(move |m| vec![ty(StreamType::Fetch), Item::Fetch(m)]),
        vec(frame(), 1..8),
        // Probe stream: PROBE* both ways.
        vec(probe(), 1..8).prop_map(move |p| {
            let mut v = vec![ty(StreamType::Probe)];
            v.extend(p.into_iter().map(Item::Probe));
            v
        }),
        // Goaway stream.
        goaway().prop_map(move |m| vec![ty(StreamType::Goaway), Item::GoAway(m)]),
    ]
}

/// Splits `bytes` at the chosen points; `ones` makes every chunk one byte long.
fn split(bytes: &[u8], cuts: &[Index], ones: bool) -> Vec<Bytes> {
    if ones {
        return bytes
            .iter()
            .map(|b| Bytes::copy_from_slice(&[*b]))
            .collect();
    }
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect()
}

/// Decodes every item that is complete, in the order of `expected`.
fn drain(
    dec: &mut StreamDecoder,
    expected: &[Item],
    out: &mut Vec<Item>,
) -> Result<(), TestCaseError> {
    while let Some(kind) = expected.get(out.len()) {
        match kind.decode_stream(dec, &Limits::default()) {
            Ok(Some(item)) => out.push(item),
            Ok(None) => break,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "after {} items: {e}",
                    out.len()
                )));
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn stream_of_messages_decodes_from_arbitrary_chunks(
        items in stream_items(),
        cuts in vec(any::<Index>(), 0..24),
        ones in prop::bool::weighted(0.2),
    ) {
        let bytes = encode_all(&items);
        let chunks = split(&bytes, &cuts, ones);
        prop_assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), bytes.len());

        let mut dec = StreamDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            dec.push(chunk);
            drain(&mut dec, &items, &mut out)?;
        }
        prop_assert_eq!(&out, &items);
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert!(!dec.is_finished());
        dec.finish();
        prop_assert!(dec.is_finished());
        // Nothing more after a clean FIN.
        let last = items.last().unwrap();
        prop_assert_eq!(last.decode_stream(&mut dec, &Limits::default()), Ok(None));
    }
}
