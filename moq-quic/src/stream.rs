//! The streams of both adapters: each holds a quinn stream (native QUIC directly,
//! WebTransport inside wtransport's stream), and they differ only in how a session code
//! becomes a stream's error code ([`QuinnStreams`]). A frame's bytes go from the session's
//! send queue to quinn here, and come back from quinn here.

use std::sync::Arc;

use bytes::Bytes;
use moq_tokio::code::ErrorCode;
use moq_tokio::transport::{self, StreamError};

use crate::WriteGate;

/// What an adapter's streams are: the types holding quinn's streams, and the code mapping
/// of its stream resets and STOP_SENDING.
///
/// ```
/// use moq_tokio::code::ErrorCode;
/// use moq_quic::QuinnStreams;
///
/// /// Streams that are quinn's own, codes as they are.
/// struct Plain;
/// impl QuinnStreams for Plain {
///     type Send = quinn::SendStream;
///     type Recv = quinn::RecvStream;
///     fn send(stream: &mut quinn::SendStream) -> &mut quinn::SendStream { stream }
///     fn recv(stream: &mut quinn::RecvStream) -> &mut quinn::RecvStream { stream }
///     fn stream_code(code: ErrorCode) -> u64 { code.0 }
///     fn received_code(code: u64) -> ErrorCode { ErrorCode(code) }
/// }
/// ```
pub trait QuinnStreams: Send + Sync + 'static {
    /// The transport's send stream, holding a quinn send stream.
    type Send: Send + 'static;
    /// The transport's receive stream, holding a quinn receive stream.
    type Recv: Send + 'static;
    /// The quinn stream inside a send stream.
    fn send(stream: &mut Self::Send) -> &mut quinn::SendStream;
    /// The quinn stream inside a receive stream.
    fn recv(stream: &mut Self::Recv) -> &mut quinn::RecvStream;
    /// A session's code as this transport puts it in RESET_STREAM or STOP_SENDING.
    fn stream_code(code: ErrorCode) -> u64;
    /// The session's code of a RESET_STREAM or STOP_SENDING code received.
    fn received_code(code: u64) -> ErrorCode;
}

/// The send side of an adapter's stream; a write that must wait goes through the
/// connection's [`WriteGate`].
///
/// ```no_run
/// # async fn demo<T: moq_quic::QuinnStreams>(mut stream: moq_quic::QuinnSend<T>) -> Result<(), moq_tokio::transport::StreamError> {
/// use moq_tokio::transport::SendStream;
/// stream.write_chunk(bytes::Bytes::from_static(b"x")).await?;
/// # Ok(()) }
/// ```
pub struct QuinnSend<T: QuinnStreams> {
    stream: T::Send,
    gate: Arc<WriteGate>,
}

/// The receive side of an adapter's stream.
///
/// ```no_run
/// # async fn demo<T: moq_quic::QuinnStreams>(mut stream: moq_quic::QuinnRecv<T>) -> Result<(), moq_tokio::transport::StreamError> {
/// use moq_tokio::transport::RecvStream;
/// let mut bufs = vec![bytes::Bytes::new(); 4];
/// let read = stream.read_chunks(&mut bufs).await?;
/// # Ok(()) }
/// ```
pub struct QuinnRecv<T: QuinnStreams> {
    stream: T::Recv,
}

impl<T: QuinnStreams> QuinnSend<T> {
    /// A send stream whose blocked writes wait through `gate` (one per connection).
    ///
    /// ```no_run
    /// # fn demo<T: moq_quic::QuinnStreams>(stream: T::Send, gate: std::sync::Arc<moq_quic::WriteGate>) {
    /// let send = moq_quic::QuinnSend::<T>::new(stream, gate);
    /// # }
    /// ```
    pub fn new(stream: T::Send, gate: Arc<WriteGate>) -> Self {
        Self { stream, gate }
    }

    fn quinn(&mut self) -> &mut quinn::SendStream {
        T::send(&mut self.stream)
    }
}

impl<T: QuinnStreams> QuinnRecv<T> {
    /// A receive stream.
    ///
    /// ```no_run
    /// # fn demo<T: moq_quic::QuinnStreams>(stream: T::Recv) {
    /// let recv = moq_quic::QuinnRecv::<T>::new(stream);
    /// # }
    /// ```
    pub fn new(stream: T::Recv) -> Self {
        Self { stream }
    }

    fn quinn(&mut self) -> &mut quinn::RecvStream {
        T::recv(&mut self.stream)
    }
}

/// Writes what a quinn stream takes at once, without waiting (quinn's `write_chunks` polled
/// once: it is cancel-safe and writes partially); 0 if it takes nothing now.
pub(crate) fn try_write(
    stream: &mut quinn::SendStream,
    chunks: &mut [Bytes],
) -> Result<usize, quinn::WriteError> {
    let write = std::pin::pin!(stream.write_chunks(chunks));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::future::Future::poll(write, &mut cx) {
        std::task::Poll::Ready(written) => written.map(|w| w.bytes),
        std::task::Poll::Pending => Ok(0),
    }
}

fn varint(code: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(code).unwrap_or(quinn::VarInt::MAX)
}

fn write_error<T: QuinnStreams>(e: quinn::WriteError) -> StreamError {
    match e {
        quinn::WriteError::Stopped(code) => {
            StreamError::Stopped(T::received_code(code.into_inner()))
        }
        quinn::WriteError::ClosedStream => StreamError::Closed,
        _ => StreamError::ConnectionLost,
    }
}

fn read_error<T: QuinnStreams>(e: quinn::ReadError) -> StreamError {
    match e {
        quinn::ReadError::Reset(code) => StreamError::Reset(T::received_code(code.into_inner())),
        quinn::ReadError::ClosedStream => StreamError::Closed,
        _ => StreamError::ConnectionLost,
    }
}

impl<T: QuinnStreams> std::fmt::Debug for QuinnSend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuinnSend").finish_non_exhaustive()
    }
}

impl<T: QuinnStreams> std::fmt::Debug for QuinnRecv<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuinnRecv").finish_non_exhaustive()
    }
}

impl<T: QuinnStreams> transport::SendStream for QuinnSend<T> {
    async fn write_chunk(&mut self, data: Bytes) -> Result<(), StreamError> {
        self.quinn()
            .write_chunk(data)
            .await
            .map_err(write_error::<T>)
    }

    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), StreamError> {
        self.gate
            .write(T::send(&mut self.stream), chunks)
            .await
            .map_err(write_error::<T>)
    }

    fn try_write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<usize, StreamError> {
        try_write(self.quinn(), chunks).map_err(write_error::<T>)
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        self.quinn().finish().map_err(|_| StreamError::Closed)
    }

    fn reset(&mut self, code: ErrorCode) {
        let _ = self.quinn().reset(varint(T::stream_code(code)));
    }

    fn set_priority(&mut self, priority: i32) {
        let _ = self.quinn().set_priority(priority);
    }
}

impl<T: QuinnStreams> transport::RecvStream for QuinnRecv<T> {
    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, StreamError> {
        match self.quinn().read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(read_error::<T>(e)),
        }
    }

    async fn read_chunks(&mut self, bufs: &mut [Bytes]) -> Result<Option<usize>, StreamError> {
        self.quinn()
            .read_chunks(bufs)
            .await
            .map_err(read_error::<T>)
    }

    fn stop(&mut self, code: ErrorCode) {
        let _ = self.quinn().stop(varint(T::stream_code(code)));
    }
}
