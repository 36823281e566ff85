//! Wire primitives: varints, strings, message framing, limits and codec errors (spec §2, §8).

mod decoder;
mod error;
mod limits;
mod payload;
mod reader;
mod varint;

pub use decoder::{PINNED_PER_CHUNK, StreamDecoder};
pub use error::{DecodeError, EncodeError, UnexpectedEnd};
pub use limits::Limits;
pub use payload::Payload;
pub(crate) use reader::{Reader, put_string, put_varint, string_len, varint_len};
pub use varint::{VarInt, VarIntBoundsExceeded};
pub(crate) use varint::{size_of_len, size_of_u64};

use bytes::{BufMut, Bytes, BytesMut};

/// A length-framed moq-lite message: `Message Length (i)` followed by its body (spec §2).
///
/// Encoding is exact-size and single-pass: [`Message::encoded_len`] validates every field and
/// gives the size, then [`Message::encode`] writes it in one go. Decoding parses a body from
/// exactly `Message Length` bytes; a field running past the end, or bytes left over, make the
/// message malformed.
pub trait Message: Sized {
    /// The message name used in errors, as the draft spells it.
    const NAME: &'static str;

    /// Validates the fields and returns the body length in bytes (without the length prefix).
    fn body_len(&self) -> Result<usize, EncodeError>;

    /// Writes the body. Call only after [`Message::body_len`] succeeded.
    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B);

    /// Parses a body of exactly `body.len()` bytes.
    fn decode_body(body: &[u8], limits: &Limits) -> Result<Self, DecodeError>;

    /// The exact encoded size, length prefix included.
    fn encoded_len(&self) -> Result<usize, EncodeError> {
        let body = self.body_len()?;
        Ok(size_of_len(body) + body)
    }

    /// Writes the length prefix and the body.
    fn encode<B: BufMut + ?Sized>(&self, buf: &mut B) -> Result<(), EncodeError> {
        let body = self.body_len()?;
        VarInt::from_u64(body as u64)
            .map_err(|_| EncodeError::MessageTooLong {
                message: Self::NAME,
                len: body,
            })?
            .encode(buf);
        self.encode_body(buf);
        Ok(())
    }

    /// Encodes into a new buffer of exactly the right size.
    fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len()?);
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Decodes one message from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole message ("need more bytes"),
    /// and `Ok(Some((message, consumed)))` otherwise. A length above
    /// [`Limits::max_message_size`] is refused before any body byte is awaited.
    fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Self, usize)>, DecodeError> {
        let Some((len, prefix)) = VarInt::peek(buf) else {
            return Ok(None);
        };
        let body_len = check_message_len::<Self>(len, limits)?;
        let Some(body) = buf.get(prefix..prefix + body_len) else {
            return Ok(None);
        };
        let message = Self::decode_body(body, limits)?;
        Ok(Some((message, prefix + body_len)))
    }
}

/// Checks a control message length against the limit, returning it as a `usize`.
pub(crate) fn check_message_len<M: Message>(
    len: VarInt,
    limits: &Limits,
) -> Result<usize, DecodeError> {
    let len = len.into_inner();
    if len > limits.max_message_size as u64 {
        return Err(DecodeError::MessageTooLong {
            message: M::NAME,
            len,
            limit: limits.max_message_size,
        });
    }
    Ok(len as usize)
}
