//! The QUIC plumbing both moq-lite-04 adapters share, native QUIC (`moq-quinn`) and
//! WebTransport (`moq-webtransport`), which both run on quinn: TLS identities, certificate
//! trust and the ring configurations ([`tls`]); the transport settings ([`QuicOptions`]);
//! the congestion controller and the statistics the probe reads ([`congestion`]); the
//! client configuration and the listening endpoint ([`client_config`], [`Listener`]); the
//! server, generic over each transport's [`Handshake`] ([`Server`]); the streams, generic
//! over how each transport holds quinn's ([`QuinnSend`], [`QuinnRecv`]), and the gate
//! their blocked writes wait through ([`WriteGate`]).
//! Neither adapter depends on the other for these.

mod client;
pub mod congestion;
mod endpoint;
mod gate;
mod options;
mod server;
mod stream;
/// TLS identities, trust and the ring configurations (the `moq-tls` crate, which needs no
/// async runtime).
pub use moq_tls as tls;

pub use client::{BuildClient, ClientBuilder, ClientSettings};
pub use congestion::{Congestion, transport_stats};
pub use endpoint::{ListenError, Listener, UrlError, client_config, parse_url};
pub use gate::WriteGate;
pub use options::{HandshakeLimits, QuicOptions};
pub use server::{Handshake, HandshakeStats, HandshakeTimedOut, Incoming, Server, ServerBuilder};
pub use stream::{QuinnRecv, QuinnSend, QuinnStreams};
pub use tls::{CertError, HashError, Identity, ServerTrust, certificate_hash};

pub use rustls::pki_types::CertificateDer;
