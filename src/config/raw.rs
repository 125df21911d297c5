//! The raw layer: config.ini as sections of string keys, typed access to
//! them with errors naming `section.key`, and the check that every section
//! and key written is one the config reads.
//!
//! Key names are written once, where a section function asks for them
//! ([`keys!`], [`Sections::keys`]): what was asked for is what is known, so
//! the unknown-key message lists exactly the keys that are read.

use super::{err, parse_bytes, split_list, ConfigError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Section -> key -> value, as written.
pub(super) type Raw = BTreeMap<String, BTreeMap<String, String>>;

/// INI text to raw sections. Values may carry `;` or `#` comments after
/// white space; keys outside any section are an error.
pub(super) fn parse_raw(text: &str) -> Result<Raw, ConfigError> {
    let opts = ini::ParseOption { enabled_quote: true, enabled_escape: false, ..Default::default() };
    let ini = ini::Ini::load_from_str_opt(text, opts).map_err(|e| err("", e.to_string()))?;
    let mut raw = Raw::new();
    for (section, props) in ini.iter() {
        let Some(section) = section else {
            if let Some((k, _)) = props.iter().next() {
                return Err(err(k, "key outside any [section]"));
            }
            continue;
        };
        let sec = raw.entry(section.trim().to_string()).or_default();
        for (k, v) in props.iter() {
            // `key =   ; comment`: the parser keeps a comment that follows an
            // empty value; it is still a comment.
            let v = if v.starts_with([';', '#']) { "" } else { v };
            if sec.insert(k.trim().to_string(), v.to_string()).is_some() {
                return Err(err(format!("{section}.{k}"), "given twice"));
            }
        }
    }
    Ok(raw)
}

/// Asks [`Sections::keys`] for keys of a section and binds each to a local
/// of the same name, so a key's name is written once: `keys!(s, "http",
/// listen);`, then `listen.str()`. `keys!(s, "etcd" as all, …)` also binds
/// `all` to the array of them. A key asked for but never read is an unused
/// variable.
macro_rules! keys {
    ($s:expr, $section:literal as $all:ident, $($key:ident),+ $(,)?) => {
        let $all = $s.keys($section, &[$(stringify!($key)),+]);
        let [$($key),+] = $all;
    };
    ($s:expr, $section:literal, $($key:ident),+ $(,)?) => {
        let [$($key),+] = $s.keys($section, &[$(stringify!($key)),+]);
    };
}
pub(super) use keys;

/// The keys a section was asked for; `None`: an open section, which takes
/// any key (`kafka.producer`, `collect`).
type Known = Option<&'static [&'static str]>;

/// The raw sections, and which sections and keys have been asked for.
pub(super) struct Sections<'a> {
    raw: &'a Raw,
    /// Sections asked for, in order.
    asked: RefCell<Vec<(&'static str, Known)>>,
}

impl<'a> Sections<'a> {
    pub(super) fn new(raw: &'a Raw) -> Self {
        Sections { raw, asked: RefCell::new(Vec::new()) }
    }

    /// The keys `names` of `section`, all of them at once: a section
    /// function asks for every key before it validates any, so a key is
    /// known even when the section turns out unused (`[es]` without an
    /// address) or an earlier key is bad.
    pub(super) fn keys<const N: usize>(
        &self,
        section: &'static str,
        names: &'static [&'static str; N],
    ) -> [Key<'a>; N] {
        self.ask(section, Some(names));
        let values = self.raw.get(section);
        names.map(|name| Key { section, name, value: values.and_then(|v| v.get(name)).map(String::as_str) })
    }

    /// Every key of an open section, values trimmed, in key order.
    pub(super) fn open(&self, section: &'static str) -> Vec<(String, String)> {
        self.ask(section, None);
        self.raw
            .get(section)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.trim().to_string())).collect())
            .unwrap_or_default()
    }

    /// Whether the file has `section`, even empty.
    pub(super) fn has(&self, section: &str) -> bool {
        self.raw.contains_key(section)
    }

    fn ask(&self, section: &'static str, keys: Known) {
        let mut asked = self.asked.borrow_mut();
        debug_assert!(asked.iter().all(|(s, _)| *s != section), "[{section}] asked for twice");
        asked.push((section, keys));
    }

    /// Refuses a section or key nothing asked for, naming what is known:
    /// the sections (plain ones first, in the order asked), or the keys of
    /// its section.
    pub(super) fn check_unknown(&self) -> Result<(), ConfigError> {
        let asked = self.asked.borrow();
        for (section, keys) in self.raw {
            let Some(&(_, known)) = asked.iter().find(|(s, _)| s == section) else {
                let plain = asked.iter().filter(|(_, k)| k.is_some());
                let open = asked.iter().filter(|(_, k)| k.is_none());
                let all: Vec<&str> = plain.chain(open).map(|(s, _)| *s).collect();
                return Err(err(format!("[{section}]"), format!("unknown section (known: {})", all.join(", "))));
            };
            let Some(known) = known else { continue };
            if let Some(key) = keys.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(err(
                    format!("{section}.{key}"),
                    format!("unknown key (known in [{section}]: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

/// One key of a section as written, typed on request; errors name
/// `section.key`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Key<'a> {
    section: &'static str,
    pub(super) name: &'static str,
    value: Option<&'a str>,
}

impl<'a> Key<'a> {
    /// An error about this key.
    pub(super) fn err(&self, message: impl Into<String>) -> ConfigError {
        err(format!("{}.{}", self.section, self.name), message)
    }

    /// `section.key`, for errors made elsewhere ([`super::Secret::from_file`]).
    pub(super) fn full_name(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// The value, `None` when missing or empty (an empty value means default).
    pub(super) fn str(&self) -> Option<&'a str> {
        self.value.map(str::trim).filter(|v| !v.is_empty())
    }

    pub(super) fn opt(&self) -> Option<String> {
        self.str().map(str::to_string)
    }

    /// `a; b` ([`split_list`]); empty when missing.
    pub(super) fn list(&self) -> Vec<String> {
        self.str().map(split_list).unwrap_or_default()
    }

    /// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
    pub(super) fn flag(&self, default: bool) -> Result<bool, ConfigError> {
        match self.str().map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(other) => Err(self.err(format!("{other:?} is not one of: true, false"))),
        }
    }

    /// A whole number in `min..=max` (`_` separators allowed).
    pub(super) fn num<T>(&self, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(v) = self.str() else {
            return Ok(default);
        };
        let n: T = v.replace('_', "").parse().map_err(|_| self.err(format!("{v:?} is not a whole number")))?;
        if n < min || n > max {
            return Err(self.err(format!("{n} is out of range {min}..={max}")));
        }
        Ok(n)
    }

    /// A size in bytes ([`parse_bytes`]).
    pub(super) fn bytes(&self, default: u64) -> Result<u64, ConfigError> {
        match self.str() {
            None => Ok(default),
            Some(v) => parse_bytes(v).map_err(|m| self.err(m)),
        }
    }

    /// A value of a type that parses itself (an enum's words, an index
    /// pattern); its error is the message.
    pub(super) fn parse<T: FromStr>(&self, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.str() {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| self.err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Raw {
        parse_raw(text).unwrap()
    }

    #[test]
    fn what_was_asked_for_is_what_is_known() {
        let r = raw("[a]\nx = 1\ny = \n[o]\nanything = 2\n");
        let s = Sections::new(&r);
        let [x, y, z] = s.keys("a", &["x", "y", "z"]);
        assert_eq!((x.str(), y.str(), z.str()), (Some("1"), None, None));
        assert_eq!(s.open("o"), vec![("anything".to_string(), "2".to_string())]);
        assert_eq!(s.check_unknown(), Ok(()));

        // A key of [a] nobody asked for; the message lists what was.
        let r = raw("[a]\nx = 1\nw = 2\n");
        let s = Sections::new(&r);
        s.keys("a", &["x", "y"]);
        let e = s.check_unknown().unwrap_err();
        assert_eq!((e.key.as_str(), e.message.as_str()), ("a.w", "unknown key (known in [a]: x, y)"));

        // A section nobody asked for: plain sections first, then open ones.
        let r = raw("[b]\n");
        let s = Sections::new(&r);
        s.open("o");
        s.keys("a", &["x"]);
        s.keys("c", &[]);
        let e = s.check_unknown().unwrap_err();
        assert_eq!((e.key.as_str(), e.message.as_str()), ("[b]", "unknown section (known: a, c, o)"));
    }

    #[test]
    fn typed_values_name_the_key() {
        let r = raw("[a]\nn = 1_000\nbig = 99\nf = Yes\nb = 2KiB\nbad = x\n");
        let s = Sections::new(&r);
        let [n, big, f, b, bad, missing] = s.keys("a", &["n", "big", "f", "b", "bad", "missing"]);
        assert_eq!(n.num(0u32, 0, 10_000), Ok(1000));
        assert_eq!(big.num(0u32, 0, 10).unwrap_err().to_string(), "config a.big: 99 is out of range 0..=10");
        assert_eq!(f.flag(false), Ok(true));
        assert_eq!(b.bytes(0), Ok(2048));
        assert_eq!(bad.flag(true).unwrap_err().to_string(), "config a.bad: \"x\" is not one of: true, false");
        assert_eq!(bad.num(0u8, 0, 1).unwrap_err().key, "a.bad");
        assert_eq!((missing.num(7u8, 0, 1), missing.flag(true), missing.list()), (Ok(7), Ok(true), vec![]));
    }
}
