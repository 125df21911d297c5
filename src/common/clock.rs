//! Wall-clock time as the pipeline records it: ms since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How far before now a record's own timestamp may place it.
pub const RECORD_MAX_PAST_MS: i64 = 30 * 86_400_000;
/// How far after now a record's own timestamp may place it.
pub const RECORD_MAX_FUTURE_MS: i64 = 86_400_000;

/// A timestamp a producer chose (a Kafka record's), brought within
/// [`RECORD_MAX_PAST_MS`] before and [`RECORD_MAX_FUTURE_MS`] after `now`:
/// what picks a record's daily index and its place in the embedded index,
/// so a producer spreading timestamps over years makes at most ~32 daily
/// indices, and a far-future one neither stays "newest" nor escapes
/// retention. Returns the timestamp and whether it was moved.
pub fn clamp_record_ms(ts: i64, now: i64) -> (i64, bool) {
    let lo = now.saturating_sub(RECORD_MAX_PAST_MS);
    let hi = now.saturating_add(RECORD_MAX_FUTURE_MS);
    let c = ts.clamp(lo, hi);
    (c, c != ts)
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-25T10:44:34.123Z`); empty outside years 0000–9999.
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_timestamps_are_kept_near_now() {
        let now = 1_764_000_000_000;
        assert_eq!(clamp_record_ms(now - 5_000, now), (now - 5_000, false));
        assert_eq!(clamp_record_ms(i64::MIN, now), (now - RECORD_MAX_PAST_MS, true));
        assert_eq!(clamp_record_ms(i64::MAX, now), (now + RECORD_MAX_FUTURE_MS, true));
        assert_eq!(clamp_record_ms(0, i64::MAX).0, i64::MAX - RECORD_MAX_PAST_MS);
    }

    #[test]
    fn rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_600_800_500), "2026-11-25T10:00:00.500Z");
        assert_eq!(rfc3339_ms(i64::MAX), "");
        assert!(now_ms() > 1_700_000_000_000);
    }
}
