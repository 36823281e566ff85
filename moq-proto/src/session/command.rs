//! What the session asks of its transport: the output of [`crate::Session::poll_command`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use crate::ErrorCode;

/// A stream, named by the session (so it can queue data before the transport has opened it).
///
/// The adapter keeps the map between these and its transport's streams. Ids are never reused
/// within a session.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StreamId(pub u64);

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Hashes [`StreamId`]s with one multiplication, far cheaper than the standard library's
/// SipHash. Safe because the adapter assigns stream ids; no peer chooses them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        // The product's well-mixed middle bits become the low bits that pick a bucket.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

/// A map keyed by [`StreamId`], hashed with [`StreamIdHasher`].
pub(crate) type StreamMap<V> = HashMap<StreamId, V, BuildHasherDefault<StreamIdHasher>>;

/// Whether a stream carries data one way or both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Dir {
    /// Unidirectional.
    Uni,
    /// Bidirectional.
    Bi,
}

/// One thing the adapter must do to the transport, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Open a stream, waiting for stream credit if need be, then report
    /// [`crate::Session::handle_opened`] (or [`crate::Session::handle_open_failed`]).
    Open {
        /// The session's name for it.
        id: StreamId,
        /// Unidirectional or bidirectional.
        dir: Dir,
        /// Send priority: higher first.
        priority: i32,
    },
    /// Give up a unidirectional stream asked for with [`Command::Open`] that the adapter has
    /// not reported opened: drop the open if it is still waiting for stream credit; if it
    /// completes anyway, reset the stream with `code` at once and do not report it. The
    /// session has forgotten the stream. (A stream that waits for credit the peer never
    /// grants thus costs nothing once given up.)
    CancelOpen {
        /// The stream.
        id: StreamId,
        /// The RESET_STREAM code, should the open complete.
        code: ErrorCode,
    },
    /// Write these bytes, in order, then report [`crate::Session::handle_written`] as the
    /// transport accepts them.
    Write {
        /// The stream.
        id: StreamId,
        /// The bytes; pass them on as they are (no copy).
        data: Bytes,
    },
    /// Finish the send side (FIN) once every earlier write is through.
    Finish {
        /// The stream.
        id: StreamId,
    },
    /// Abandon the send side (RESET_STREAM). Never for a stream whose [`Command::Open`]
    /// the adapter has not yet reported: that waits for [`crate::Session::handle_opened`].
    Reset {
        /// The stream.
        id: StreamId,
        /// The application error code.
        code: ErrorCode,
    },
    /// Ask the peer to stop sending (STOP_SENDING) and stop reading. Like
    /// [`Command::Reset`], only for a stream the transport has.
    Stop {
        /// The stream.
        id: StreamId,
        /// The application error code.
        code: ErrorCode,
    },
    /// Change the send priority of a stream.
    SetPriority {
        /// The stream.
        id: StreamId,
        /// Higher first.
        priority: i32,
    },
    /// Sample the transport's statistics and report them with
    /// [`crate::Session::handle_stats`].
    SampleStats,
    /// Close the connection (CONNECTION_CLOSE or the WebTransport session close).
    Close {
        /// The session code.
        code: ErrorCode,
        /// A short human-readable reason.
        reason: String,
    },
}
