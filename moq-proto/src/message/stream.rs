//! The one-byte stream-type header (spec §3, D1).

/// The kind of a stream, from the first byte its opener writes (§5.1 Table 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum StreamType {
    /// Unidirectional, publisher → subscriber: GROUP then FRAME*.
    Group = 0x00,
    /// Bidirectional, opened by the subscriber: ANNOUNCE_INTEREST → ANNOUNCE*.
    Announce = 0x01,
    /// Bidirectional, opened by the subscriber: SUBSCRIBE, SUBSCRIBE_UPDATE* → responses.
    Subscribe = 0x02,
    /// Bidirectional, opened by the subscriber: FETCH → FRAME*, FIN.
    Fetch = 0x03,
    /// Bidirectional, opened by the prober: PROBE* both ways.
    Probe = 0x04,
    /// Bidirectional, either endpoint: GOAWAY.
    Goaway = 0x05,
    /// Unidirectional, from a probe responder: bytes that only fill the path up to the
    /// prober's target, and that the receiver discards. Ours, an extension in the draft's
    /// sense (§3): a peer that does not know it stops it with 0x1, and the responder then
    /// pads no more on that session.
    Padding = 0x3f,
}

/// A stream-type byte we do not know (including any byte ≥ 0x40, the start of a multi-byte
/// varint): reset and stop-send with code 0x1, never fatal (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown stream type {0:#04x}")]
pub struct UnknownStreamType(pub u8);

impl StreamType {
    /// The byte written at the start of the stream.
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// Reads the first byte of a stream.
    pub const fn from_byte(b: u8) -> Result<Self, UnknownStreamType> {
        Ok(match b {
            0x00 => Self::Group,
            0x01 => Self::Announce,
            0x02 => Self::Subscribe,
            0x03 => Self::Fetch,
            0x04 => Self::Probe,
            0x05 => Self::Goaway,
            0x3f => Self::Padding,
            other => return Err(UnknownStreamType(other)),
        })
    }

    /// Whether streams of this type are bidirectional.
    pub const fn is_bidi(self) -> bool {
        !matches!(self, Self::Group | Self::Padding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_or_is_unknown() {
        for b in 0..=u8::MAX {
            match StreamType::from_byte(b) {
                Ok(t) => {
                    assert!(b <= 5 || b == 0x3f);
                    assert_eq!(t.to_byte(), b);
                    assert_eq!(t.is_bidi(), b != 0 && b != 0x3f);
                }
                Err(e) => {
                    assert!(b > 5 && b != 0x3f);
                    assert_eq!(e, UnknownStreamType(b));
                }
            }
        }
    }
}
