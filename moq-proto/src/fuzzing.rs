//! Each function takes raw fuzzer input, exercises the codec, and panics when a property is
//! violated. The cargo-fuzz targets in `fuzz/` call them, and
//! `moq-proto/tests/fuzz_regressions.rs` replays every saved crash input through them on
//! stable, so a fixed bug stays fixed.

use bytes::{Buf, Bytes};

use crate::coding::{DecodeError, Limits, Message, StreamDecoder, VarInt};
use crate::message::{
    Announce, AnnounceInterest, Fetch, FrameHeader, GoAway, GroupHeader, Probe, Subscribe,
    SubscribeResponse, SubscribeUpdate,
};

/// Decode → encode → decode → encode for one message kind chosen by the first byte.
///
/// Properties: decoding never panics; whatever decodes also encodes, `encoded_len` is exact,
/// the re-encoding decodes again consuming every byte, and both encodings are identical.
pub fn message_decode(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits::default();
    match kind % 10 {
        0 => round_trip::<AnnounceInterest>(rest, &limits),
        1 => round_trip::<Announce>(rest, &limits),
        2 => round_trip::<Subscribe>(rest, &limits),
        3 => round_trip::<SubscribeUpdate>(rest, &limits),
        4 => round_trip_response(rest, &limits),
        5 => round_trip::<Fetch>(rest, &limits),
        6 => round_trip::<Probe>(rest, &limits),
        7 => round_trip::<GoAway>(rest, &limits),
        8 => round_trip::<GroupHeader>(rest, &limits),
        _ => round_trip_frame(rest, &limits),
    }
}

fn round_trip<M: Message + std::fmt::Debug + PartialEq>(data: &[u8], limits: &Limits) {
    let Ok(Some((first, used))) = M::decode(data, limits) else {
        return;
    };
    assert!(
        used <= data.len(),
        "{}: consumed {used} of {}",
        M::NAME,
        data.len()
    );
    let encode = |m: &M| -> Vec<u8> {
        let len = m
            .encoded_len()
            .unwrap_or_else(|e| panic!("{}: decoded {m:?} but cannot encode it: {e}", M::NAME));
        let mut out = Vec::with_capacity(len);
        if let Err(e) = m.encode(&mut out) {
            panic!("{}: encoded_len succeeded but encode failed: {e}", M::NAME);
        }
        assert_eq!(
            out.len(),
            len,
            "{}: encoded_len is not exact for {m:?}",
            M::NAME
        );
        out
    };
    let once = encode(&first);
    let second = match M::decode(&once, limits) {
        Ok(Some((m, used))) => {
            assert_eq!(used, once.len(), "{}: re-decode left bytes over", M::NAME);
            m
        }
        other => panic!(
            "{}: re-encoding of {first:?} does not decode: {other:?}",
            M::NAME
        ),
    };
    let twice = encode(&second);
    assert_eq!(once, twice, "{}: encoding is not stable", M::NAME);
}

fn round_trip_response(data: &[u8], limits: &Limits) {
    let Ok(Some((first, _))) = SubscribeResponse::decode(data, limits) else {
        return;
    };
    let encode = |m: &SubscribeResponse| -> Vec<u8> {
        let len = m
            .encoded_len()
            .unwrap_or_else(|e| panic!("decoded {m:?} but cannot encode it: {e}"));
        let mut out = Vec::with_capacity(len);
        if let Err(e) = m.encode(&mut out) {
            panic!("subscribe response: encoded_len succeeded but encode failed: {e}");
        }
        assert_eq!(out.len(), len, "encoded_len is not exact for {m:?}");
        out
    };
    let once = encode(&first);
    let second = match SubscribeResponse::decode(&once, limits) {
        Ok(Some((m, used))) => {
            assert_eq!(
                used,
                once.len(),
                "subscribe response: re-decode left bytes over"
            );
            m
        }
        other => panic!("re-encoding of {first:?} does not decode: {other:?}"),
    };
    assert_eq!(
        once,
        encode(&second),
        "subscribe response: encoding is not stable"
    );
}

fn round_trip_frame(data: &[u8], limits: &Limits) {
    let Ok(Some((header, prefix))) = FrameHeader::decode(data, limits) else {
        return;
    };
    let Some(payload) = data.get(prefix..).and_then(|rest| rest.get(..header.len)) else {
        return;
    };
    let once = FrameHeader::encode_frame(payload).unwrap_or_else(|e| {
        panic!(
            "decoded a {}-byte frame but cannot encode it: {e}",
            header.len
        )
    });
    let second = match FrameHeader::decode(&once, limits) {
        Ok(Some((h, n))) if n + h.len == once.len() => once.slice(n..),
        other => panic!("frame re-encoding does not decode exactly: {other:?}"),
    };
    assert_eq!(second.as_ref(), payload, "frame payload changed");
    let twice = FrameHeader::encode_frame(&second)
        .unwrap_or_else(|e| panic!("frame re-encoding failed: {e}"));
    assert_eq!(once, twice, "frame encoding is not stable");
}

/// Varint decoding of arbitrary bytes.
///
/// Properties: [`VarInt::decode`] and [`VarInt::peek`] agree on value and length, a failed
/// decode consumes nothing, decoding across a chunk boundary gives the same result, and a
/// decoded value re-encodes minimally to bytes that decode to the same value.
pub fn varint(data: &[u8]) {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let mut slice = bytes;
    let decoded = VarInt::decode(&mut slice);
    let consumed = bytes.len() - slice.len();
    match (decoded, VarInt::peek(bytes)) {
        (Ok(v), Some((p, n))) => {
            assert_eq!(v, p, "decode and peek disagree on the value");
            assert_eq!(consumed, n, "decode and peek disagree on the length");
        }
        (Err(_), None) => assert_eq!(consumed, 0, "a failed decode consumed bytes"),
        (d, p) => panic!("decode {d:?} and peek {p:?} disagree"),
    }

    // The same bytes in two chunks, split anywhere.
    let at = usize::from(split).min(bytes.len());
    let (a, b) = bytes.split_at(at);
    let mut chain = a.chain(b);
    let chained = VarInt::decode(&mut chain);
    assert_eq!(chained, decoded, "decoding across a chunk boundary differs");
    assert_eq!(bytes.len() - chain.remaining(), consumed);

    let Ok(v) = decoded else {
        return;
    };
    assert!(v <= VarInt::MAX);
    let mut out = Vec::new();
    v.encode(&mut out);
    assert_eq!(out.len(), v.size(), "size() disagrees with the encoding");
    assert!(
        out.len() <= consumed,
        "re-encoding is longer than the input"
    );
    let mut again = out.as_slice();
    assert_eq!(
        VarInt::decode(&mut again),
        Ok(v),
        "re-encoding decodes differently"
    );
    assert!(again.is_empty(), "re-encoding left bytes over");
    assert_eq!(VarInt::peek(&out), Some((v, out.len())));
    let Ok(rebuilt) = VarInt::from_u64(v.into_inner()) else {
        panic!("a decoded value is out of range");
    };
    assert_eq!(rebuilt, v);
}

/// One stream decoded whole and in chunks: the results must be identical.
///
/// Input layout: byte 0 holds the number of split points (low 5 bits) and whether the stream
/// ends with FIN (bit 7); then two bytes per split point (an offset into the stream, taken
/// modulo its length); the rest is the stream. The stream is decoded as its type byte says
/// (see [`Script`]), once from a single chunk, once from the chunks cut at the split points
/// with decoding attempted after every chunk, and once a byte at a time.
pub fn reassembly(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let fin = control & 0x80 != 0;
    let splits = usize::from(control & 0x1f);
    let Some((raw_points, stream)) = rest.split_at_checked(splits * 2) else {
        return;
    };
    let stream = Bytes::copy_from_slice(stream);
    let mut points: Vec<usize> = raw_points
        .chunks_exact(2)
        .filter_map(|p| <[u8; 2]>::try_from(p).ok())
        .map(|p| usize::from(u16::from_be_bytes(p)) % (stream.len() + 1))
        .collect();
    points.sort_unstable();

    let whole = run(std::iter::once(stream.clone()), fin);
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for &p in points.iter().chain(std::iter::once(&stream.len())) {
        chunks.push(stream.slice(start..p));
        start = p;
    }
    let chunked = run(chunks.into_iter(), fin);
    assert_eq!(
        whole, chunked,
        "chunked decoding differs from whole (splits {points:?})"
    );
    if stream.len() <= 1024 {
        let bytewise = run((0..stream.len()).map(|i| stream.slice(i..=i)), fin);
        assert_eq!(
            whole, bytewise,
            "byte-at-a-time decoding differs from whole"
        );
    }
}

/// One decoded item of a stream.
#[derive(Debug, PartialEq)]
enum Item {
    Type(u8),
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

/// How a stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// FIN after the last whole item.
    Clean,
    /// No FIN, and the bytes present hold no further whole item.
    Pending,
    /// Malformed input, or FIN inside an item.
    Error(DecodeError),
}

/// Which messages a stream carries, chosen by its first byte (`type % 8`): the six stream
/// types as the opener writes them, plus the two reply directions that have their own
/// message kinds.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// GROUP, FRAME*.
    Group,
    /// ANNOUNCE_INTEREST, then (as if it were the reply direction) ANNOUNCE*.
    Announce,
    /// SUBSCRIBE, SUBSCRIBE_UPDATE*.
    Subscribe,
    /// FETCH, then (as the reply) FRAME*.
    Fetch,
    /// PROBE*.
    Probe,
    /// GOAWAY*.
    GoAway,
    /// The publisher side of a Subscribe stream: responses*.
    Responses,
    /// The publisher side of an Announce stream: ANNOUNCE*.
    Announces,
}

/// Decoding state: the script, and how many items of it were read.
struct Reader {
    decoder: StreamDecoder,
    limits: Limits,
    script: Option<Script>,
    /// Frames come through `decode_payload` (in pieces, joined here) instead of
    /// `decode_frame`: bit 3 of the type byte, which the script does not use.
    in_pieces: bool,
    items: Vec<Item>,
}

impl Reader {
    /// The next item, `Ok(None)` if more bytes are needed.
    fn next(&mut self) -> Result<Option<Item>, DecodeError> {
        let Some(script) = self.script else {
            return Ok(self.decoder.read_u8().map(|ty| {
                self.in_pieces = ty & 8 != 0;
                self.script = Some(match ty % 8 {
                    0 => Script::Group,
                    1 => Script::Announce,
                    2 => Script::Subscribe,
                    3 => Script::Fetch,
                    4 => Script::Probe,
                    5 => Script::GoAway,
                    6 => Script::Responses,
                    _ => Script::Announces,
                });
                Item::Type(ty)
            }));
        };
        let first = self.items.len() == 1;
        let d = &mut self.decoder;
        let l = &self.limits;
        Ok(match (script, first) {
            (Script::Group, true) => d.decode(l)?.map(Item::Group),
            (Script::Group | Script::Fetch, false) if self.in_pieces => d
                .decode_payload(l)?
                .map(|payload| Item::Frame(payload.into_bytes())),
            (Script::Group | Script::Fetch, false) => d.decode_frame(l)?.map(Item::Frame),
            (Script::Announce, true) => d.decode(l)?.map(Item::AnnounceInterest),
            (Script::Announce | Script::Announces, _) => d.decode(l)?.map(Item::Announce),
            (Script::Subscribe, true) => d.decode(l)?.map(Item::Subscribe),
            (Script::Subscribe, false) => d.decode(l)?.map(Item::SubscribeUpdate),
            (Script::Fetch, true) => d.decode(l)?.map(Item::Fetch),
            (Script::Probe, _) => d.decode(l)?.map(Item::Probe),
            (Script::GoAway, _) => d.decode(l)?.map(Item::GoAway),
            (Script::Responses, _) => d.decode_response(l)?.map(Item::Response),
        })
    }

    /// Decodes until more bytes are needed; `Some` once the stream is over.
    fn drain(&mut self) -> Option<End> {
        loop {
            match self.next() {
                Ok(Some(item)) => self.items.push(item),
                Ok(None) => return None,
                Err(e) => return Some(End::Error(e)),
            }
        }
    }
}

/// Feeds `chunks`, decoding after each, then FIN if `fin`; returns the items and the end.
fn run(chunks: impl Iterator<Item = Bytes>, fin: bool) -> (Vec<Item>, End) {
    let mut r = Reader {
        decoder: StreamDecoder::new(),
        limits: Limits {
            // Small enough that the size checks are reachable by a fuzzer.
            max_frame_size: 4096,
            ..Limits::default()
        },
        script: None,
        in_pieces: false,
        items: Vec::new(),
    };
    for chunk in chunks {
        r.decoder.push(chunk);
        if let Some(end) = r.drain() {
            return (r.items, end);
        }
    }
    if !fin {
        return (r.items, End::Pending);
    }
    r.decoder.finish();
    let end = r.drain().unwrap_or_else(|| {
        assert!(
            r.decoder.is_finished(),
            "need-more after FIN with bytes buffered"
        );
        End::Clean
    });
    (r.items, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GroupSequence, SubscribeId};

    #[test]
    fn a_group_stream_decodes_the_same_in_any_chunking() {
        let stream = Bytes::from_static(b"\x00\x02\x01\x01\x05HELLO");
        let expected = vec![
            Item::Type(0),
            Item::Group(GroupHeader {
                subscribe_id: SubscribeId(1),
                sequence: GroupSequence(1),
            }),
            Item::Frame(Bytes::from_static(b"HELLO")),
        ];
        assert_eq!(
            run(std::iter::once(stream.clone()), true),
            (expected, End::Clean)
        );
        // The reassembly property over the same stream, cut at every pair of points.
        for a in 0..stream.len() as u16 {
            for b in a..stream.len() as u16 {
                let mut input = vec![0x82];
                input.extend_from_slice(&a.to_be_bytes());
                input.extend_from_slice(&b.to_be_bytes());
                input.extend_from_slice(&stream);
                reassembly(&input);
            }
        }
        // The same frames through `decode_payload` (type byte with bit 3 set), cut anywhere.
        let mut pieces = stream.to_vec();
        pieces[0] = 0x08;
        let pieces = Bytes::from(pieces);
        let mut expected_in_pieces = run(std::iter::once(stream.clone()), true);
        expected_in_pieces.0[0] = Item::Type(0x08);
        for cut in 1..pieces.len() {
            let chunks = [pieces.slice(..cut), pieces.slice(cut..)];
            assert_eq!(run(chunks.into_iter(), true), expected_in_pieces);
        }
    }

    #[test]
    fn fin_inside_a_frame_is_an_error() {
        let stream = Bytes::from_static(b"\x03\x13\x0f/interop/server\x00\x00\x00\x05HEL");
        let (items, end) = run(std::iter::once(stream), true);
        assert_eq!(items.len(), 2);
        assert_eq!(
            end,
            End::Error(DecodeError::UnexpectedEnd { message: "FRAME" })
        );
    }
}

mod session;

pub use session::session;
