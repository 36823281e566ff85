//! A token bucket on the session's clock, for what a peer may make us do at a rate: probe
//! padding (bytes) and announcement changes (messages).

use std::time::{Duration, Instant};

/// At most `burst` tokens, refilled at `rate` per second. Fractions of a token earned
/// between two refills are kept (the clock is credited only for whole tokens), so a bucket
/// refilled every microsecond earns as much as one refilled once a second.
#[derive(Debug)]
pub(super) struct TokenBucket {
    tokens: u64,
    burst: u64,
    /// Tokens per second.
    rate: u64,
    /// The time up to which refills have been credited.
    credited: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn new(burst: u64, rate: u64, now: Instant) -> Self {
        Self {
            tokens: burst,
            burst,
            rate,
            credited: now,
        }
    }

    /// The tokens available at `now`.
    pub(super) fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens
    }

    /// Takes up to `n` tokens; returns how many were taken.
    pub(super) fn take(&mut self, n: u64, now: Instant) -> u64 {
        let taken = n.min(self.available(now));
        self.tokens -= taken;
        taken
    }

    /// When the bucket will next hold a token (`None`: never, its rate is zero).
    pub(super) fn next_token(&self, now: Instant) -> Option<Instant> {
        if self.tokens > 0 {
            return Some(now);
        }
        let micros = 1_000_000u64.div_ceil(self.rate.max(1));
        (self.rate > 0).then(|| self.credited.max(now) + Duration::from_micros(micros))
    }

    fn refill(&mut self, now: Instant) {
        if self.tokens >= self.burst {
            self.credited = now;
            return;
        }
        let since = now.saturating_duration_since(self.credited).as_micros();
        let earned = u128::from(self.rate) * since / 1_000_000;
        if earned == 0 {
            return;
        }
        let room = u128::from(self.burst - self.tokens);
        if earned >= room {
            self.tokens = self.burst;
            self.credited = now;
        } else {
            // `earned < room <= u64::MAX`, and its time is at most `since`.
            self.tokens += earned as u64;
            let used = earned * 1_000_000 / u128::from(self.rate);
            self.credited += Duration::from_micros(used as u64);
        }
    }
}
