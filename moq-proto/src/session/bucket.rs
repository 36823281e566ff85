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

#[cfg(test)]
// A test needs some instant to start from; the bucket itself reads no clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_kept_across_frequent_refills() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 100, t0);
        assert_eq!(bucket.take(10, t0), 10);
        // 100 tokens/s: one per 10 ms. Refilled every millisecond for a second.
        for ms in 1..=1000 {
            bucket.available(t0 + Duration::from_millis(ms));
        }
        assert_eq!(bucket.available(t0 + Duration::from_secs(1)), 10, "capped");
        assert_eq!(bucket.take(10, t0 + Duration::from_secs(1)), 10);
        let mut earned = 0;
        for ms in 1..=50 {
            earned += bucket.take(1, t0 + Duration::from_millis(1000 + ms));
        }
        assert_eq!(earned, 5);
    }

    #[test]
    fn next_token_is_when_one_is_earned() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1, 4, t0);
        assert_eq!(bucket.next_token(t0), Some(t0));
        bucket.take(1, t0);
        let at = bucket.next_token(t0).unwrap();
        assert_eq!(at, t0 + Duration::from_millis(250));
        assert_eq!(bucket.available(at), 1);
        let mut stuck = TokenBucket::new(1, 0, t0);
        stuck.take(1, t0);
        assert_eq!(stuck.next_token(t0), None);
        assert_eq!(stuck.available(t0 + Duration::from_secs(3600)), 0);
    }
}
