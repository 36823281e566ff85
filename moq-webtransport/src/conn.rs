//! wtransport behind the transport trait: stream I/O, close, statistics. No MOQ logic.
//!
//! Stream data goes through the underlying quinn streams (wtransport has already written or
//! read the WebTransport stream header), so writes pass the core's `Bytes` without a copy.
//! Every error code crosses [`crate::code`]'s mapping.

use std::net::SocketAddr;
use std::sync::Arc;

use moq_tokio::code::ErrorCode;
use moq_tokio::error::CloseReason;
use moq_tokio::transport::{self, ConnectionInfo, StreamError};
use quinn::VarInt;

use crate::endpoint::WebTransport;
use crate::transport::code_mapping as code;

/// A WebTransport session carrying a moq-lite-04 session.
///
/// ```no_run
/// # fn demo(conn: moq_webtransport::transport::WebTransportConnection) {
/// use moq_webtransport::transport::proto::Role;
/// use moq_webtransport::{Config, Session};
/// let session = Session::new(conn, Role::Server, Config::default(), None);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WebTransportConnection {
    conn: wtransport::Connection,
    local: Option<SocketAddr>,
    info: Arc<ConnectionInfo>,
    /// What its blocked writes wait through.
    gate: Arc<moq_quic::WriteGate>,
}

impl WebTransportConnection {
    /// Wraps an established session; `info` says what was negotiated.
    ///
    /// ```no_run
    /// # fn demo(session: wtransport::Connection) {
    /// use moq_webtransport::ConnectionInfo;
    /// use moq_webtransport::transport::WebTransportConnection;
    /// let conn = WebTransportConnection::new(session, None, ConnectionInfo::new("webtransport"));
    /// # }
    /// ```
    pub fn new(
        conn: wtransport::Connection,
        local: Option<SocketAddr>,
        info: ConnectionInfo,
    ) -> Self {
        Self {
            conn,
            local,
            info: Arc::new(info),
            gate: Arc::default(),
        }
    }

    /// The underlying wtransport session.
    ///
    /// ```no_run
    /// # fn demo(conn: moq_webtransport::transport::WebTransportConnection) {
    /// println!("session {:?}", conn.inner().session_id());
    /// # }
    /// ```
    pub fn inner(&self) -> &wtransport::Connection {
        &self.conn
    }
}

fn h3(code: ErrorCode) -> VarInt {
    VarInt::from_u64(code::to_http3(code)).unwrap_or(VarInt::MAX)
}

/// The send side of a WebTransport stream; a write that must wait goes through the
/// connection's [`moq_quic::WriteGate`].
///
/// ```no_run
/// # async fn demo(conn: moq_webtransport::transport::WebTransportConnection) -> Result<(), moq_webtransport::transport::StreamError> {
/// use moq_webtransport::transport::{Connection, SendStream};
/// let mut stream = conn.open_uni().await?;
/// stream.write_chunk(bytes::Bytes::from_static(b"x")).await?;
/// # Ok(()) }
/// ```
pub type WebTransportSendStream = moq_quic::QuinnSend<WebTransport>;

/// The receive side of a WebTransport stream.
///
/// ```no_run
/// # async fn demo(conn: moq_webtransport::transport::WebTransportConnection) -> Result<(), moq_webtransport::transport::StreamError> {
/// use moq_webtransport::transport::{Connection, RecvStream};
/// let mut stream = conn.accept_uni().await?;
/// let mut bufs = vec![bytes::Bytes::new(); 4];
/// let read = stream.read_chunks(&mut bufs).await?;
/// # Ok(()) }
/// ```
pub type WebTransportRecvStream = moq_quic::QuinnRecv<WebTransport>;

/// WebTransport's streams hold quinn's (wtransport has already written or read the stream
/// header), and carry the session's codes mapped into HTTP/3's space.
impl moq_quic::QuinnStreams for WebTransport {
    type Send = wtransport::SendStream;
    type Recv = wtransport::RecvStream;

    fn send(stream: &mut wtransport::SendStream) -> &mut quinn::SendStream {
        stream.quic_stream_mut()
    }

    fn recv(stream: &mut wtransport::RecvStream) -> &mut quinn::RecvStream {
        stream.quic_stream_mut()
    }

    fn stream_code(code: ErrorCode) -> u64 {
        code::to_http3(code)
    }

    fn received_code(code: u64) -> ErrorCode {
        code::received(code)
    }
}

impl transport::Connection for WebTransportConnection {
    type SendStream = WebTransportSendStream;
    type RecvStream = WebTransportRecvStream;

    async fn open_uni(&self) -> Result<WebTransportSendStream, StreamError> {
        let opening = self
            .conn
            .open_uni()
            .await
            .map_err(|_| StreamError::ConnectionLost)?;
        let stream = opening.await.map_err(|_| StreamError::ConnectionLost)?;
        Ok(WebTransportSendStream::new(stream, self.gate.clone()))
    }

    async fn open_bi(
        &self,
    ) -> Result<(WebTransportSendStream, WebTransportRecvStream), StreamError> {
        let opening = self
            .conn
            .open_bi()
            .await
            .map_err(|_| StreamError::ConnectionLost)?;
        let (send, recv) = opening.await.map_err(|_| StreamError::ConnectionLost)?;
        Ok((
            WebTransportSendStream::new(send, self.gate.clone()),
            WebTransportRecvStream::new(recv),
        ))
    }

    async fn accept_uni(&self) -> Result<WebTransportRecvStream, StreamError> {
        self.conn
            .accept_uni()
            .await
            .map(WebTransportRecvStream::new)
            .map_err(|_| StreamError::ConnectionLost)
    }

    async fn accept_bi(
        &self,
    ) -> Result<(WebTransportSendStream, WebTransportRecvStream), StreamError> {
        let (send, recv) = self
            .conn
            .accept_bi()
            .await
            .map_err(|_| StreamError::ConnectionLost)?;
        Ok((
            WebTransportSendStream::new(send, self.gate.clone()),
            WebTransportRecvStream::new(recv),
        ))
    }

    /// wtransport cannot send CLOSE_WEBTRANSPORT_SESSION: the session ends with a QUIC
    /// CONNECTION_CLOSE whose code is the session code mapped into the HTTP/3 error space
    /// (a wtransport peer reads it back unchanged; a browser reports a lost connection).
    fn close(&self, code: ErrorCode, reason: &str) {
        self.conn
            .quic_connection()
            .close(h3(code), reason.as_bytes());
    }

    async fn closed(&self) -> CloseReason {
        // A peer's CLOSE_WEBTRANSPORT_SESSION capsule is reported by wtransport's driver to
        // its stream and datagram receivers only (it then closes the QUIC connection with
        // H3_NO_ERROR itself). Datagrams are unused here, so waiting on them observes the end
        // without competing with the session's stream accept loops.
        let error = loop {
            if let Err(e) = self.conn.receive_datagram().await {
                break e;
            }
        };
        close_reason(error)
    }

    fn stats(&self) -> moq_tokio::transport::proto::TransportStats {
        moq_quic::transport_stats(self.conn.quic_connection())
    }

    fn info(&self) -> ConnectionInfo {
        (*self.info).clone()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.conn.remote_address())
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }
}

/// The cause of a session's end, with its code unmapped.
fn close_reason(error: wtransport::error::ConnectionError) -> CloseReason {
    use wtransport::error::ConnectionError as E;
    match error {
        // A CLOSE_WEBTRANSPORT_SESSION capsule carries the application code unmapped; a QUIC
        // CONNECTION_CLOSE from a wtransport peer carries it mapped (see `close`). Both come
        // here; the capsule's code is a u32 and never in the mapped range.
        E::ApplicationClosed(close) => CloseReason::Peer {
            code: code::received_close(close.code().into_inner()),
            reason: String::from_utf8_lossy(close.reason()).into_owned(),
        },
        other => CloseReason::Transport(other.to_string()),
    }
}
