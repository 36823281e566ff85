//! `moq-fanout`: a moq-lite-04 relay built on the async session API, with no protocol logic
//! of its own beyond routing and caching.
//!
//! - **Fan-out**: per track, one upstream subscription however many downstream subscribers
//!   (one task per relayed track); each frame goes to all of them as the same `Bytes`. Each downstream subscription keeps its own priority, order, range and max
//!   latency, and a slow one loses its oldest groups (SUBSCRIBE_DROP) without slowing the
//!   others. The upstream subscription ends when the last downstream one does.
//! - **Cache**: the most recent groups of each relayed track, bounded by count and bytes:
//!   a late joiner starts at the latest group at once, and FETCH is served from it (or
//!   forwarded upstream).
//! - **Relay-to-relay**: announcements are forwarded with our hop ID appended, interest
//!   carries it as exclude-hop, the shortest route wins, and a ring does not loop.
//! - **Access control**: an [`AccessControl`] hook maps a connection to the prefixes it may
//!   publish and subscribe; [`StaticTokens`] is the built-in policy, and [`JwtAuth`] checks
//!   the JWTs of a moq-relay cluster (moq-token, moq-auth) with the same keys and rules.
//! - **Operations**: an HTTP listener with Prometheus `/metrics`, `/health`, a live status
//!   page, and a drain started over HTTP (docs/operations.md).
//!
//! [`RelayServer::start`] runs a relay from a [`RelayConfig`]; the `moq-fanout` program
//! wraps it with a TOML file, command-line overrides, logging and signal handling.

mod auth;
mod config;
mod fanout;
mod http;
mod jwt;
mod observe;
mod redact;
mod relay;
mod server;

pub use auth::{Access, AccessControl, Anonymous, ConnectionRequest, StaticTokens};
pub use config::{
    Args, AuthConfig, CacheConfig, ConfigError, LimitsConfig, ListenConfig, LogConfig,
    MetricsConfig, RelayConfig, RoutingConfig, TlsConfig, TokenConfig,
};
pub use jwt::{Claims, JwtAuth, KeyError, Pattern, Refusal};
pub use observe::{
    BroadcastStatus, HandshakeStatus, LinkState, LinkStatus, MemoryStatus, Sample, Status, Totals,
    TrackStatus,
};
pub use relay::{BroadcastInfo, PeerId, PreparedPeer, Relay, connection_request};
pub use server::{RelayServer, StartError};
