//! The broadcast both roles publish: one group with one frame, `HELLO`.

use std::sync::Arc;

use bytes::Bytes;
use moq_quinn::{
    FetchRequest, GroupSequence, publish::FetchWriter, publish::TrackHandler,
    publish::TrackRequest, publish::TrackWriter,
};
use tokio::sync::watch;

use crate::HELLO;

/// Serves track `""` of a scenario broadcast: per subscriber, group 1 with the frame
/// `HELLO`, then the end of the track; a FETCH of any group gets `HELLO`, then FIN. Other
/// track names are refused (Subscribe code 0x3).
#[derive(Clone, Debug)]
pub struct Hello {
    served: Arc<watch::Sender<u64>>,
}

impl Default for Hello {
    fn default() -> Self {
        Self::new()
    }
}

impl Hello {
    /// A handler that has served nobody yet.
    pub fn new() -> Self {
        Self {
            served: Arc::new(watch::channel(0).0),
        }
    }

    /// The number of subscriptions served so far (`HELLO` written and the group finished).
    pub fn served(&self) -> watch::Receiver<u64> {
        self.served.subscribe()
    }
}

impl TrackHandler for Hello {
    fn serve_track(&self, request: TrackRequest, mut writer: TrackWriter) {
        if !request.track.is_empty() {
            writer.reject(moq_quinn::code::subscribe::NOT_FOUND);
            return;
        }
        let sent = writer
            .open_group_at(GroupSequence(1))
            .and_then(|mut group| {
                group.write_frame(Bytes::from_static(HELLO))?;
                group.finish()
            });
        writer.finish();
        if sent.is_ok() {
            self.served.send_modify(|n| *n += 1);
        }
    }

    fn serve_fetch(&self, _request: FetchRequest, mut writer: FetchWriter) {
        if writer.write_frame(Bytes::from_static(HELLO)).is_ok() {
            let _ = writer.finish();
        }
    }
}
