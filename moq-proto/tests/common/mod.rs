//! Shared helpers for the codec integration tests: one typed "stream item" that can be
//! encoded and decoded generically, and every hex example of spec §4 with its typed value.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use moq_proto::message::{
    Announce, AnnounceInterest, AnnounceStatus, Fetch, FrameHeader, GoAway, GroupHeader, Probe,
    StreamType, Subscribe, SubscribeDrop, SubscribeOk, SubscribeParams, SubscribeResponse,
    SubscribeUpdate,
};
use moq_proto::{
    BroadcastPath, DecodeError, GroupSequence, HopId, Limits, Message, PathPrefix, StreamDecoder,
    SubscribeId,
};

/// One thing that travels on a stream: the type byte, a message, or a frame payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Type(StreamType),
    AnnounceInterest(AnnounceInterest),
    Announce(Announce),
    Subscribe(Subscribe),
    SubscribeUpdate(SubscribeUpdate),
    Response(SubscribeResponse),
    Fetch(Fetch),
    Probe(Probe),
    GoAway(GoAway),
    Group(GroupHeader),
    Frame(Bytes),
}

fn slice<M: Message>(
    buf: &[u8],
    limits: &Limits,
    wrap: fn(M) -> Item,
) -> Result<Option<(Item, usize)>, DecodeError> {
    Ok(M::decode(buf, limits)?.map(|(m, n)| (wrap(m), n)))
}

fn stream<M: Message>(
    dec: &mut StreamDecoder,
    limits: &Limits,
    wrap: fn(M) -> Item,
) -> Result<Option<Item>, DecodeError> {
    Ok(dec.decode::<M>(limits)?.map(wrap))
}

impl Item {
    /// The exact wire bytes of this item.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Item::Type(t) => out.push(t.to_byte()),
            Item::AnnounceInterest(m) => m.encode(&mut out).unwrap(),
            Item::Announce(m) => m.encode(&mut out).unwrap(),
            Item::Subscribe(m) => m.encode(&mut out).unwrap(),
            Item::SubscribeUpdate(m) => m.encode(&mut out).unwrap(),
            Item::Response(m) => m.encode(&mut out).unwrap(),
            Item::Fetch(m) => m.encode(&mut out).unwrap(),
            Item::Probe(m) => m.encode(&mut out).unwrap(),
            Item::GoAway(m) => m.encode(&mut out).unwrap(),
            Item::Group(m) => m.encode(&mut out).unwrap(),
            Item::Frame(p) => out.extend_from_slice(&FrameHeader::encode_frame(p).unwrap()),
        }
        out
    }

    /// The size `encode` reports before writing, checked against what it writes.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Item::Type(_) => 1,
            Item::AnnounceInterest(m) => m.encoded_len().unwrap(),
            Item::Announce(m) => m.encoded_len().unwrap(),
            Item::Subscribe(m) => m.encoded_len().unwrap(),
            Item::SubscribeUpdate(m) => m.encoded_len().unwrap(),
            Item::Response(m) => m.encoded_len().unwrap(),
            Item::Fetch(m) => m.encoded_len().unwrap(),
            Item::Probe(m) => m.encoded_len().unwrap(),
            Item::GoAway(m) => m.encoded_len().unwrap(),
            Item::Group(m) => m.encoded_len().unwrap(),
            Item::Frame(p) => FrameHeader { len: p.len() }.encoded_len() + p.len(),
        }
    }

    /// Whether this is a length-framed control message (not a type byte or a frame).
    pub(crate) fn is_message(&self) -> bool {
        !matches!(self, Item::Type(_) | Item::Frame(_))
    }

    /// The message name used in errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Item::Type(_) => "stream type",
            Item::AnnounceInterest(_) => AnnounceInterest::NAME,
            Item::Announce(_) => Announce::NAME,
            Item::Subscribe(_) => Subscribe::NAME,
            Item::SubscribeUpdate(_) => SubscribeUpdate::NAME,
            Item::Response(_) => "subscribe response",
            Item::Fetch(_) => Fetch::NAME,
            Item::Probe(_) => Probe::NAME,
            Item::GoAway(_) => GoAway::NAME,
            Item::Group(_) => GroupHeader::NAME,
            Item::Frame(_) => "FRAME",
        }
    }

    /// Decodes an item of the same kind as `self` from the front of `buf` with the slice API.
    pub(crate) fn decode_slice(
        &self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(Item, usize)>, DecodeError> {
        match self {
            Item::Type(_) => Ok(buf.first().map(|&b| {
                let t = StreamType::from_byte(b).expect("a known stream type");
                (Item::Type(t), 1)
            })),
            Item::AnnounceInterest(_) => slice(buf, limits, Item::AnnounceInterest),
            Item::Announce(_) => slice(buf, limits, Item::Announce),
            Item::Subscribe(_) => slice(buf, limits, Item::Subscribe),
            Item::SubscribeUpdate(_) => slice(buf, limits, Item::SubscribeUpdate),
            Item::Response(_) => {
                Ok(SubscribeResponse::decode(buf, limits)?.map(|(m, n)| (Item::Response(m), n)))
            }
            Item::Fetch(_) => slice(buf, limits, Item::Fetch),
            Item::Probe(_) => slice(buf, limits, Item::Probe),
            Item::GoAway(_) => slice(buf, limits, Item::GoAway),
            Item::Group(_) => slice(buf, limits, Item::Group),
            Item::Frame(_) => {
                let Some((header, n)) = FrameHeader::decode(buf, limits)? else {
                    return Ok(None);
                };
                Ok(buf
                    .get(n..n + header.len)
                    .map(|p| (Item::Frame(Bytes::copy_from_slice(p)), n + header.len)))
            }
        }
    }

    /// Decodes an item of the same kind as `self` from a [`StreamDecoder`].
    pub(crate) fn decode_stream(
        &self,
        dec: &mut StreamDecoder,
        limits: &Limits,
    ) -> Result<Option<Item>, DecodeError> {
        match self {
            Item::Type(_) => Ok(dec
                .read_u8()
                .map(|b| Item::Type(StreamType::from_byte(b).expect("a known stream type")))),
            Item::AnnounceInterest(_) => stream(dec, limits, Item::AnnounceInterest),
            Item::Announce(_) => stream(dec, limits, Item::Announce),
            Item::Subscribe(_) => stream(dec, limits, Item::Subscribe),
            Item::SubscribeUpdate(_) => stream(dec, limits, Item::SubscribeUpdate),
            Item::Response(_) => Ok(dec.decode_response(limits)?.map(Item::Response)),
            Item::Fetch(_) => stream(dec, limits, Item::Fetch),
            Item::Probe(_) => stream(dec, limits, Item::Probe),
            Item::GoAway(_) => stream(dec, limits, Item::GoAway),
            Item::Group(_) => stream(dec, limits, Item::Group),
            Item::Frame(_) => Ok(dec.decode_frame(limits)?.map(Item::Frame)),
        }
    }
}

/// The concatenated wire bytes of a sequence of items.
pub(crate) fn encode_all(items: &[Item]) -> Vec<u8> {
    items.iter().flat_map(Item::encode).collect()
}

/// Parses the spec's hex notation: space-separated bytes, `"abc"` for ASCII bytes.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if let Some(text) = tok.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            out.extend_from_slice(text.as_bytes());
        } else {
            out.push(u8::from_str_radix(tok, 16).unwrap_or_else(|_| panic!("bad hex {tok:?}")));
        }
    }
    out
}

/// One hex example of the spec and the items it must decode to, in order.
pub(crate) struct Golden {
    /// Where it is in the spec.
    pub(crate) name: &'static str,
    /// The bytes, as the spec writes them.
    pub(crate) hex: &'static str,
    /// The typed items.
    pub(crate) items: Vec<Item>,
}

impl Golden {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        hex(self.hex)
    }
}

fn seq(n: u64) -> Option<GroupSequence> {
    Some(GroupSequence(n))
}

fn params(
    priority: u8,
    ordered: bool,
    latency_ms: u64,
    start: Option<GroupSequence>,
    end: Option<GroupSequence>,
) -> SubscribeParams {
    SubscribeParams {
        priority,
        ordered,
        max_latency: Duration::from_millis(latency_ms),
        start,
        end,
    }
}

/// Every hex example of spec §4 (the varints of §2 are covered by the crate's unit tests).
pub(crate) fn goldens() -> Vec<Golden> {
    let hello = Item::Frame(Bytes::from_static(b"HELLO"));
    vec![
        Golden {
            name: "4.1 ANNOUNCE_INTEREST prefix `/`, exclude 0",
            hex: "01 03 01 2f 00",
            items: vec![
                Item::Type(StreamType::Announce),
                Item::AnnounceInterest(AnnounceInterest {
                    prefix: PathPrefix::root(),
                    exclude_hop: HopId(0),
                }),
            ],
        },
        Golden {
            name: "4.1 ANNOUNCE_INTEREST prefix `/live/`, exclude 7",
            hex: "01 08 06 2f 6c 69 76 65 2f 07",
            items: vec![
                Item::Type(StreamType::Announce),
                Item::AnnounceInterest(AnnounceInterest {
                    prefix: PathPrefix::new("live"),
                    exclude_hop: HopId(7),
                }),
            ],
        },
        Golden {
            name: "4.2 ANNOUNCE active interop/server, no hops (quoted form)",
            hex: r#"11 01 0e "interop/server" 00"#,
            items: vec![Item::Announce(Announce {
                status: AnnounceStatus::Active,
                suffix: "interop/server".to_owned(),
                hops: vec![],
            })],
        },
        Golden {
            name: "4.2 ANNOUNCE active interop/server, no hops (hex form)",
            hex: "11 01 0e 69 6e 74 65 72 6f 70 2f 73 65 72 76 65 72 00",
            items: vec![Item::Announce(Announce {
                status: AnnounceStatus::Active,
                suffix: "interop/server".to_owned(),
                hops: vec![],
            })],
        },
        Golden {
            name: "4.2 ANNOUNCE active cam1, hops [42, 300]",
            hex: "0a 01 04 63 61 6d 31 02 2a 41 2c",
            items: vec![Item::Announce(Announce {
                status: AnnounceStatus::Active,
                suffix: "cam1".to_owned(),
                hops: vec![HopId(42), HopId(300)],
            })],
        },
        Golden {
            name: "4.2 ANNOUNCE ended cam1",
            hex: "07 00 04 63 61 6d 31 00",
            items: vec![Item::Announce(Announce {
                status: AnnounceStatus::Ended,
                suffix: "cam1".to_owned(),
                hops: vec![],
            })],
        },
        Golden {
            name: "4.3 SUBSCRIBE id 1, /interop/server, defaults",
            hex: r#"02 17 01 0f "/interop/server" 00 00 00 00 00 00"#,
            items: vec![
                Item::Type(StreamType::Subscribe),
                Item::Subscribe(Subscribe {
                    id: SubscribeId(1),
                    path: BroadcastPath::new("/interop/server"),
                    track: String::new(),
                    params: SubscribeParams::default(),
                }),
            ],
        },
        Golden {
            name: "4.3 SUBSCRIBE id 2, /live/cam1 video, 0x80, ordered, 500 ms, from group 10",
            hex: "02 18 02 0a 2f 6c 69 76 65 2f 63 61 6d 31 05 76 69 64 65 6f 80 01 41 f4 0b 00",
            items: vec![
                Item::Type(StreamType::Subscribe),
                Item::Subscribe(Subscribe {
                    id: SubscribeId(2),
                    path: BroadcastPath::new("/live/cam1"),
                    track: "video".to_owned(),
                    params: params(0x80, true, 500, seq(10), None),
                }),
            ],
        },
        Golden {
            name: "4.4 SUBSCRIBE_UPDATE 0x10, unordered, no limit, latest, to group 20",
            hex: "05 10 00 00 00 15",
            items: vec![Item::SubscribeUpdate(SubscribeUpdate {
                params: params(0x10, false, 0, None, seq(20)),
            })],
        },
        Golden {
            name: "4.5 SUBSCRIBE_OK first group 1",
            hex: "00 05 00 00 00 02 00",
            items: vec![Item::Response(SubscribeResponse::Ok(SubscribeOk {
                params: params(0, false, 0, seq(1), None),
            }))],
        },
        Golden {
            name: "4.5 SUBSCRIBE_OK priority 2, 1000 ms, start unknown",
            hex: "00 06 02 00 43 e8 00 00",
            items: vec![Item::Response(SubscribeResponse::Ok(SubscribeOk {
                params: params(2, false, 1000, None, None),
            }))],
        },
        Golden {
            name: "4.6 SUBSCRIBE_DROP groups 5..7, code 0 (gomoqt seq + 1)",
            hex: "01 03 06 08 00",
            items: vec![Item::Response(SubscribeResponse::Drop(SubscribeDrop::new(
                GroupSequence(5),
                GroupSequence(7),
                0,
            )))],
        },
        Golden {
            name: "4.7 FETCH /interop/server, group 0",
            hex: r#"03 13 0f "/interop/server" 00 00 00"#,
            items: vec![
                Item::Type(StreamType::Fetch),
                Item::Fetch(Fetch {
                    path: BroadcastPath::new("/interop/server"),
                    track: String::new(),
                    priority: 0,
                    group: GroupSequence(0),
                }),
            ],
        },
        Golden {
            name: "4.7 FETCH /live/cam1 video, 0x40, group 300",
            hex: "03 14 0a 2f 6c 69 76 65 2f 63 61 6d 31 05 76 69 64 65 6f 40 41 2c",
            items: vec![
                Item::Type(StreamType::Fetch),
                Item::Fetch(Fetch {
                    path: BroadcastPath::new("/live/cam1"),
                    track: "video".to_owned(),
                    priority: 0x40,
                    group: GroupSequence(300),
                }),
            ],
        },
        Golden {
            name: "4.7 FETCH response: one frame HELLO",
            hex: "05 48 45 4c 4c 4f",
            items: vec![hello.clone()],
        },
        Golden {
            name: "4.8 PROBE opener 1 Mb/s, RTT unknown",
            hex: "04 05 80 0f 42 40 00",
            items: vec![
                Item::Type(StreamType::Probe),
                Item::Probe(Probe {
                    bitrate: 1_000_000,
                    rtt: Duration::ZERO,
                }),
            ],
        },
        Golden {
            name: "4.8 PROBE responder 2.5 Mb/s, 35 ms",
            hex: "05 80 26 25 a0 23",
            items: vec![Item::Probe(Probe {
                bitrate: 2_500_000,
                rtt: Duration::from_millis(35),
            })],
        },
        Golden {
            name: "4.9 GOAWAY redirect to https://next.example.com",
            hex: "05 19 18 68 74 74 70 73 3a 2f 2f 6e 65 78 74 2e 65 78 61 6d 70 6c 65 2e 63 6f 6d",
            items: vec![
                Item::Type(StreamType::Goaway),
                Item::GoAway(GoAway {
                    uri: "https://next.example.com".to_owned(),
                }),
            ],
        },
        Golden {
            name: "4.9 GOAWAY no redirect",
            hex: "05 01 00",
            items: vec![
                Item::Type(StreamType::Goaway),
                Item::GoAway(GoAway { uri: String::new() }),
            ],
        },
        Golden {
            name: "4.10 GROUP sub 1, group 1, frame HELLO",
            hex: "00 02 01 01 05 48 45 4c 4c 4f",
            items: vec![
                Item::Type(StreamType::Group),
                Item::Group(GroupHeader {
                    subscribe_id: SubscribeId(1),
                    sequence: GroupSequence(1),
                }),
                hello,
            ],
        },
        Golden {
            name: "4.10 GROUP sub 7, group 300, empty frame then 3 bytes",
            hex: "00 03 07 41 2c 00 03 01 02 03",
            items: vec![
                Item::Type(StreamType::Group),
                Item::Group(GroupHeader {
                    subscribe_id: SubscribeId(7),
                    sequence: GroupSequence(300),
                }),
                Item::Frame(Bytes::new()),
                Item::Frame(Bytes::from_static(&[1, 2, 3])),
            ],
        },
    ]
}
