//! Session configuration: every limit on what a peer controls, with its default (spec §8).

use std::time::Duration;

use crate::Limits;

/// Limits and timings of one session. `Config::default()` follows spec §8.
///
/// ```
/// let mut config = moq_proto::Config::default();
/// config.max_queued_bytes = 16 << 20; // more room for slow subscribers
/// config.announce_rate = 50;
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Codec limits: message, frame and string sizes, hop count.
    pub limits: Limits,
    /// Most concurrent subscriptions the peer may hold on us (default 4096). Beyond it a
    /// SUBSCRIBE is cancelled with Subscribe code 0x0.
    pub max_incoming_subscriptions: usize,
    /// Most concurrent announce streams the peer may open (default 64); beyond, cancel 0x0.
    pub max_incoming_announce_streams: usize,
    /// Most active entries one announce stream may report to us (default 10 000); beyond,
    /// cancel 0x0.
    pub max_announce_entries: usize,
    /// Most concurrent fetches the peer may request (default 256); beyond, cancel 0x0.
    pub max_incoming_fetches: usize,
    /// Most broadcasts with a change the peer has not been sent yet, on one announce stream,
    /// before the peer counts as a slow consumer and the stream is cancelled 0x0 (default
    /// 1024). Changes are coalesced per broadcast until sent: a broadcast that goes active
    /// and ends before it is sent costs nothing; one that ends and comes back with other
    /// hops costs one entry. The first report of an interest does not count: it is read
    /// from the broadcasts as the stream takes it.
    pub max_announce_queue: usize,
    /// Announcement changes per second reported to the application from the peer, over
    /// all our announce interests together (default 1000): a token bucket of
    /// [`Config::announce_burst`]. ANNOUNCE messages are always read; past the rate their
    /// changes wait, coalesced per broadcast (one that goes active and ends while it waits is
    /// never reported), so a publisher that churns its broadcasts makes the application (and
    /// every session a relay announces to) work at this rate at most, and holds at most one
    /// entry per broadcast.
    pub announce_rate: u64,
    /// Announcement changes reported at once before the rate applies (default 10 000, the
    /// default [`Config::max_announce_entries`]: the first report of a full stream goes
    /// through at once).
    pub announce_burst: u64,
    /// How long to wait for the first SUBSCRIBE_OK before cancelling 0x5 (default 30 s).
    pub subscribe_timeout: Duration,
    /// After our unsubscribe, how long the publisher has to close its side before we
    /// stop-send 0x0 (default 1 s; spec §5).
    pub unsubscribe_grace: Duration,
    /// After the publisher finishes one of our subscriptions (FIN), how long group streams
    /// that were already on their way are still accepted before
    /// [`crate::Event::SubscriptionEnded`] reports it `Finished` (default 1 s). A
    /// subscription whose bounded range has fully arrived, or that never got a
    /// SUBSCRIBE_OK, ends at once.
    pub subscription_linger: Duration,
    /// How often a probe responder samples transport statistics (default 100 ms).
    pub probe_interval: Duration,
    /// A probe responder replies at least this often (default 10 s).
    pub probe_max_age: Duration,
    /// A probe responder replies when its estimate moves by more than this many percent
    /// (default 10).
    pub probe_change_percent: u64,
    /// Whether a probe responder pads the connection up to the prober's target while the
    /// application sends less (default true; see docs/probe.md). Padding goes on one
    /// stream of type [`crate::message::StreamType::Padding`] below every media stream;
    /// a peer that stops that stream is not padded again on this session.
    pub probe_padding: bool,
    /// The most a probe responder pads at, in bits/s, whatever the prober's target
    /// (default 25 Mbit/s): a peer names the target, so this is what it can ask for.
    pub probe_padding_max_rate: u64,
    /// Padding bytes a session may send in one burst (default 16 MiB, about 5 s at
    /// 25 Mbit/s): a token bucket, refilled at [`Config::probe_padding_refill_rate`]. With
    /// the refill it bounds what any peer's PROBE can make us send: at most
    /// `burst + refill × t` bytes of padding over `t`, however it probes.
    pub probe_padding_burst: u64,
    /// The long-run padding rate of a session, in bits/s (default 2 Mbit/s): how fast the
    /// padding bucket refills.
    pub probe_padding_refill_rate: u64,
    /// What one connection may make this session hold, all categories together (default
    /// 16 MiB): control messages half-arrived and unsent, received data no reader took
    /// (frames being reassembled included), group and fetch bytes the transport has not
    /// accepted, the stream table, and what the application charges
    /// ([`crate::Session::set_external_bytes`]). Past it the largest holder is shed first
    /// (see [`crate::Ledger`]); the limits above still hold within it. A received frame
    /// must fit in it: a larger one is shed while it is reassembled.
    pub max_connection_bytes: usize,
    /// After sending GOAWAY, how long the peer has to close the session before we close it
    /// with 0x10 (default 5 s).
    pub goaway_timeout: Duration,
    /// Bytes the core hands to the transport for one stream before the transport reports
    /// them accepted (default 4 MiB). Bounds what the adapter buffers per stream; a larger
    /// window means fewer hand-overs per group (each is a round trip through the core).
    pub stream_send_window: usize,
    /// Bytes queued in the core for one incoming subscription (all its groups) before its
    /// oldest groups are dropped (default 8 MiB). The group being written is dropped last, only
    /// once its own earlier bytes pass the limit: a single frame may be larger than it.
    pub max_queued_bytes_per_subscription: usize,
    /// Bytes queued in the core for one fetch response before writes are refused
    /// (default 64 MiB).
    pub max_queued_bytes_per_fetch: usize,
    /// Bytes held, across the session, for control messages that have not fully arrived
    /// (default 2 MiB, room for one message of [`crate::Limits::max_message_size`]). The
    /// stream whose bytes pass it is cancelled with its kind's code 0x0.
    pub max_buffered_control_bytes: usize,
    /// How long a stream may owe us a message before it is cancelled (with its kind's
    /// timeout code, else 0x0): a peer stream from its opening to its type byte and first
    /// message, and any control stream holding part of a message, counted from its last
    /// complete message (default 10 s).
    pub incomplete_message_timeout: Duration,
    /// How long a received group or fetch may sit in the middle of a frame with no new
    /// byte (default 10 s): past it the stream is stopped (Group 0x3, expired; Fetch 0x1,
    /// timeout) and its reader gets [`crate::EndReason::Expired`] or
    /// [`crate::EndReason::Cancelled`]. A publisher that starts a frame and never finishes it
    /// holds nothing longer than this. Time between frames is not counted.
    pub frame_stall_timeout: Duration,
    /// Group and fetch bytes, across the whole session, that the transport has not accepted
    /// yet (queued in the core or handed to the adapter) (default 16 MiB). Beyond it the
    /// oldest groups of the subscription with the most such bytes are dropped (as for
    /// [`Config::max_queued_bytes_per_subscription`]) and fetch writes are refused.
    pub max_queued_bytes: usize,
    /// For adapters: received group and fetch bytes no reader has read yet
    /// ([`crate::Session::unread_bytes`]) above which the adapter stops reading new group
    /// streams from the transport, so that QUIC flow control slows the publisher (which then
    /// drops its oldest groups) instead of memory growing here (default 32 MiB). A group's
    /// own reader reads its stream only when it wants a frame, so it never waits for this.
    pub max_unread_bytes: usize,
    /// Whether SUBSCRIBE and FETCH for a broadcast we have not announced reach the
    /// application ([`crate::Event::SubscribeRequested`], [`crate::Event::FetchRequested`])
    /// instead of being refused here with Subscribe code 0x3 / Fetch code 0x0 (default
    /// false). A relay turns it on to answer for paths a peer may not see (Subscribe code
    /// 0x4) or that it serves without announcing them.
    pub serve_unannounced: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_incoming_subscriptions: 4096,
            max_incoming_announce_streams: 64,
            max_announce_entries: 10_000,
            max_incoming_fetches: 256,
            max_announce_queue: 1024,
            announce_rate: 1000,
            announce_burst: 10_000,
            subscribe_timeout: Duration::from_secs(30),
            unsubscribe_grace: Duration::from_secs(1),
            subscription_linger: Duration::from_secs(1),
            probe_interval: Duration::from_millis(100),
            probe_max_age: Duration::from_secs(10),
            probe_change_percent: 10,
            probe_padding: true,
            max_connection_bytes: 16 * 1024 * 1024,
            probe_padding_max_rate: 25_000_000,
            probe_padding_burst: 16 * 1024 * 1024,
            probe_padding_refill_rate: 2_000_000,
            goaway_timeout: Duration::from_secs(5),
            stream_send_window: 4 * 1024 * 1024,
            max_queued_bytes_per_subscription: 8 * 1024 * 1024,
            max_queued_bytes_per_fetch: 64 * 1024 * 1024,
            max_queued_bytes: 16 * 1024 * 1024,
            max_buffered_control_bytes: 2 * 1024 * 1024,
            incomplete_message_timeout: Duration::from_secs(10),
            frame_stall_timeout: Duration::from_secs(10),
            max_unread_bytes: 32 * 1024 * 1024,
            serve_unannounced: false,
        }
    }
}
