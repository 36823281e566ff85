//! ANNOUNCE_INTEREST and ANNOUNCE (spec §4.1, §4.2; draft §7.3, §7.4).

use bytes::BufMut;

use crate::coding::{
    DecodeError, EncodeError, Limits, Message, Reader, put_string, put_varint, size_of_len,
    string_len, varint_len,
};
use crate::{HopId, PathPrefix};

/// ANNOUNCE_INTEREST: the only message a subscriber sends on an Announce stream (draft §7.3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct AnnounceInterest {
    /// Report every broadcast whose path starts with this prefix.
    pub prefix: PathPrefix,
    /// If non-zero, skip broadcasts whose hop list contains this ID.
    pub exclude_hop: HopId,
}

impl Message for AnnounceInterest {
    const NAME: &'static str = "ANNOUNCE_INTEREST";

    fn body_len(&self) -> Result<usize, EncodeError> {
        Ok(string_len(Self::NAME, "prefix", self.prefix.as_wire())?
            + varint_len(Self::NAME, "exclude_hop", self.exclude_hop.0)?)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_string(buf, self.prefix.as_wire());
        put_varint(buf, self.exclude_hop.0);
    }

    fn decode_body(body: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let prefix = PathPrefix::from_wire(r.segments("prefix", limits)?);
        let exclude_hop = HopId(r.u64("exclude_hop")?);
        r.finish()?;
        Ok(Self {
            prefix,
            exclude_hop,
        })
    }
}

/// Whether an announced broadcast has started or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum AnnounceStatus {
    /// Wire 0: the broadcast is gone.
    Ended,
    /// Wire 1: the broadcast is available.
    Active,
}

impl AnnounceStatus {
    const fn to_wire(self) -> u8 {
        match self {
            Self::Ended => 0,
            Self::Active => 1,
        }
    }
}

/// ANNOUNCE: one broadcast starting or ending under the stream's prefix (draft §7.4).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Announce {
    /// Active or ended.
    pub status: AnnounceStatus,
    /// The path after the interest's prefix: the full path is prefix + suffix.
    pub suffix: String,
    /// The relays the announcement passed through; empty at the originator.
    pub hops: Vec<HopId>,
}

impl Message for Announce {
    const NAME: &'static str = "ANNOUNCE";

    fn body_len(&self) -> Result<usize, EncodeError> {
        if self.hops.len() > Limits::MAX_HOPS {
            return Err(EncodeError::TooManyHops {
                message: Self::NAME,
                count: self.hops.len(),
                limit: Limits::MAX_HOPS,
            });
        }
        // Status (0 or 1: one byte), suffix, then the hop count as a varint: up to 63 takes
        // one byte, 64 (MAX_HOPS) takes two.
        let mut len =
            1 + string_len(Self::NAME, "suffix", &self.suffix)? + size_of_len(self.hops.len());
        for hop in &self.hops {
            len += varint_len(Self::NAME, "hop_id", hop.0)?;
        }
        Ok(len)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        buf.put_u8(self.status.to_wire());
        put_string(buf, &self.suffix);
        put_varint(buf, self.hops.len() as u64);
        for hop in &self.hops {
            put_varint(buf, hop.0);
        }
    }

    fn decode_body(body: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let status = match r.u64("status")? {
            0 => AnnounceStatus::Ended,
            1 => AnnounceStatus::Active,
            other => return Err(DecodeError::UnknownAnnounceStatus(other)),
        };
        let suffix = r.segments("suffix", limits)?;
        let count = r.u64("hop_count")?;
        if count > limits.max_hops as u64 {
            return Err(DecodeError::TooManyHops {
                message: Self::NAME,
                count,
                limit: limits.max_hops,
            });
        }
        // Each hop takes at least one byte: never reserve more than the bytes present.
        let mut hops = Vec::with_capacity((count as usize).min(r.remaining()));
        for _ in 0..count {
            hops.push(HopId(r.u64("hop_id")?));
        }
        r.finish()?;
        Ok(Self {
            status,
            suffix,
            hops,
        })
    }
}
