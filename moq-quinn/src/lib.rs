//! moq-lite-04 over native QUIC, with quinn.
//!
//! Dial with [`Client::connect`] (`moqt://host:port`, ALPN `moq-lite-04`), listen with
//! [`Server::bind`] and [`Server::accept`]; both give a [`Session`], the async API of
//! [`moq_tokio`], re-exported here in full. TLS uses rustls with the ring provider;
//! [`Identity::self_signed`] and [`ServerTrust::Pinned`] make a test or demo server that a
//! client trusts exactly.
//!
//! ```no_run
//! use moq_quinn::{Client, Identity, Router, Server, ServerTrust, Config, SubscribeParams};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::self_signed(&["localhost"])?;
//! let cert = identity.leaf().cloned().expect("a certificate");
//! let server = Server::bind("127.0.0.1:0".parse()?, identity, Config::default(), Router::new())?;
//! let url = format!("moqt://localhost:{}", server.local_addr()?.port());
//!
//! let client = Client::new(ServerTrust::Pinned(cert))?;
//! let session = client.connect(&url, Config::default(), None).await?;
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

pub use conn::{QuicConnection, RecvStream, SendStream};
pub use endpoint::{Client, ConnectError, Incoming, NativeQuic, Server};
pub use moq_quic::{
    CertError, CertificateDer, Congestion, HandshakeLimits, HandshakeStats, HashError, Identity,
    QuicOptions, ServerTrust, certificate_hash, congestion, tls, try_write,
};

pub use moq_tokio::*;
