//! The WebTransport error-code mapping: application codes (u32) ↔ the HTTP/3 error space.
//!
//! WebTransport over HTTP/3 carries an application's stream error code `n` in RESET_STREAM
//! and STOP_SENDING as `first + n + n / 0x1e`, where `first = 0x52e4a40fa8db`; the values
//! `0x21 + k·0x1f` inside the range are reserved HTTP/3 codes and never the image of an
//! application code. wtransport passes codes through unmapped, so this adapter maps every
//! code it sends and unmaps every code it receives: the spec's codes (§7) arrive unchanged at
//! both ends, whether the peer is a browser or another wtransport endpoint.

use moq_tokio::code::ErrorCode;

/// The first HTTP/3 error code of the WebTransport application range (code 0).
pub const FIRST: u64 = 0x52e4a40fa8db;
/// The last HTTP/3 error code of the range (application code `u32::MAX`).
pub const LAST: u64 = 0x52e5ac983162;
/// HTTP/3 `H3_NO_ERROR`, which a browser or wtransport uses to close a connection cleanly.
pub const H3_NO_ERROR: u64 = 0x100;

/// Maps an application code into the HTTP/3 error space. Codes above `u32::MAX` (none is
/// defined) saturate to `u32::MAX`.
pub fn to_http3(code: ErrorCode) -> u64 {
    let n = code.0.min(u64::from(u32::MAX));
    FIRST + n + n / 0x1e
}

/// Maps an HTTP/3 error code back to the application code, or `None` when it is outside the
/// WebTransport range or one of its reserved values.
pub fn from_http3(h3: u64) -> Option<ErrorCode> {
    if !(FIRST..=LAST).contains(&h3) || (h3 - 0x21).is_multiple_of(0x1f) {
        return None;
    }
    let shifted = h3 - FIRST;
    Some(ErrorCode(shifted - shifted / 0x1f))
}

/// The application code for a code received on a stream: unmapped when it is in the
/// WebTransport range, otherwise passed through as it came (a peer that does not map, or an
/// HTTP/3 code from the WebTransport layer itself).
pub fn received(h3: u64) -> ErrorCode {
    from_http3(h3).unwrap_or(ErrorCode(h3))
}

/// The session code for a QUIC CONNECTION_CLOSE code: unmapped when it is in the
/// WebTransport range, 0 for `H3_NO_ERROR`, otherwise passed through.
pub fn received_close(h3: u64) -> ErrorCode {
    match h3 {
        H3_NO_ERROR => ErrorCode(0),
        other => received(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // From the WebTransport over HTTP/3 draft's examples and gomoqt's reset of 0x1 that
        // moq-net sends (README: 0x52e4a40fa8dc).
        assert_eq!(to_http3(ErrorCode(0)), 0x52e4a40fa8db);
        assert_eq!(to_http3(ErrorCode(1)), 0x52e4a40fa8dc);
        assert_eq!(to_http3(ErrorCode(0x1d)), 0x52e4a40fa8db + 0x1d);
        // 0x1e skips the reserved value first + 0x1e.
        assert_eq!(to_http3(ErrorCode(0x1e)), 0x52e4a40fa8db + 0x1f);
        assert_eq!(to_http3(ErrorCode(u64::from(u32::MAX))), LAST);
        assert_eq!(to_http3(ErrorCode(u64::MAX)), LAST);
        assert_eq!(from_http3(0x52e4a40fa8dc), Some(ErrorCode(1)));
        assert_eq!(from_http3(LAST), Some(ErrorCode(u64::from(u32::MAX))));
    }

    #[test]
    fn reserved_and_outside_values_are_not_codes() {
        assert_eq!(from_http3(FIRST - 1), None);
        assert_eq!(from_http3(LAST + 1), None);
        assert_eq!(from_http3(0x100), None);
        // first + 0x1e is 0x21 + k·0x1f: reserved.
        assert!((FIRST + 0x1e - 0x21).is_multiple_of(0x1f));
        assert_eq!(from_http3(FIRST + 0x1e), None);
        assert_eq!(received(0x10c), ErrorCode(0x10c));
        assert_eq!(received(to_http3(ErrorCode(7))), ErrorCode(7));
        assert_eq!(received_close(H3_NO_ERROR), ErrorCode(0));
        assert_eq!(received_close(to_http3(ErrorCode(0x10))), ErrorCode(0x10));
        assert_eq!(received_close(0x2), ErrorCode(0x2));
    }

    #[test]
    fn round_trip_and_reserved_skipped() {
        // Every small code, the region around each reserved value, and the top of the range.
        let codes = (0..10_000u64)
            .chain((0..1000).map(|k| k * 0x1e * 1000 + 0x1d))
            .chain(u64::from(u32::MAX) - 1000..=u64::from(u32::MAX));
        let mut previous = None;
        for n in codes {
            let h3 = to_http3(ErrorCode(n));
            assert!((FIRST..=LAST).contains(&h3));
            assert!(
                !(h3 - 0x21).is_multiple_of(0x1f),
                "{n} maps onto a reserved value"
            );
            assert_eq!(from_http3(h3), Some(ErrorCode(n)), "{n}");
            if let Some((pn, ph)) = previous
                && pn + 1 == n
            {
                assert!(h3 == ph + 1 || h3 == ph + 2, "monotone, at most one skip");
            }
            previous = Some((n, h3));
        }
        // Every value of a stretch of the H3 space is either reserved or a code's image.
        for h3 in FIRST..FIRST + 2000 {
            match from_http3(h3) {
                Some(code) => assert_eq!(to_http3(code), h3),
                None => assert!((h3 - 0x21).is_multiple_of(0x1f)),
            }
        }
    }
}
