//! The worked example of the driver: what a viewer does, start to end, on one thread.
//!
//! Discover a broadcast by announce interest, subscribe to one of its tracks, read groups
//! and their frames, fetch one group again, probe the path, and close. The `watch` example
//! prints what [`watch`] returns; the tests check every frame of it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use moq_proto::message::{Fetch, SubscribeParams};
use moq_proto::{
    BroadcastPath, ErrorCode, Event, FrameRead, GroupSequence, HopId, PathPrefix, StreamId,
};

use crate::{Connection, Error};

/// What to watch.
#[derive(Clone, Debug)]
pub struct Watch {
    /// The announce interest's prefix; the first broadcast announced under it is watched.
    pub prefix: PathPrefix,
    /// The track to subscribe to.
    pub track: String,
    /// The subscription's parameters (default: oldest group first). moq-net reads a max
    /// latency of 0 as "only the newest group": give it one to get every group.
    pub params: SubscribeParams,
    /// How many whole groups to read (fewer if the track ends first).
    pub groups: usize,
    /// Whether to fetch the first group again (a peer without FETCH on moq-lite-04, such
    /// as moq-net, answers with nothing).
    pub fetch: bool,
    /// The probe's target, in bits per second (`None`: no probe).
    pub probe: Option<u64>,
    /// How long any one step may take.
    pub step_timeout: Duration,
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            prefix: PathPrefix::root(),
            track: String::new(),
            params: SubscribeParams {
                ordered: true,
                ..SubscribeParams::default()
            },
            groups: 1,
            fetch: true,
            probe: Some(1_000_000),
            step_timeout: Duration::from_secs(5),
        }
    }
}

/// What was watched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watched {
    /// The broadcast watched.
    pub path: Option<BroadcastPath>,
    /// Each group read whole, in the order they arrived (groups travel on streams of their
    /// own: the order is the network's): its sequence and frames.
    pub groups: Vec<(GroupSequence, Vec<Bytes>)>,
    /// The frames of the first group, fetched again.
    pub fetched: Vec<Bytes>,
    /// The peer's first probe reply: its bitrate estimate (bits/s) and RTT (`None`: the
    /// peer ended the probe without one).
    pub probe: Option<(u64, Duration)>,
}

/// Runs the viewer on `conn` and closes it (code 0).
pub fn watch(mut conn: Connection, what: &Watch) -> Result<Watched, Error> {
    let mut watched = Watched::default();
    let step = || Instant::now() + what.step_timeout;

    // Discover.
    conn.session()
        .announce_interest(what.prefix.clone(), HopId(0))?;
    let deadline = step();
    let path = loop {
        match conn.next_event(deadline)? {
            Some(Event::Announced { path, .. }) => break path,
            Some(_) => {}
            None => return Err(Error::Timeout),
        }
    };
    watched.path = Some(path.clone());

    // Subscribe, and read groups whole as they arrive.
    let params = SubscribeParams {
        ordered: true,
        ..SubscribeParams::default()
    };
    let id = conn
        .session()
        .subscribe(path.clone(), &what.track, params)?;
    while watched.groups.len() < what.groups {
        let deadline = step();
        let (stream, sequence) = loop {
            match conn.next_event(deadline)? {
                Some(Event::GroupReceived {
                    id: sub,
                    sequence,
                    stream,
                }) if sub == id => break (stream, sequence),
                Some(Event::SubscriptionEnded { id: sub, .. }) if sub == id => {
                    return finish(conn, watched);
                }
                Some(Event::Closed { .. }) | None => return Err(Error::Timeout),
                Some(_) => {}
            }
        };
        if let Some(frames) = read_group(&mut conn, stream, step())? {
            watched.groups.push((sequence, frames));
        }
    }
    conn.session().unsubscribe(id)?;

    // Fetch the first group again.
    if let Some((sequence, _)) = watched.groups.first().filter(|_| what.fetch) {
        let stream = conn.session().fetch(Fetch {
            path: path.clone(),
            track: what.track.clone(),
            priority: 0,
            group: *sequence,
        })?;
        watched.fetched = read_group(&mut conn, stream, step())?.unwrap_or_default();
    }

    // Probe.
    if let Some(target) = what.probe {
        conn.session().probe(target)?;
        let deadline = step();
        loop {
            match conn.next_event(deadline)? {
                Some(Event::ProbeResult { bitrate, rtt }) => {
                    watched.probe = Some((bitrate, rtt));
                    break;
                }
                Some(Event::ProbeEnded { .. }) | None => break,
                Some(_) => {}
            }
        }
    }
    finish(conn, watched)
}

fn finish(conn: Connection, watched: Watched) -> Result<Watched, Error> {
    conn.close(ErrorCode(0), "done")?;
    Ok(watched)
}

/// Reads a group's or fetch's frames to its end: `None` if it ended other than finished
/// (expired, reset, dropped).
fn read_group(
    conn: &mut Connection,
    stream: StreamId,
    deadline: Instant,
) -> Result<Option<Vec<Bytes>>, Error> {
    let mut frames = Vec::new();
    loop {
        match conn.read_frame(stream, deadline)? {
            FrameRead::Frame(payload) => frames.push(payload.into_bytes()),
            FrameRead::Ended(moq_proto::EndReason::Finished) => return Ok(Some(frames)),
            FrameRead::Ended(_) => return Ok(None),
            FrameRead::Blocked => unreachable!("Connection::read_frame waits"),
        }
    }
}
