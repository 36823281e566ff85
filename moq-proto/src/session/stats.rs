//! Transport statistics in, session statistics out.

use std::time::Duration;

use super::Session;

/// What the adapter measured on its connection; `None` where it cannot tell.
///
/// ```
/// use std::time::Duration;
/// let mut stats = moq_proto::TransportStats::default();
/// stats.rtt = Some(Duration::from_millis(20));
/// stats.bytes_sent = Some(1_000_000);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TransportStats {
    /// Smoothed round-trip time (RFC 9002).
    pub rtt: Option<Duration>,
    /// Total bytes the transport sent on the connection, all overheads included.
    pub bytes_sent: Option<u64>,
    /// Total bytes the transport received on the connection.
    pub bytes_received: Option<u64>,
    /// The congestion window, in bytes.
    pub congestion_window: Option<u64>,
    /// Packets the transport declared lost so far.
    pub lost_packets: Option<u64>,
    /// Bytes in the packets the transport declared lost so far.
    pub lost_bytes: Option<u64>,
    /// Bytes in the packets the peer acknowledged so far, as the congestion controller
    /// counts them: what the path delivered. The probe's estimate prefers it to
    /// `bytes_sent − lost_bytes`, which counts what still waits in the network.
    pub bytes_acked: Option<u64>,
    /// Congestion events (window reductions) so far.
    pub congestion_events: Option<u64>,
}

/// The session's view of itself, from [`Session::stats`].
///
/// ```
/// # fn demo(now: std::time::Instant) { // time comes in as an argument
/// use moq_proto::{Config, Role, Session};
/// let session = Session::new(Role::Client, Config::default(), now);
/// let stats = session.stats();
/// assert_eq!(stats.frames_sent, 0);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Smoothed RTT as last reported by the transport, else as the peer's probe replies
    /// reported it.
    pub rtt: Option<Duration>,
    /// The send bitrate the peer estimated for us in its latest probe reply (bits/s).
    pub estimated_bitrate: Option<u64>,
    /// What we last estimated, as a probe responder, that the connection can carry to the
    /// peer (bits/s; see docs/probe.md).
    pub send_bitrate: Option<u64>,
    /// Padding bytes handed to the transport while answering the peer's probes.
    pub padding_bytes: u64,
    /// Bytes sent by the transport (from its counters), else stream bytes handed to it.
    pub bytes_sent: u64,
    /// Bytes received by the transport (from its counters), else stream bytes from it.
    pub bytes_received: u64,
    /// Groups we opened for the peer's subscriptions.
    pub groups_sent: u64,
    /// Groups we received for our subscriptions.
    pub groups_received: u64,
    /// Frames we queued on groups and fetches.
    pub frames_sent: u64,
    /// Frames we received on groups and fetches.
    pub frames_received: u64,
    /// Groups dropped or expired on either side.
    pub groups_dropped: u64,
    /// Bytes of group data for the peer's subscriptions that the transport has not accepted
    /// yet (queued in the core or handed to the adapter): each subscription holds at most
    /// [`crate::Config::max_queued_bytes_per_subscription`] plus its newest group.
    pub queued_bytes: u64,
    /// Group and fetch bytes, across the session, that the transport has not accepted yet:
    /// at most [`crate::Config::max_queued_bytes`] plus the group or fetch frame being
    /// written.
    pub unsent_bytes: u64,
    /// Peer streams cancelled for holding an incomplete message too long or past
    /// [`crate::Config::max_buffered_control_bytes`].
    pub streams_abandoned: u64,
    /// ANNOUNCE messages the peer sent us.
    pub announcements_received: u64,
    /// Announcement changes reported to the application ([`crate::Event::Announced`] or
    /// [`crate::Event::Unannounced`], or both for new hops): at most
    /// [`crate::Config::announce_burst`] plus [`crate::Config::announce_rate`] per second,
    /// whatever the peer sends; changes are coalesced per path while they wait.
    pub announcements_reported: u64,
    /// Times a change waited for the announce rate limit.
    pub announce_throttled: u64,
    /// Bytes held for control messages that have not fully arrived: at most
    /// [`crate::Config::max_buffered_control_bytes`].
    pub control_bytes_buffered: u64,
    /// Received group and fetch bytes no reader has read yet ([`crate::Session::unread_bytes`]).
    pub unread_bytes: u64,
    /// Received groups and fetches not yet read to their end nor cancelled: each holds its
    /// stream, or its end for its reader ([`crate::Session::read_frame`]).
    pub unread_groups: u64,
    /// What the connection holds for its peer now, by category (see [`crate::Ledger`]).
    pub ledger: crate::Ledger,
    /// The most each category of the ledger held since the session began.
    pub ledger_peak: crate::Ledger,
    /// The most the whole ledger held since the session began: at most
    /// [`crate::Config::max_connection_bytes`] after each drain of
    /// [`crate::Session::poll_command`].
    pub ledger_peak_total: u64,
    /// Holders shed to keep the ledger under its cap (each also ends with
    /// [`crate::EndReason::Shed`] or [`crate::EndReason::Dropped`]).
    pub ledger_shed: u64,
    /// The transport's congestion window, in bytes, as last reported.
    pub congestion_window: Option<u64>,
    /// Packets the transport declared lost, as last reported.
    pub lost_packets: Option<u64>,
    /// Congestion events (window reductions), as last reported.
    pub congestion_events: Option<u64>,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) transport: TransportStats,
    pub(super) peer_rtt: Option<Duration>,
    pub(super) peer_bitrate: Option<u64>,
    pub(super) send_bitrate: Option<u64>,
    pub(super) padding_sent: u64,
    pub(super) bytes_sent_app: u64,
    pub(super) bytes_received_app: u64,
    pub(super) groups_sent: u64,
    pub(super) groups_received: u64,
    pub(super) frames_sent: u64,
    pub(super) frames_received: u64,
    pub(super) groups_dropped: u64,
    pub(super) streams_abandoned: u64,
    pub(super) announce_throttled: u64,
    pub(super) announcements_received: u64,
    pub(super) announcements_reported: u64,
}

impl Session {
    /// Statistics of the session and its transport.
    pub fn stats(&self) -> SessionStats {
        let c = &self.stats;
        SessionStats {
            rtt: c.transport.rtt.or(c.peer_rtt),
            estimated_bitrate: c.peer_bitrate,
            send_bitrate: c.send_bitrate,
            padding_bytes: c.padding_sent,
            bytes_sent: c.transport.bytes_sent.unwrap_or(c.bytes_sent_app),
            bytes_received: c.transport.bytes_received.unwrap_or(c.bytes_received_app),
            groups_sent: c.groups_sent,
            groups_received: c.groups_received,
            frames_sent: c.frames_sent,
            frames_received: c.frames_received,
            groups_dropped: c.groups_dropped,
            queued_bytes: self.queued_publication_bytes() as u64,
            unsent_bytes: self.unsent_data as u64,
            streams_abandoned: c.streams_abandoned,
            announce_throttled: c.announce_throttled,
            announcements_received: c.announcements_received,
            announcements_reported: c.announcements_reported,
            control_bytes_buffered: self.incomplete_bytes as u64,
            unread_bytes: self.unread_data as u64,
            unread_groups: (self.groups_in.len() + self.fetches_out.len()) as u64,
            ledger: self.ledger(),
            ledger_peak: self.ledger.peak,
            ledger_peak_total: self.ledger.peak_total,
            ledger_shed: self.ledger.shed,
            congestion_window: c.transport.congestion_window,
            lost_packets: c.transport.lost_packets,
            congestion_events: c.transport.congestion_events,
        }
    }
}
