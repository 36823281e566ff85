//! Field-by-field reading of one message body, and string writing helpers.

use bytes::BufMut;

use super::{DecodeError, EncodeError, Limits, VarInt, size_of_len, size_of_u64};
use crate::BroadcastPath;

/// A cursor over exactly one message body; errors name the message and field.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Self { buf, message }
    }

    fn truncated(&self, field: &'static str) -> DecodeError {
        DecodeError::Truncated {
            message: self.message,
            field,
        }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn varint(&mut self, field: &'static str) -> Result<VarInt, DecodeError> {
        VarInt::decode(&mut self.buf).map_err(|_| self.truncated(field))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.varint(field).map(VarInt::into_inner)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.truncated(field))?;
        self.buf = rest;
        Ok(b)
    }

    /// A length-prefixed UTF-8 string of at most `limits.max_string_len` bytes.
    pub(crate) fn string(
        &mut self,
        field: &'static str,
        limits: &Limits,
    ) -> Result<String, DecodeError> {
        let len = self.u64(field)?;
        if len > limits.max_string_len as u64 {
            return Err(DecodeError::FieldTooLong {
                message: self.message,
                field,
                len,
                limit: limits.max_string_len,
            });
        }
        let len = len as usize;
        if len > self.buf.len() {
            return Err(self.truncated(field));
        }
        let (raw, rest) = self.buf.split_at(len);
        self.buf = rest;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 {
            message: self.message,
            field,
        })?;
        // The one allocation of a control message: its owned string.
        Ok(s.to_owned())
    }

    /// A string field that names path segments (an announce suffix), held to
    /// `limits.max_path_segments`.
    pub(crate) fn segments(
        &mut self,
        field: &'static str,
        limits: &Limits,
    ) -> Result<String, DecodeError> {
        let s = self.string(field, limits)?;
        self.check_segments(field, &s, limits)?;
        Ok(s)
    }

    fn check_segments(
        &self,
        field: &'static str,
        s: &str,
        limits: &Limits,
    ) -> Result<(), DecodeError> {
        let count = s.split('/').filter(|part| !part.is_empty()).count();
        if count > limits.max_path_segments {
            return Err(DecodeError::TooManySegments {
                message: self.message,
                field,
                count,
                limit: limits.max_path_segments,
            });
        }
        Ok(())
    }

    /// A broadcast path: a string field, normalised, whose `/`-rooted wire form must also
    /// fit `limits.max_string_len`. Without that check a slash-less path of exactly the
    /// limit (moq-net's form) would decode but fail to re-encode one byte longer.
    pub(crate) fn path(
        &mut self,
        field: &'static str,
        limits: &Limits,
    ) -> Result<BroadcastPath, DecodeError> {
        let path = BroadcastPath::from(self.segments(field, limits)?);
        if path.wire_len() > limits.max_string_len {
            return Err(DecodeError::FieldTooLong {
                message: self.message,
                field,
                len: path.wire_len() as u64,
                limit: limits.max_string_len,
            });
        }
        Ok(path)
    }

    /// Fails if any byte is left.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                message: self.message,
                count: self.buf.len(),
            })
        }
    }
}

/// The encoded size of a string field, checking it against [`Limits::MAX_STRING_LEN`].
pub(crate) fn string_len(
    message: &'static str,
    field: &'static str,
    s: &str,
) -> Result<usize, EncodeError> {
    if s.len() > Limits::MAX_STRING_LEN {
        return Err(EncodeError::FieldTooLong {
            message,
            field,
            len: s.len(),
            limit: Limits::MAX_STRING_LEN,
        });
    }
    Ok(size_of_len(s.len()) + s.len())
}

/// Writes a string field whose size was checked by [`string_len`].
pub(crate) fn put_string<B: BufMut + ?Sized>(buf: &mut B, s: &str) {
    VarInt::from_u32(s.len() as u32).encode(buf);
    buf.put_slice(s.as_bytes());
}

/// The size of a varint field, failing if the value is `2^62` or more.
pub(crate) fn varint_len(
    message: &'static str,
    field: &'static str,
    value: u64,
) -> Result<usize, EncodeError> {
    if value > VarInt::MAX.into_inner() {
        return Err(EncodeError::ValueOutOfRange {
            message,
            field,
            value,
        });
    }
    Ok(size_of_u64(value))
}

/// Writes a varint field checked by [`varint_len`].
pub(crate) fn put_varint<B: BufMut + ?Sized>(buf: &mut B, value: u64) {
    // Checked by `varint_len` during `body_len`; the mask keeps a misuse from panicking.
    VarInt::from_u64(value & VarInt::MAX.into_inner())
        .unwrap_or(VarInt::ZERO)
        .encode(buf);
}
