//! quinn behind the transport trait: stream I/O, close, statistics. No MOQ logic.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use moq_tokio::code::ErrorCode;
use moq_tokio::error::CloseReason;
use moq_tokio::transport::{self, ConnectionInfo, StreamError};
use quinn::VarInt;

/// A quinn connection carrying a moq-lite-04 session.
///
/// ```no_run
/// # fn demo(conn: quinn::Connection) {
/// use moq_quinn::transport::QuicConnection;
/// use moq_quinn::{Config, Session};
/// use moq_quinn::transport::proto::Role;
/// // A session on a quinn connection made elsewhere (ALPN moq-lite-04).
/// let session = Session::new(QuicConnection::new(conn, None), Role::Client, Config::default(), None);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct QuicConnection {
    conn: quinn::Connection,
    local: Option<SocketAddr>,
    /// The name a client dialled (a server learns it from the handshake).
    server_name: Option<String>,
    /// What its blocked writes wait through.
    gate: Arc<moq_quic::WriteGate>,
}

impl QuicConnection {
    /// Wraps an established connection.
    ///
    /// ```no_run
    /// # fn demo(conn: quinn::Connection) {
    /// let conn = moq_quinn::transport::QuicConnection::new(conn, None);
    /// # }
    /// ```
    pub fn new(conn: quinn::Connection, local: Option<SocketAddr>) -> Self {
        Self {
            conn,
            local,
            server_name: None,
            gate: Arc::default(),
        }
    }

    /// The server name this client dialled and checked the certificate against.
    ///
    /// ```no_run
    /// # fn demo(conn: quinn::Connection) {
    /// let conn = moq_quinn::transport::QuicConnection::new(conn, None).with_server_name("relay.example".into());
    /// # }
    /// ```
    pub fn with_server_name(mut self, name: String) -> Self {
        self.server_name = Some(name);
        self
    }

    /// The underlying quinn connection.
    ///
    /// ```no_run
    /// # fn demo(conn: moq_quinn::transport::QuicConnection) {
    /// println!("rtt {:?}", conn.inner().rtt());
    /// # }
    /// ```
    pub fn inner(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The ALPN token the handshake settled on.
    ///
    /// ```no_run
    /// # fn demo(conn: moq_quinn::transport::QuicConnection) {
    /// assert_eq!(conn.alpn().as_deref(), Some(&b"moq-lite-04"[..]));
    /// # }
    /// ```
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.conn
            .handshake_data()?
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .ok()?
            .protocol
    }
}

fn varint(code: ErrorCode) -> VarInt {
    VarInt::from_u64(code.0).unwrap_or(VarInt::MAX)
}

fn connection_lost(_: impl std::fmt::Debug) -> StreamError {
    StreamError::ConnectionLost
}

fn write_error(e: quinn::WriteError) -> StreamError {
    match e {
        quinn::WriteError::Stopped(code) => StreamError::Stopped(ErrorCode(code.into_inner())),
        quinn::WriteError::ClosedStream => StreamError::Closed,
        _ => StreamError::ConnectionLost,
    }
}

/// The send side of a quinn stream; a write that must wait goes through the connection's
/// [`moq_quic::WriteGate`].
///
/// ```no_run
/// # async fn demo(conn: moq_quinn::transport::QuicConnection) -> Result<(), moq_quinn::transport::StreamError> {
/// use moq_quinn::transport::{Connection, SendStream};
/// let mut stream = conn.open_uni().await?;
/// stream.write_chunk(bytes::Bytes::from_static(b"x")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct QuicSendStream(quinn::SendStream, Arc<moq_quic::WriteGate>);

/// The receive side of a quinn stream.
///
/// ```no_run
/// # async fn demo(conn: moq_quinn::transport::QuicConnection) -> Result<(), moq_quinn::transport::StreamError> {
/// use moq_quinn::transport::{Connection, RecvStream};
/// let mut stream = conn.accept_uni().await?;
/// let mut bufs = vec![bytes::Bytes::new(); 4];
/// let read = stream.read_chunks(&mut bufs).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct QuicRecvStream(quinn::RecvStream);

impl transport::Connection for QuicConnection {
    type SendStream = QuicSendStream;
    type RecvStream = QuicRecvStream;

    async fn open_uni(&self) -> Result<QuicSendStream, StreamError> {
        self.conn
            .open_uni()
            .await
            .map(|send| QuicSendStream(send, self.gate.clone()))
            .map_err(connection_lost)
    }

    async fn open_bi(&self) -> Result<(QuicSendStream, QuicRecvStream), StreamError> {
        let (send, recv) = self.conn.open_bi().await.map_err(connection_lost)?;
        Ok((
            QuicSendStream(send, self.gate.clone()),
            QuicRecvStream(recv),
        ))
    }

    async fn accept_uni(&self) -> Result<QuicRecvStream, StreamError> {
        self.conn
            .accept_uni()
            .await
            .map(QuicRecvStream)
            .map_err(connection_lost)
    }

    async fn accept_bi(&self) -> Result<(QuicSendStream, QuicRecvStream), StreamError> {
        let (send, recv) = self.conn.accept_bi().await.map_err(connection_lost)?;
        Ok((
            QuicSendStream(send, self.gate.clone()),
            QuicRecvStream(recv),
        ))
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.conn.close(varint(code), reason.as_bytes());
    }

    async fn closed(&self) -> CloseReason {
        match self.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => CloseReason::Peer {
                code: ErrorCode(close.error_code.into_inner()),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            other => CloseReason::Transport(other.to_string()),
        }
    }

    fn stats(&self) -> moq_tokio::transport::proto::TransportStats {
        moq_quic::transport_stats(&self.conn)
    }

    fn info(&self) -> ConnectionInfo {
        let mut info = ConnectionInfo::new("quic");
        if let Some(data) = self
            .conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        {
            info.alpn = data
                .protocol
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            info.server_name = data.server_name.clone();
        }
        if info.server_name.is_none() {
            info.server_name = self.server_name.clone();
        }
        info.version = info
            .alpn
            .clone()
            .filter(|a| a == moq_tokio::transport::proto::ALPN);
        if let Some(chain) = self.conn.peer_identity().and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        }) {
            info.peer_certificates = chain
                .iter()
                .map(|c| bytes::Bytes::copy_from_slice(c.as_ref()))
                .collect();
        }
        info
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.conn.remote_address())
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }
}

impl transport::SendStream for QuicSendStream {
    async fn write_chunk(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.0.write_chunk(data).await.map_err(write_error)
    }

    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), StreamError> {
        self.1.write(&mut self.0, chunks).await.map_err(write_error)
    }

    fn try_write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<usize, StreamError> {
        moq_quic::try_write(&mut self.0, chunks)
            .unwrap_or(Ok(0))
            .map_err(write_error)
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.0.finish().map_err(|_| StreamError::Closed)
    }

    fn reset(&mut self, code: ErrorCode) {
        let _ = self.0.reset(varint(code));
    }

    fn set_priority(&mut self, priority: i32) {
        let _ = self.0.set_priority(priority);
    }
}

fn read_error(e: quinn::ReadError) -> StreamError {
    match e {
        quinn::ReadError::Reset(code) => StreamError::Reset(ErrorCode(code.into_inner())),
        quinn::ReadError::ClosedStream => StreamError::Closed,
        _ => StreamError::ConnectionLost,
    }
}

impl transport::RecvStream for QuicRecvStream {
    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        match self.0.read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(read_error(e)),
        }
    }

    async fn read_chunks(&mut self, bufs: &mut [Bytes]) -> Result<Option<usize>, StreamError> {
        self.0.read_chunks(bufs).await.map_err(read_error)
    }

    fn stop(&mut self, code: ErrorCode) {
        let _ = self.0.stop(varint(code));
    }
}
