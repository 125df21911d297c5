//! Index names. An [`IndexPattern`] (`{topic}-%Y.%m.%d`) is validated once,
//! when the config is read; [`IndexNames`] expands it per record from a
//! small cache, allocating only on a miss.

use crate::elastic::body::timestamp::{civil, put_digits};

/// A bad index pattern, or a pattern that gave a bad name for some record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexNameError {
    /// The pattern itself is wrong.
    #[error("index pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    /// The pattern is fine but this topic makes an invalid name.
    #[error("index name {name:?} (pattern {pattern:?}, topic {topic:?}): {reason}")]
    Name { pattern: String, topic: String, name: String, reason: String },
    /// The pattern has a date and the record time is outside years 0000–9999.
    #[error("index pattern {pattern:?}: record timestamp {timestamp_ms} ms is out of range for a date")]
    Timestamp { pattern: String, timestamp_ms: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Topic,
    Year,
    Month,
    Day,
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
const INDEX_FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

impl IndexPattern {
    /// Parses and validates `pattern`; errors name it and the problem.
    pub fn parse(pattern: &str) -> Result<IndexPattern, IndexNameError> {
        let err = |reason: String| IndexNameError::Pattern { pattern: pattern.to_string(), reason };
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
            Some(Part::Lit(l)) if l.starts_with(['-', '_', '+']) => {
                return Err(err("an index name cannot start with '-', '_' or '+'".into()))
            }
            Some(Part::Lit(l)) if parts.len() == 1 && (&**l == "." || &**l == "..") => {
                return Err(err("an index name cannot be '.' or '..'".into()))
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

    /// Whether the name depends on the record time.
    pub fn has_date(&self) -> bool {
        self.bucket_secs != 0
    }

    /// Expands into `out` (cleared first); allocates. [`IndexNames`] caches.
    pub fn expand(&self, topic: &str, timestamp_ms: i64, out: &mut String) -> Result<(), IndexNameError> {
        out.clear();
        let date = if self.has_date() {
            Some(
                civil(timestamp_ms.div_euclid(1000))
                    .ok_or_else(|| IndexNameError::Timestamp { pattern: self.text.to_string(), timestamp_ms })?,
            )
        } else {
            None
        };
        let (y, m, d, h) = date.unwrap_or_default();
        let mut digits = [0u8; 4];
        for part in &self.parts {
            let (n, width) = match part {
                Part::Lit(l) => {
                    out.push_str(l);
                    continue;
                }
                Part::Topic => {
                    // Kafka topics are [a-zA-Z0-9._-]: lowercase makes them legal.
                    out.extend(topic.chars().map(|c| c.to_ascii_lowercase()));
                    continue;
                }
                Part::Year => (y as u32, 4),
                Part::Month => (u32::from(m), 2),
                Part::Day => (u32::from(d), 2),
                Part::Hour => (u32::from(h), 2),
            };
            put_digits(&mut digits[..width], n);
            out.push_str(std::str::from_utf8(&digits[..width]).expect("digits"));
        }
        check_index_name(out).map_err(|reason| IndexNameError::Name {
            pattern: self.text.to_string(),
            topic: topic.to_string(),
            name: out.clone(),
            reason: reason.to_string(),
        })
    }
}

impl IndexPattern {
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
}

impl std::str::FromStr for IndexPattern {
    type Err = IndexNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IndexPattern::parse(s)
    }
}

/// Elasticsearch's rules for an index name.
fn check_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.len() > 255 {
        Err("is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Err("cannot be '.' or '..'")
    } else if name.starts_with(['-', '_', '+']) {
        Err("cannot start with '-', '_' or '+'")
    } else if name.chars().any(|c| c.is_uppercase()) {
        Err("must be lowercase")
    } else if name.chars().any(|c| INDEX_FORBIDDEN.contains(&c) || c.is_control()) {
        Err("has a character Elasticsearch does not allow (\\ / * ? \" < > | space , # :)")
    } else {
        Ok(())
    }
}

/// Cache entries kept by [`IndexNames`]; a transfer sees few topics × days.
const INDEX_CACHE: usize = 64;

#[derive(Debug)]
struct CachedName {
    topic: String,
    /// Unix second ÷ `bucket_secs` (0 for time-free patterns).
    bucket: i64,
    name: String,
}

/// Index names for records: [`IndexPattern`] expansion behind a small
/// cache keyed by (topic, hour or day), so a hit allocates nothing.
#[derive(Debug)]
pub struct IndexNames {
    pattern: IndexPattern,
    /// At most `INDEX_CACHE` entries.
    cache: Vec<CachedName>,
    /// Index of the last hit (checked first); may be stale.
    last: usize,
    /// Next entry to overwrite once the cache is full.
    evict: usize,
}

impl IndexNames {
    /// A cache for `pattern`.
    pub fn new(pattern: IndexPattern) -> Self {
        IndexNames { pattern, cache: Vec::new(), last: 0, evict: 0 }
    }

    /// The pattern names are made from.
    pub fn pattern(&self) -> &IndexPattern {
        &self.pattern
    }

    /// The index for a record of `topic` at `timestamp_ms` (UTC). Records
    /// without a timestamp: pass the time they were received.
    pub fn name(&mut self, topic: &str, timestamp_ms: i64) -> Result<&str, IndexNameError> {
        let bucket = match self.pattern.bucket_secs {
            0 => 0,
            b => timestamp_ms.div_euclid(1000).div_euclid(b),
        };
        let hit = |e: &CachedName| e.bucket == bucket && e.topic == topic;
        let pos =
            if self.cache.get(self.last).is_some_and(hit) { Some(self.last) } else { self.cache.iter().position(hit) };
        let pos = match pos {
            Some(pos) => pos,
            None => {
                let mut name = String::new();
                self.pattern.expand(topic, timestamp_ms, &mut name)?;
                let entry = CachedName { topic: topic.to_string(), bucket, name };
                if self.cache.len() < INDEX_CACHE {
                    self.cache.push(entry);
                    self.cache.len() - 1
                } else {
                    let pos = self.evict;
                    self.evict = (self.evict + 1) % INDEX_CACHE;
                    self.cache[pos] = entry;
                    pos
                }
            }
        };
        self.last = pos;
        Ok(&self.cache[pos].name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_patterns() {
        // (pattern, topic, ms, name or error fragment)
        let table: &[(&str, &str, i64, Result<&str, &str>)] = &[
            ("{topic}", "app", 0, Ok("app")),
            ("{topic}", "App.Logs_1", 0, Ok("app.logs_1")),
            ("{topic}-%Y.%m.%d", "app", 1_795_603_474_123, Ok("app-2026.11.25")),
            ("logs-{topic}-%Y%m%d%H", "nginx", 1_795_603_474_123, Ok("logs-nginx-2026112510")),
            ("{topic}-%Y.%m.%d", "app", -1, Ok("app-1969.12.31")),
            ("100%%-{topic}", "x", 0, Ok("100%-x")),
            ("fixed", "ignored", i64::MAX, Ok("fixed")),
            ("{topic}", "_private", 0, Err("cannot start with")),
            ("{topic}-%Y", "app", i64::MAX, Err("out of range")),
            ("Logs-{topic}", "app", 0, Err("lowercase")),
            ("logs {topic}", "app", 0, Err("not allowed")),
            ("logs/{topic}", "app", 0, Err("not allowed")),
            ("logs:{topic}", "app", 0, Err("not allowed")),
            ("logs#{topic}", "app", 0, Err("not allowed")),
            ("{topik}", "app", 0, Err("placeholder")),
            ("{topic", "app", 0, Err("placeholder")),
            ("topic}", "app", 0, Err("unmatched")),
            ("{topic}-%y", "app", 0, Err("unknown %y")),
            ("{topic}-%", "app", 0, Err("unknown %")),
            ("", "app", 0, Err("empty")),
            ("-logs", "app", 0, Err("cannot start")),
            ("_logs", "app", 0, Err("cannot start")),
            ("..", "app", 0, Err("'.' or '..'")),
        ];
        for &(pattern, topic, ms, want) in table {
            let got = IndexPattern::parse(pattern).and_then(|p| IndexNames::new(p).name(topic, ms).map(str::to_string));
            match (got, want) {
                (Ok(name), Ok(w)) => assert_eq!(name, w, "{pattern}"),
                (Err(e), Err(w)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(w), "{pattern}: {msg:?} lacks {w:?}");
                    assert!(msg.contains(pattern) || pattern.is_empty(), "{msg:?} names the pattern");
                }
                (got, want) => panic!("{pattern}: got {got:?}, want {want:?}"),
            }
        }
        let long = "a".repeat(250);
        let e = IndexPattern::parse(&format!("{long}-{{topic}}")).unwrap();
        assert!(matches!(IndexNames::new(e).name("abcdef", 0), Err(IndexNameError::Name { .. })));
    }

    #[test]
    fn template_patterns_cover_every_name() {
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

    #[test]
    fn index_cache_hits_and_rolls_over() {
        let mut names = IndexNames::new("{topic}-%Y.%m.%d".parse().unwrap());
        let day = 86_400_000;
        let t0 = 1_795_564_800_000; // 2026-11-25T00:00:00Z
        assert_eq!(names.name("a", t0).unwrap(), "a-2026.11.25");
        assert_eq!(names.name("a", t0 + day - 1).unwrap(), "a-2026.11.25");
        assert_eq!(names.name("b", t0).unwrap(), "b-2026.11.25");
        assert_eq!(names.name("a", t0 + day).unwrap(), "a-2026.11.26");
        assert_eq!(names.name("a", t0 + 5).unwrap(), "a-2026.11.25");
        assert_eq!(names.cache.len(), 3);
        // Many topics: the cache stays bounded and answers stay right.
        for i in 0..200 {
            let t = format!("t{i}");
            assert_eq!(names.name(&t, t0).unwrap(), format!("t{i}-2026.11.25"));
        }
        assert_eq!(names.cache.len(), INDEX_CACHE);
        assert_eq!(names.name("a", t0).unwrap(), "a-2026.11.25");
    }
}
