//! The QUIC plumbing both moq-lite-04 adapters share, native QUIC (`moq-quinn`) and
//! WebTransport (`moq-webtransport`), which both run on quinn: TLS identities, certificate
//! trust and the ring configurations ([`tls`]); the transport settings ([`QuicOptions`]);
//! the congestion controller and the statistics the probe reads ([`congestion`]); the
//! client configuration and the listening endpoint ([`client_config`], [`Listener`]); the
//! server, generic over each transport's [`Handshake`] ([`Server`]); the non-blocking
//! stream write ([`try_write`]) and the gate blocked writes wait through ([`WriteGate`]).
//! Neither adapter depends on the other for these.

use bytes::Bytes;

mod client;
pub mod congestion;
mod endpoint;
mod gate;
mod options;
mod server;
/// TLS identities, trust and the ring configurations (the `moq-tls` crate, which needs no
/// async runtime).
pub use moq_tls as tls;

pub use client::{BuildClient, ClientBuilder, ClientSettings};
pub use congestion::{Congestion, transport_stats};
pub use endpoint::{ListenError, Listener, UrlError, client_config, parse_url};
pub use gate::WriteGate;
pub use options::{HandshakeLimits, QuicOptions};
pub use server::{Handshake, HandshakeStats, HandshakeTimedOut, Incoming, Server, ServerBuilder};
pub use tls::{CertError, HashError, Identity, ServerTrust, certificate_hash};

pub use rustls::pki_types::CertificateDer;

/// Writes what a quinn stream takes at once, without waiting (quinn's `write_chunks` polled
/// once: it is cancel-safe and writes partially): `Some` with the bytes written, `None` if
/// the stream cannot take any now. For transports built on quinn streams (WebTransport).
///
/// ```no_run
/// # fn demo(mut stream: quinn::SendStream) {
/// let mut chunks = vec![bytes::Bytes::from_static(b"frame")];
/// match moq_quic::try_write(&mut stream, &mut chunks) {
///     Some(Ok(n)) => println!("{n} bytes taken at once"),
///     Some(Err(e)) => println!("stream failed: {e}"),
///     None => println!("blocked: write the rest in a task"),
/// }
/// # }
/// ```
pub fn try_write(
    stream: &mut quinn::SendStream,
    chunks: &mut [Bytes],
) -> Option<Result<usize, quinn::WriteError>> {
    let write = std::pin::pin!(stream.write_chunks(chunks));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::future::Future::poll(write, &mut cx) {
        std::task::Poll::Ready(Ok(written)) => Some(Ok(written.bytes)),
        std::task::Poll::Ready(Err(e)) => Some(Err(e)),
        std::task::Poll::Pending => None,
    }
}
