//! FETCH (spec §4.7; draft §7.9).

use bytes::BufMut;

use super::{path_len, put_path};
use crate::coding::{
    DecodeError, EncodeError, Limits, Message, Reader, put_string, put_varint, string_len,
    varint_len,
};
use crate::{BroadcastPath, GroupSequence};

/// FETCH: a request for one whole group, answered with FRAME* then FIN (draft §7.9).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Fetch {
    /// The broadcast, routed by exact (normalised) path.
    pub path: BroadcastPath,
    /// The track within the broadcast.
    pub track: String,
    /// Subscriber priority; higher is more important.
    pub priority: u8,
    /// The group, as a raw absolute sequence (no + 1).
    pub group: GroupSequence,
}

impl Message for Fetch {
    const NAME: &'static str = "FETCH";

    fn body_len(&self) -> Result<usize, EncodeError> {
        Ok(path_len(Self::NAME, &self.path)?
            + string_len(Self::NAME, "track", &self.track)?
            + 1
            + varint_len(Self::NAME, "group_sequence", self.group.0)?)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_path(buf, &self.path);
        put_string(buf, &self.track);
        buf.put_u8(self.priority);
        put_varint(buf, self.group.0);
    }

    fn decode_body(body: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let path = r.path("path", limits)?;
        let track = r.string("track", limits)?;
        let priority = r.u8("priority")?;
        let group = GroupSequence(r.u64("group_sequence")?);
        r.finish()?;
        Ok(Self {
            path,
            track,
            priority,
            group,
        })
    }
}
