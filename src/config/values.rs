//! How single values are written in config.ini and the collect list: sizes
//! (`10GiB`), lists (`a; b`), Kafka topic names, and the enums spelled as
//! words (`read_from = end`), each word written once ([`Words`]).

use std::fmt;
use std::str::FromStr;

/// Where a reader starts in a file that has no checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadFrom {
    /// From the first byte.
    Beginning,
    /// From the end: only lines written from now on.
    End,
}

/// What to do with a line longer than `max_line_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LongLines {
    /// Ship it as several records of at most `max_line_bytes`, numbered from 1.
    Split,
    /// Ship its first `max_line_bytes` and skip the rest of the line.
    Truncate,
}

/// An enum spelled as one of a few words. `WORDS` is the only place a value
/// and its word meet: parsing ([`FromStr`]), printing ([`fmt::Display`]) and
/// the choices error messages list all read it.
pub trait Words: Copy + PartialEq + 'static {
    /// Every value with its word, in the order messages list them.
    const WORDS: &'static [(Self, &'static str)];

    /// The word config files use for it.
    fn word(self) -> &'static str {
        Self::WORDS.iter().find(|(v, _)| *v == self).map(|&(_, w)| w).expect("WORDS holds every value")
    }

    /// The words, in `WORDS` order.
    fn words() -> impl Iterator<Item = &'static str> {
        Self::WORDS.iter().map(|&(_, w)| w)
    }
}

impl Words for ReadFrom {
    const WORDS: &'static [(Self, &'static str)] = &[(ReadFrom::End, "end"), (ReadFrom::Beginning, "beginning")];
}

impl Words for LongLines {
    const WORDS: &'static [(Self, &'static str)] = &[(LongLines::Split, "split"), (LongLines::Truncate, "truncate")];
}

/// A word that is none of an enum's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotOneOf {
    /// What was written.
    pub value: String,
    /// The enum's words.
    pub words: Vec<&'static str>,
}

impl fmt::Display for NotOneOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not one of: {}", self.value, self.words.join(", "))
    }
}

impl std::error::Error for NotOneOf {}

pub(super) fn from_word<T: Words>(s: &str) -> Result<T, NotOneOf> {
    T::WORDS
        .iter()
        .find(|&&(_, w)| w == s)
        .map(|&(v, _)| v)
        .ok_or_else(|| NotOneOf { value: s.to_string(), words: T::words().collect() })
}

impl FromStr for ReadFrom {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        from_word(s)
    }
}

impl fmt::Display for ReadFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl FromStr for LongLines {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        from_word(s)
    }
}

impl fmt::Display for LongLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// `10GiB` -> 10737418240: a whole number, optionally with a unit (`KB`,
/// `MB`, `GB`, `TB` are powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` of 1024).
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let t = v.trim().replace('_', "");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 =
        n.parse().map_err(|_| format!("{v:?} is not a size (a whole number, optionally with KB, MiB, GiB, …)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => return Err(format!("{v:?}: unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{v:?} is too large"))
}

/// `a;b; c` -> [a, b, c] (the seed's separator; commas are accepted too).
pub fn split_list(v: &str) -> Vec<String> {
    v.split([';', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Kafka's rule for topic names.
pub fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 249 {
        return Err(format!("topic {t:?} must be 1 to 249 characters"));
    }
    if t == "." || t == ".." {
        return Err(format!("topic {t:?} is not allowed"));
    }
    if let Some(c) = t.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic {t:?} has {c:?}; topics use only a-z A-Z 0-9 . _ -"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_and_print_both_ways() {
        for &(v, w) in ReadFrom::WORDS {
            assert_eq!((w.parse(), v.to_string()), (Ok(v), w.to_string()));
        }
        for &(v, w) in LongLines::WORDS {
            assert_eq!((w.parse(), v.to_string()), (Ok(v), w.to_string()));
        }
        // Words are exact: no trimming or case folding here (config.ini trims).
        for bad in ["middle", "", "End", " end"] {
            assert!(bad.parse::<ReadFrom>().is_err(), "{bad:?}");
        }
        let e = "fold".parse::<LongLines>().unwrap_err();
        assert_eq!(e.to_string(), "\"fold\" is not one of: split, truncate");
        assert_eq!("x".parse::<ReadFrom>().unwrap_err().to_string(), "\"x\" is not one of: end, beginning");
    }

    #[test]
    fn sizes() {
        for (v, n) in
            [("0", 0), ("512", 512), ("1_000", 1000), ("2KB", 2000), ("3 MiB", 3 << 20), ("1TB", 1_000_000_000_000)]
        {
            assert_eq!(parse_bytes(v), Ok(n), "{v}");
        }
        for bad in ["", "MiB", "1.5GiB", "99999999999999999999", "20000000TiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_names() {
        for ok in ["web_log", "a.b-c", "X1"] {
            assert!(check_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "é", &"x".repeat(250)] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
    }
}
