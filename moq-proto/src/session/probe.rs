//! Probe streams, both sides (spec §6.5; draft §5.1.4, §7.10).

use std::time::{Duration, Instant};

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
    /// The previous statistics sample: when, and the transport's bytes sent then.
    last_sample: Option<(Instant, u64)>,
    /// The last reply: when, and the bitrate it carried.
    last_reply: Option<(Instant, u64)>,
}

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
        if let Some(old) = self.probe_in.take() {
            // One incoming probe at a time: the newer replaces the older (spec §6.5).
            self.cancel(old.stream, codes::INTERNAL);
        }
        self.probe_in = Some(ProbeIn {
            stream: id,
            target: 0,
            last_sample: None,
            last_reply: None,
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
                        let first = p.last_sample.is_none() && p.last_reply.is_none();
                        p.target = request.bitrate;
                        first
                    }
                    _ => return true,
                };
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
        t.congestion_events = stats.congestion_events.or(t.congestion_events);
    }

    /// New transport statistics, sampled for the probe: keep them, and answer an active
    /// probe from them.
    pub(super) fn on_stats(&mut self, stats: TransportStats) {
        self.note_transport(stats);
        let now = self.now;
        let Some(p) = self.probe_in.as_mut() else {
            return;
        };
        // Bitrate from the bytes sent since the previous sample.
        let mut bitrate = None;
        if let Some(sent) = stats.bytes_sent {
            if let Some((then, before)) = p.last_sample {
                let dt = now.saturating_duration_since(then);
                if !dt.is_zero() {
                    let bits = sent.saturating_sub(before).saturating_mul(8);
                    bitrate = Some((u128::from(bits) * 1_000_000 / dt.as_micros().max(1)) as u64);
                }
            }
            p.last_sample = Some((now, sent));
        }
        if let Some(b) = bitrate {
            self.stats.send_bitrate = Some(b);
        }
        let rtt = stats.rtt;
        if stats.bytes_sent.is_none() && rtt.is_none() {
            // Nothing measurable: the responder must reset (decision D7).
            let stream = p.stream;
            self.probe_in = None;
            self.timers.cancel(Timer::ProbeSample);
            self.cancel(stream, codes::NOT_SUPPORTED);
            return;
        }
        if bitrate.is_none() && stats.bytes_sent.is_some() && p.last_reply.is_none() {
            // The first sample is only the baseline: the first reply waits one interval for
            // a measured rate rather than carry a placeholder 0.
            return;
        }
        let value = bitrate.unwrap_or(0);
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
        self.probe_in = None;
    }
}
