//! What an operator sees of a relay: a snapshot of its state ([`Status`], for `/metrics`
//! and the status page), the counters only the relay knows (sessions started, refusals,
//! fetches served from the cache, upstream links), and five minutes of history sampled
//! once a second ([`Sample`]).
//!
//! Everything a peer can grow is bounded here: broadcasts appear in the top
//! `metrics.top_broadcasts` only (by subscribers, then bitrate), recent refusals are the
//! last [`RECENT_REFUSALS`], and history is [`HISTORY_SAMPLES`] samples.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::fanout::lock;
use crate::redact::clip;

/// Refusals kept for the status page.
pub(crate) const RECENT_REFUSALS: usize = 32;

/// Samples of history kept: one a second, five minutes.
pub(crate) const HISTORY_SAMPLES: usize = 300;

/// How often the relay samples its history.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One refusal, as the status page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Refusal {
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// What was refused: `connection`, `subscribe`, `fetch` or `publish`.
    pub what: &'static str,
    /// Why, in a few words (`unauthorized`, `session or memory limit`...).
    pub why: &'static str,
    /// Who asked: a peer (`#12`) or a remote address.
    pub who: String,
    /// The broadcast path asked for (clipped), if any.
    pub path: String,
}

/// The state of one link to an upstream relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Dialling.
    Connecting,
    /// A session is up.
    Connected,
    /// Waiting to dial again after a failure or the end of a session.
    Waiting,
}

impl LinkState {
    /// Its name, as metrics and the page show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Waiting => "waiting",
        }
    }
}

/// One upstream link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LinkStatus {
    /// Its URL, without credentials.
    pub url: String,
    /// Its state.
    pub state: LinkState,
    /// Sessions it has established so far.
    pub connects: u64,
}

/// The handshake counters of one listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandshakeStatus {
    /// Handshakes in flight now.
    pub in_flight: usize,
    /// Attempts refused for too many in flight.
    pub refused: u64,
    /// Attempts asked to retry (address validation).
    pub retried: u64,
}

/// Totals over every session, those that ended included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Totals {
    /// Bytes the transports received.
    pub bytes_in: u64,
    /// Bytes the transports sent.
    pub bytes_out: u64,
    /// Frames received on groups and fetches.
    pub frames_in: u64,
    /// Frames queued for peers.
    pub frames_out: u64,
    /// Groups received.
    pub groups_in: u64,
    /// Groups opened for peers.
    pub groups_out: u64,
    /// Groups dropped or expired (a subscriber too far behind, or past its max latency).
    pub groups_dropped: u64,
    /// Holders shed to keep a connection's ledger under its cap.
    pub ledger_shed: u64,
    /// Peer streams cancelled for holding an incomplete message too long or too large.
    pub streams_abandoned: u64,
    /// ANNOUNCE messages received.
    pub announcements_in: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, s: &moq_quinn::SessionStats) {
        self.bytes_in += s.bytes_received;
        self.bytes_out += s.bytes_sent;
        self.frames_in += s.frames_received;
        self.frames_out += s.frames_sent;
        self.groups_in += s.groups_received;
        self.groups_out += s.groups_sent;
        self.groups_dropped += s.groups_dropped;
        self.ledger_shed += s.ledger_shed;
        self.streams_abandoned += s.streams_abandoned;
        self.announcements_in += s.announcements_received;
    }
}

/// What the relay holds in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemoryStatus {
    /// The ledgers' `control_in` (see `SessionStats::ledger`), summed.
    pub control_in: u64,
    /// The ledgers' `control_out`, summed.
    pub control_out: u64,
    /// The ledgers' `data_in`, summed.
    pub data_in: u64,
    /// The ledgers' `data_out`, summed.
    pub data_out: u64,
    /// The ledgers' `streams`, summed.
    pub streams: u64,
    /// The ledgers' `external`, summed.
    pub external: u64,
    /// The largest ledger of one connection now.
    pub connection_max: u64,
    /// The group caches.
    pub cache: u64,
}

impl MemoryStatus {
    /// Adds one connection's ledger.
    pub(crate) fn add(&mut self, stats: &moq_quinn::SessionStats) {
        let ledger = &stats.ledger;
        self.control_in += ledger.control_in;
        self.control_out += ledger.control_out;
        self.data_in += ledger.data_in;
        self.data_out += ledger.data_out;
        self.streams += ledger.streams;
        self.external += ledger.external;
        self.connection_max = self.connection_max.max(ledger.total());
    }

    /// Every ledger plus the caches (what admission compares with `limits.max_total_bytes`).
    pub fn total(&self) -> u64 {
        self.control_in
            + self.control_out
            + self.data_in
            + self.data_out
            + self.streams
            + self.external
            + self.cache
    }
}

/// One relayed track.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TrackStatus {
    /// Its name (clipped).
    pub name: String,
    /// Downstream subscribers now.
    pub subscribers: usize,
    /// Payload bits per second over the last sample.
    pub bitrate_bps: u64,
    /// Groups, frames and payload bytes relayed so far.
    pub groups: u64,
    /// See `groups`.
    pub frames: u64,
    /// See `groups`.
    pub bytes: u64,
    /// The newest group number.
    pub latest_group: Option<u64>,
}

/// One broadcast the relay knows.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BroadcastStatus {
    /// Its path (clipped).
    pub path: String,
    /// Routes that lead to it.
    pub routes: usize,
    /// Hops announced onwards.
    pub hops: usize,
    /// The round-trip time to the peer it is relayed from, in milliseconds.
    pub publisher_rtt_ms: Option<f64>,
    /// Downstream subscribers over its tracks.
    pub subscribers: usize,
    /// Payload bits per second over its tracks.
    pub bitrate_bps: u64,
    /// Its relayed tracks.
    pub tracks: Vec<TrackStatus>,
}

/// A snapshot of the relay, from [`crate::Relay::status`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The relay's hop ID.
    pub hop: u64,
    /// Whether it is draining (GOAWAY sent, no new sessions).
    pub draining: bool,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Sessions now, by transport (`quic`, `webtransport`).
    pub sessions: BTreeMap<&'static str, usize>,
    /// Sessions started so far, by transport.
    pub sessions_started: BTreeMap<&'static str, u64>,
    /// Handshake counters, by listener transport.
    pub handshakes: BTreeMap<&'static str, HandshakeStatus>,
    /// Downstream subscriptions served now.
    pub subscriptions_downstream: usize,
    /// Upstream subscriptions feeding them (one per relayed track).
    pub subscriptions_upstream: usize,
    /// Broadcasts known, all of them (`broadcasts` lists the top ones).
    pub broadcasts_total: usize,
    /// Routes (announcements received and in force).
    pub routes: usize,
    /// Totals over every session.
    pub totals: Totals,
    /// Memory held.
    pub memory: MemoryStatus,
    /// Fetches served from the cache.
    pub fetch_cache_hits: u64,
    /// Fetches forwarded upstream.
    pub fetch_cache_misses: u64,
    /// Refusals so far, by what and why.
    pub refusals: Vec<(&'static str, &'static str, u64)>,
    /// The latest refusals, newest last.
    pub recent_refusals: Vec<Refusal>,
    /// Upstream links.
    pub links: Vec<LinkStatus>,
    /// The top broadcasts, by subscribers, then bitrate, then path.
    pub broadcasts: Vec<BroadcastStatus>,
}

/// One second of history.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Sample {
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// Bits per second the transports received and sent.
    pub in_bps: u64,
    /// See `in_bps`.
    pub out_bps: u64,
    /// Sessions.
    pub sessions: usize,
    /// The median and the largest round-trip time over the sessions, in milliseconds.
    pub rtt_p50_ms: Option<f64>,
    /// See `rtt_p50_ms`.
    pub rtt_max_ms: Option<f64>,
    /// The top broadcasts: path, payload bits per second, subscribers, publisher RTT (ms).
    pub broadcasts: Vec<(String, u64, usize, Option<f64>)>,
}

/// What only the relay counts, and its history.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    counters: Mutex<Counters>,
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct Counters {
    sessions_started: BTreeMap<&'static str, u64>,
    refusals: BTreeMap<(&'static str, &'static str), u64>,
    recent: VecDeque<Refusal>,
    fetch_hits: u64,
    fetch_misses: u64,
    links: BTreeMap<String, LinkStatus>,
}

/// A value per track, by broadcast path, then track name.
type PerTrack = HashMap<String, HashMap<String, u64>>;

/// `map`'s value for a track (0 if it has none).
fn per_track(map: &PerTrack, path: &str, track: &str) -> u64 {
    map.get(path)
        .and_then(|tracks| tracks.get(track))
        .copied()
        .unwrap_or(0)
}

/// Sets each track's and each broadcast's bitrate from `rates`.
fn apply_rates(rates: &PerTrack, broadcasts: &mut [BroadcastStatus]) {
    for b in broadcasts {
        for t in &mut b.tracks {
            t.bitrate_bps = per_track(rates, &b.path, &t.name);
        }
        b.bitrate_bps = b.tracks.iter().map(|t| t.bitrate_bps).sum();
    }
}

#[derive(Debug, Default)]
struct History {
    samples: VecDeque<Sample>,
    /// The totals and each track's bytes at the last sample, and when.
    last: Option<(std::time::Instant, Totals, PerTrack)>,
    /// Each track's bitrate over the last sample.
    rates: PerTrack,
}

impl Observer {
    pub(crate) fn session_started(&self, transport: &'static str) {
        *lock(&self.counters)
            .sessions_started
            .entry(transport)
            .or_default() += 1;
    }

    /// Counts a refusal and keeps it among the recent ones.
    pub(crate) fn refused(
        &self,
        what: &'static str,
        why: &'static str,
        who: String,
        path: Option<&str>,
    ) {
        let mut c = lock(&self.counters);
        *c.refusals.entry((what, why)).or_default() += 1;
        if c.recent.len() == RECENT_REFUSALS {
            c.recent.pop_front();
        }
        c.recent.push_back(Refusal {
            at_ms: unix_ms(),
            what,
            why,
            who,
            path: path.map(|p| clip(p).into_owned()).unwrap_or_default(),
        });
    }

    pub(crate) fn fetch(&self, from_cache: bool) {
        let mut c = lock(&self.counters);
        if from_cache {
            c.fetch_hits += 1;
        } else {
            c.fetch_misses += 1;
        }
    }

    pub(crate) fn link(&self, url: &str, state: LinkState) {
        let mut c = lock(&self.counters);
        let link = c.links.entry(url.to_owned()).or_insert(LinkStatus {
            url: url.to_owned(),
            state,
            connects: 0,
        });
        if state == LinkState::Connected {
            link.connects += 1;
        }
        link.state = state;
    }

    /// Fills the relay's own counters into `status`, with each track's latest bitrate.
    pub(crate) fn fill(&self, status: &mut Status) {
        {
            let c = lock(&self.counters);
            status.sessions_started = c.sessions_started.clone();
            status.refusals = c.refusals.iter().map(|(k, n)| (k.0, k.1, *n)).collect();
            status.recent_refusals = c.recent.iter().cloned().collect();
            status.fetch_cache_hits = c.fetch_hits;
            status.fetch_cache_misses = c.fetch_misses;
            status.links = c.links.values().cloned().collect();
        }
        apply_rates(&lock(&self.history).rates, &mut status.broadcasts);
    }

    /// Takes one sample from `status` (taken with every broadcast, not only the top) and
    /// `rtts` (every session's), keeping `top` broadcasts in it.
    pub(crate) fn sample(&self, mut status: Status, rtts: &mut [Duration], top: usize) {
        let now = std::time::Instant::now();
        let mut history = lock(&self.history);
        let mut bytes = PerTrack::new();
        for b in &status.broadcasts {
            let tracks = b.tracks.iter().map(|t| (t.name.clone(), t.bytes)).collect();
            bytes.insert(b.path.clone(), tracks);
        }
        let (in_bps, out_bps) = match history.last.take() {
            Some((at, totals, last_bytes)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                let rate =
                    |now: u64, then: u64| (now.saturating_sub(then) as f64 * 8.0 / secs) as u64;
                // A track new since the last sample counts from now.
                history.rates = bytes
                    .iter()
                    .map(|(path, tracks)| {
                        let rates = tracks
                            .iter()
                            .map(|(name, b)| {
                                let then = last_bytes
                                    .get(path)
                                    .and_then(|t| t.get(name))
                                    .copied()
                                    .unwrap_or(*b);
                                (name.clone(), rate(*b, then))
                            })
                            .collect();
                        (path.clone(), rates)
                    })
                    .collect();
                (
                    rate(status.totals.bytes_in, totals.bytes_in),
                    rate(status.totals.bytes_out, totals.bytes_out),
                )
            }
            None => (0, 0),
        };
        apply_rates(&history.rates, &mut status.broadcasts);
        rtts.sort_unstable();
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let mut broadcasts: Vec<(String, u64, usize, Option<f64>)> = status
            .broadcasts
            .into_iter()
            .map(|b| (b.path, b.bitrate_bps, b.subscribers, b.publisher_rtt_ms))
            .collect();
        broadcasts.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
        broadcasts.truncate(top);
        let sample = Sample {
            at_ms: unix_ms(),
            in_bps,
            out_bps,
            sessions: status.sessions.values().sum(),
            rtt_p50_ms: rtts.get(rtts.len() / 2).map(ms),
            rtt_max_ms: rtts.last().map(ms),
            broadcasts,
        };
        if history.samples.len() == HISTORY_SAMPLES {
            history.samples.pop_front();
        }
        history.samples.push_back(sample);
        history.last = Some((now, status.totals, bytes));
    }

    /// The history, oldest first.
    pub(crate) fn history(&self) -> Vec<Sample> {
        lock(&self.history).samples.iter().cloned().collect()
    }
}
