//! What the application must learn: the output of [`crate::Session::poll_event`].

use std::time::Duration;

use super::StreamId;
use crate::message::{Fetch, SubscribeParams};
use crate::{BroadcastPath, ErrorCode, GroupSequence, HopId, PathPrefix, Payload, SubscribeId};

/// Why a stream-scoped transaction (subscription, group, fetch, interest, probe) ended.
///
/// The one end-reason type of the whole stack: the async readers return it as their error
/// for every end but [`EndReason::Finished`], which they report as `Ok(None)`.
///
/// ```
/// use moq_proto::{EndReason, code};
/// let end = EndReason::PeerReset(code::subscribe::NOT_FOUND);
/// assert_eq!(end.code(), Some(code::subscribe::NOT_FOUND));
/// assert_eq!(EndReason::Finished.code(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndReason {
    /// The peer finished it normally (FIN).
    #[error("finished")]
    Finished,
    /// The application ended it locally.
    #[error("ended locally")]
    Local,
    /// The peer reset its side with this code (read in the light of the stream kind).
    #[error("reset by the peer with code {0}")]
    PeerReset(ErrorCode),
    /// The peer asked us to stop sending, with this code.
    #[error("stopped by the peer with code {0}")]
    PeerStopped(ErrorCode),
    /// We cancelled it with this code because of what the peer sent or failed to send
    /// (duplicate status, timeout, range, unknown track...).
    #[error("cancelled with code {0}")]
    Cancelled(ErrorCode),
    /// A group fell behind the newest by more than the max latency (Group code 0x3).
    #[error("expired")]
    Expired,
    /// A group was dropped because the subscriber could not keep up.
    #[error("dropped: the subscriber is too slow")]
    Dropped,
    /// The transport could not open the stream.
    #[error("the stream could not be opened")]
    OpenFailed,
    /// Shed for the connection's memory budget ([`crate::Config::max_connection_bytes`]):
    /// it held the most when the connection's ledger passed its cap (see
    /// [`crate::Ledger`]); its stream was stopped or cancelled with code 0x0.
    #[error("shed: the connection's memory budget was exceeded")]
    Shed,
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
}

impl EndReason {
    /// The peer's code (reset, stop) or ours (cancel), where the end carried one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::PeerReset(c) | Self::PeerStopped(c) | Self::Cancelled(c) => Some(*c),
            _ => None,
        }
    }
}

/// Why the session ended.
///
/// ```
/// use moq_proto::{CloseReason, code};
/// let reason = CloseReason::Peer { code: code::session::GOAWAY_TIMEOUT, reason: "drain over".into() };
/// println!("{reason}");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// We closed it, with this code and reason.
    #[error("closed locally with code {code}: {reason}")]
    Local {
        /// The session code sent.
        code: ErrorCode,
        /// The reason sent.
        reason: String,
    },
    /// The peer closed it, with this code and reason.
    #[error("closed by the peer with code {code}: {reason}")]
    Peer {
        /// The session code received.
        code: ErrorCode,
        /// The reason received.
        reason: String,
    },
    /// The connection failed below the application (idle timeout, reset, TLS...).
    #[error("connection lost: {0}")]
    Transport(String),
}

/// Something the application must learn, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A broadcast became active under one of our announce interests.
    Announced {
        /// The interest (our announce stream).
        interest: StreamId,
        /// The full path.
        path: BroadcastPath,
        /// The relays it passed through.
        hops: Vec<HopId>,
    },
    /// A broadcast reported under one of our interests ended (also sent for every active
    /// entry when the interest ends).
    Unannounced {
        /// The interest.
        interest: StreamId,
        /// The full path.
        path: BroadcastPath,
    },
    /// One of our announce interests ended; its entries were reported ended first.
    InterestEnded {
        /// The interest.
        interest: StreamId,
        /// Why.
        reason: EndReason,
    },
    /// The peer asked to hear of our broadcasts under a prefix (informational: the session
    /// answers it from [`crate::Session::announce`]).
    InterestReceived {
        /// The peer's announce stream.
        stream: StreamId,
        /// The prefix, as sent.
        prefix: PathPrefix,
    },

    /// The publisher accepted one of our subscriptions, or changed its values.
    SubscribeOk {
        /// Our subscription.
        id: SubscribeId,
        /// The publisher's priority, order, max latency and range.
        params: SubscribeParams,
    },
    /// The publisher will not deliver groups `start..=end` of our subscription.
    SubscribeDropped {
        /// Our subscription.
        id: SubscribeId,
        /// First dropped group.
        start: GroupSequence,
        /// Last dropped group, inclusive.
        end: GroupSequence,
        /// 0 = simply unavailable; else a Subscribe code.
        code: ErrorCode,
    },
    /// One of our subscriptions ended; its open groups were ended first.
    SubscriptionEnded {
        /// Our subscription.
        id: SubscribeId,
        /// Why. A FIN before any SUBSCRIBE_OK is `Finished`: the track ended empty.
        reason: EndReason,
    },
    /// A group of one of our subscriptions started arriving.
    GroupReceived {
        /// Our subscription.
        id: SubscribeId,
        /// The group's sequence.
        sequence: GroupSequence,
        /// The group's stream: read its frames with [`crate::Session::read_frame`].
        stream: StreamId,
    },
    /// A received group ended. When the session or the peer ended it (it expired, was
    /// replaced, the subscription ended, or the peer reset it),
    /// [`crate::Session::read_frame`] returns the same reason once; `Finished` is reported
    /// when the reader reaches the end. A group the application cancelled
    /// ([`crate::Session::cancel_group`]) is forgotten at once: `read_frame` then returns
    /// [`crate::CommandError::UnknownStream`].
    GroupEnded {
        /// The group's stream.
        stream: StreamId,
        /// `Finished` when complete.
        reason: EndReason,
    },

    /// The peer subscribes to one of our broadcasts: answer with
    /// [`crate::Session::accept_subscribe`] or [`crate::Session::reject_subscribe`].
    SubscribeRequested {
        /// The peer's subscription ID, which names it in our publishing commands.
        id: SubscribeId,
        /// The broadcast.
        path: BroadcastPath,
        /// The track.
        track: String,
        /// The subscriber's preferences and range.
        params: SubscribeParams,
    },
    /// The peer changed an incoming subscription.
    SubscriptionUpdated {
        /// The peer's subscription ID.
        id: SubscribeId,
        /// The new values.
        params: SubscribeParams,
    },
    /// An incoming subscription ended; its group streams were closed.
    PublicationEnded {
        /// The peer's subscription ID.
        id: SubscribeId,
        /// Why: `Finished` when the subscriber unsubscribed.
        reason: EndReason,
    },
    /// A group we were sending ended before we finished it (the subscriber stopped it, it
    /// expired, or it was dropped because the subscriber is slow). Later writes to it fail.
    GroupCancelled {
        /// The incoming subscription.
        id: SubscribeId,
        /// The group.
        sequence: GroupSequence,
        /// Why.
        reason: EndReason,
    },

    /// The peer fetches a group of one of our broadcasts: answer with
    /// [`crate::Session::write_fetch_frame`] and [`crate::Session::finish_fetch`], or
    /// [`crate::Session::reject_fetch`].
    FetchRequested {
        /// The fetch stream, which names the request.
        stream: StreamId,
        /// The request.
        request: Fetch,
    },
    /// A fetch ended: ours (`Finished` = its reader read every frame; any other reason is
    /// also returned once by [`crate::Session::read_frame`], except after
    /// [`crate::Session::cancel_fetch`], which forgets the fetch) or one we were serving
    /// (the peer cancelled it).
    FetchEnded {
        /// The fetch stream.
        stream: StreamId,
        /// Why.
        reason: EndReason,
    },

    /// The peer's probe asks us to pad up to this many bits per second (latest wins).
    ProbeTarget {
        /// Target bits per second.
        bitrate: u64,
    },
    /// A measurement from the peer in reply to our probe.
    ProbeResult {
        /// The peer's estimate of the bitrate it can send us, in bits per second; 0 unknown.
        bitrate: u64,
        /// The smoothed RTT; zero = unknown.
        rtt: Duration,
    },
    /// Our probe stream ended.
    ProbeEnded {
        /// Why (`Cancelled`-like `PeerReset(0x2)` means the peer cannot measure).
        reason: EndReason,
    },

    /// The peer asked us to leave: new requests now fail; reconnect to `uri` if not empty
    /// (after checking it against local policy), then close this session.
    GoAway {
        /// The new session URI, possibly empty.
        uri: String,
    },

    /// The session ended; nothing else follows.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// What [`crate::Session::read_frame`] found on a received group or fetch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameRead {
    /// The next frame, as received: the pieces of the chunks it spans, never copied.
    Frame(Payload),
    /// No whole frame is buffered: report more of the stream (`handle_data`, `handle_fin`,
    /// `handle_reset`) and read again.
    Blocked,
    /// The group or fetch ended after its last frame; the session has forgotten it.
    Ended(EndReason),
}
