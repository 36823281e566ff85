//! QUIC variable-length integers (RFC 9000 §16).

use std::fmt;

use bytes::{Buf, BufMut};

use super::UnexpectedEnd;

/// A QUIC variable-length integer: an unsigned value in `0..2^62`.
///
/// Written in the shortest form that holds the value; read in any of the four widths, since
/// non-minimal encodings are legal (moq-lite-04 §2, RFC 9000 §16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarInt(u64);

/// A value does not fit in a QUIC variable-length integer (it is `2^62` or more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("value {0} does not fit in a 62-bit varint")]
pub struct VarIntBoundsExceeded(pub u64);

impl VarInt {
    /// The largest representable value, `2^62 - 1`.
    pub const MAX: Self = Self((1 << 62) - 1);
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// Builds a varint from a value known to be in range at compile time or by construction.
    pub const fn from_u32(value: u32) -> Self {
        Self(value as u64)
    }

    /// Builds a varint, failing if `value` is `2^62` or more.
    pub const fn from_u64(value: u64) -> Result<Self, VarIntBoundsExceeded> {
        if value <= Self::MAX.0 {
            Ok(Self(value))
        } else {
            Err(VarIntBoundsExceeded(value))
        }
    }

    /// The value.
    pub const fn into_inner(self) -> u64 {
        self.0
    }

    /// The number of bytes of its minimal encoding: 1, 2, 4 or 8.
    pub const fn size(self) -> usize {
        size_of_u64(self.0)
    }

    /// Writes the minimal encoding.
    pub fn encode<B: BufMut + ?Sized>(self, buf: &mut B) {
        let v = self.0;
        if v < 1 << 6 {
            buf.put_u8(v as u8);
        } else if v < 1 << 14 {
            buf.put_u16(0x4000 | v as u16);
        } else if v < 1 << 30 {
            buf.put_u32(0x8000_0000 | v as u32);
        } else {
            buf.put_u64(0xc000_0000_0000_0000 | v);
        }
    }

    /// Reads one varint of any width, advancing `buf` past it.
    ///
    /// Fails without consuming anything when fewer bytes are present than the first byte
    /// announces.
    pub fn decode<B: Buf + ?Sized>(buf: &mut B) -> Result<Self, UnexpectedEnd> {
        let first = *buf.chunk().first().ok_or(UnexpectedEnd)?;
        let len = 1usize << (first >> 6);
        if buf.remaining() < len {
            return Err(UnexpectedEnd);
        }
        let v = match len {
            1 => u64::from(buf.get_u8()),
            2 => u64::from(buf.get_u16() & 0x3fff),
            4 => u64::from(buf.get_u32() & 0x3fff_ffff),
            _ => buf.get_u64() & 0x3fff_ffff_ffff_ffff,
        };
        Ok(Self(v))
    }

    /// Reads one varint from the front of a slice, returning it and the bytes it took.
    ///
    /// `None` when the slice is shorter than the varint. Never panics.
    pub fn peek(bytes: &[u8]) -> Option<(Self, usize)> {
        let first = *bytes.first()?;
        let len = 1usize << (first >> 6);
        let raw = bytes.get(..len)?;
        let mut v = u64::from(first & 0x3f);
        for b in raw.iter().skip(1) {
            v = (v << 8) | u64::from(*b);
        }
        Some((Self(v), len))
    }
}

/// The size of the minimal varint encoding of `v` (which must be below `2^62`).
pub(crate) const fn size_of_u64(v: u64) -> usize {
    if v < 1 << 6 {
        1
    } else if v < 1 << 14 {
        2
    } else if v < 1 << 30 {
        4
    } else {
        8
    }
}

/// The size of the minimal varint encoding of a `usize` length.
pub(crate) const fn size_of_len(len: usize) -> usize {
    size_of_u64(len as u64)
}

impl fmt::Display for VarInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u8> for VarInt {
    fn from(v: u8) -> Self {
        Self(u64::from(v))
    }
}

impl From<u16> for VarInt {
    fn from(v: u16) -> Self {
        Self(u64::from(v))
    }
}

impl From<u32> for VarInt {
    fn from(v: u32) -> Self {
        Self(u64::from(v))
    }
}

impl TryFrom<u64> for VarInt {
    type Error = VarIntBoundsExceeded;

    fn try_from(v: u64) -> Result<Self, Self::Error> {
        Self::from_u64(v)
    }
}

impl TryFrom<usize> for VarInt {
    type Error = VarIntBoundsExceeded;

    fn try_from(v: usize) -> Result<Self, Self::Error> {
        Self::from_u64(v as u64)
    }
}

impl From<VarInt> for u64 {
    fn from(v: VarInt) -> Self {
        v.0
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for VarInt {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(u.int_in_range(0..=Self::MAX.0)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        VarInt::from_u64(v).unwrap().encode(&mut out);
        out
    }

    #[test]
    fn spec_examples() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (37, &[0x25]),
            (63, &[0x3f]),
            (64, &[0x40, 0x40]),
            (300, &[0x41, 0x2c]),
            (15293, &[0x7b, 0xbd]),
            (16384, &[0x80, 0x00, 0x40, 0x00]),
            (1_000_000, &[0x80, 0x0f, 0x42, 0x40]),
            (494_878_333, &[0x9d, 0x7f, 0x3e, 0x7d]),
            (1 << 30, &[0xc0, 0, 0, 0, 0x40, 0, 0, 0]),
            (
                151_288_809_941_952_652,
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            ),
            ((1 << 62) - 1, &[0xff; 8]),
        ];
        for &(v, bytes) in cases {
            assert_eq!(enc(v), bytes, "encode {v}");
            assert_eq!(VarInt::from_u64(v).unwrap().size(), bytes.len());
            let mut slice = bytes;
            assert_eq!(VarInt::decode(&mut slice).unwrap().into_inner(), v);
            assert!(slice.is_empty());
            assert_eq!(VarInt::peek(bytes), Some((VarInt(v), bytes.len())));
        }
    }

    #[test]
    fn non_minimal_encodings_are_read() {
        let mut two: &[u8] = &[0x40, 0x25];
        assert_eq!(VarInt::decode(&mut two).unwrap().into_inner(), 37);
        let mut eight: &[u8] = &[0xc0, 0, 0, 0, 0, 0, 0, 0x25];
        assert_eq!(VarInt::decode(&mut eight).unwrap().into_inner(), 37);
    }

    #[test]
    fn too_large_is_an_error() {
        assert_eq!(
            VarInt::from_u64(1 << 62),
            Err(VarIntBoundsExceeded(1 << 62))
        );
        assert_eq!(
            VarInt::try_from(u64::MAX),
            Err(VarIntBoundsExceeded(u64::MAX))
        );
    }

    #[test]
    fn short_input_consumes_nothing() {
        for bytes in [&[][..], &[0x40], &[0x80, 1, 2], &[0xc0, 1, 2, 3, 4, 5, 6]] {
            let mut slice = bytes;
            assert_eq!(VarInt::decode(&mut slice), Err(UnexpectedEnd));
            assert_eq!(slice.len(), bytes.len());
            assert_eq!(VarInt::peek(bytes), None);
        }
    }
}
