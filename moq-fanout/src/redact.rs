//! What the relay may write to its log about what peers and operators gave it: URLs without
//! their credentials, peer-chosen strings clipped, and refusals at a bounded rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `url` without what may carry a credential: its user name and password, query and
/// fragment (`https://relay.example/moq?jwt=…` → `https://relay.example/moq`). A string
/// that is not a URL is withheld whole.
pub(crate) fn url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// The longest peer-chosen string (a path, a track name) a log line carries.
const CLIP: usize = 96;

/// `text` cut to [`CLIP`] bytes (on a character boundary), marked when cut: a peer's 4 KiB
/// path costs the log no more than a short one.
pub(crate) fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= CLIP {
        return text.into();
    }
    let mut end = CLIP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len()).into()
}

/// Refusals logged per second at most, relay-wide; the rest are counted and summed up in
/// the next line that is logged.
const REFUSALS_PER_SECOND: u64 = 10;

/// Refusals are logged at a bounded rate, relay-wide: a peer that asks for what it may
/// not have, or a flood of connections past a limit, cannot flood the log.
pub(crate) static REFUSALS: RefusalLog = RefusalLog::new();

/// Logs a refusal at `level`, with the count of those suppressed before it, if the
/// relay-wide budget ([`REFUSALS`]) allows a line now.
macro_rules! log_refusal {
    ($level:expr, $($field:tt)+) => {
        if let Some(suppressed) = $crate::redact::REFUSALS.admit() {
            tracing::event!($level, suppressed, $($field)+);
        }
    };
}
pub(crate) use log_refusal;

/// A relay-wide budget of refusal log lines (see [`REFUSALS_PER_SECOND`]).
#[derive(Debug)]
pub(crate) struct RefusalLog {
    /// The second the budget counts (Unix time) in the high 32 bits, lines logged in it in
    /// the low 32.
    window: AtomicU64,
    /// Refusals not logged since the last line that was.
    suppressed: AtomicU64,
}

impl RefusalLog {
    /// A budget with nothing logged yet.
    pub(crate) const fn new() -> Self {
        Self {
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether this refusal may be logged; if so, how many were suppressed before it.
    pub(crate) fn admit(&self) -> Option<u64> {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            & 0xffff_ffff;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (at, count) = (current >> 32, current & 0xffff_ffff);
            let next = if at == second {
                if count >= REFUSALS_PER_SECOND {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                current + 1
            } else {
                (second << 32) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            url("https://user:secret@relay.example:4443/moq?jwt=abc.def&x=1#frag"),
            "https://relay.example:4443/moq"
        );
        assert_eq!(
            url("moqt://up.example:4443?token=t"),
            "moqt://up.example:4443"
        );
        assert_eq!(url("not a url ?token=t"), "(not a URL)");
    }

    #[test]
    fn long_strings_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("/short"), "/short");
        let long = "é".repeat(3000);
        let clipped = clip(&long);
        assert!(clipped.len() < 120, "{clipped}");
        assert!(clipped.ends_with("(6000 bytes)"));
    }

    #[test]
    fn refusals_are_logged_at_a_bounded_rate() {
        let log = RefusalLog::new();
        let admitted = (0..1000).filter(|_| log.admit().is_some()).count() as u64;
        // One second boundary may fall inside the loop: two windows at most.
        assert!(
            (REFUSALS_PER_SECOND..=2 * REFUSALS_PER_SECOND).contains(&admitted),
            "{admitted}"
        );
    }
}
