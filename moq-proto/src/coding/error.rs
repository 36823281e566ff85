//! Codec errors: "need more bytes" is never an error here; these are all malformed input
//! (or, for [`EncodeError`], values that cannot be represented).

/// The input ended inside a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("unexpected end of input")]
pub struct UnexpectedEnd;

/// Bytes from the peer that cannot be a valid moq-lite-04 message.
///
/// Every variant except [`DecodeError::UnknownAnnounceStatus`] is *malformed* input, which
/// closes the session with `ProtocolViolation` (spec D10); an unknown announce status is a
/// stream-scoped semantic error (spec §5, code 0x2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message length prefix exceeds the configured limit.
    #[error("{message} length {len} exceeds the limit of {limit} bytes")]
    MessageTooLong {
        /// The message being read.
        message: &'static str,
        /// The length the peer announced.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A field runs past the end of the message body.
    #[error("{message}: field `{field}` runs past the end of the message")]
    Truncated {
        /// The message being read.
        message: &'static str,
        /// The field that was cut.
        field: &'static str,
    },
    /// Bytes remain in the body after the last field.
    #[error("{message}: {count} bytes left over after the last field")]
    TrailingBytes {
        /// The message being read.
        message: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A string field is longer than the limit.
    #[error("{message}: field `{field}` is {len} bytes, over the limit of {limit}")]
    FieldTooLong {
        /// The message being read.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// The length the peer announced.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{message}: field `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The message being read.
        message: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A path, prefix or announce suffix has more segments than the limit allows.
    #[error("{message}: field `{field}` has {count} path segments, over the limit of {limit}")]
    TooManySegments {
        /// The message being read.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// The segments found.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An ANNOUNCE carries more hop IDs than the limit allows.
    #[error("{message}: hop count {count} exceeds the limit of {limit}")]
    TooManyHops {
        /// The message being read.
        message: &'static str,
        /// The count the peer announced.
        count: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A subscribe response starts with a type byte other than 0x00 or 0x01.
    #[error("invalid subscribe response type {0:#04x}")]
    InvalidResponseType(u8),
    /// A frame payload is larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The length the peer announced.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// The stream ended (FIN) inside a message.
    #[error("the stream ended inside {message}")]
    UnexpectedEnd {
        /// The message that was cut.
        message: &'static str,
    },
    /// An ANNOUNCE status other than 0 (ended) or 1 (active). Stream-scoped, not malformed.
    #[error("unknown announce status {0}")]
    UnknownAnnounceStatus(u64),
}

impl DecodeError {
    /// Whether this is malformed input that must close the session with `ProtocolViolation`.
    pub fn is_malformed(&self) -> bool {
        !matches!(self, Self::UnknownAnnounceStatus(_))
    }
}

/// A value that cannot be encoded on the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string is longer than [`crate::Limits::MAX_STRING_LEN`].
    #[error("{message}: field `{field}` is {len} bytes, over the limit of {limit}")]
    FieldTooLong {
        /// The message being written.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A number does not fit its wire form (for example a group sequence of `2^62 - 1`
    /// where the wire carries sequence + 1).
    #[error("{message}: field `{field}` value {value} cannot be encoded")]
    ValueOutOfRange {
        /// The message being written.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A path with more segments than [`crate::Limits::MAX_PATH_SEGMENTS`].
    #[error("{message}: {count} path segments exceed the limit of {limit}")]
    TooManySegments {
        /// The message being written.
        message: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// More hop IDs than [`crate::Limits::MAX_HOPS`].
    #[error("{message}: {count} hop ids exceed the limit of {limit}")]
    TooManyHops {
        /// The message being written.
        message: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A message body too large for its length prefix.
    #[error("{message} body of {len} bytes is too large")]
    MessageTooLong {
        /// The message being written.
        message: &'static str,
        /// Its length.
        len: usize,
    },
    /// A frame payload larger than [`crate::Limits::MAX_FRAME_SIZE`].
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}
