//! Errors of the async API, each carrying the spec's codes where the peer sent one.
//!
//! - [`SessionError`]: a request refused (the session closed or going away, or a
//!   [`CommandError`] naming why);
//! - [`EndReason`]: why a subscription, group, fetch or announcement stream ended other than
//!   normally (the readers' error; a normal end is `Ok(None)`);
//! - [`PublishError`]: a write to something that has ended, or that cannot be carried out;
//! - [`CloseReason`]: why the session ended.

pub use moq_proto::{CloseReason, CommandError, EndReason};

/// The session refused a request, or ended.
///
/// ```no_run
/// # fn demo(session: moq_tokio::Session) {
/// use moq_tokio::error::SessionError;
/// match session.subscribe("/cam", "video", Default::default()) {
///     Ok(reader) => {}
///     Err(SessionError::Closed(why)) => println!("the session is over: {why}"),
///     Err(other) => println!("refused: {other}"),
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is closed.
    #[error("session closed: {0}")]
    Closed(CloseReason),
    /// A GOAWAY was sent or received: no new requests.
    #[error("the session is going away")]
    GoingAway,
    /// The request cannot be carried out (bad value, unknown object...).
    #[error(transparent)]
    Command(CommandError),
}

impl From<CommandError> for SessionError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::GoingAway => Self::GoingAway,
            other => Self::Command(other),
        }
    }
}

/// A reader's result for an end: `Ok(())` for a normal end ([`EndReason::Finished`]), else
/// the reason.
pub(crate) fn end_result(reason: EndReason) -> Result<(), EndReason> {
    match reason {
        EndReason::Finished => Ok(()),
        other => Err(other),
    }
}

/// A write to a group, track or fetch we publish failed.
///
/// ```no_run
/// # fn demo(mut group: moq_tokio::publish::GroupWriter) {
/// use moq_tokio::error::PublishError;
/// if let Err(PublishError::Closed) = group.write_frame(bytes::Bytes::from_static(b"x")) {
///     println!("the subscriber cancelled this group");
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The group, subscription or fetch has ended (the subscriber cancelled it, it expired
    /// or was dropped, or the session closed).
    #[error("closed")]
    Closed,
    /// The group was finished: nothing more may be written to it.
    #[error("the group is finished")]
    Finished,
    /// The request cannot be carried out (out of range, duplicate group, too large...).
    #[error(transparent)]
    Command(CommandError),
}

impl From<CommandError> for PublishError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::Closed
            | CommandError::UnknownStream(_)
            | CommandError::UnknownSubscription(_) => Self::Closed,
            other => Self::Command(other),
        }
    }
}
