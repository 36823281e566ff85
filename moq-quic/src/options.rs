//! The QUIC transport settings both adapters share.

use std::time::Duration;

use crate::Congestion;

/// QUIC transport settings.
///
/// ```
/// use std::time::Duration;
/// let mut options = moq_quic::QuicOptions::default();
/// options.idle_timeout = Duration::from_secs(10);
/// options.keep_alive = Duration::from_secs(2);
/// assert_eq!(options.max_streams, 256);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuicOptions {
    /// How long a silent connection lives (default 30 s).
    pub idle_timeout: Duration,
    /// How often to send keep-alives on an idle connection (default 4 s).
    pub keep_alive: Duration,
    /// Most concurrent streams the peer may open, per direction kind (default 256):
    /// stream opens beyond it wait for credit, they never fail. Each subscription holds a
    /// bidirectional stream and each group in flight a unidirectional one. quinn reserves
    /// state for every stream the peer may open, so larger values cost memory (and cache)
    /// on every connection.
    pub max_streams: u32,
    /// Bytes the peer may send on the whole connection before we have read them (QUIC
    /// connection flow control; default 16 MiB). With the per-stream window
    /// (`stream_receive_window`) it bounds what a peer can make us buffer however many
    /// streams it opens.
    pub receive_window: u64,
    /// Bytes the peer may send on one stream before we have read them (default 4 MiB).
    /// One stream carries at most this much per round trip, so it must cover the path's
    /// bandwidth-delay product: 4 MiB is 160 Mbit/s at 200 ms (quinn's own default,
    /// 1.25 MB, is 50 Mbit/s). `receive_window` still bounds the whole connection.
    pub stream_receive_window: u64,
    /// Bytes we send without acknowledgement, across the connection (default 10 MB, quinn's
    /// default): what a peer that never acknowledges can make us hold.
    pub send_window: u64,
    /// The congestion controller (default [`Congestion::Cubic`], quinn's default).
    pub congestion: Congestion,
    /// What a server lets connection attempts hold before their handshake completes
    /// (servers only).
    pub handshake: HandshakeLimits,
}

/// What a server lets connection attempts hold before their handshake completes: a cap on
/// attempts in flight, address validation (QUIC Retry) once many are in flight, and a
/// deadline for the whole handshake. No accept waits on one peer: every handshake runs on
/// its own, so one that stalls delays no other.
///
/// ```
/// use std::time::Duration;
/// let mut options = moq_quic::QuicOptions::default();
/// options.handshake.max_in_flight = 1000;
/// options.handshake.timeout = Duration::from_secs(5);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Handshakes in flight at most (default 256); an attempt past it is refused at once
    /// (the client sees CONNECTION_REFUSED), so a flood of attempts that never finish holds
    /// at most this many.
    pub max_in_flight: usize,
    /// In-flight handshakes past which a client must first prove its address with a QUIC
    /// Retry (default 32): spoofed sources then cost no state at all. 0 retries every
    /// attempt; `max_in_flight` or more never retries.
    pub retry_above: usize,
    /// Time for the whole handshake, QUIC and TLS and, over WebTransport, the HTTP/3
    /// CONNECT (default 10 s); past it the attempt is dropped and its connection closed.
    pub timeout: Duration,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            retry_above: 32,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Default for QuicOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(4),
            max_streams: 256,
            receive_window: 16 * 1024 * 1024,
            stream_receive_window: 4 * 1024 * 1024,
            send_window: 10_000_000,
            congestion: Congestion::Cubic,
            handshake: HandshakeLimits::default(),
        }
    }
}

impl QuicOptions {
    /// The quinn transport configuration these options describe (moq-webtransport's
    /// endpoints use it too).
    ///
    /// ```
    /// let transport = moq_quic::QuicOptions::default().transport_config();
    /// ```
    pub fn transport_config(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_uni_streams(self.max_streams.into());
        t.max_concurrent_bidi_streams(self.max_streams.into());
        t.keep_alive_interval(Some(self.keep_alive));
        t.receive_window(
            quinn::VarInt::from_u64(self.receive_window).unwrap_or(quinn::VarInt::MAX),
        );
        t.stream_receive_window(
            quinn::VarInt::from_u64(self.stream_receive_window).unwrap_or(quinn::VarInt::MAX),
        );
        t.send_window(self.send_window);
        if let Ok(idle) = self.idle_timeout.try_into() {
            t.max_idle_timeout(Some(idle));
        }
        crate::congestion::configure(&mut t, self.congestion);
        t
    }
}
