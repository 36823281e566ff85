//! A frame's payload as it arrived: the received chunks it spans, never copied.

use bytes::{Bytes, BytesMut};

/// A frame's payload as received: the pieces of the stream's chunks it spans, in order.
///
/// A payload that arrived inside one chunk is one `Bytes`; one that straddled chunks keeps
/// each piece, so reading it costs no copy. [`Payload::chunks`] reads it in place (to hash
/// it, write it to a file or a socket, or forward it); [`Payload::into_bytes`] makes it
/// contiguous, copying only when it has several pieces. Equality compares the bytes, not
/// how they are split.
///
/// ```
/// use bytes::Bytes;
/// use moq_proto::Payload;
/// let frame = Payload::from_chunks([Bytes::from_static(b"hel"), Bytes::from_static(b"lo")]);
/// assert_eq!((frame.len(), frame.is_contiguous()), (5, false));
/// assert_eq!(frame.into_bytes(), Bytes::from_static(b"hello")); // one copy, to join them
/// ```
#[derive(Clone, Debug, Default)]
pub struct Payload {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    One(Bytes),
    /// Two or more non-empty pieces, and their total length.
    Many(Vec<Bytes>, usize),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::One(Bytes::new())
    }
}

impl Payload {
    /// A payload of the given pieces, in order (empty ones are left out).
    pub fn from_chunks(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let pieces: Vec<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let len = pieces.iter().map(Bytes::len).sum();
        Self::from_pieces(pieces, len)
    }

    /// A payload of `len` bytes in `pieces`, which are non-empty (the decoder's own).
    pub(crate) fn from_pieces(mut pieces: Vec<Bytes>, len: usize) -> Self {
        debug_assert_eq!(pieces.iter().map(Bytes::len).sum::<usize>(), len);
        debug_assert!(pieces.iter().all(|p| !p.is_empty()));
        match pieces.len() {
            0 => Self::default(),
            1 => Self::from(pieces.pop().unwrap_or_default()),
            _ => Self {
                repr: Repr::Many(pieces, len),
            },
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::One(b) => b.len(),
            Repr::Many(_, len) => *len,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces, in order: one for a payload that arrived in one chunk.
    pub fn chunks(&self) -> &[Bytes] {
        match &self.repr {
            Repr::One(b) => std::slice::from_ref(b),
            Repr::Many(pieces, _) => pieces,
        }
    }

    /// Whether the payload is one contiguous piece ([`Payload::into_bytes`] will not copy).
    pub fn is_contiguous(&self) -> bool {
        matches!(self.repr, Repr::One(_))
    }

    /// The pieces, in order.
    pub fn into_chunks(self) -> Vec<Bytes> {
        match self.repr {
            Repr::One(b) => vec![b],
            Repr::Many(pieces, _) => pieces,
        }
    }

    /// The payload as one contiguous `Bytes`: the piece itself when there is one, else a
    /// single copy of all of them.
    pub fn into_bytes(self) -> Bytes {
        match self.repr {
            Repr::One(b) => b,
            Repr::Many(pieces, len) => {
                let mut out = BytesMut::with_capacity(len);
                for piece in &pieces {
                    out.extend_from_slice(piece);
                }
                out.freeze()
            }
        }
    }

    /// The bytes, one at a time, for comparisons.
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.chunks().iter().flat_map(|c| c.iter().copied())
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Self {
            repr: Repr::One(bytes),
        }
    }
}

impl From<Payload> for Bytes {
    fn from(payload: Payload) -> Self {
        payload.into_bytes()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::One(a), Repr::One(b)) => a == b,
            _ => self.len() == other.len() && self.bytes().eq(other.bytes()),
        }
    }
}

impl Eq for Payload {}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        match &self.repr {
            Repr::One(b) => b.as_ref() == other,
            Repr::Many(_, len) => *len == other.len() && self.bytes().eq(other.iter().copied()),
        }
    }
}

impl PartialEq<Bytes> for Payload {
    fn eq(&self, other: &Bytes) -> bool {
        *self == *other.as_ref()
    }
}

impl PartialEq<&[u8]> for Payload {
    fn eq(&self, other: &&[u8]) -> bool {
        *self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_kept_and_joined_once() {
        let p = Payload::from_chunks([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ]);
        assert_eq!(p.len(), 5);
        assert!(!p.is_contiguous());
        assert_eq!(p.chunks(), [&b"ab"[..], &b"cde"[..]]);
        assert_eq!(p, Bytes::from_static(b"abcde"));
        assert_eq!(p, Payload::from(Bytes::from_static(b"abcde")));
        assert_ne!(p, Bytes::from_static(b"abcdf"));
        assert_ne!(p, Bytes::from_static(b"abcd"));
        assert_eq!(p.clone().into_bytes(), Bytes::from_static(b"abcde"));
        assert_eq!(p.into_chunks().len(), 2);
    }

    #[test]
    fn one_piece_is_contiguous_and_not_copied() {
        let b = Bytes::from_static(b"whole");
        let p = Payload::from_chunks([Bytes::new(), b.clone()]);
        assert!(p.is_contiguous());
        let out = p.into_bytes();
        assert_eq!(out.as_ptr(), b.as_ptr());
        assert!(Payload::from_chunks([]).is_empty());
        assert_eq!(Payload::default(), Payload::from_chunks([Bytes::new()]));
    }
}
