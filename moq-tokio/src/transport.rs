//! The small transport trait the session runs over, with verbs named after QUIC.
//!
//! `moq-quinn` implements it for native QUIC and `moq-webtransport` for WebTransport. An
//! implementation moves bytes and reports what it measured; it holds no MOQ logic.
//!
//! An adapter starts a session with [`crate::Session::new`] over its [`Connection`] in a
//! [`Role`]. [`proto`] is the sans-IO core the session drives; [`Payload`] is a frame as the
//! transport's chunks ([`crate::GroupReader::read_payload`]).

pub use moq_proto::{self as proto, Payload, Role, TransportStats};

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use moq_proto::{CloseReason, ErrorCode};

/// Why a stream operation failed.
///
/// ```no_run
/// # async fn demo<S: moq_tokio::transport::SendStream>(mut stream: S) {
/// use moq_tokio::transport::StreamError;
/// match stream.write_chunk(bytes::Bytes::from_static(b"x")).await {
///     Err(StreamError::Stopped(code)) => println!("the peer stopped the stream: {code}"),
///     Err(e) => println!("{e:?}"),
///     Ok(()) => {}
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer reset the stream (RESET_STREAM) with this code.
    #[error("reset by the peer with code {0}")]
    Reset(ErrorCode),
    /// The peer asked us to stop sending (STOP_SENDING) with this code.
    #[error("stopped by the peer with code {0}")]
    Stopped(ErrorCode),
    /// The connection is gone.
    #[error("connection lost")]
    ConnectionLost,
    /// The stream was already finished or reset locally.
    #[error("stream closed")]
    Closed,
}

/// What the transport negotiated, for [`crate::Session::connection_info`].
///
/// ```
/// let mut info = moq_tokio::ConnectionInfo::new("quic");
/// info.alpn = Some("moq-lite-04".into());
/// assert_eq!(info.transport, "quic");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The negotiated moq-lite version (`moq-lite-04`), when the transport knows it.
    pub version: Option<String>,
    /// The transport: `"quic"` or `"webtransport"`.
    pub transport: &'static str,
    /// The TLS server name, when known.
    pub server_name: Option<String>,
    /// The TLS ALPN token negotiated (`moq-lite-04` on native QUIC, `h3` on WebTransport).
    pub alpn: Option<String>,
    /// The peer's certificate chain (DER, leaf first) as it presented it in the handshake;
    /// empty when it presented none (a client without a certificate). The TLS cipher suite
    /// is not reported: neither quinn nor wtransport exposes it.
    pub peer_certificates: Vec<bytes::Bytes>,
    /// The URL path of a WebTransport session.
    pub path: Option<String>,
}

impl ConnectionInfo {
    /// Info for a transport of the given kind, with nothing else known yet.
    ///
    /// ```
    /// let info = moq_tokio::ConnectionInfo::new("webtransport");
    /// assert!(info.path.is_none());
    /// ```
    pub fn new(transport: &'static str) -> Self {
        Self {
            transport,
            ..Self::default()
        }
    }
}

/// A connection: opens and accepts streams, closes, and reports statistics.
///
/// ```no_run
/// use moq_tokio::transport::{Connection, SendStream};
/// // What the session does with any transport: open a stream and write to it.
/// async fn hello<C: Connection>(conn: &C) -> Result<(), moq_tokio::transport::StreamError> {
///     let mut stream = conn.open_uni().await?;
///     stream.write_chunk(bytes::Bytes::from_static(b"hello")).await?;
///     stream.finish()
/// }
/// ```
pub trait Connection: Clone + Send + Sync + 'static {
    /// The send side of a stream.
    type SendStream: SendStream;
    /// The receive side of a stream.
    type RecvStream: RecvStream;

    /// Opens a unidirectional stream, waiting for stream credit if need be.
    fn open_uni(&self) -> impl Future<Output = Result<Self::SendStream, StreamError>> + Send;
    /// Opens a bidirectional stream, waiting for stream credit if need be.
    fn open_bi(
        &self,
    ) -> impl Future<Output = Result<(Self::SendStream, Self::RecvStream), StreamError>> + Send;
    /// Accepts the peer's next unidirectional stream.
    fn accept_uni(&self) -> impl Future<Output = Result<Self::RecvStream, StreamError>> + Send;
    /// Accepts the peer's next bidirectional stream.
    fn accept_bi(
        &self,
    ) -> impl Future<Output = Result<(Self::SendStream, Self::RecvStream), StreamError>> + Send;
    /// Closes the connection with a session code and reason.
    fn close(&self, code: ErrorCode, reason: &str);
    /// Resolves when the connection is closed, with the cause.
    fn closed(&self) -> impl Future<Output = CloseReason> + Send;
    /// Statistics measured now; `None` fields where the transport cannot tell.
    fn stats(&self) -> TransportStats;
    /// What was negotiated.
    fn info(&self) -> ConnectionInfo;
    /// The peer's address.
    fn remote_addr(&self) -> Option<SocketAddr>;
    /// Our address.
    fn local_addr(&self) -> Option<SocketAddr>;
}

/// The send side of a stream.
///
/// ```no_run
/// use moq_tokio::transport::SendStream;
/// async fn send_all<S: SendStream>(stream: &mut S, mut chunks: Vec<bytes::Bytes>) -> Result<(), moq_tokio::transport::StreamError> {
///     // What the transport takes at once, then the rest, waiting.
///     stream.try_write_chunks(&mut chunks)?;
///     stream.write_chunks(&mut chunks).await?;
///     stream.finish()
/// }
/// ```
pub trait SendStream: Send + 'static {
    /// Writes a chunk, without copying it. Fails with [`StreamError::Stopped`] when the peer
    /// sent STOP_SENDING. A transport that cannot promise that a write dropped before it
    /// completes wrote nothing must override [`SendStream::write_chunks`].
    fn write_chunk(&mut self, data: Bytes) -> impl Future<Output = Result<(), StreamError>> + Send;
    /// Writes several chunks in order, without copying them: chunks written whole are left
    /// empty, a chunk written in part keeps its unwritten tail. The session may drop a
    /// blocked write and resume it later with what is left, so this must hold at every
    /// await point, as it does for quinn's `write_chunks`. Transports that can hand a batch
    /// over at once should override this.
    fn write_chunks(
        &mut self,
        chunks: &mut [Bytes],
    ) -> impl Future<Output = Result<(), StreamError>> + Send {
        async move {
            for chunk in chunks.iter_mut().filter(|c| !c.is_empty()) {
                self.write_chunk(chunk.clone()).await?;
                *chunk = Bytes::new();
            }
            Ok(())
        }
    }
    /// Writes what the transport takes at once, without waiting: chunks written whole are
    /// left empty, a chunk written in part keeps its unwritten tail. Returns the bytes
    /// written (0 when the stream cannot take any now). The session tries this first, so a
    /// write with room in the stream costs no task switch; the default takes nothing, which
    /// leaves every write to [`SendStream::write_chunks`].
    fn try_write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<usize, StreamError> {
        let _ = chunks;
        Ok(0)
    }
    /// Finishes the stream (FIN).
    fn finish(&mut self) -> Result<(), StreamError>;
    /// Resets the stream (RESET_STREAM).
    fn reset(&mut self, code: ErrorCode);
    /// Sets the send priority (higher first).
    fn set_priority(&mut self, priority: i32);
}

/// The receive side of a stream.
///
/// ```no_run
/// use moq_tokio::transport::RecvStream;
/// async fn drain<R: RecvStream>(stream: &mut R) -> Result<usize, moq_tokio::transport::StreamError> {
///     let mut bufs = vec![bytes::Bytes::new(); 16];
///     let mut total = 0;
///     while let Some(n) = stream.read_chunks(&mut bufs).await? {
///         total += bufs[..n].iter().map(|b| b.len()).sum::<usize>();
///     }
///     Ok(total)
/// }
/// ```
pub trait RecvStream: Send + 'static {
    /// Reads the next chunk, at most `max` bytes: `Ok(None)` at FIN, [`StreamError::Reset`]
    /// when the peer reset the stream.
    fn read_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Bytes>, StreamError>> + Send;
    /// Reads the chunks that are ready, waiting only for the first, into `bufs`:
    /// `Ok(Some(n))` for the first `n` slots filled, `Ok(None)` at FIN. Transports that can
    /// hand several chunks over at once should override this.
    fn read_chunks(
        &mut self,
        bufs: &mut [Bytes],
    ) -> impl Future<Output = Result<Option<usize>, StreamError>> + Send {
        async move {
            let Some(first) = bufs.first_mut() else {
                return Ok(Some(0));
            };
            Ok(self.read_chunk(usize::MAX).await?.map(|chunk| {
                *first = chunk;
                1
            }))
        }
    }
    /// Asks the peer to stop sending (STOP_SENDING).
    fn stop(&mut self, code: ErrorCode);
}
