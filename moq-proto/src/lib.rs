//! A sans-IO implementation of moq-lite-04 (Media over QUIC Lite, draft-lcurley-moq-lite-04).
//!
//! This crate holds no sockets, no runtime, no threads and no clock: bytes and time come in
//! as arguments, and what to do next comes out as values. It has two layers:
//!
//! - **The wire codec** ([`coding`] primitives and the [`message`] types): every message of
//!   the draft as a typed struct with exact-size, single-pass encoding, and a
//!   [`StreamDecoder`] that reassembles a stream fed in chunks of any size, telling "need
//!   more bytes" (`Ok(None)`) from malformed input ([`DecodeError`]).
//! - **Paths** ([`BroadcastPath`], [`PathPrefix`]): one normalised form for the `/`-rooted
//!   paths of gomoqt and the slash-less paths of moq-net.
//!
//! On the wire it matches the reference implementation gomoqt byte for byte (including its
//! SUBSCRIBE_DROP range encoding); see each type for the draft section it implements.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod code;
pub mod coding;
pub mod message;

/// Entry points shared by the fuzz targets and the regression tests; not a stable API
/// (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

mod ids;
mod path;
mod session;

pub use code::ErrorCode;
pub use coding::{
    DecodeError, EncodeError, Limits, Message, PINNED_PER_CHUNK, Payload, StreamDecoder,
    UnexpectedEnd, VarInt, VarIntBoundsExceeded,
};
pub use ids::{GroupSequence, HopId, SubscribeId};
pub use path::{BroadcastPath, PathPrefix};
pub use session::{
    CloseReason, Command, CommandError, Config, Dir, EndReason, Event, FrameRead, Ledger,
    PROBE_REPLIES_KEPT, PublisherParams, Role, STREAM_COST, Session, SessionStats, StreamId,
    SubscriptionItem, TransportStats,
};

/// The ALPN token (native QUIC) and WebTransport sub-protocol of this version.
pub const ALPN: &str = "moq-lite-04";
