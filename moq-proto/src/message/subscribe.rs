//! SUBSCRIBE, SUBSCRIBE_UPDATE, SUBSCRIBE_OK and SUBSCRIBE_DROP (spec §4.3–§4.6; draft
//! §7.5–§7.8).
//!
//! Group ranges are typed here: `None` is "latest" / "unbounded" / "not yet known", and the
//! wire's sequence + 1 mapping (including gomoqt's SUBSCRIBE_DROP encoding, decision D3)
//! happens only inside this module.

use std::time::Duration;

use bytes::BufMut;

use super::{path_len, put_path};
use crate::coding::{
    DecodeError, EncodeError, Limits, Message, Reader, put_string, put_varint, string_len,
    varint_len,
};
use crate::{BroadcastPath, GroupSequence, SubscribeId};

/// The delivery preferences and group range carried by SUBSCRIBE, SUBSCRIBE_UPDATE and
/// SUBSCRIBE_OK (draft §6.1, §6.2).
///
/// ```
/// use std::time::Duration;
/// use moq_proto::{GroupSequence, message::SubscribeParams};
/// // Oldest first, from group 10, skipping what is more than 2 s late.
/// let params = SubscribeParams {
///     ordered: true,
///     start: Some(GroupSequence(10)),
///     max_latency: Duration::from_secs(2),
///     ..SubscribeParams::default()
/// };
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscribeParams {
    /// Higher is more important.
    pub priority: u8,
    /// `true`: oldest group first; `false`: newest group first.
    pub ordered: bool,
    /// How far a group may fall behind the newest before it expires; zero means no limit.
    /// Carried in whole milliseconds.
    pub max_latency: Duration,
    /// First group: `None` means "latest" (SUBSCRIBE) or "not yet known" (SUBSCRIBE_OK).
    pub start: Option<GroupSequence>,
    /// Last group, inclusive: `None` means unbounded.
    pub end: Option<GroupSequence>,
}

impl SubscribeParams {
    fn body_len(&self, message: &'static str) -> Result<usize, EncodeError> {
        Ok(2 + varint_len(
            message,
            "max_latency",
            latency_ms(message, self.max_latency)?,
        )? + varint_len(
            message,
            "start_group",
            range_to_wire(message, "start_group", self.start)?,
        )? + varint_len(
            message,
            "end_group",
            range_to_wire(message, "end_group", self.end)?,
        )?)
    }

    fn encode<B: BufMut + ?Sized>(&self, buf: &mut B) {
        buf.put_u8(self.priority);
        buf.put_u8(u8::from(self.ordered));
        put_varint(buf, self.max_latency.as_millis() as u64);
        put_varint(buf, wire_plus_one(self.start));
        put_varint(buf, wire_plus_one(self.end));
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            priority: r.u8("priority")?,
            ordered: r.u8("ordered")? != 0,
            max_latency: Duration::from_millis(r.u64("max_latency")?),
            start: range_from_wire(r.u64("start_group")?),
            end: range_from_wire(r.u64("end_group")?),
        })
    }
}

fn latency_ms(message: &'static str, latency: Duration) -> Result<u64, EncodeError> {
    u64::try_from(latency.as_millis()).map_err(|_| EncodeError::ValueOutOfRange {
        message,
        field: "max_latency",
        value: u64::MAX,
    })
}

/// `None` → 0, `Some(seq)` → seq + 1, failing at the top of the range.
fn range_to_wire(
    message: &'static str,
    field: &'static str,
    group: Option<GroupSequence>,
) -> Result<u64, EncodeError> {
    match group {
        None => Ok(0),
        Some(seq) => seq.0.checked_add(1).ok_or(EncodeError::ValueOutOfRange {
            message,
            field,
            value: seq.0,
        }),
    }
}

/// The seq + 1 value of a range already checked by [`range_to_wire`].
fn wire_plus_one(group: Option<GroupSequence>) -> u64 {
    group.map_or(0, |seq| seq.0.wrapping_add(1))
}

fn range_from_wire(v: u64) -> Option<GroupSequence> {
    v.checked_sub(1).map(GroupSequence)
}

/// SUBSCRIBE: the first message of a Subscribe stream (draft §7.5).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Subscribe {
    /// Chosen by the subscriber; unique within the session.
    pub id: SubscribeId,
    /// The broadcast, routed by exact (normalised) path.
    pub path: BroadcastPath,
    /// The track within the broadcast; may be empty.
    pub track: String,
    /// Subscriber preferences and the requested range.
    pub params: SubscribeParams,
}

impl Message for Subscribe {
    const NAME: &'static str = "SUBSCRIBE";

    fn body_len(&self) -> Result<usize, EncodeError> {
        Ok(varint_len(Self::NAME, "subscribe_id", self.id.0)?
            + path_len(Self::NAME, &self.path)?
            + string_len(Self::NAME, "track", &self.track)?
            + self.params.body_len(Self::NAME)?)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_varint(buf, self.id.0);
        put_path(buf, &self.path);
        put_string(buf, &self.track);
        self.params.encode(buf);
    }

    fn decode_body(body: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let id = SubscribeId(r.u64("subscribe_id")?);
        let path = r.path("path", limits)?;
        let track = r.string("track", limits)?;
        let params = SubscribeParams::decode(&mut r)?;
        r.finish()?;
        Ok(Self {
            id,
            path,
            track,
            params,
        })
    }
}

/// SUBSCRIBE_UPDATE: new preferences and range for a live subscription (draft §7.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscribeUpdate {
    /// Replaces all five values.
    pub params: SubscribeParams,
}

impl Message for SubscribeUpdate {
    const NAME: &'static str = "SUBSCRIBE_UPDATE";

    fn body_len(&self) -> Result<usize, EncodeError> {
        self.params.body_len(Self::NAME)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        self.params.encode(buf);
    }

    fn decode_body(body: &[u8], _: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let params = SubscribeParams::decode(&mut r)?;
        r.finish()?;
        Ok(Self { params })
    }
}

/// SUBSCRIBE_OK: the publisher's values for a subscription (draft §7.7). The first response
/// on a Subscribe stream; later ones change the values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscribeOk {
    /// Publisher priority, order, max latency and the range it will serve (`start: None` =
    /// not yet known; a later SUBSCRIBE_OK resolves it).
    pub params: SubscribeParams,
}

impl Message for SubscribeOk {
    const NAME: &'static str = "SUBSCRIBE_OK";

    fn body_len(&self) -> Result<usize, EncodeError> {
        self.params.body_len(Self::NAME)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        self.params.encode(buf);
    }

    fn decode_body(body: &[u8], _: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let params = SubscribeParams::decode(&mut r)?;
        r.finish()?;
        Ok(Self { params })
    }
}

/// SUBSCRIBE_DROP: groups `start..=end` will not be delivered (draft §7.8).
///
/// On the wire both bounds are sequence + 1, exactly as gomoqt writes them (decision D3), not
/// the plain values of the -04 text. Wire 0 is kept as `None`: gomoqt writes it for a bound it
/// leaves unset, and a decoded message encodes back to the same bytes. For the range it
/// covers, `None` reads as group 0 ([`SubscribeDrop::first`], [`SubscribeDrop::last`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscribeDrop {
    /// First dropped group; `None` is wire 0.
    pub start: Option<GroupSequence>,
    /// Last dropped group, inclusive; `None` is wire 0.
    pub end: Option<GroupSequence>,
    /// 0 = simply unavailable; else a Subscribe stream code (spec §7.3).
    pub code: u64,
}

impl SubscribeDrop {
    /// Drops the groups `start..=end` with `code`.
    pub fn new(start: GroupSequence, end: GroupSequence, code: u64) -> Self {
        Self {
            start: Some(start),
            end: Some(end),
            code,
        }
    }

    /// The first dropped group (wire 0 reads as group 0).
    pub fn first(&self) -> GroupSequence {
        self.start.unwrap_or(GroupSequence(0))
    }

    /// The last dropped group, inclusive (wire 0 reads as group 0).
    pub fn last(&self) -> GroupSequence {
        self.end.unwrap_or(GroupSequence(0))
    }
}

impl Message for SubscribeDrop {
    const NAME: &'static str = "SUBSCRIBE_DROP";

    fn body_len(&self) -> Result<usize, EncodeError> {
        Ok(varint_len(
            Self::NAME,
            "start_group",
            range_to_wire(Self::NAME, "start_group", self.start)?,
        )? + varint_len(
            Self::NAME,
            "end_group",
            range_to_wire(Self::NAME, "end_group", self.end)?,
        )? + varint_len(Self::NAME, "error_code", self.code)?)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_varint(buf, wire_plus_one(self.start));
        put_varint(buf, wire_plus_one(self.end));
        put_varint(buf, self.code);
    }

    fn decode_body(body: &[u8], _: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let start = range_from_wire(r.u64("start_group")?);
        let end = range_from_wire(r.u64("end_group")?);
        let code = r.u64("error_code")?;
        r.finish()?;
        Ok(Self { start, end, code })
    }
}

/// A publisher's message on a Subscribe stream: a one-byte type, then a framed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum SubscribeResponse {
    /// Type 0x00.
    Ok(SubscribeOk),
    /// Type 0x01.
    Drop(SubscribeDrop),
}

impl SubscribeResponse {
    /// The exact encoded size, type byte included.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(1 + match self {
            Self::Ok(m) => m.encoded_len()?,
            Self::Drop(m) => m.encoded_len()?,
        })
    }

    /// Writes the type byte and the message.
    pub fn encode<B: BufMut + ?Sized>(&self, buf: &mut B) -> Result<(), EncodeError> {
        match self {
            Self::Ok(m) => {
                m.body_len()?;
                buf.put_u8(0x00);
                m.encode(buf)
            }
            Self::Drop(m) => {
                m.body_len()?;
                buf.put_u8(0x01);
                m.encode(buf)
            }
        }
    }

    /// Decodes one response from the front of `buf`: `Ok(None)` = need more bytes.
    pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Self, usize)>, DecodeError> {
        let Some((&ty, rest)) = buf.split_first() else {
            return Ok(None);
        };
        let decoded = match ty {
            0x00 => SubscribeOk::decode(rest, limits)?.map(|(m, n)| (Self::Ok(m), n)),
            0x01 => SubscribeDrop::decode(rest, limits)?.map(|(m, n)| (Self::Drop(m), n)),
            other => return Err(DecodeError::InvalidResponseType(other)),
        };
        Ok(decoded.map(|(m, n)| (m, n + 1)))
    }
}
