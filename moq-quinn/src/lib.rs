//! moq-lite-04 over native QUIC, with quinn.
//!
//! Dial with [`Client::connect`] (`moqt://host:port`, ALPN `moq-lite-04`); listen with
//! [`Server::builder`] and [`serve`](moq_quic::Server::serve). Both give a [`Session`]. TLS
//! uses rustls with the ring provider; [`Identity::self_signed`] and
//! [`ServerTrust::Pinned`] make a test or demo server that a client trusts exactly.
//!
//! The top level holds what an application uses. Beside it: [`publish`] (serving a
//! subscription by hand, the cache, the publisher's values), [`probe`] (the probe's
//! results and the peer's targets), [`error`] (every error), [`code`] (the spec's codes),
//! and [`transport`], the plumbing for adapter authors (the transport trait, the quinn
//! connection and streams, congestion, TLS).
//!
//! ```no_run
//! use moq_quinn::{Client, Identity, Server, ServerTrust, SubscribeParams};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::self_signed(&["localhost"])?;
//! let cert = identity.leaf().cloned().expect("a certificate");
//! let server = Server::builder("127.0.0.1:0".parse()?, identity).bind()?;
//! let url = format!("moqt://localhost:{}", server.local_addr()?.port());
//!
//! let client = Client::new(ServerTrust::Pinned(cert))?;
//! let session = client.connect(&url).await?;
//! let mut track = session.subscribe("/demo", "clock", SubscribeParams::default())?;
//! while let Some(mut group) = track.next_group().await? {
//!     while let Some(frame) = group.read_frame().await? {
//!         println!("{:?}", frame);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

/// The README's quick-start sample, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

mod conn;
mod endpoint;

pub use endpoint::{Client, ClientBuilder, Incoming, Server, ServerBuilder};
pub use moq_quic::{Identity, QuicOptions, ServerTrust};
pub use moq_tokio::*;

/// Every error of the API, and the reasons a session or a stream ended.
pub mod error {
    pub use crate::endpoint::ConnectError;
    pub use moq_quic::{CertError, HandshakeTimedOut, HashError, ListenError, UrlError};
    pub use moq_tokio::error::*;
}

/// Plumbing for adapter authors and tuning: the transport trait the session runs over
/// (with the core, `proto`), quinn's implementation of it, the congestion controllers,
/// TLS, and the server's handshake limits.
pub mod transport {
    pub use crate::conn::{QuicConnection, QuicRecvStream, QuicSendStream};
    pub use crate::endpoint::NativeQuic;
    pub use moq_quic::{
        BuildClient, CertificateDer, ClientSettings, Congestion, Handshake, HandshakeLimits,
        HandshakeStats, QuinnRecv, QuinnSend, QuinnStreams, certificate_hash, congestion, tls,
    };
    pub use moq_tokio::transport::*;
}
