//! One ledger per connection: every byte a peer can make the session hold, in one sum with
//! one cap ([`Config::max_connection_bytes`]).
//!
//! The categories are kept where their state lives (the incomplete control messages, the
//! send halves, the receive halves, the stream table); the ledger adds them up after every
//! input and command (on the first [`Session::poll_command`] of a drain) and, past the cap,
//! sheds the largest holder first until the sum is back under it:
//!
//! 1. a received group or fetch holding the most (a frame being reassembled, or frames no
//!    reader took): stopped with code 0x0, its reader gets [`EndReason::Shed`];
//! 2. the subscription we serve holding the most (queued bytes, and the streams of its groups,
//!    opening ones included): its oldest group is dropped (SUBSCRIBE_DROP, reset with
//!    Group 0x3, [`EndReason::Dropped`]); a fetch we serve: reset with Fetch 0x0;
//! 3. the control stream with the most bytes the peer has not taken (announcements to an
//!    interest that is never read, responses, probe replies): cancelled with its kind's
//!    code 0x0, and what it carried ends with [`EndReason::Shed`].
//!
//! What is left over the cap after that (the stream table itself, or what the application
//! charged, see [`Session::set_external_bytes`]) closes the session with code 0x1
//! (internal). docs/security.md gives the figures.
//!
//! [`Config::max_connection_bytes`]: crate::Config::max_connection_bytes

use super::{EndReason, Kind, Session, StreamId, SubscribeId};
use crate::code::{ErrorCode, session as session_codes};

/// What the session's table holds per stream it tracks, in the ledger: the stream and its
/// halves, its map entry, and the per-subscription or per-group state beside it. Measured
/// (`tests/steady_state_allocs.rs`): a group waiting for its stream with a small frame
/// queued costs less than this plus its bytes.
pub const STREAM_COST: usize = 1024;

/// What one connection holds for its peer, by category, in bytes of memory. From
/// [`crate::SessionStats::ledger`] (now) and [`crate::SessionStats::ledger_peak`] (the most
/// each category held).
///
/// ```
/// let ledger = moq_proto::Ledger::default();
/// assert_eq!(ledger.total(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ledger {
    /// Control messages that have not fully arrived.
    pub control_in: u64,
    /// Control messages, stream types and probe padding queued for the peer and not yet
    /// accepted by the transport, and the announcement changes an announce stream has not
    /// been sent yet.
    pub control_out: u64,
    /// Received group and fetch data no reader has taken (whole frames, and the part of the
    /// one being reassembled), as the datagrams it keeps alive
    /// ([`crate::StreamDecoder::held`]).
    pub data_in: u64,
    /// Group and fetch bytes for the peer that the transport has not accepted.
    pub data_out: u64,
    /// The stream table: [`STREAM_COST`] per stream tracked, opening ones included.
    pub streams: u64,
    /// What the application charged for this connection (see
    /// [`Session::set_external_bytes`]).
    pub external: u64,
}

impl Ledger {
    /// The sum of every category.
    pub fn total(&self) -> u64 {
        self.control_in
            + self.control_out
            + self.data_in
            + self.data_out
            + self.streams
            + self.external
    }

    fn max(&mut self, other: &Self) {
        self.control_in = self.control_in.max(other.control_in);
        self.control_out = self.control_out.max(other.control_out);
        self.data_in = self.data_in.max(other.data_in);
        self.data_out = self.data_out.max(other.data_out);
        self.streams = self.streams.max(other.streams);
        self.external = self.external.max(other.external);
    }
}

/// The ledger's running state inside a session.
#[derive(Debug, Default)]
pub(super) struct LedgerState {
    /// Control bytes queued or handed to the transport and not yet accepted.
    pub(super) unsent_control: usize,
    /// What the peer's announce interests hold in changes not yet sent (see `announce`).
    pub(super) announce_marks: usize,
    /// What the application charged (see [`Session::set_external_bytes`]).
    pub(super) external: usize,
    /// The most each category held.
    pub(super) peak: Ledger,
    /// The most the whole ledger held.
    pub(super) peak_total: u64,
    /// Holders shed for the cap.
    pub(super) shed: u64,
}

/// What to shed next.
#[derive(Clone, Copy)]
enum Holder {
    DataIn(StreamId),
    Publication(SubscribeId),
    FetchServed(StreamId),
    Control(StreamId),
}

/// The search for the largest holder.
#[derive(Default)]
struct Search {
    best: Option<(usize, Holder)>,
    /// The bytes of the largest holder but the best.
    runner_up: usize,
}

impl Search {
    fn consider(&mut self, bytes: usize, holder: Holder) {
        match &self.best {
            _ if bytes == 0 => {}
            Some((best, _)) if bytes <= *best => self.runner_up = self.runner_up.max(bytes),
            previous => {
                if let Some((best, _)) = previous {
                    self.runner_up = self.runner_up.max(*best);
                }
                self.best = Some((bytes, holder));
            }
        }
    }

    /// Whether a category holding `total` in all could hold the largest holder.
    fn could_beat(&self, total: u64) -> bool {
        self.best
            .as_ref()
            .is_none_or(|(best, _)| total as usize > *best)
    }
}

/// Holders shed in one enforcement at most before the session gives up and closes: each
/// frees at least one stream's worth, so this many cannot all be needed under any cap a
/// connection can fill.
const MAX_SHED_PER_ROUND: usize = 1 << 16;

impl Session {
    /// The ledger now.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            control_in: self.incomplete_bytes as u64,
            control_out: (self.ledger.unsent_control + self.ledger.announce_marks) as u64,
            data_in: self.unread_data as u64,
            data_out: self.unsent_data as u64,
            streams: ((self.streams.len() + self.opening.len()) * STREAM_COST) as u64,
            external: self.ledger.external as u64,
        }
    }

    /// Charges the ledger with what the application above the core holds for this
    /// connection (for example a relay's queue of work for this peer), replacing the
    /// previous charge. It counts toward [`crate::Config::max_connection_bytes`]; it is
    /// never shed by the core, so a charge that alone passes the cap closes the session.
    pub fn set_external_bytes(&mut self, bytes: usize) {
        self.ledger.external = bytes;
    }

    /// Control bytes queued for the peer and not yet accepted, counted afresh from every
    /// stream. Scans them all: for tests, fuzzing and diagnostics.
    pub fn unsent_control_total(&self) -> usize {
        self.streams
            .values()
            .filter_map(|s| s.send.as_ref())
            .filter(|s| !s.data)
            .map(super::streams::SendHalf::unsent)
            .sum()
    }

    /// Sheds past the cap (see the module documentation), then records the peaks: what the
    /// connection holds once an input or command has been taken in. Within one input the
    /// core may hold that input's bytes above the cap until this runs (at most one
    /// transport read, which the adapter bounds).
    ///
    /// Once over the cap it sheds down to a sixteenth below it, so that a peer holding the
    /// connection at its cap does not make every input pay for a search of the holders;
    /// and a subscription that holds the most loses groups, oldest first, until another
    /// holder is larger, within one search.
    pub(super) fn enforce_ledger(&mut self) {
        let cap = self.config.max_connection_bytes as u64;
        let mut ledger = self.ledger();
        if ledger.total() > cap {
            let low = cap - cap / 16;
            let mut shed = 0;
            while ledger.total() > low && self.closed.is_none() {
                let found = (shed < MAX_SHED_PER_ROUND)
                    .then(|| self.largest_holder(&ledger))
                    .flatten();
                let Some((holder, runner_up)) = found else {
                    self.close(session_codes::INTERNAL, "connection memory budget exceeded");
                    return;
                };
                // A subscription goes on losing its oldest groups while it still holds the
                // most; any other holder goes whole.
                loop {
                    self.shed(holder);
                    shed += 1;
                    self.ledger.shed += 1;
                    ledger = self.ledger();
                    let again = matches!(holder, Holder::Publication(sub)
                        if self.publication_weight(sub).is_some_and(|w| w >= runner_up));
                    if !again || ledger.total() <= low || shed >= MAX_SHED_PER_ROUND {
                        break;
                    }
                }
            }
        }
        self.ledger.peak.max(&ledger);
        self.ledger.peak_total = self.ledger.peak_total.max(ledger.total());
    }

    /// What a subscription we serve holds, for shedding: its queued bytes and the streams
    /// of its open groups. `None` once it has no group to drop.
    fn publication_weight(&self, sub: SubscribeId) -> Option<usize> {
        let p = self.pubs.get(&sub)?;
        (!p.groups.is_empty()).then(|| p.queued + p.groups.len() * STREAM_COST)
    }

    /// The holder with the most bytes, among received data streams, the subscriptions and
    /// fetches we serve, and the control streams; with the bytes of the next largest. A
    /// category whose whole total cannot beat the best found so far is not searched.
    fn largest_holder(&self, ledger: &Ledger) -> Option<(Holder, usize)> {
        let mut search = Search::default();
        for &sub in self.pubs.keys() {
            if let Some(weight) = self.publication_weight(sub) {
                search.consider(weight, Holder::Publication(sub));
            }
        }
        for &id in self.fetches_in.keys() {
            search.consider(self.unsent_bytes(id), Holder::FetchServed(id));
        }
        if search.could_beat(ledger.data_in) {
            for (&id, group) in self.groups_in.iter() {
                if group.data.end.is_none() {
                    search.consider(group.data.unread, Holder::DataIn(id));
                }
            }
            for (&id, fetch) in self.fetches_out.iter() {
                if fetch.end.is_none() {
                    search.consider(fetch.unread, Holder::DataIn(id));
                }
            }
        }
        if search.could_beat(ledger.control_out) {
            for (&id, stream) in self.streams.iter() {
                if let Some(send) = &stream.send
                    && !send.data
                {
                    let marks = if stream.kind == Kind::AnnounceIn {
                        self.interest_in_marks(id)
                    } else {
                        0
                    };
                    search.consider(send.unsent() + marks, Holder::Control(id));
                }
            }
        }
        search.best.map(|(_, holder)| (holder, search.runner_up))
    }

    fn shed(&mut self, holder: Holder) {
        const INTERNAL: ErrorCode = ErrorCode(0x0);
        match holder {
            Holder::DataIn(id) => self.stop_data_in(id, INTERNAL, EndReason::Shed),
            Holder::Publication(sub) => self.drop_oldest_group(sub),
            Holder::FetchServed(id) => {
                self.reset_send(id, INTERNAL);
                self.end_fetch_in(id, EndReason::Shed);
            }
            Holder::Control(id) => self.shed_control_stream(id, INTERNAL),
        }
    }

    /// Cancels a control stream the peer does not take from, and ends what it carried.
    fn shed_control_stream(&mut self, id: StreamId, code: ErrorCode) {
        let Some(kind) = self.streams.get(&id).map(|s| s.kind) else {
            return;
        };
        let reason = EndReason::Shed;
        match kind {
            Kind::PaddingOut => {
                self.stop_padding();
                return;
            }
            Kind::SubscribeIn(Some(sub)) => {
                self.end_publication(sub, reason, Some(code));
                return;
            }
            Kind::AnnounceIn => self.drop_interest_in(id),
            _ => {}
        }
        self.cancel(id, code);
        match kind {
            Kind::AnnounceOut => self.end_interest_out(id, reason),
            Kind::SubscribeOut(sub) => self.end_subscription(sub, reason),
            Kind::FetchOut => self.end_fetch_out(id, reason),
            Kind::FetchIn => self.end_fetch_in(id, reason),
            Kind::ProbeOut => self.end_probe_out(reason),
            Kind::ProbeIn => self.end_probe_in(id),
            _ => {}
        }
    }
}
