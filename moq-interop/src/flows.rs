//! The exchanges both roles perform (discover, subscribe, read, probe), each a plain
//! future returning a one-line reason on failure; the caller bounds it.

use moq_quinn::{
    BroadcastPath, FetchRequest, GroupReader, GroupSequence, Session, SubscribeParams, TrackReader,
};

use crate::{HELLO, PROBE_TARGET};

/// Announces interest in `/` and waits until `wanted` is reported active. Returns the path
/// as announced (in whichever form the peer used, D20).
pub(crate) async fn discover(session: &Session, wanted: &str) -> Result<BroadcastPath, String> {
    let wanted = BroadcastPath::new(wanted);
    let mut announcements = session
        .announced("/")
        .map_err(|e| format!("cannot announce interest: {e}"))?;
    while let Some(announcement) = announcements.next().await {
        if *announcement.path() == wanted {
            return Ok(announcement.path().clone());
        }
    }
    Err(format!(
        "the announce stream ended before {wanted} was announced"
    ))
}

/// Subscribes to track `""` of `path` and waits for its first group.
pub(crate) async fn first_group(
    session: &Session,
    path: BroadcastPath,
) -> Result<(TrackReader, GroupReader), String> {
    let mut track = session
        .subscribe(path, "", SubscribeParams::default())
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    match track.next_group().await {
        Ok(Some(group)) => Ok((track, group)),
        Ok(None) => Err("the track ended without a group".into()),
        Err(e) => Err(format!("the subscription failed: {e}")),
    }
}

/// Reads the next frame and checks it is `HELLO`.
pub(crate) async fn read_hello(group: &mut GroupReader) -> Result<(), String> {
    check_hello(group.read_frame().await)
}

/// `Ok` if `frame` is `HELLO`.
pub(crate) fn check_hello(
    frame: Result<Option<bytes::Bytes>, moq_quinn::error::EndReason>,
) -> Result<(), String> {
    match frame {
        Ok(Some(frame)) if frame == HELLO => Ok(()),
        Ok(Some(frame)) => Err(format!(
            "expected HELLO, got {:?}",
            String::from_utf8_lossy(&frame)
        )),
        Ok(None) => Err("the group ended without a frame".into()),
        Err(e) => Err(format!("the group failed: {e}")),
    }
}

/// Fetches group 0 of track `""` of `path`: `HELLO`, then the end of the stream.
pub(crate) async fn fetch_hello(session: &Session, path: BroadcastPath) -> Result<(), String> {
    let mut group = session
        .fetch(FetchRequest::new(path, "", GroupSequence(0)))
        .map_err(|e| format!("cannot fetch: {e}"))?;
    check_hello(group.read_frame().await)?;
    match group.read_frame().await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err("more than one frame before FIN".into()),
        Err(e) => Err(format!("the fetch failed after HELLO: {e}")),
    }
}

/// Probes the peer with [`PROBE_TARGET`] and waits for its first reply.
pub(crate) async fn probe(session: &Session) -> Result<(), String> {
    let mut replies = session
        .probe(PROBE_TARGET)
        .map_err(|e| format!("cannot probe: {e}"))?;
    match replies.next().await {
        Some(_) => Ok(()),
        None => Err("the probe ended without a reply".into()),
    }
}
