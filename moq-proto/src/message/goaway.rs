//! GOAWAY (spec §4.9; draft §7.11).

use bytes::BufMut;

use crate::coding::{DecodeError, EncodeError, Limits, Message, Reader, put_string, string_len};

/// GOAWAY: the sender wants the session to end, optionally redirecting (draft §7.11).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GoAway {
    /// Where to reconnect; empty = no redirect.
    pub uri: String,
}

impl Message for GoAway {
    const NAME: &'static str = "GOAWAY";

    fn body_len(&self) -> Result<usize, EncodeError> {
        string_len(Self::NAME, "new_session_uri", &self.uri)
    }

    fn encode_body<B: BufMut + ?Sized>(&self, buf: &mut B) {
        put_string(buf, &self.uri);
    }

    fn decode_body(body: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body, Self::NAME);
        let uri = r.string("new_session_uri", limits)?;
        r.finish()?;
        Ok(Self { uri })
    }
}
