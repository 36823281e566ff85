//! Probe streams, both sides (spec §6.5; draft §5.1.4, §7.10).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    Command, CommandError, Dir, EndReason, Event, Input, Kind, Session, StreamId, Timer,
    TransportStats,
};
use crate::code::probe as codes;
use crate::message::{Probe, StreamType};

/// Our probe stream.
#[derive(Debug)]
pub(super) struct ProbeOut {
    stream: StreamId,
}

/// The peer's probe stream, which we answer.
#[derive(Debug)]
pub(super) struct ProbeIn {
    stream: StreamId,
    /// The peer's latest target, bits per second.
    target: u64,
    /// Recent statistics samples, oldest first (at most [`MAX_SAMPLES`]).
    samples: VecDeque<Sample>,
    /// The last reply: when, and the bitrate it carried.
    last_reply: Option<(Instant, u64)>,
    /// Our padding stream, while we pad.
    pad: Option<StreamId>,
}

/// One statistics sample of the probe responder.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    /// The transport's bytes sent, all overheads included.
    sent: u64,
    /// The transport's bytes declared lost (0 when it cannot tell).
    lost: u64,
    /// The transport's bytes acknowledged, when it can tell.
    acked: Option<u64>,
    /// Bytes the application sent (everything handed to the transport but padding).
    media: u64,
}

impl Sample {
    /// Bytes delivered since `earlier`: acknowledged when both samples know, else sent and
    /// not lost.
    fn delivered_since(&self, earlier: &Sample) -> u64 {
        match (self.acked, earlier.acked) {
            // A counter that went back (the transport moved to a new path and counts
            // afresh) says nothing of this window: fall back to the other counters.
            (Some(now), Some(then)) if now >= then => now - then,
            _ => {
                let lost = |s: &Sample| s.sent.saturating_sub(s.lost);
                lost(self).saturating_sub(lost(earlier))
            }
        }
    }
}

/// Samples kept: 3.2 s at the default interval, more than the longest window.
const MAX_SAMPLES: usize = 32;

/// The longest delivery-rate window.
const MAX_WINDOW: Duration = Duration::from_secs(1);

/// Padding is written from this zeroed buffer, in slices: no allocation per write.
static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

/// The padding stream's type byte.
static PADDING_TYPE: [u8; 1] = [StreamType::Padding.to_byte()];

/// Replies to our probe kept for a reader that pulls ([`Session::poll_probe_reply`]).
pub const PROBE_REPLIES_KEPT: usize = 16;

impl Session {
    // ---- Commands ----

    /// Asks the peer to measure the path up to `target` bits per second (spec §6.5). The
    /// first call opens the probe stream; later calls send new targets on it. Replies arrive
    /// as [`Event::ProbeResult`].
    pub fn probe(&mut self, target: u64) -> Result<(), CommandError> {
        let message = Probe {
            bitrate: target,
            rtt: Duration::ZERO,
        };
        match &self.probe_out {
            Some(p) => {
                self.check_open()?;
                let stream = p.stream;
                self.send_message(stream, &message)
            }
            None => {
                self.check_new_request()?;
                crate::Message::encoded_len(&message)?;
                let stream = self.open_stream(Dir::Bi, Kind::ProbeOut, i32::MAX);
                self.send_typed(stream, StreamType::Probe, &message)?;
                self.probe_out = Some(ProbeOut { stream });
                self.probe_replies.clear();
                Ok(())
            }
        }
    }

    /// Ends our probe (FIN). Reports [`Event::ProbeEnded`] with [`EndReason::Local`].
    pub fn stop_probe(&mut self) -> Result<(), CommandError> {
        if self.probe_out.is_none() {
            return Err(CommandError::Closed);
        }
        self.end_probe_out(EndReason::Local);
        Ok(())
    }

    /// The next reply to our probe not taken yet, `(bitrate, rtt)` as the peer sent them:
    /// the same as each [`Event::ProbeResult`], kept for a reader that pulls (the newest
    /// [`PROBE_REPLIES_KEPT`]; a peer that floods replies costs nothing).
    pub fn poll_probe_reply(&mut self) -> Option<(u64, Duration)> {
        self.probe_replies.pop_front()
    }

    /// Whether our probe is open (replies may still come).
    pub fn probing(&self) -> bool {
        self.probe_out.is_some()
    }

    /// The latest target the peer's probe asked for, if a probe is active.
    pub fn probe_target(&self) -> Option<u64> {
        self.probe_in.as_ref().map(|p| p.target)
    }

    // ---- Prober ----

    pub(super) fn recv_probe_out(&mut self, id: StreamId) -> bool {
        match self.decode::<Probe>(id) {
            Input::Item(reply) => {
                if reply.bitrate > 0 {
                    self.stats.peer_bitrate = Some(reply.bitrate);
                }
                if !reply.rtt.is_zero() {
                    self.stats.peer_rtt = Some(reply.rtt);
                }
                if self.probe_replies.len() == PROBE_REPLIES_KEPT {
                    self.probe_replies.pop_front();
                }
                self.probe_replies.push_back((reply.bitrate, reply.rtt));
                self.events.push_back(Event::ProbeResult {
                    bitrate: reply.bitrate,
                    rtt: reply.rtt,
                });
                true
            }
            Input::End => {
                self.end_probe_out(EndReason::Finished);
                false
            }
            Input::Pending | Input::Failed | Input::Invalid => false,
        }
    }

    pub(super) fn end_probe_out(&mut self, reason: EndReason) {
        let Some(p) = self.probe_out.take() else {
            return;
        };
        self.finish_send(p.stream);
        if let Some(s) = self.streams.get_mut(&p.stream) {
            s.kind = Kind::Ignored;
        }
        self.reap(p.stream);
        self.events.push_back(Event::ProbeEnded { reason });
    }

    // ---- Responder ----

    pub(super) fn on_probe_stream(&mut self, id: StreamId) {
        self.stop_padding();
        if let Some(old) = self.probe_in.take() {
            // One incoming probe at a time: the newer replaces the older (spec §6.5).
            self.cancel(old.stream, codes::INTERNAL);
        }
        self.probe_in = Some(ProbeIn {
            stream: id,
            target: 0,
            samples: VecDeque::new(),
            last_reply: None,
            pad: None,
        });
        // Measure and reply from the moment the stream opens, not only after a PROBE: a
        // prober may only read (@moq/lite opens the stream and never writes a target).
        if !self.timers.is_set(Timer::ProbeSample) {
            self.commands.push_back(Command::SampleStats);
            self.timers
                .set(Timer::ProbeSample, self.now + self.config.probe_interval);
        }
    }

    pub(super) fn recv_probe_in(&mut self, id: StreamId) -> bool {
        match self.decode::<Probe>(id) {
            Input::Item(request) => {
                let first = match self.probe_in.as_mut() {
                    Some(p) if p.stream == id => {
                        let first = p.samples.is_empty() && p.last_reply.is_none();
                        p.target = request.bitrate;
                        first
                    }
                    _ => return true,
                };
                if request.bitrate == 0 {
                    // The target is withdrawn: padding stops at once.
                    self.stop_padding();
                }
                self.events.push_back(Event::ProbeTarget {
                    bitrate: request.bitrate,
                });
                if first && !self.timers.is_set(Timer::ProbeSample) {
                    // Sample at once: the first reply must be prompt.
                    self.commands.push_back(Command::SampleStats);
                    self.timers
                        .set(Timer::ProbeSample, self.now + self.config.probe_interval);
                }
                true
            }
            Input::End => {
                self.end_probe_in(id);
                false
            }
            Input::Pending | Input::Failed | Input::Invalid => false,
        }
    }

    pub(super) fn on_probe_sample_due(&mut self) {
        if self.probe_in.is_some() {
            self.commands.push_back(Command::SampleStats);
            self.timers
                .set(Timer::ProbeSample, self.now + self.config.probe_interval);
        }
    }

    /// Keeps the latest transport statistics (a field not reported keeps its last value).
    pub(super) fn note_transport(&mut self, stats: TransportStats) {
        let t = &mut self.stats.transport;
        t.rtt = stats.rtt.or(t.rtt);
        t.bytes_sent = stats.bytes_sent.or(t.bytes_sent);
        t.bytes_received = stats.bytes_received.or(t.bytes_received);
        t.congestion_window = stats.congestion_window.or(t.congestion_window);
        t.lost_packets = stats.lost_packets.or(t.lost_packets);
        t.lost_bytes = stats.lost_bytes.or(t.lost_bytes);
        t.bytes_acked = stats.bytes_acked.or(t.bytes_acked);
        t.congestion_events = stats.congestion_events.or(t.congestion_events);
    }

    /// New transport statistics, sampled for the probe: keep them, answer an active probe
    /// from them, and pad toward its target (docs/probe.md).
    pub(super) fn on_stats(&mut self, stats: TransportStats) {
        self.note_transport(stats);
        let now = self.now;
        let media = self.stats.bytes_sent_app - self.stats.padding_sent;
        let Some(p) = self.probe_in.as_mut() else {
            return;
        };
        let rtt = stats.rtt;
        let Some(sent) = stats.bytes_sent else {
            if rtt.is_none() {
                // Nothing measurable: the responder must reset (decision D7).
                let stream = p.stream;
                self.stop_padding();
                self.probe_in = None;
                self.timers.cancel(Timer::ProbeSample);
                self.cancel(stream, codes::NOT_SUPPORTED);
                return;
            }
            // RTT alone: reply with the bitrate unknown.
            self.reply_probe(0, rtt);
            return;
        };
        if p.samples.len() == MAX_SAMPLES {
            p.samples.pop_front();
        }
        p.samples.push_back(Sample {
            at: now,
            sent,
            lost: stats.lost_bytes.unwrap_or(0),
            acked: stats.bytes_acked,
            media,
        });
        self.update_padding();
        let Some(estimate) = self.estimate() else {
            // The first sample is only the baseline: the first reply waits one interval
            // for a measured rate rather than carry a placeholder 0.
            return;
        };
        self.stats.send_bitrate = Some(estimate);
        self.reply_probe(estimate, rtt);
    }

    /// What the connection can carry to the peer, in bits/s, from the samples: the rate of
    /// bytes delivered (acknowledged, else sent and not lost) over the last window of about
    /// two round trips.
    /// While we pad, the sender is limited by congestion control rather than by the
    /// application, so that is the path's rate, up to the target. When we may not pad, the
    /// congestion window's rate (cwnd / RTT), up to the target, stands in for it.
    fn estimate(&self) -> Option<u64> {
        let p = self.probe_in.as_ref()?;
        let t = &self.stats.transport;
        // At least two sampling intervals, however long the configured interval.
        let shortest = self.config.probe_interval.saturating_mul(2);
        let window = t
            .rtt
            .map_or(MAX_WINDOW, |rtt| rtt.saturating_mul(2))
            .clamp(shortest, MAX_WINDOW.max(shortest));
        let newest = p.samples.back()?;
        let oldest = p
            .samples
            .iter()
            .rev()
            .find(|s| newest.at.saturating_duration_since(s.at) >= window)
            .or(p.samples.front())?;
        let delivered = rate(
            newest.delivered_since(oldest),
            newest.at.saturating_duration_since(oldest.at),
        )?;
        let may_pad = self.config.probe_padding && !self.padding_refused;
        if p.target > 0
            && !may_pad
            && let Some(allowed) = self.cwnd_rate()
        {
            return Some(delivered.max(allowed.min(p.target)));
        }
        Some(delivered)
    }

    /// The rate the congestion window allows, cwnd / RTT, in bits/s.
    fn cwnd_rate(&self) -> Option<u64> {
        let t = &self.stats.transport;
        rate(t.congestion_window?, t.rtt?)
    }

    /// Pads the connection up to the target while the application sends less: for the
    /// next interval, the target's bytes less what the application sent in the last one,
    /// never more than twice what the congestion window lets through in an interval, nor
    /// more than the stream send window.
    /// Padding goes on one stream below every media stream, so it never displaces media;
    /// what the path cannot carry waits in the transport (bounded by the stream's flow
    /// control) and is discarded when padding stops.
    fn update_padding(&mut self) {
        let interval = self.config.probe_interval;
        let may_pad = self.config.probe_padding && !self.padding_refused;
        let cwnd_rate = self.cwnd_rate();
        let Some(p) = self.probe_in.as_ref() else {
            return;
        };
        // The application's rate over the last interval.
        let mut recent = p.samples.iter().rev();
        let media_rate = match (recent.next(), recent.next()) {
            (Some(b), Some(a)) => rate(
                b.media.saturating_sub(a.media),
                b.at.saturating_duration_since(a.at),
            )
            .unwrap_or(0),
            _ => 0,
        };
        if !may_pad || p.target == 0 || media_rate >= p.target {
            self.stop_padding();
            return;
        }
        let pad = p.pad;
        let mut pad_rate = (p.target - media_rate).min(self.config.probe_padding_max_rate);
        if let Some(allowed) = cwnd_rate {
            pad_rate = pad_rate.min(allowed.saturating_mul(2));
        }
        // Never more queued than one stream's send window, whatever the peer's target and
        // however small the RTT: a peer controls the target.
        let want = (u128::from(pad_rate) * interval.as_micros() / 8_000_000)
            .min(self.config.stream_send_window as u128) as usize;
        let now = self.now;
        let tokens = self.padding.available(now);
        if tokens == 0 && pad.is_none() {
            // The session's padding is spent: the estimate goes on from what is sent, and
            // an open padding stream waits, idle, for the bucket to refill.
            return;
        }
        let stream = match pad {
            Some(stream) => stream,
            None => {
                let stream = self.open_stream(Dir::Uni, Kind::PaddingOut, i32::MIN);
                self.send_bytes(stream, Bytes::from_static(&PADDING_TYPE));
                if let Some(p) = self.probe_in.as_mut() {
                    p.pad = Some(stream);
                }
                stream
            }
        };
        let missing = want.saturating_sub(self.unsent_bytes(stream)) as u64;
        // Charged when queued: what a stop discards unsent is not given back.
        let mut missing = self.padding.take(missing, now) as usize;
        while missing > 0 {
            let n = missing.min(ZEROS.len());
            self.send_bytes(stream, Bytes::from_static(&ZEROS).slice(..n));
            missing -= n;
        }
    }

    /// Stops padding: the padding stream is reset, and what it still held is dropped.
    pub(super) fn stop_padding(&mut self) {
        if let Some(stream) = self.probe_in.as_mut().and_then(|p| p.pad.take()) {
            self.reset_send(stream, codes::PADDING_DONE);
            self.reap(stream);
        }
    }

    /// The peer stopped our padding stream: it does not take padding, so this session pads
    /// no more.
    pub(super) fn on_padding_refused(&mut self, id: StreamId, _code: crate::ErrorCode) {
        self.padding_refused = true;
        self.on_padding_gone(id);
    }

    /// Our padding stream is gone (refused, or its open failed).
    pub(super) fn on_padding_gone(&mut self, id: StreamId) {
        if let Some(p) = self.probe_in.as_mut()
            && p.pad == Some(id)
        {
            p.pad = None;
        }
    }

    /// Replies on the peer's probe stream when the estimate moved enough, or the last reply
    /// is old.
    fn reply_probe(&mut self, value: u64, rtt: Option<Duration>) {
        let now = self.now;
        let Some(p) = self.probe_in.as_mut() else {
            return;
        };
        let due = match p.last_reply {
            None => true,
            Some((at, last)) => {
                let moved = last.abs_diff(value).saturating_mul(100)
                    > last.saturating_mul(self.config.probe_change_percent);
                moved || now.saturating_duration_since(at) >= self.config.probe_max_age
            }
        };
        if !due {
            return;
        }
        p.last_reply = Some((now, value));
        let stream = p.stream;
        let reply = Probe {
            bitrate: value,
            // Whole milliseconds on the wire, where 0 means unknown: a measured RTT under
            // 1 ms is sent as 1 ms.
            rtt: rtt.map_or(Duration::ZERO, |r| r.max(Duration::from_millis(1))),
        };
        let _ = self.send_message(stream, &reply);
    }

    pub(super) fn end_probe_in(&mut self, id: StreamId) {
        if self.probe_in.as_ref().is_some_and(|p| p.stream == id) {
            self.stop_padding();
            self.probe_in = None;
            self.timers.cancel(Timer::ProbeSample);
        }
        self.finish_send(id);
        if let Some(s) = self.streams.get_mut(&id) {
            s.kind = Kind::Ignored;
        }
        self.reap(id);
    }

    pub(super) fn end_probes(&mut self, reason: &EndReason) {
        self.end_probe_out(reason.clone());
        self.stop_padding();
        self.probe_in = None;
    }
}

/// `bytes` over `dt`, in bits/s; `None` over no time.
fn rate(bytes: u64, dt: Duration) -> Option<u64> {
    let micros = dt.as_micros();
    (micros > 0).then(|| (u128::from(bytes) * 8_000_000 / micros).min(u128::from(u64::MAX)) as u64)
}
