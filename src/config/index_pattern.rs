//! `[es] index`: the index name pattern (`{topic}-%Y.%m.%d`), validated once
//! when the config is read. Expanding it per record (dates, the cache) is
//! the Elasticsearch side's job ([`crate::elastic::index_name::IndexNames`]); this
//! module owns the pattern's grammar and what follows from the pattern alone
//! ([`IndexPattern::wildcard`], for templates and searches).

/// A bad index pattern: which, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("index pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One piece of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Literal text: lowercase, legal in an index name, never empty.
    Lit(Box<str>),
    /// The Kafka topic, lowercased.
    Topic,
    /// `%Y`: 4 digits.
    Year,
    /// `%m`: 2 digits.
    Month,
    /// `%d`: 2 digits.
    Day,
    /// `%H`: 2 digits.
    Hour,
}

/// A validated index name pattern: literal text (lowercase, legal in an
/// index name), `{topic}` (the Kafka topic, lowercased), and the UTC date of
/// the record: `%Y` (4 digits), `%m`, `%d`, `%H` (2 digits), `%%` for `%`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPattern {
    text: Box<str>,
    /// Never empty.
    parts: Vec<Part>,
    /// Seconds during which the date part cannot change: 3600 with `%H`,
    /// 86400 with only a date, 0 without any (the name ignores time).
    bucket_secs: i64,
}

/// Characters Elasticsearch refuses in index names (besides uppercase).
pub const INDEX_FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

impl IndexPattern {
    /// Parses and validates `pattern`; errors name it and the problem.
    pub fn parse(pattern: &str) -> Result<IndexPattern, PatternError> {
        let err = |reason: String| PatternError { pattern: pattern.to_string(), reason };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = pattern.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let part = match c {
                '{' => {
                    if !pattern[at..].starts_with("{topic}") {
                        return Err(err(format!("unknown placeholder at byte {at}; the only one is {{topic}}")));
                    }
                    for _ in 0.."topic}".len() {
                        chars.next();
                    }
                    Part::Topic
                }
                '}' => return Err(err(format!("unmatched '}}' at byte {at}"))),
                '%' => match chars.next().map(|(_, c)| c) {
                    Some('Y') => Part::Year,
                    Some('m') => Part::Month,
                    Some('d') => Part::Day,
                    Some('H') => Part::Hour,
                    Some('%') => {
                        lit.push('%');
                        continue;
                    }
                    other => {
                        return Err(err(format!(
                            "unknown %{} at byte {at}; use %Y, %m, %d, %H or %%",
                            other.map(String::from).unwrap_or_default()
                        )))
                    }
                },
                c if c.is_uppercase() => return Err(err(format!("index names are lowercase; {c:?} is not"))),
                c if INDEX_FORBIDDEN.contains(&c) || c.is_control() => {
                    return Err(err(format!("{c:?} is not allowed in an index name")))
                }
                c => {
                    lit.push(c);
                    continue;
                }
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit).into()));
            }
            parts.push(part);
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into()));
        }
        match parts.first() {
            None => return Err(err("is empty".into())),
            Some(Part::Lit(l)) if l.starts_with(['-', '_', '+', '.']) => {
                return Err(err(
                    "an index name cannot start with '-', '_', '+' or '.' (hidden and system indices)".into()
                ))
            }
            _ => {}
        }
        let bucket_secs = if parts.contains(&Part::Hour) {
            3600
        } else if parts.iter().any(|p| matches!(p, Part::Year | Part::Month | Part::Day)) {
            86400
        } else {
            0
        };
        Ok(IndexPattern { text: pattern.into(), parts, bucket_secs })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pieces, in order; never empty.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Seconds during which names cannot change: 3600 with `%H`, 86400
    /// with only a date, 0 without any.
    pub fn bucket_secs(&self) -> i64 {
        self.bucket_secs
    }

    /// Whether the name depends on the record time.
    pub fn has_date(&self) -> bool {
        self.bucket_secs != 0
    }

    /// The index names this pattern gives `topic`, as an index pattern for
    /// a template: the date parts become `*` (`{topic}-%Y.%m.%d` ->
    /// `app-*`).
    pub fn wildcard(&self, topic: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Topic => out.extend(topic.chars().map(|c| c.to_ascii_lowercase())),
                Part::Year | Part::Month | Part::Day | Part::Hour => {
                    if !out.ends_with('*') {
                        out.push('*');
                    }
                }
            }
        }
        out
    }

    /// The time range (UTC seconds, start inclusive, end exclusive) whose
    /// records of `topic` the pattern names `name`, for retention: `None`
    /// when `name` is not one of the names this pattern gives `topic`, or
    /// the pattern has no `%Y`.
    pub fn bucket_of(&self, name: &str, topic: &str) -> Option<(i64, i64)> {
        let mut date = [None; 4]; // year, month, day, hour
        if !matches(&self.parts, name, &topic.to_ascii_lowercase(), &mut date) {
            return None;
        }
        let [year, month, day, hour] = date;
        let month_of = |m: u32| time::Month::try_from(u8::try_from(m).ok()?).ok();
        let start_date = time::Date::from_calendar_date(
            i32::try_from(year?).ok()?,
            month_of(month.unwrap_or(1))?,
            u8::try_from(day.unwrap_or(1)).ok()?,
        )
        .ok()?;
        let start = start_date.with_hms(u8::try_from(hour.unwrap_or(0)).ok()?, 0, 0).ok()?.assume_utc();
        let end = if hour.is_some() {
            start + time::Duration::HOUR
        } else if day.is_some() {
            start + time::Duration::DAY
        } else if month.is_some() {
            let next = start_date.month().next();
            let year = start_date.year() + i32::from(next == time::Month::January);
            time::Date::from_calendar_date(year, next, 1).ok()?.midnight().assume_utc()
        } else {
            time::Date::from_calendar_date(start_date.year() + 1, time::Month::January, 1).ok()?.midnight().assume_utc()
        };
        Some((start.unix_timestamp(), end.unix_timestamp()))
    }
}

/// Whether `name` is what `parts` give `topic` (lowercase) at some time,
/// filling `date` (year, month, day, hour) from its digits.
fn matches(parts: &[Part], name: &str, topic: &str, date: &mut [Option<u32>; 4]) -> bool {
    let Some((part, rest)) = parts.split_first() else {
        return name.is_empty();
    };
    let (slot, width) = match part {
        Part::Lit(l) => return name.strip_prefix(&**l).is_some_and(|n| matches(rest, n, topic, date)),
        Part::Topic => return name.strip_prefix(topic).is_some_and(|n| matches(rest, n, topic, date)),
        Part::Year => (0, 4),
        Part::Month => (1, 2),
        Part::Day => (2, 2),
        Part::Hour => (3, 2),
    };
    let Some(digits) = name.get(..width).filter(|d| d.bytes().all(|c| c.is_ascii_digit())) else {
        return false;
    };
    let value: u32 = digits.parse().unwrap_or(u32::MAX);
    if date[slot].is_some_and(|v| v != value) {
        return false; // the same part twice, with two values
    }
    date[slot] = Some(value);
    matches(rest, &name[width..], topic, date)
}

impl std::str::FromStr for IndexPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IndexPattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_are_refused_naming_them() {
        // (pattern, error fragment)
        let table: &[(&str, &str)] = &[
            ("Logs-{topic}", "lowercase"),
            ("logs {topic}", "not allowed"),
            ("logs/{topic}", "not allowed"),
            ("logs:{topic}", "not allowed"),
            ("logs#{topic}", "not allowed"),
            ("{topik}", "placeholder"),
            ("{topic", "placeholder"),
            ("topic}", "unmatched"),
            ("{topic}-%y", "unknown %y"),
            ("{topic}-%", "unknown %"),
            ("", "empty"),
            ("-logs", "cannot start"),
            ("_logs", "cannot start"),
            ("..", "cannot start"),
            (".logs-{topic}", "cannot start"),
        ];
        for &(pattern, want) in table {
            let msg = IndexPattern::parse(pattern).unwrap_err().to_string();
            assert!(msg.contains(want), "{pattern}: {msg:?} lacks {want:?}");
            assert!(msg.contains(pattern) || pattern.is_empty(), "{msg:?} names the pattern");
        }
        // (pattern, bucket seconds)
        for (pattern, secs) in [("{topic}", 0), ("100%%-{topic}", 0), ("{topic}-%Y.%m.%d", 86400), ("x-%Y%m%d%H", 3600)]
        {
            assert_eq!(IndexPattern::parse(pattern).unwrap().bucket_secs(), secs, "{pattern}");
        }
    }

    #[test]
    fn names_give_back_the_time_range_they_hold() {
        let day = |y: i32, m: u8, d: u8| {
            time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d)
                .unwrap()
                .midnight()
                .assume_utc()
                .unix_timestamp()
        };
        // (pattern, name, range) for topic `App`
        let table = [
            ("{topic}-%Y.%m.%d", "app-2026.03.01", Some((day(2026, 3, 1), day(2026, 3, 2)))),
            ("{topic}-%Y.%m.%d", "app-2026.12.31", Some((day(2026, 12, 31), day(2027, 1, 1)))),
            ("{topic}-%Y.%m", "app-2026.12", Some((day(2026, 12, 1), day(2027, 1, 1)))),
            ("{topic}-%Y.%m", "app-2026.02", Some((day(2026, 2, 1), day(2026, 3, 1)))),
            ("logs-%Y", "logs-2025", Some((day(2025, 1, 1), day(2026, 1, 1)))),
            ("x-%Y%m%d%H", "x-2026030105", Some((day(2026, 3, 1) + 5 * 3600, day(2026, 3, 1) + 6 * 3600))),
            ("{topic}-%d.%m.%Y", "app-01.03.2026", Some((day(2026, 3, 1), day(2026, 3, 2)))),
            // Not the names this pattern gives the topic, or no date in them.
            ("{topic}-%Y.%m.%d", "web-2026.03.01", None),
            ("{topic}-%Y.%m.%d", "app-x-2026.03.01", None),
            ("{topic}-%Y.%m.%d", "app-2026.13.01", None),
            ("{topic}-%Y.%m.%d", "app-2026.02.30", None),
            ("{topic}-%Y.%m.%d", "app-2026.03.01-old", None),
            ("{topic}-%Y.%m.%d", "app-26.03.01", None),
            ("{topic}-%m.%d", "app-03.01", None),
            ("{topic}", "app", None),
            ("%Y-%Y", "2026-2027", None),
        ];
        for (pattern, name, want) in table {
            assert_eq!(IndexPattern::parse(pattern).unwrap().bucket_of(name, "App"), want, "{pattern} {name}");
        }
    }

    #[test]
    fn wildcards_cover_every_name() {
        // (pattern, topic, wildcard)
        let table = [
            ("{topic}", "App", "app"),
            ("{topic}-%Y.%m.%d", "app", "app-*.*.*"),
            ("logs-{topic}-%Y%m%d%H", "nginx", "logs-nginx-*"),
            ("fixed", "x", "fixed"),
        ];
        for (pattern, topic, want) in table {
            assert_eq!(IndexPattern::parse(pattern).unwrap().wildcard(topic), want, "{pattern}");
        }
    }
}
