//! Index names: the `[es] index` pattern (validated with the config,
//! [`IndexPattern`]) expanded per record; [`IndexNames`] keeps a small cache,
//! allocating only on a miss.

use crate::config::index_pattern::{IndexPattern, Part, INDEX_FORBIDDEN};
use crate::elastic::body::timestamp::{civil, put_digits};

/// A pattern that gave a bad name for some record (a bad pattern is refused
/// when the config is read: [`crate::config::PatternError`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexNameError {
    /// The pattern is fine but this topic makes an invalid name.
    #[error("index name {name:?} (pattern {pattern:?}, topic {topic:?}): {reason}")]
    Name {
        /// The pattern as written.
        pattern: String,
        /// The record's topic.
        topic: String,
        /// The name it made.
        name: String,
        /// Which of Elasticsearch's rules it breaks.
        reason: String,
    },
    /// The pattern has a date and the record time is outside years 0000–9999.
    #[error("index pattern {pattern:?}: record timestamp {timestamp_ms} ms is out of range for a date")]
    Timestamp {
        /// The pattern as written.
        pattern: String,
        /// The record's timestamp.
        timestamp_ms: i64,
    },
}

/// Expands `pattern` into `out` (cleared first); allocates. [`IndexNames`] caches.
fn expand(pattern: &IndexPattern, topic: &str, timestamp_ms: i64, out: &mut String) -> Result<(), IndexNameError> {
    out.clear();
    let date = if pattern.has_date() {
        Some(
            civil(timestamp_ms.div_euclid(1000))
                .ok_or_else(|| IndexNameError::Timestamp { pattern: pattern.as_str().to_string(), timestamp_ms })?,
        )
    } else {
        None
    };
    let (y, m, d, h) = date.unwrap_or_default();
    let mut digits = [0u8; 4];
    for part in pattern.parts() {
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
        pattern: pattern.as_str().to_string(),
        topic: topic.to_string(),
        name: out.clone(),
        reason: reason.to_string(),
    })
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
    } else if name.starts_with('.') {
        // Legal for Elasticsearch, but the names of hidden and system
        // indices: a topic `.security` must not reach one.
        Err("cannot start with '.' (hidden and system indices)")
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
        let bucket = match self.pattern.bucket_secs() {
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
                expand(&self.pattern, topic, timestamp_ms, &mut name)?;
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
            ("{topic}", ".security", 0, Err("hidden and system")),
            ("{topic}-%Y", "app", i64::MAX, Err("out of range")),
        ];
        for &(pattern, topic, ms, want) in table {
            // Bad patterns are the config's tests (crate::config::index_pattern).
            let got = IndexNames::new(IndexPattern::parse(pattern).unwrap()).name(topic, ms).map(str::to_string);
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
