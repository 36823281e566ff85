//! moq-lite-04 over WebTransport, with wtransport.
//!
//! Dial with [`Client::connect`] (`https://host:port/path`), serve with [`Server::builder`]
//! and [`serve`](moq_quic::Server::serve); both give a [`Session`], the same API as
//! `moq-quinn`'s, so a program switches transport by URL alone. The modules beside the top
//! level are `moq-quinn`'s too, [`transport`] holding this adapter's plumbing. The adapter moves bytes and
//! maps codes; it holds no MOQ logic. TLS uses rustls with the ring provider;
//! [`Identity::self_signed`] makes an ECDSA P-256 certificate valid for less than 14 days,
//! which browsers accept through `serverCertificateHashes` (its SHA-256:
//! [`Identity::certificate_hash`]).
//!
//! ```no_run
//! use moq_webtransport::{Client, Identity, Server, ServerTrust, SubscribeParams};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::self_signed(&["localhost"])?;
//! let cert = identity.leaf().cloned().expect("a certificate");
//! let server = Server::builder("127.0.0.1:0".parse()?, identity).bind()?;
//! let url = format!("https://localhost:{}/moq", server.local_addr()?.port());
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
//!
//! # Session setup (spec §1)
//!
//! - The client offers `WT-Available-Protocols: "moq-lite-04"`. **wtransport's client
//!   cannot read response headers**, so the server's `WT-Protocol` answer cannot be checked
//!   from Rust; [`ConnectionInfo::version`] is `None` on a client session.
//! - The server parses the `wt-available-protocols` Structured-Field list
//!   ([`transport::protocol::parse_list`]), answers `wt-protocol: "moq-lite-04"` (quoted) when it is
//!   offered, accepts a CONNECT without a list, and refuses one whose list lacks it with
//!   HTTP 400 (wtransport's own refusals are 403, 404 and 429; the adapter replaces the
//!   `:status` of an accepting response instead).
//! - The SETTINGS announce WebTransport both as draft-ietf-webtrans-http3-15 asks
//!   (`SETTINGS_WT_ENABLED`, `0x2c7cf000`), which webtransport-go (gomoqt) requires, and as
//!   before (`0x2b603742`), with extended CONNECT, H3 datagrams and QUIC datagrams
//!   (`max_datagram_frame_size`). wtransport 0.7.2 sends only the older setting: the
//!   workspace patches `wtransport-proto` (`vendor/wtransport-proto/PATCH.md`). Not sent:
//!   the `reset_stream_at` transport parameter (quinn has no RESET_STREAM_AT).
//!
//! # Error codes
//!
//! Stream codes travel through the WebTransport mapping into the HTTP/3 error space
//! ([`transport::code_mapping`]) in both directions, so the spec's codes arrive unchanged whether the peer is a
//! browser or another wtransport endpoint. A session close is a QUIC CONNECTION_CLOSE with
//! the mapped code (wtransport cannot send CLOSE_WEBTRANSPORT_SESSION); a peer's
//! CLOSE_WEBTRANSPORT_SESSION capsule is read with its code as sent. **A browser does not
//! see our close code or reason** (it reports a lost connection): a server ends a browser
//! session gracefully with GOAWAY first and lets the browser close.
//!
//! # Browsers
//!
//! Chromium (tested here, headless, through `@moq/lite`) works. Firefox drops
//! server-opened bidirectional streams, so a Firefox client cannot be subscribed to by the
//! server (its own subscriptions work); Safari's WebTransport is recent and untested here.
//! See the README for the matrix.

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

pub mod transport;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wtransport_hashes_certificates_as_we_do() {
        let identity = Identity::self_signed(&["localhost"]).expect("certificate");
        let leaf = identity.leaf().expect("leaf");
        let wt = wtransport::tls::Certificate::from_der(leaf.to_vec()).expect("der");
        assert_eq!(wt.hash().as_ref(), &transport::certificate_hash(leaf));
    }
}
