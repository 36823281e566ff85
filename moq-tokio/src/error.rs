//! Errors of the async API, each carrying the spec's codes where the peer sent one.

use moq_proto::{CloseReason, CommandError, EndReason, ErrorCode};

/// The session refused a request, or ended.
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

/// A subscription, group, fetch, announcement stream or probe ended abnormally.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamEndError {
    /// The peer reset it; the code is per stream kind (Subscribe codes for a subscription,
    /// Group codes for a group, Fetch codes for a fetch...).
    #[error("reset by the peer with code {0}")]
    Reset(ErrorCode),
    /// The peer stopped it with this code.
    #[error("stopped by the peer with code {0}")]
    Stopped(ErrorCode),
    /// We cancelled it because of the peer (timeout, duplicate, out of range...).
    #[error("cancelled with code {0}")]
    Cancelled(ErrorCode),
    /// The group fell behind the newest by more than the max latency.
    #[error("expired")]
    Expired,
    /// The group was dropped because the subscriber could not keep up.
    #[error("dropped: too slow")]
    Dropped,
    /// The stream could not be opened.
    #[error("the stream could not be opened")]
    OpenFailed,
    /// Shed to keep the connection within its memory budget
    /// ([`moq_proto::Config::max_connection_bytes`]): it held the most when the connection's
    /// ledger passed its cap.
    #[error("shed: the connection's memory budget was exceeded")]
    Shed,
    /// It was ended locally.
    #[error("ended locally")]
    Local,
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
}

impl StreamEndError {
    /// The error for an end reason, or `None` for a normal end.
    pub(crate) fn from_reason(reason: EndReason) -> Option<Self> {
        Some(match reason {
            EndReason::Finished => return None,
            EndReason::Local => Self::Local,
            EndReason::PeerReset(c) => Self::Reset(c),
            EndReason::PeerStopped(c) => Self::Stopped(c),
            EndReason::Cancelled(c) => Self::Cancelled(c),
            EndReason::Expired => Self::Expired,
            EndReason::Dropped => Self::Dropped,
            EndReason::OpenFailed => Self::OpenFailed,
            EndReason::Shed => Self::Shed,
            EndReason::SessionClosed(r) => Self::SessionClosed(r),
            _ => Self::Local,
        })
    }

    /// The peer's or our code, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Reset(c) | Self::Stopped(c) | Self::Cancelled(c) => Some(*c),
            _ => None,
        }
    }
}

/// A write to a group, track or fetch we publish failed.
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
