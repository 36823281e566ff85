//! Incremental decoding of one stream's bytes, fed in chunks of any size.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::{DecodeError, Limits, Message, Payload, VarInt};
use crate::message::{FrameHeader, SubscribeResponse};

/// Reassembles one stream's bytes and decodes whole messages and frames from them.
///
/// Feed it with [`StreamDecoder::push`] as data arrives and [`StreamDecoder::finish`] at FIN.
/// Each `decode_*` call returns `Ok(Some(_))` for a whole item, `Ok(None)` when more bytes are
/// needed (or, after FIN with nothing buffered, at a clean end: see
/// [`StreamDecoder::is_finished`]), and an error for malformed input or a FIN inside an item.
///
/// Cost: every call looks at no more than the first 9 buffered bytes until a whole item is
/// present, so input that trickles in a byte at a time is not re-parsed. A control message
/// split across chunks is copied once into a contiguous buffer; a frame payload that arrives
/// inside one chunk is returned as a slice of it (zero-copy), and one that straddles chunks
/// is copied once. Nothing is allocated from a peer-supplied length before the bytes it
/// announces are present. [`StreamDecoder::decode_payload`] returns a straddling payload as
/// its pieces instead, with no copy at all.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// Bytes the item at the front needs in all, once its header said so and they were not
    /// all here (0 otherwise): until then, decode calls return at once.
    wanted: usize,
    fin: bool,
}

/// The most bytes a length header can take: a type byte and an 8-byte varint.
const MAX_HEADER: usize = 9;

/// What one received chunk is taken to keep alive at least (see [`StreamDecoder::held`]): a
/// datagram of Ethernet's MTU.
pub const PINNED_PER_CHUNK: usize = 1500;

impl StreamDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received on the stream. Empty chunks are ignored.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Records that the peer finished its side (FIN): no more bytes will come.
    pub fn finish(&mut self) {
        self.fin = true;
    }

    /// Whether FIN was received.
    pub fn fin_received(&self) -> bool {
        self.fin
    }

    /// Whether FIN was received and every byte was consumed: the stream ended cleanly.
    pub fn is_finished(&self) -> bool {
        self.fin && self.buffered == 0
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// What the bytes not yet decoded hold in memory: a chunk from a QUIC stack is a slice
    /// of the datagram it came in, and keeps that datagram alive whole, so each chunk counts
    /// as at least [`PINNED_PER_CHUNK`] bytes. A peer that sends a byte per packet is thus
    /// charged for its packets, while a large frame in packet-sized chunks is charged about
    /// its size.
    pub fn held(&self) -> usize {
        self.buffered
            .max(self.chunks.len().saturating_mul(PINNED_PER_CHUNK))
    }

    /// Takes one raw byte (a stream-type header or similar): `None` if none is buffered.
    pub fn read_u8(&mut self) -> Option<u8> {
        let front = self.chunks.front_mut()?;
        let b = front.get_u8();
        if front.is_empty() {
            self.chunks.pop_front();
        }
        self.consumed(1);
        Some(b)
    }

    /// Decodes one length-framed message.
    pub fn decode<M: Message>(&mut self, limits: &Limits) -> Result<Option<M>, DecodeError> {
        self.decode_with(M::NAME, 0, limits, M::decode)
    }

    /// Decodes one subscribe response (type byte, then SUBSCRIBE_OK or SUBSCRIBE_DROP).
    pub fn decode_response(
        &mut self,
        limits: &Limits,
    ) -> Result<Option<SubscribeResponse>, DecodeError> {
        self.decode_with("subscribe response", 1, limits, SubscribeResponse::decode)
    }

    /// Decodes one FRAME and returns its payload, contiguous (copied once if it straddles
    /// chunks).
    pub fn decode_frame(&mut self, limits: &Limits) -> Result<Option<Bytes>, DecodeError> {
        Ok(self.frame_len(limits)?.map(|len| self.take(len)))
    }

    /// Decodes one FRAME and returns its payload as the pieces of the chunks it spans: never
    /// a copy.
    pub fn decode_payload(&mut self, limits: &Limits) -> Result<Option<Payload>, DecodeError> {
        Ok(self.frame_len(limits)?.map(|len| self.take_pieces(len)))
    }

    /// Consumes a FRAME header once the whole frame is buffered, returning the payload's
    /// length.
    fn frame_len(&mut self, limits: &Limits) -> Result<Option<usize>, DecodeError> {
        if !self.can_progress() {
            return Ok(None);
        }
        let mut peek = [0u8; MAX_HEADER];
        let head = self.peek(&mut peek);
        let Some((header, prefix)) = FrameHeader::decode(head, limits)? else {
            return self.need_more("FRAME");
        };
        if self.buffered < prefix + header.len {
            return self.need_total("FRAME", prefix + header.len);
        }
        self.advance(prefix);
        Ok(Some(header.len))
    }

    /// Decodes the item at the front once all its bytes are present. `skip` bytes (a type
    /// byte) precede the length prefix.
    fn decode_with<T>(
        &mut self,
        name: &'static str,
        skip: usize,
        limits: &Limits,
        decode: impl Fn(&[u8], &Limits) -> Result<Option<(T, usize)>, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if !self.can_progress() {
            return Ok(None);
        }
        let mut peek = [0u8; MAX_HEADER];
        let head = self.peek(&mut peek);
        // Validate the type byte (if any) and the length against the limits first, so an
        // oversized or invalid header fails before its body is awaited.
        if let Some(&first) = head.first()
            && skip == 1
            && first > 1
        {
            return Err(DecodeError::InvalidResponseType(first));
        }
        let Some((len, prefix)) = head.get(skip..).and_then(VarInt::peek) else {
            return self.need_more(name);
        };
        if len.into_inner() > limits.max_message_size as u64 {
            return Err(DecodeError::MessageTooLong {
                message: name,
                len: len.into_inner(),
                limit: limits.max_message_size,
            });
        }
        let total = skip + prefix + len.into_inner() as usize;
        if self.buffered < total {
            return self.need_total(name, total);
        }
        let whole = self.take(total);
        match decode(&whole, limits)? {
            Some((item, used)) if used == total => Ok(Some(item)),
            // Unreachable with a consistent decoder: the extent above is the message.
            _ => Err(DecodeError::Truncated {
                message: name,
                field: "length",
            }),
        }
    }

    /// Whether a decode call may make progress: false only while the item at the front is
    /// known to need more bytes than are buffered and FIN has not arrived. A caller can skip
    /// its decode calls then; they would return `Ok(None)` at once.
    pub fn can_progress(&self) -> bool {
        self.fin || self.buffered >= self.wanted
    }

    /// Bytes were taken from the front: whatever the front item needed is moot.
    fn consumed(&mut self, n: usize) {
        self.buffered -= n;
        self.wanted = 0;
    }

    /// Need-more for an item whose extent, `total` bytes, is known.
    fn need_total<T>(
        &mut self,
        message: &'static str,
        total: usize,
    ) -> Result<Option<T>, DecodeError> {
        self.wanted = total;
        self.need_more(message)
    }

    fn need_more<T>(&self, message: &'static str) -> Result<Option<T>, DecodeError> {
        if self.fin && self.buffered > 0 {
            Err(DecodeError::UnexpectedEnd { message })
        } else {
            Ok(None)
        }
    }

    /// Copies up to [`MAX_HEADER`] front bytes into `out`.
    fn peek<'a>(&self, out: &'a mut [u8; MAX_HEADER]) -> &'a [u8] {
        let mut n = 0;
        for chunk in &self.chunks {
            let take = chunk.len().min(MAX_HEADER - n);
            if let (Some(dst), Some(src)) = (out.get_mut(n..n + take), chunk.get(..take)) {
                dst.copy_from_slice(src);
            }
            n += take;
            if n == MAX_HEADER {
                break;
            }
        }
        out.get(..n).unwrap_or_default()
    }

    fn advance(&mut self, mut n: usize) {
        self.consumed(n);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }

    /// Removes `n` buffered bytes (`n <= buffered`) as one contiguous `Bytes`: a slice of the
    /// front chunk when it holds them all, else a single copy.
    fn take(&mut self, n: usize) -> Bytes {
        if let Some(front) = self.chunks.front_mut()
            && front.len() >= n
        {
            let out = front.split_to(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            self.consumed(n);
            return out;
        }
        // Straddles chunks: the one copy, sized by bytes already present.
        let mut out = BytesMut::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let Some(mut front) = self.chunks.pop_front() else {
                break;
            };
            if front.len() > left {
                // Copied and skipped, without a second handle on the shared buffer.
                out.extend_from_slice(front.get(..left).unwrap_or_default());
                front.advance(left);
                self.chunks.push_front(front);
                left = 0;
            } else {
                left -= front.len();
                out.extend_from_slice(&front);
            }
        }
        self.consumed(n - left);
        out.freeze()
    }

    /// Removes `n` buffered bytes (`n <= buffered`) as the pieces of the chunks they span.
    fn take_pieces(&mut self, n: usize) -> Payload {
        if self.chunks.front().is_some_and(|front| front.len() >= n) {
            return Payload::from(self.take(n));
        }
        let mut pieces = Vec::with_capacity(self.chunks_spanned(n));
        let mut left = n;
        while left > 0 {
            let Some(mut front) = self.chunks.pop_front() else {
                break;
            };
            if front.len() > left {
                pieces.push(front.split_to(left));
                self.chunks.push_front(front);
                left = 0;
            } else {
                left -= front.len();
                pieces.push(front);
            }
        }
        self.consumed(n - left);
        Payload::from_pieces(pieces, n - left)
    }

    /// How many buffered chunks the first `n` bytes span.
    fn chunks_spanned(&self, n: usize) -> usize {
        let mut seen = 0;
        self.chunks
            .iter()
            .take_while(|chunk| {
                let before = seen;
                seen += chunk.len();
                before < n
            })
            .count()
    }
}

impl StreamDecoder {
    /// Releases the spare capacity of the chunk queue, all of it when nothing is buffered:
    /// for streams that sit idle between rare messages. The next chunk allocates again.
    pub fn shrink_to_fit(&mut self) {
        self.chunks.shrink_to_fit();
    }

    /// Drops every buffered byte, for streams whose remaining content is ignored.
    pub fn discard(&mut self) {
        self.chunks.clear();
        self.buffered = 0;
        self.wanted = 0;
    }
}
