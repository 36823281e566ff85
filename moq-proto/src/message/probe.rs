//! PROBE (spec §4.8; draft §7.10).

use std::time::Duration;

use bytes::BufMut;

use crate::coding::{DecodeError, EncodeError, Limits, Message, Reader, put_varint, varint_len};

/// PROBE: from the prober a target bitrate, from the responder a measurement (draft §7.10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Probe {
    /// Bits per second: the target to pad up to (prober) or the estimate (responder);
    /// 0 = unknown.
    pub bitrate: u64,
    /// Smoothed RTT, carried in whole milliseconds; zero = unknown.
    pub rtt: Duration,
}

impl Message for Probe {
    const NAME: &'static str = "PROBE";

    fn body_len(&self) -> Result<usize, EncodeError> {
        let rtt = u64::try_from(self.rtt.as_millis()).unwrap_or(u64::MAX);
        Ok(varint_len(Self::NAME, "bitrate", self.bitrate)? + varint_len(Self::NAME, "rtt", rtt)?)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_varint(buf, self.bitrate);
        put_varint(buf, self.rtt.as_millis() as u64);
    }

    fn decode_body(body: &[u8], _: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let bitrate = r.u64("bitrate")?;
        let rtt = Duration::from_millis(r.u64("rtt")?);
        r.finish()?;
        Ok(Self { bitrate, rtt })
    }
}
