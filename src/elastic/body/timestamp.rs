//! Record times as text: the RFC 3339 `@timestamp` of a document (the
//! formatted second cached from record to record), and the UTC calendar
//! fields index names are made of.

use time::OffsetDateTime;

/// The `"YYYY-MM-DDTHH:MM:SS"` of the last second formatted: consecutive
/// records nearly always share it.
#[derive(Clone, Debug, Default)]
pub(super) struct Clock {
    /// Unix second `prefix` renders; `None` before the first record.
    second: Option<i64>,
    prefix: [u8; 19],
}

impl Clock {
    /// Appends `"@timestamp":"…Z"`, or nothing (returning false) when `ms`
    /// is outside years 0000–9999, which RFC 3339 cannot write.
    pub(super) fn write(&mut self, out: &mut Vec<u8>, ms: i64) -> bool {
        let second = ms.div_euclid(1000);
        let milli = ms.rem_euclid(1000) as u16;
        if self.second != Some(second) {
            let Some(prefix) = format_second(second) else {
                return false;
            };
            self.prefix = prefix;
            self.second = Some(second);
        }
        out.extend_from_slice(br#""@timestamp":""#);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&[
            b'.',
            b'0' + (milli / 100) as u8,
            b'0' + (milli / 10 % 10) as u8,
            b'0' + (milli % 10) as u8,
            b'Z',
            b'"',
        ]);
        true
    }
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, for years 0000–9999.
fn format_second(second: i64) -> Option<[u8; 19]> {
    let t = OffsetDateTime::from_unix_timestamp(second).ok()?;
    let (year, month, day, hour) = (t.year(), u8::from(t.month()), t.day(), t.hour());
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut p = *b"0000-00-00T00:00:00";
    put_digits(&mut p[0..4], year as u32);
    put_digits(&mut p[5..7], u32::from(month));
    put_digits(&mut p[8..10], u32::from(day));
    put_digits(&mut p[11..13], u32::from(hour));
    put_digits(&mut p[14..16], u32::from(t.minute()));
    put_digits(&mut p[17..19], u32::from(t.second()));
    Some(p)
}

/// Year (0–9999), month, day, hour in UTC of a Unix second.
pub(crate) fn civil(second: i64) -> Option<(i32, u8, u8, u8)> {
    let t = OffsetDateTime::from_unix_timestamp(second).ok()?;
    let year = t.year();
    (0..=9999).contains(&year).then(|| (year, u8::from(t.month()), t.day(), t.hour()))
}

/// Writes `n` zero-padded into all of `out`.
pub(crate) fn put_digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use crate::elastic::body::testutil::parse_body;
    use crate::elastic::body::{BulkBody, MessageMode};
    use crate::record::testutil::rec;
    use crate::record::Record;
    use serde_json::Value;

    #[test]
    fn timestamps() {
        // (ms, @timestamp; None = left out)
        let table: &[(Option<i64>, Option<&str>)] = &[
            (None, None),
            (Some(0), Some("1970-01-01T00:00:00.000Z")),
            (Some(1), Some("1970-01-01T00:00:00.001Z")),
            (Some(-1), Some("1969-12-31T23:59:59.999Z")),
            (Some(1_795_603_474_123), Some("2026-11-25T10:44:34.123Z")),
            (Some(1_795_603_474_999), Some("2026-11-25T10:44:34.999Z")),
            (Some(1_795_603_475_000), Some("2026-11-25T10:44:35.000Z")),
            (Some(951_782_400_000), Some("2000-02-29T00:00:00.000Z")),
            (Some(253_402_300_799_999), Some("9999-12-31T23:59:59.999Z")),
            (Some(253_402_300_800_000), None),
            (Some(-62_167_219_200_000), Some("0000-01-01T00:00:00.000Z")),
            (Some(-62_167_219_200_001), None),
            (Some(i64::MAX), None),
            (Some(i64::MIN), None),
        ];
        // One builder for all: the per-second cache must follow jumps.
        let mut b = BulkBody::new(1 << 20);
        for &(ms, _) in table.iter().chain(table.iter().rev()) {
            let _ = b.push(&Record { timestamp_ms: ms, ..rec(b"t") }, "i", MessageMode::Plain);
        }
        let docs = parse_body(b.as_bytes());
        let wants = table.iter().chain(table.iter().rev()).map(|t| t.1);
        for ((_, doc), want) in docs.iter().zip(wants) {
            assert_eq!(doc.get("@timestamp").and_then(Value::as_str), want);
        }
    }
}
