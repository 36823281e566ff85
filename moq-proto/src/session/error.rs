//! Errors returned to the application by session commands.

use crate::{EncodeError, GroupSequence, SubscribeId};

use super::StreamId;

/// A command the session cannot carry out. Nothing was sent.
///
/// ```
/// # fn demo(now: std::time::Instant) { // time comes in as an argument
/// use moq_proto::{CommandError, Config, Role, Session, StreamId};
/// let mut session = Session::new(Role::Client, Config::default(), now);
/// assert!(matches!(session.read_frame(StreamId(3)), Err(CommandError::UnknownStream(_))));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// A GOAWAY was sent or received: no new requests on this session.
    #[error("the session is going away")]
    GoingAway,
    /// No such subscription (ours or the peer's, depending on the command).
    #[error("unknown subscription {0}")]
    UnknownSubscription(SubscribeId),
    /// No such group, fetch, interest or probe stream, or it has ended.
    #[error("unknown or ended stream {0}")]
    UnknownStream(StreamId),
    /// The subscription was already answered.
    #[error("subscription {0} was already answered")]
    AlreadyAnswered(SubscribeId),
    /// The subscription has not been accepted yet.
    #[error("subscription {0} has not been accepted")]
    NotAccepted(SubscribeId),
    /// The group lies outside the subscription's range.
    #[error("group {sequence} is outside the range of subscription {id}")]
    OutOfRange {
        /// The subscription.
        id: SubscribeId,
        /// The group.
        sequence: GroupSequence,
    },
    /// This group was already opened for this subscription.
    #[error("group {sequence} of subscription {id} was already opened")]
    DuplicateGroup {
        /// The subscription.
        id: SubscribeId,
        /// The group.
        sequence: GroupSequence,
    },
    /// The stream's send queue is full; retry after the transport drains it.
    #[error("the send queue of stream {0} is full")]
    QueueFull(StreamId),
    /// A value cannot be encoded (too long a string, a sequence out of range...).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}
