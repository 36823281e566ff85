//! Plumbing for adapter authors and tuning: the transport trait the session runs over (with
//! the core, `proto`), wtransport's implementation of it, the code mapping and the
//! sub-protocol negotiation, congestion, TLS, and the server's handshake limits.

pub mod code_mapping;
pub mod protocol;

pub use crate::conn::{WebTransportConnection, WebTransportRecvStream, WebTransportSendStream};
pub use crate::endpoint::{ALPN_H3, WebTransport};
pub use moq_quic::{
    BuildClient, CertificateDer, ClientSettings, Congestion, Handshake, HandshakeLimits,
    HandshakeStats, QuinnRecv, QuinnSend, QuinnStreams, certificate_hash, congestion, tls,
};
pub use moq_tokio::transport::*;
