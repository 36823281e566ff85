//! Error codes, per stream kind (spec §7; gomoqt's tables, decision D18).
//!
//! The same number means different things on different stream kinds: the receiver reads a
//! code in the light of the stream it arrived on.

use std::fmt;

/// An application error code carried by CONNECTION_CLOSE, RESET_STREAM or STOP_SENDING (and
/// by SUBSCRIBE_DROP's Error Code field).
///
/// ```
/// use moq_proto::{ErrorCode, code};
/// assert_eq!(code::subscribe::NOT_FOUND, ErrorCode(0x3));
/// assert_eq!(code::session::UNAUTHORIZED.to_string(), "0x2");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ErrorCode(pub u64);

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrorCode({:#x})", self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Session codes: CONNECTION_CLOSE / WebTransport session close (spec §7.1).
pub mod session {
    use super::ErrorCode;
    /// Normal close.
    pub const NO_ERROR: ErrorCode = ErrorCode(0x0);
    /// Local failure.
    pub const INTERNAL: ErrorCode = ErrorCode(0x1);
    /// Peer not allowed.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(0x2);
    /// Malformed or illegal message (decision D10).
    pub const PROTOCOL_VIOLATION: ErrorCode = ErrorCode(0x3);
    /// The peer did not leave after GOAWAY.
    pub const GOAWAY_TIMEOUT: ErrorCode = ErrorCode(0x10);
}

/// Announce stream codes (spec §7.2).
pub mod announce {
    use super::ErrorCode;
    /// Internal error; also a slow consumer.
    pub const INTERNAL: ErrorCode = ErrorCode(0x0);
    /// A status repeated, or ENDED without ACTIVE.
    pub const DUPLICATED: ErrorCode = ErrorCode(0x1);
    /// An unknown status value.
    pub const INVALID_STATUS: ErrorCode = ErrorCode(0x2);
    /// The subscriber is no longer interested.
    pub const UNINTERESTED: ErrorCode = ErrorCode(0x3);
    /// The prefix is not allowed.
    pub const BANNED_PREFIX: ErrorCode = ErrorCode(0x4);
    /// The prefix is invalid.
    pub const INVALID_PREFIX: ErrorCode = ErrorCode(0x5);
}

/// Subscribe stream codes, also SUBSCRIBE_DROP's Error Code (spec §7.3).
pub mod subscribe {
    use super::ErrorCode;
    /// Internal error (in SUBSCRIBE_DROP: "simply unavailable").
    pub const INTERNAL: ErrorCode = ErrorCode(0x0);
    /// The requested range is invalid.
    pub const INVALID_RANGE: ErrorCode = ErrorCode(0x1);
    /// The subscribe ID was used before in this session.
    pub const DUPLICATE_ID: ErrorCode = ErrorCode(0x2);
    /// No such broadcast or track.
    pub const NOT_FOUND: ErrorCode = ErrorCode(0x3);
    /// Not allowed.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(0x4);
    /// The subscriber gave up waiting for SUBSCRIBE_OK.
    pub const TIMEOUT: ErrorCode = ErrorCode(0x5);
}

/// Group stream codes (spec §7.4).
pub mod group {
    use super::ErrorCode;
    /// Internal error.
    pub const INTERNAL: ErrorCode = ErrorCode(0x0);
    /// The group is outside the subscription's range.
    pub const OUT_OF_RANGE: ErrorCode = ErrorCode(0x2);
    /// The group fell behind the newest by more than the max latency.
    pub const EXPIRED: ErrorCode = ErrorCode(0x3);
    /// The subscription is gone.
    pub const SUBSCRIBE_CANCELLED: ErrorCode = ErrorCode(0x4);
    /// The publisher aborted the track.
    pub const PUBLISH_ABORTED: ErrorCode = ErrorCode(0x5);
    /// The session is closing.
    pub const SESSION_CLOSING: ErrorCode = ErrorCode(0x6);
    /// The GROUP header names an unknown subscription.
    pub const INVALID_SUBSCRIBE_ID: ErrorCode = ErrorCode(0x7);
}

/// Fetch stream codes (spec §7.5).
pub mod fetch {
    use super::ErrorCode;
    /// Internal error; also "group not available".
    pub const INTERNAL: ErrorCode = ErrorCode(0x0);
    /// Timed out.
    pub const TIMEOUT: ErrorCode = ErrorCode(0x1);
    /// The fetcher abandoned the request (gomoqt's value).
    pub const CANCELLED: ErrorCode = ErrorCode(0x3);
}

/// Probe stream codes (spec §7.6).
pub mod probe {
    use super::ErrorCode;
    /// Internal error; also an incoming probe stream replaced by a newer one.
    pub const INTERNAL: ErrorCode = ErrorCode(0x0);
    /// Timed out.
    pub const TIMEOUT: ErrorCode = ErrorCode(0x1);
    /// The responder cannot measure anything.
    pub const NOT_SUPPORTED: ErrorCode = ErrorCode(0x2);
    /// Our padding stream reset because padding stopped (ours: see
    /// [`crate::message::StreamType::Padding`]).
    pub const PADDING_DONE: ErrorCode = ErrorCode(0x0);
}

/// The code on the reset and stop-sending of a stream of unknown type (spec §7.7).
pub const UNKNOWN_STREAM_TYPE: ErrorCode = ErrorCode(0x1);
