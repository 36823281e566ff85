//! quinn behind the transport trait: stream I/O, close, statistics. No MOQ logic.

use std::net::SocketAddr;
use std::sync::Arc;

use moq_tokio::code::ErrorCode;
use moq_tokio::error::CloseReason;
use moq_tokio::transport::{self, ConnectionInfo, StreamError};

use crate::endpoint::NativeQuic;
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
pub type QuicSendStream = moq_quic::QuinnSend<NativeQuic>;

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
pub type QuicRecvStream = moq_quic::QuinnRecv<NativeQuic>;

/// Native QUIC's streams are quinn's, and carry the session's codes as they are.
impl moq_quic::QuinnStreams for NativeQuic {
    type Send = quinn::SendStream;
    type Recv = quinn::RecvStream;

    fn send(stream: &mut quinn::SendStream) -> &mut quinn::SendStream {
        stream
    }

    fn recv(stream: &mut quinn::RecvStream) -> &mut quinn::RecvStream {
        stream
    }

    fn stream_code(code: ErrorCode) -> u64 {
        code.0
    }

    fn received_code(code: u64) -> ErrorCode {
        ErrorCode(code)
    }
}

impl transport::Connection for QuicConnection {
    type SendStream = QuicSendStream;
    type RecvStream = QuicRecvStream;

    async fn open_uni(&self) -> Result<QuicSendStream, StreamError> {
        self.conn
            .open_uni()
            .await
            .map(|send| QuicSendStream::new(send, self.gate.clone()))
            .map_err(connection_lost)
    }

    async fn open_bi(&self) -> Result<(QuicSendStream, QuicRecvStream), StreamError> {
        let (send, recv) = self.conn.open_bi().await.map_err(connection_lost)?;
        Ok((
            QuicSendStream::new(send, self.gate.clone()),
            QuicRecvStream::new(recv),
        ))
    }

    async fn accept_uni(&self) -> Result<QuicRecvStream, StreamError> {
        self.conn
            .accept_uni()
            .await
            .map(QuicRecvStream::new)
            .map_err(connection_lost)
    }

    async fn accept_bi(&self) -> Result<(QuicSendStream, QuicRecvStream), StreamError> {
        let (send, recv) = self.conn.accept_bi().await.map_err(connection_lost)?;
        Ok((
            QuicSendStream::new(send, self.gate.clone()),
            QuicRecvStream::new(recv),
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
