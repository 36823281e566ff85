//! The async moq-lite-04 session API, written once over a small transport trait.
//!
//! [`Session`] runs a [`moq_proto::Session`] on one driver task per connection, over any
//! [`transport::Connection`]: `moq-quinn` supplies native QUIC and `moq-webtransport`
//! WebTransport. Applications use one of those crates, which re-export this API.
//!
//! - Subscribing: [`Session::subscribe`] → [`TrackReader`] → [`GroupReader`] → frames.
//! - Discovering: [`Session::announced`] → [`Announcements`] → [`Announcement`].
//! - Publishing: a [`Router`] of broadcasts, each a fan-out [`Broadcast`] of
//!   [`TrackProducer`]s (or any [`publish::TrackHandler`], which gets a
//!   [`publish::TrackWriter`] per subscription).
//! - Fetching: [`Session::fetch`] → [`FetchReader`]; serving through
//!   [`publish::TrackHandler::serve_fetch`] and a [`publish::FetchWriter`].
//! - Probing: [`Session::probe`] → [`probe::ProbeResults`]; the peer's targets from
//!   [`Session::probe_targets`].
//!
//! The top level holds what an application uses; [`publish`] the handler API and the cache,
//! [`probe`] the probe's types, [`error`] the errors, [`code`] the spec's codes, and
//! [`transport`] what an adapter author implements.
//! - The session: [`Session::stats`], [`Session::connection_info`], [`Session::goaway`],
//!   [`Session::close`], [`Session::closed`].

mod announce;
mod cache;
mod driver;
pub mod error;
pub mod probe;
pub mod publish;
mod session;
mod shared;
mod subscribe;
pub mod transport;

pub use announce::{Announcement, Announcements};
pub use publish::{Broadcast, FetchRequest, GroupProducer, Router, TrackProducer};
pub use session::Session;
pub use subscribe::{FetchReader, GroupReader, TrackEvent, TrackReader};
pub use transport::ConnectionInfo;

pub use moq_proto::message::SubscribeParams;
pub use moq_proto::{BroadcastPath, Config, GroupSequence, SessionStats};

/// The spec's error codes, by the stream or message they are sent on, and their type.
pub mod code {
    pub use moq_proto::ErrorCode;
    pub use moq_proto::code::*;
}
