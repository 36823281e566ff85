//! GROUP and FRAME (spec §4.10; draft §7.12, §7.13).

use bytes::{BufMut, Bytes, BytesMut};

use crate::coding::{
    DecodeError, EncodeError, Limits, Message, Reader, VarInt, put_varint, size_of_len, varint_len,
};
use crate::{GroupSequence, SubscribeId};

/// GROUP: the header of a Group stream, after the type byte (draft §7.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GroupHeader {
    /// The subscription this group serves.
    pub subscribe_id: SubscribeId,
    /// The group's raw absolute sequence (no + 1).
    pub sequence: GroupSequence,
}

impl Message for GroupHeader {
    const NAME: &'static str = "GROUP";

    fn body_len(&self) -> Result<usize, EncodeError> {
        Ok(varint_len(Self::NAME, "subscribe_id", self.subscribe_id.0)?
            + varint_len(Self::NAME, "group_sequence", self.sequence.0)?)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_varint(buf, self.subscribe_id.0);
        put_varint(buf, self.sequence.0);
    }

    fn decode_body(body: &[u8], _: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let subscribe_id = SubscribeId(r.u64("subscribe_id")?);
        let sequence = GroupSequence(r.u64("group_sequence")?);
        r.finish()?;
        Ok(Self {
            subscribe_id,
            sequence,
        })
    }
}

/// The length prefix of a FRAME (draft §7.13); the payload follows as its own `Bytes`, so a
/// frame is written as two chunks and never copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length in bytes; 0 is a legal empty frame.
    pub len: usize,
}

impl FrameHeader {
    /// The header for `payload`, refusing one larger than [`Limits::MAX_FRAME_SIZE`].
    pub fn for_payload(payload: &[u8]) -> Result<Self, EncodeError> {
        if payload.len() > Limits::MAX_FRAME_SIZE {
            return Err(EncodeError::FrameTooLarge {
                len: payload.len(),
                limit: Limits::MAX_FRAME_SIZE,
            });
        }
        Ok(Self { len: payload.len() })
    }

    /// The header's encoded size.
    pub fn encoded_len(&self) -> usize {
        size_of_len(self.len)
    }

    /// Writes the header.
    pub fn encode<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_varint(buf, self.len as u64);
    }

    /// Encodes a whole frame (header and payload) into one buffer: a copy, for tests and
    /// small payloads. Streams write [`FrameHeader`] and the payload `Bytes` separately.
    pub fn encode_frame(payload: &[u8]) -> Result<Bytes, EncodeError> {
        let header = Self::for_payload(payload)?;
        let mut buf = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut buf);
        buf.put_slice(payload);
        Ok(buf.freeze())
    }

    /// Reads a frame length from the front of `buf`: `Ok(None)` = need more bytes; a length
    /// over `limits.max_frame_size` is refused before any payload byte is awaited.
    pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Self, usize)>, DecodeError> {
        let Some((len, n)) = VarInt::peek(buf) else {
            return Ok(None);
        };
        let len = len.into_inner();
        if len > limits.max_frame_size as u64 {
            return Err(DecodeError::FrameTooLarge {
                len,
                limit: limits.max_frame_size,
            });
        }
        Ok(Some((Self { len: len as usize }, n)))
    }
}
