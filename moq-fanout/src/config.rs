//! The relay's configuration: a TOML file, then command-line overrides.
//!
//! ```toml
//! [listen]
//! quic = "0.0.0.0:4443"          # native QUIC (ALPN moq-lite-04)
//! webtransport = "0.0.0.0:4443"  # WebTransport over HTTP/3 (a different port than quic)
//!
//! [tls]
//! cert = "relay.crt"             # PEM chain and key; without them a self-signed
//! key = "relay.key"              # certificate is generated for `generate`
//! generate = ["localhost"]
//!
//! [relay]
//! hop_id = 7                     # non-zero; random when absent
//! upstreams = ["moqt://origin.example:4443"]
//! upstream_ca = "private-ca.crt" # trust this CA as well as the platform's (optional), or:
//! upstream_cert = "origin.crt"   # pin the upstream's certificate, or:
//! upstream_insecure = false      # skip verification (tests only)
//! next_session_uri = ""          # sent in GOAWAY on shutdown
//! drain_timeout_ms = 5000
//!
//! [cache]                        # per track
//! groups = 8
//! bytes = 4194304
//! total_bytes = 536870912
//!
//! [limits]
//! max_sessions = 10000
//! max_subscriptions_per_session = 4096
//! max_queued_bytes_per_subscriber = 4194304
//! max_queued_bytes_per_session = 6291456
//! max_announcements_per_session = 1000
//! announce_rate = 200                # ANNOUNCEs per second per peer, after a burst of
//! announce_burst = 1000
//! max_string_len = 4096
//! max_frames_per_group = 100000
//! max_control_bytes_per_session = 1048576
//! incomplete_message_timeout_ms = 10000
//! quic_receive_window = 4194304
//! quic_send_window = 4194304
//! max_unread_bytes_per_session = 1048576
//!
//! [upstream]                     # links to upstream relays, and shares of a route
//! max_connection_bytes = 67108864
//! max_announcements = 100000
//! announce_rate = 2000
//! announce_burst = 100000
//! max_requests_per_peer = 32     # upstream requests one downstream peer may hold
//!
//! [auth]                         # no tokens: anonymous may do everything
//! anonymous_subscribe = ["public/"]
//! [[auth.tokens]]
//! token = "s3cret"
//! publish = ["live/"]
//! subscribe = ["live/", "public/"]
//!
//! [auth]                         # or moq-relay's JWTs (moq-token, moq-auth): see JwtAuth
//! jwt_keys = ["root.jwk"]        # JWK files (JSON, or base64url of it, as moq-token writes)
//!
//! [metrics]                      # an HTTP listener: /metrics, /health, the status page
//! listen = "127.0.0.1:9090"
//! drain_token_file = "drain.secret"  # POST /drain with `Authorization: Bearer <it>`
//! top_broadcasts = 20
//!
//! [log]
//! level = "info"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("invalid configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// A command-line argument is wrong.
    #[error("{0}")]
    Args(String),
    /// The values do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything the relay reads at start.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Where to listen.
    pub listen: ListenConfig,
    /// The server certificate.
    pub tls: TlsConfig,
    /// Relay-to-relay routing and shutdown.
    pub relay: RoutingConfig,
    /// The per-track group cache.
    pub cache: CacheConfig,
    /// Resource limits.
    pub limits: LimitsConfig,
    /// What differs for the links this relay dials to its upstreams, and what one
    /// downstream peer may hold on any upstream.
    pub upstream: UpstreamConfig,
    /// Access control.
    pub auth: AuthConfig,
    /// The operator's HTTP listener: metrics, health, the status page, drain.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// The operator's HTTP listener (docs/operations.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Where to listen (plain HTTP; absent, the default: no listener). Bind it to a private
    /// address: it shows broadcast paths and the relay's state.
    pub listen: Option<SocketAddr>,
    /// A file holding the secret that `POST /drain` must present as
    /// `Authorization: Bearer <secret>`; absent: no drain over HTTP.
    pub drain_token_file: Option<PathBuf>,
    /// Broadcasts shown in metrics, history and the page (the most watched ones).
    pub top_broadcasts: usize,
    /// HTTP connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            drain_token_file: None,
            top_broadcasts: 20,
            max_connections: 32,
        }
    }
}

/// Listening addresses.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenConfig {
    /// Native QUIC (default `0.0.0.0:4443`); absent: no native listener.
    pub quic: Option<SocketAddr>,
    /// WebTransport (HTTP/3); absent (the default): none.
    pub webtransport: Option<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            quic: Some(SocketAddr::from(([0, 0, 0, 0], 4443))),
            webtransport: None,
        }
    }
}

/// The server certificate: PEM files, or a generated self-signed one.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Names for a self-signed certificate when no files are given (default `localhost`).
    pub generate: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            generate: vec!["localhost".to_owned()],
        }
    }
}

/// Relay-to-relay routing and shutdown.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RoutingConfig {
    /// This relay's hop ID (non-zero); random when absent.
    pub hop_id: Option<u64>,
    /// Relays to connect to (`moqt://host:port` or `https://host:port/path`).
    pub upstreams: Vec<String>,
    /// PEM CA certificates trusted for upstream relays besides the platform's roots. Without
    /// `upstream_cert` or `upstream_insecure`, upstreams are checked against the platform's
    /// certificate authorities (and these).
    pub upstream_ca: Option<PathBuf>,
    /// PEM certificate the upstream relays must present (pinned).
    pub upstream_cert: Option<PathBuf>,
    /// Skip certificate verification of upstream relays (tests only).
    pub upstream_insecure: bool,
    /// Delay before reconnecting to an upstream, doubled up to 10 s (default 500 ms).
    pub reconnect_ms: u64,
    /// The URI sent in GOAWAY on shutdown (empty: no redirect).
    pub next_session_uri: String,
    /// How long peers have to leave after GOAWAY before their sessions are closed
    /// (default 5000 ms).
    pub drain_timeout_ms: u64,
    /// Max Latency asked of upstream publishers, in ms (default 10 000; 0 = no limit,
    /// which moq-net reads as "only the newest group").
    pub upstream_max_latency_ms: u64,
    /// How long a broadcast whose last publisher left is held for a new publisher of the
    /// same path, in ms (default 2000): within it, subscriptions continue on the new
    /// publisher and downstream peers see no ENDED; past it, ENDED goes out and the
    /// subscriptions end with Subscribe code 0x3 (see docs/relay.md, "Failover").
    pub failover_grace_ms: u64,
    /// A peer from which nothing has been received for this long, in ms (default 10 000,
    /// well under the 30 s idle timeout; the relay's keep-alives make a live peer answer
    /// at least every 4 s), is silent: its routes lose to any live route of the same
    /// broadcast, and subscriptions move to that one.
    pub liveness_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            hop_id: None,
            upstreams: Vec::new(),
            upstream_ca: None,
            upstream_cert: None,
            upstream_insecure: false,
            reconnect_ms: 500,
            next_session_uri: String::new(),
            drain_timeout_ms: 5000,
            upstream_max_latency_ms: 10_000,
            failover_grace_ms: 2000,
            liveness_ms: 10_000,
        }
    }
}

/// Limits of the links to upstream relays, and each downstream peer's share of an upstream.
///
/// A link to an upstream relay carries what many downstream peers asked for, and the whole
/// table of a cluster: it gets its own session limits. Every route (an upstream link, or a
/// publisher connected here) is shared by the downstream peers that subscribe through it;
/// `max_requests_per_peer` keeps one of them from taking all of its streams.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// What one upstream link may make the relay hold (default 64 MiB; see
    /// `limits.max_connection_bytes` for a peer that connects here).
    pub max_connection_bytes: usize,
    /// Most active broadcasts an upstream may announce on its link (default 100 000).
    pub max_announcements: usize,
    /// Announcement changes per second taken from an upstream link (default 2000), after a
    /// burst of `announce_burst` (default 100 000: a cluster's whole table at once).
    pub announce_rate: u64,
    /// See `announce_rate`.
    pub announce_burst: u64,
    /// Most requests one downstream peer may have open on one route at once: the relayed
    /// tracks it started (the first subscriber of a track opens its upstream subscription)
    /// and the fetches forwarded for it (default 32). Past it a subscription is refused
    /// with Subscribe code 0x0 and a fetch with Fetch code 0x0; tracks others already
    /// relay are still joined.
    pub max_requests_per_peer: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            max_connection_bytes: 64 * 1024 * 1024,
            max_announcements: 100_000,
            announce_rate: 2000,
            announce_burst: 100_000,
            max_requests_per_peer: 32,
        }
    }
}

/// The per-track cache of recent groups.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Most groups kept per track (default 8; at least 1).
    pub groups: usize,
    /// Most bytes kept per track: payload plus 64 bytes per frame (default 4 MiB; at most
    /// `limits.max_queued_bytes_per_session`, so that any cached group can be fetched). A group
    /// that alone exceeds it is not cached.
    pub bytes: usize,
    /// Most bytes kept by every track's cache together (default 512 MiB): past it, the
    /// track being cached gives up its own oldest groups.
    pub total_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            groups: 8,
            bytes: 4 * 1024 * 1024,
            total_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Resource limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Most concurrent sessions (default 10 000); beyond, connections are refused.
    pub max_sessions: usize,
    /// What the relay may hold in all before it refuses new connections: every peer's
    /// ledger plus the group caches (default 2 GiB). Size it to the memory given to the
    /// relay, less what quinn holds per connection (docs/security.md).
    pub max_total_bytes: usize,
    /// Most subscriptions one peer may hold on the relay (default 4096).
    pub max_subscriptions_per_session: usize,
    /// Bytes queued for one downstream subscription before its oldest groups are dropped
    /// (SUBSCRIBE_DROP) (default 4 MiB).
    pub max_queued_bytes_per_subscriber: usize,
    /// Bytes queued or in flight for all of one peer's subscriptions and fetches before the
    /// heaviest subscriptions lose their oldest groups (default 6 MiB).
    pub max_queued_bytes_per_session: usize,
    /// Most active broadcasts one peer may announce to the relay; past it the relay cancels
    /// that announce stream (Announce code 0x0) (default 1000).
    pub max_announcements_per_session: usize,
    /// Longest broadcast path, track name or URI a peer may send, in bytes (default 4096);
    /// longer is malformed input and closes the session (0x3).
    pub max_string_len: usize,
    /// Most tracks relayed at once for one broadcast (default 256): a subscription to one
    /// more track of it is refused (Subscribe 0x0). Each relayed track holds an upstream
    /// subscription, a task and a cache.
    pub max_tracks_per_broadcast: usize,
    /// Most frames the relay forwards and caches in one group (default 100 000); an upstream
    /// group with more is cut off and reset downstream (Group code 0x5).
    pub max_frames_per_group: usize,
    /// Bytes of control messages that have not fully arrived, held for one peer across its
    /// streams; the stream that passes it is cancelled (default 1 MiB).
    pub max_control_bytes_per_session: usize,
    /// How long a peer's stream may owe a message (its type, its first message, or the rest
    /// of one begun) before it is cancelled, in ms (default 10 000).
    pub incomplete_message_timeout_ms: u64,
    /// How long a peer's group or fetch may sit in the middle of a frame with no new byte
    /// before the relay stops it (Group 0x3, expired), in ms (default 5 000): a frame begun
    /// and never finished holds nothing longer, and downstream the group ends.
    pub frame_stall_timeout_ms: u64,
    /// Most announce streams one peer may open (default 64).
    pub max_announce_streams: usize,
    /// ANNOUNCE messages per second the relay reads from one peer (default 200), after a
    /// burst of `announce_burst`: every change a publisher makes is work for every peer the
    /// relay announces to, so a publisher that churns is slowed to this rate.
    pub announce_rate: u64,
    /// ANNOUNCE messages one peer may send in a burst (default 1000, as
    /// `max_announcements_per_session`: a publisher's or an upstream relay's full first
    /// report goes through at once).
    pub announce_burst: u64,
    /// Most concurrent QUIC streams a peer may open per kind (default 128, as quinn's
    /// own default of 100): bounds the subscriptions and group streams in flight per peer. QUIC reserves state for every
    /// stream a peer may open (about 70 bytes each), so this sets much of a connection's
    /// memory.
    pub max_streams: u32,
    /// QUIC connection receive window: bytes a peer may send before the relay reads them
    /// (default 4 MiB).
    pub quic_receive_window: u64,
    /// QUIC send window: bytes the relay sends a peer without acknowledgement (default
    /// 4 MiB).
    pub quic_send_window: u64,
    /// Frames received and not yet read by the relay, per peer, above which it stops reading
    /// that peer's group streams (QUIC flow control then pushes back) (default 1 MiB; each
    /// frame counts 64 bytes more than its payload).
    pub max_unread_bytes_per_session: usize,
    /// Idle timeout of a connection in ms (default 30 000).
    pub idle_timeout_ms: u64,
    /// Announcements that already passed through this many relays are ignored
    /// (default 32).
    pub max_hops: usize,
    /// Connection attempts in their handshake at once, per listener (default 256); past
    /// it attempts are refused. Each handshake runs on its own, so a stalled one delays no
    /// other.
    pub max_handshakes: usize,
    /// Handshakes in flight past which a client must first prove its address with a QUIC
    /// Retry (default 32).
    pub retry_above_handshakes: usize,
    /// Time for a whole handshake, QUIC, TLS and the WebTransport CONNECT, in ms (default
    /// 10 000); past it the attempt is dropped.
    pub handshake_timeout_ms: u64,
    /// What one peer may make the relay hold in all, in the session's ledger (default
    /// 8 MiB): control messages, received frames being reassembled or unread, queued group
    /// bytes, streams, and the relay's own queue for the peer. Past it the largest holder
    /// is shed (docs/security.md). With the QUIC windows below it bounds a connection:
    /// 8 + 4 + 4 = 16 MiB. A frame must fit in it to be relayed.
    pub max_connection_bytes: usize,
    /// Whether the relay pads a connection toward a peer's PROBE target (default true).
    /// Padding is what lets a player measure a path it does not fill yet; it is also
    /// bandwidth any peer can ask for, bounded by the three settings below.
    pub probe_padding: bool,
    /// The most the relay pads one connection at, in bits/s, whatever the target
    /// (default 10 Mbit/s).
    pub probe_padding_max_rate: u64,
    /// Padding bytes one connection may get in a burst (default 4 MiB).
    pub probe_padding_burst_bytes: u64,
    /// The long-run padding rate of one connection, in bits/s (default 500 kbit/s): over
    /// `t` seconds a peer gets at most `burst + rate × t / 8` bytes of padding.
    pub probe_padding_refill_rate: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_subscriptions_per_session: 4096,
            max_queued_bytes_per_subscriber: 4 * 1024 * 1024,
            max_queued_bytes_per_session: 6 * 1024 * 1024,
            max_announcements_per_session: 1000,
            max_string_len: 4096,
            max_tracks_per_broadcast: 256,
            max_frames_per_group: 100_000,
            max_control_bytes_per_session: 1024 * 1024,
            incomplete_message_timeout_ms: 10_000,
            frame_stall_timeout_ms: 5_000,
            quic_receive_window: 4 * 1024 * 1024,
            quic_send_window: 4 * 1024 * 1024,
            max_unread_bytes_per_session: 1024 * 1024,
            max_announce_streams: 64,
            announce_rate: 200,
            announce_burst: 1000,
            max_streams: 128,
            idle_timeout_ms: 30_000,
            max_hops: 32,
            max_handshakes: 256,
            retry_above_handshakes: 32,
            handshake_timeout_ms: 10_000,
            max_connection_bytes: 8 * 1024 * 1024,
            probe_padding: true,
            probe_padding_max_rate: 10_000_000,
            probe_padding_burst_bytes: 4 * 1024 * 1024,
            probe_padding_refill_rate: 500_000,
        }
    }
}

/// Access control: static tokens with allowed prefixes.
///
/// With no tokens and no `anonymous_*` lists, anyone may publish and subscribe anything.
/// Once tokens are configured, a connection without a (known) token gets only the
/// `anonymous_*` prefixes (default: none).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Known tokens.
    pub tokens: Vec<TokenConfig>,
    /// Prefixes anyone may publish under.
    pub anonymous_publish: Option<Vec<String>>,
    /// Prefixes anyone may subscribe under.
    pub anonymous_subscribe: Option<Vec<String>>,
    /// JWK files whose keys sign moq-relay's JWTs (see [`crate::JwtAuth`]); when set, the
    /// relay checks JWTs instead of `tokens`.
    pub jwt_keys: Vec<PathBuf>,
}

/// One token and what it allows. Its `Debug` withholds the secret.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenConfig {
    /// The secret, given by clients as `?token=` in the URL.
    pub token: String,
    /// Broadcast prefixes it may publish under (`""` or `"/"`: everything).
    pub publish: Vec<String>,
    /// Broadcast prefixes it may subscribe under.
    pub subscribe: Vec<String>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"(withheld)")
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .finish()
    }
}

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

fn prefixes(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl RelayConfig {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError::Invalid(s.to_owned()));
        if self.relay.hop_id == Some(0) {
            return bad("relay.hop_id must be non-zero");
        }
        if self.relay.hop_id.is_some_and(|h| h >= 1 << 62) {
            return bad("relay.hop_id must be below 2^62");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls.cert and tls.key go together");
        }
        if self.tls.cert.is_none() && self.tls.generate.is_empty() {
            return bad("tls: give cert and key, or names to generate");
        }
        if self.cache.groups == 0 {
            return bad("cache.groups must be at least 1");
        }
        if self.upstream.max_requests_per_peer == 0 {
            return bad("upstream.max_requests_per_peer must be at least 1");
        }
        if self.cache.bytes > self.limits.max_queued_bytes_per_session {
            // A cached group larger than a session may queue could never be fetched.
            return bad("cache.bytes must not exceed limits.max_queued_bytes_per_session");
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return bad("log.level must be error, warn, info, debug or trace");
        }
        Ok(())
    }

    /// How long peers have to leave after GOAWAY.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.relay.drain_timeout_ms)
    }
}

/// The `moq-fanout` command line: a TOML configuration file, then overrides of its values.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "moq-fanout",
    version,
    about = "A moq-lite-04 relay: fan-out, cache, relay-to-relay routing and access control",
    after_help = "Every key of the TOML file is documented in the crate's RelayConfig. Logs go to \
                  stderr, filtered by RUST_LOG when set (else by --log or [log] level)."
)]
#[non_exhaustive]
pub struct Args {
    /// The TOML configuration file.
    #[arg(value_name = "CONFIG.toml")]
    pub file: Option<PathBuf>,
    /// The TOML configuration file (as the bare argument).
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    pub config: Option<PathBuf>,
    /// Native QUIC listen address ("none" to disable).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// WebTransport listen address.
    #[arg(long, value_name = "ADDR")]
    pub webtransport: Option<SocketAddr>,
    /// PEM certificate chain.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// A name for the self-signed certificate (repeatable; replaces the file's list).
    #[arg(long, value_name = "NAME")]
    pub generate: Vec<String>,
    /// A relay to connect to: moqt://host:port or https://host:port/path (repeatable).
    #[arg(long = "upstream", value_name = "URL")]
    pub upstreams: Vec<String>,
    /// PEM CA certificate(s) trusted for upstreams besides the platform's roots.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Pin the upstream relays' certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub upstream_cert: Option<PathBuf>,
    /// Do not verify upstream certificates (tests only).
    #[arg(long)]
    pub upstream_insecure: bool,
    /// This relay's non-zero hop ID.
    #[arg(long = "hop", value_name = "ID")]
    pub hop: Option<u64>,
    /// Groups cached per track.
    #[arg(long, value_name = "N")]
    pub cache_groups: Option<usize>,
    /// Bytes cached per track.
    #[arg(long, value_name = "N")]
    pub cache_bytes: Option<usize>,
    /// Most concurrent sessions.
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Bytes queued per subscriber before its oldest groups are dropped.
    #[arg(long, value_name = "N")]
    pub max_queued_bytes: Option<usize>,
    /// An access token, SECRET:PUBLISH:SUBSCRIBE with comma-separated prefixes
    /// (repeatable). Also from MOQ_FANOUT_TOKENS (space-separated), which keeps secrets out
    /// of the process list.
    #[arg(
        long = "token",
        value_name = "SECRET:PUB:SUB",
        env = "MOQ_FANOUT_TOKENS",
        value_delimiter = ' ',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,
    /// Prefixes allowed without a token, PUBLISH:SUBSCRIBE (comma-separated each).
    #[arg(long, value_name = "PUB:SUB")]
    pub anonymous: Option<String>,
    /// The URI sent in GOAWAY on shutdown.
    #[arg(long, value_name = "URI")]
    pub next_session_uri: Option<String>,
    /// How long to wait for peers to leave on shutdown, in ms.
    #[arg(long, value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Serve /metrics, /health and the status page over HTTP on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// A file with the secret that allows `POST /drain` on the metrics listener.
    #[arg(long, value_name = "FILE")]
    pub drain_token_file: Option<PathBuf>,
    /// A JWK file to verify moq-relay JWTs with (repeatable).
    #[arg(long = "jwt-key", value_name = "FILE")]
    pub jwt_keys: Vec<PathBuf>,
    /// The log filter when RUST_LOG is unset: error, warn, info, debug, trace, or tracing
    /// directives such as `moq_fanout=debug,info`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

impl Args {
    /// The configuration: the file (if any), then these overrides; validated.
    pub fn into_config(self) -> Result<RelayConfig, ConfigError> {
        let mut config = match self.file.as_ref().or(self.config.as_ref()) {
            Some(path) => RelayConfig::from_file(path)?,
            None => RelayConfig::default(),
        };
        self.apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies the overrides to `config`.
    pub fn apply(self, config: &mut RelayConfig) -> Result<(), ConfigError> {
        if let Some(bind) = self.bind {
            config.listen.quic = match bind.as_str() {
                "none" => None,
                v => Some(
                    v.parse()
                        .map_err(|_| ConfigError::Args(format!("--bind: not an address: {v}")))?,
                ),
            };
        }
        if self.webtransport.is_some() {
            config.listen.webtransport = self.webtransport;
        }
        if self.cert.is_some() {
            config.tls.cert = self.cert;
            config.tls.key = self.key;
        }
        if !self.generate.is_empty() {
            config.tls.generate = self.generate;
        }
        config.relay.upstreams.extend(self.upstreams);
        if self.upstream_ca.is_some() {
            config.relay.upstream_ca = self.upstream_ca;
        }
        if self.upstream_cert.is_some() {
            config.relay.upstream_cert = self.upstream_cert;
        }
        config.relay.upstream_insecure |= self.upstream_insecure;
        if self.hop.is_some() {
            config.relay.hop_id = self.hop;
        }
        if let Some(n) = self.cache_groups {
            config.cache.groups = n;
        }
        if let Some(n) = self.cache_bytes {
            config.cache.bytes = n;
        }
        if let Some(n) = self.max_sessions {
            config.limits.max_sessions = n;
        }
        if let Some(n) = self.max_queued_bytes {
            config.limits.max_queued_bytes_per_subscriber = n;
        }
        for token in self.tokens.iter().filter(|t| !t.is_empty()) {
            let mut parts = token.splitn(3, ':');
            let secret = parts.next().unwrap_or_default().to_owned();
            if secret.is_empty() {
                return Err(ConfigError::Args("--token: empty secret".into()));
            }
            config.auth.tokens.push(TokenConfig {
                token: secret,
                publish: prefixes(parts.next().unwrap_or_default()),
                subscribe: prefixes(parts.next().unwrap_or_default()),
            });
        }
        if let Some(anonymous) = self.anonymous {
            let (publish, subscribe) = anonymous.split_once(':').unwrap_or((&anonymous, ""));
            config.auth.anonymous_publish = Some(prefixes(publish));
            config.auth.anonymous_subscribe = Some(prefixes(subscribe));
        }
        if let Some(uri) = self.next_session_uri {
            config.relay.next_session_uri = uri;
        }
        if let Some(ms) = self.drain_timeout_ms {
            config.relay.drain_timeout_ms = ms;
        }
        if self.metrics.is_some() {
            config.metrics.listen = self.metrics;
        }
        if self.drain_token_file.is_some() {
            config.metrics.drain_token_file = self.drain_token_file;
        }
        config.auth.jwt_keys.extend(self.jwt_keys);
        if let Some(level) = self.log {
            config.log.level = level;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(s: &str) -> Args {
        Args::try_parse_from(std::iter::once("moq-fanout").chain(s.split_whitespace())).unwrap()
    }

    #[test]
    fn toml_then_overrides() {
        let mut config = RelayConfig::from_toml(
            r#"
            [listen]
            quic = "127.0.0.1:5000"
            [relay]
            hop_id = 9
            upstreams = ["moqt://a:1"]
            upstream_insecure = true
            [cache]
            groups = 3
            [[auth.tokens]]
            token = "t"
            publish = ["a/"]
            subscribe = ["a/", "b/"]
            "#,
        )
        .unwrap();
        assert_eq!(config.listen.quic, Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(config.relay.hop_id, Some(9));
        assert_eq!(config.cache.groups, 3);
        assert_eq!(config.cache.bytes, CacheConfig::default().bytes);
        assert_eq!(config.auth.tokens[0].subscribe, ["a/", "b/"]);
        args(
            "--bind 127.0.0.1:6000 --hop 4 --cache-groups 2 --upstream moqt://b:2 \
             --token x:c/:c/,d/ --anonymous :pub/",
        )
        .apply(&mut config)
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.listen.quic, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(config.relay.hop_id, Some(4));
        assert_eq!(config.cache.groups, 2);
        assert_eq!(config.relay.upstreams, ["moqt://a:1", "moqt://b:2"]);
        assert_eq!(config.auth.tokens[1].token, "x");
        assert_eq!(config.auth.tokens[1].subscribe, ["c/", "d/"]);
        assert_eq!(config.auth.anonymous_publish, Some(vec![]));
        assert_eq!(config.auth.anonymous_subscribe, Some(vec!["pub/".into()]));
    }

    #[test]
    fn refusals() {
        assert!(RelayConfig::from_toml("[relay]\nhop_id = 0").is_err());
        assert!(RelayConfig::from_toml("[nope]").is_err());
        assert!(RelayConfig::from_toml("[tls]\ncert = \"a\"").is_err());
        // Upstreams without a pin or --upstream-insecure are checked against the platform's
        // certificate authorities.
        assert!(RelayConfig::from_toml("[relay]\nupstreams = [\"moqt://a:1\"]").is_ok());
        let parse = |s: &str| {
            Args::try_parse_from(std::iter::once("moq-fanout").chain(s.split_whitespace()))
        };
        assert!(parse("--bind").is_err());
        assert!(parse("--what").is_err());
        assert!(parse("--cache-groups x").is_err());
        assert!(parse("--cert a.pem").is_err(), "--cert needs --key");
        assert_eq!(
            parse("--help").unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
        assert_eq!(args("--bind none").into_config().unwrap().listen.quic, None);
        assert!(
            args("--bind 1.2.3").into_config().is_err(),
            "a bad address is refused"
        );
    }

    #[test]
    fn tokens_also_come_from_the_environment_value() {
        let mut config = RelayConfig::default();
        // As clap splits MOQ_FANOUT_TOKENS (space-separated).
        args("--token a:x/:x/ --token b::y/")
            .apply(&mut config)
            .unwrap();
        assert_eq!(config.auth.tokens.len(), 2);
        assert_eq!(config.auth.tokens[1].subscribe, ["y/"]);
    }
}
