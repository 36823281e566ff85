//! The async moq-lite-04 session API, written once over a small transport trait.
//!
//! [`Session`] runs a [`moq_proto::Session`] on one driver task per connection, over any
//! [`transport::Connection`]: `moq-quinn` supplies native QUIC and `moq-webtransport`
//! WebTransport. Applications use one of those crates, which re-export this API.
//!
//! - Subscribing: [`Session::subscribe`] → [`TrackReader`] → [`GroupReader`] → frames.
//! - Discovering: [`Session::announced`] → [`Announcements`] → [`Announcement`].
//! - Publishing: a [`Router`] of broadcasts, each served by a [`TrackHandler`] (for example
//!   a fan-out [`Broadcast`] of [`TrackProducer`]s); per subscription a [`TrackWriter`] and
//!   its [`GroupWriter`]s.
//! - Fetching: [`Session::fetch`] → [`FetchReader`]; serving through
//!   [`TrackHandler::serve_fetch`] and a [`FetchWriter`].
//! - Probing: [`Session::probe`] → [`ProbeResults`]; the peer's targets from
//!   [`Session::probe_targets`].
//! - The session: [`Session::stats`], [`Session::connection_info`], [`Session::goaway`],
//!   [`Session::close`], [`Session::closed`].

mod announce;
mod cache;
mod driver;
mod error;
mod probe;
mod publish;
mod send;
mod session;
mod shared;
mod source;
mod subscribe;
pub mod transport;

pub use announce::{Announcement, Announcements};
pub use cache::{CacheBudget, CachedGroup, DEFAULT_TRACK_CACHE_BYTES, FRAME_OVERHEAD, GroupCache};
pub use error::{PublishError, SessionError, StreamEndError};
pub use probe::{ProbeResult, ProbeResults, ProbeTargets};
pub use publish::{
    Broadcast, FetchRequest, FetchWriter, GroupProducer, GroupWriter, Router, TrackHandler,
    TrackProducer, TrackRequest, TrackWriter,
};
pub use session::Session;
pub use subscribe::{FetchReader, GroupReader, TrackEvent, TrackReader};
pub use transport::ConnectionInfo;

pub use moq_proto::message::SubscribeParams;
pub use moq_proto::{
    self as proto, BroadcastPath, CloseReason, Config, EndReason, ErrorCode, GroupSequence, HopId,
    PathPrefix, Payload, PublisherParams, Role, SessionStats, SubscribeId, code,
};
