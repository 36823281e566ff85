//! Every moq-lite-04 message as a typed struct (spec §4).

mod announce;
mod fetch;
mod goaway;
mod group;
mod probe;
mod stream;
mod subscribe;

pub use announce::{Announce, AnnounceInterest, AnnounceStatus};
pub use fetch::Fetch;
pub use goaway::GoAway;
pub use group::{FrameHeader, GroupHeader};
pub use probe::Probe;
pub use stream::{StreamType, UnknownStreamType};
pub use subscribe::{
    Subscribe, SubscribeDrop, SubscribeOk, SubscribeParams, SubscribeResponse, SubscribeUpdate,
};

use bytes::BufMut;

use crate::BroadcastPath;
use crate::coding::{EncodeError, Limits, put_varint, size_of_len};

/// The encoded size of a broadcast path field (sent `/`-rooted).
fn path_len(message: &'static str, path: &BroadcastPath) -> Result<usize, EncodeError> {
    let len = path.wire_len();
    if len > Limits::MAX_STRING_LEN {
        return Err(EncodeError::FieldTooLong {
            message,
            field: "path",
            len,
            limit: Limits::MAX_STRING_LEN,
        });
    }
    let count = path.segments();
    if count > Limits::MAX_PATH_SEGMENTS {
        return Err(EncodeError::TooManySegments {
            message,
            count,
            limit: Limits::MAX_PATH_SEGMENTS,
        });
    }
    Ok(size_of_len(len) + len)
}

/// Writes a broadcast path field checked by [`path_len`], `/`-rooted, without allocating.
fn put_path<B: BufMut + ?Sized>(buf: &mut B, path: &BroadcastPath) {
    put_varint(buf, path.wire_len() as u64);
    buf.put_u8(b'/');
    buf.put_slice(path.as_str().as_bytes());
}
