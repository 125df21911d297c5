//! `${NAME}` and `${NAME:-default}` in config.ini values, replaced from the
//! environment when the file is loaded, so a container or a systemd unit
//! (`EnvironmentFile=`) sets addresses and secrets without editing the file.
//!
//! The syntax, in values only (never in section names or keys):
//!
//! | written            | becomes                                                    |
//! |--------------------|------------------------------------------------------------|
//! | `${NAME}`          | the variable's value; unset: an error naming key and name  |
//! | `${NAME:-default}` | the value, or `default` when unset or empty                |
//! | `$$`               | one literal `$` (`$${NAME}` is the text `${NAME}`)         |
//! | `$` before others  | itself: `$argon2id$v=19$…` in `[http] users` stays as is  |
//!
//! `NAME` is letters, digits and `_`, not starting with a digit. The
//! default is taken as written, up to the first `}`: it is not expanded
//! again, and a variable's value never is either (a `$` in a password that
//! comes from the environment is that `$`). An unterminated `${` or a bad
//! name is an error, not text: it is almost always a typo.
//!
//! Expansion runs over the raw sections, after INI parsing: a value from
//! the environment may hold `;`, `#` or `=` and is not read as a comment or
//! a new key. The lookup is a parameter, so tests pass a closure instead of
//! setting process-wide variables.

use super::raw::Raw;
use super::{err, ConfigError};
use std::borrow::Cow;
use std::env::VarError;
use std::fmt;

/// Where a variable's value comes from: `std::env::var` in
/// [`super::Config::load`], a closure in tests.
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Result<String, VarError>;

/// Why a value could not be expanded; the caller adds the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ExpandError {
    /// `${NAME}` without a default, and `NAME` is not set.
    Unset(String),
    /// `NAME` is set, but not to UTF-8.
    NotUnicode(String),
    /// `${` with no `}` after it.
    Unterminated,
    /// `${…}` whose inside is not `NAME` or `NAME:-default`; holds the inside.
    BadName(String),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(name) => {
                write!(f, "environment variable {name} is not set (`${{{name}:-default}}` gives a default)")
            }
            ExpandError::NotUnicode(name) => write!(f, "environment variable {name} is not valid UTF-8"),
            ExpandError::Unterminated => write!(f, "`${{` has no closing `}}` (`$$` is a literal `$`)"),
            ExpandError::BadName(inside) => write!(
                f,
                "`${{{inside}}}`: not a variable name (letters, digits and _, not starting with a digit; \
                 `${{NAME:-default}}` for a default, `$$` for a literal `$`)"
            ),
        }
    }
}

/// Letters, digits and `_`, not empty, not starting with a digit: what
/// POSIX shells accept as a variable name.
fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

/// `value` with every `${…}` replaced and every `$$` made `$`; borrowed
/// when it holds no `$` (nearly every value).
pub(super) fn expand<'v>(value: &'v str, lookup: Lookup<'_>) -> Result<Cow<'v, str>, ExpandError> {
    if !value.contains('$') {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(open) = after.strip_prefix('{') {
            let close = open.find('}').ok_or(ExpandError::Unterminated)?;
            let inside = &open[..close];
            let (name, default) = match inside.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inside, None),
            };
            if !is_name(name) {
                return Err(ExpandError::BadName(inside.to_string()));
            }
            match (lookup(name), default) {
                // Set and empty counts as unset when there is a default,
                // as in the shell's `:-`.
                (Ok(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Ok(v), _) => out.push_str(&v),
                (Err(VarError::NotPresent), Some(d)) => out.push_str(d),
                (Err(VarError::NotPresent), None) => return Err(ExpandError::Unset(name.to_string())),
                (Err(VarError::NotUnicode(_)), _) => return Err(ExpandError::NotUnicode(name.to_string())),
            }
            rest = &open[close + 1..];
        } else {
            // A lone `$` is text: PHC strings (`$argon2id$…`) and prices
            // need no escaping.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Expands every value of `raw` in place. On an error the values are left
/// as far as they got and the first error in file order (sections and keys
/// sorted) is returned, naming `section.key`.
pub(super) fn expand_raw(raw: &mut Raw, lookup: Lookup<'_>) -> Result<(), ConfigError> {
    for (section, keys) in raw.iter_mut() {
        for (key, value) in keys.iter_mut() {
            match expand(value, lookup) {
                Ok(Cow::Borrowed(_)) => {}
                Ok(Cow::Owned(v)) => *value = v,
                Err(e) => return Err(err(format!("{section}.{key}"), e.to_string())),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment of these tests: A=alpha, EMPTY set to "", BAD not
    /// UTF-8, nothing else set.
    fn env(name: &str) -> Result<String, VarError> {
        match name {
            "A" => Ok("alpha".into()),
            "EMPTY" => Ok(String::new()),
            "BAD" => Err(VarError::NotUnicode(std::ffi::OsString::from("\u{fffd}"))),
            _ => Err(VarError::NotPresent),
        }
    }

    fn ex(value: &str) -> Result<String, ExpandError> {
        expand(value, &env).map(Cow::into_owned)
    }

    #[test]
    fn values_expand_as_the_table_says() {
        let ok = [
            ("", ""),
            ("plain", "plain"),
            ("${A}", "alpha"),
            ("x${A}y${A}", "xalphayalpha"),
            ("${A:-d}", "alpha"),
            ("${UNSET:-d}", "d"),
            ("${UNSET:-}", ""),
            ("${EMPTY}", ""),
            ("${EMPTY:-d}", "d"),
            // The default is as written: no second expansion, `$$` kept.
            ("${UNSET:-$$}", "$$"),
            ("${UNSET:-http://h:9200}", "http://h:9200"),
            ("${UNSET:-a:-b}", "a:-b"),
            ("$$", "$"),
            ("$$$$", "$$"),
            ("$${A}", "${A}"),
            ("$$${A}", "$alpha"),
            ("$$$${A}", "$${A}"),
            ("$", "$"),
            ("a$", "a$"),
            ("$A", "$A"),
            ("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            ("${_x1:-y}", "y"),
            ("} { ${A} }", "} { alpha }"),
        ];
        for (written, want) in ok {
            assert_eq!(ex(written).as_deref(), Ok(want), "{written:?}");
        }
        assert!(matches!(expand("no dollar", &env), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn bad_syntax_and_unset_variables_are_errors() {
        let bad = [
            ("${UNSET}", ExpandError::Unset("UNSET".into())),
            ("a ${A} ${UNSET} ${ALSO_UNSET}", ExpandError::Unset("UNSET".into())),
            ("${BAD}", ExpandError::NotUnicode("BAD".into())),
            ("${BAD:-d}", ExpandError::NotUnicode("BAD".into())),
            ("${", ExpandError::Unterminated),
            ("${A", ExpandError::Unterminated),
            ("${A:-default", ExpandError::Unterminated),
            ("${}", ExpandError::BadName("".into())),
            ("${:-d}", ExpandError::BadName(":-d".into())),
            ("${1A}", ExpandError::BadName("1A".into())),
            ("${A B}", ExpandError::BadName("A B".into())),
            ("${A-d}", ExpandError::BadName("A-d".into())),
            ("${A:?err}", ExpandError::BadName("A:?err".into())),
        ];
        for (written, want) in bad {
            assert_eq!(ex(written), Err(want), "{written:?}");
        }
    }

    #[test]
    fn messages_say_how_to_fix_it() {
        assert_eq!(
            ExpandError::Unset("ES_PASSWORD".into()).to_string(),
            "environment variable ES_PASSWORD is not set (`${ES_PASSWORD:-default}` gives a default)"
        );
        assert_eq!(ExpandError::Unterminated.to_string(), "`${` has no closing `}` (`$$` is a literal `$`)");
        assert!(ExpandError::BadName("1A".into()).to_string().starts_with("`${1A}`: not a variable name"));
    }

    #[test]
    fn the_raw_sections_expand_and_errors_name_the_key() {
        let mut raw = Raw::new();
        raw.entry("kafka".into()).or_default().insert("address".into(), "${A}:9092".into());
        raw.entry("kafka.producer".into()).or_default().insert("sasl.password".into(), "p$$w".into());
        expand_raw(&mut raw, &env).unwrap();
        assert_eq!(raw["kafka"]["address"], "alpha:9092");
        assert_eq!(raw["kafka.producer"]["sasl.password"], "p$w");

        raw.entry("es".into()).or_default().insert("password".into(), "${ES_PASSWORD}".into());
        let e = expand_raw(&mut raw, &env).unwrap_err();
        assert_eq!(e.key, "es.password");
        assert_eq!(e.to_string(), "config es.password: environment variable ES_PASSWORD is not set (`${ES_PASSWORD:-default}` gives a default)");

        let mut raw = Raw::new();
        raw.entry("collect".into()).or_default().insert("web_log".into(), "/var/log/${A".into());
        let e = expand_raw(&mut raw, &env).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            ("collect.web_log", "`${` has no closing `}` (`$$` is a literal `$`)")
        );
    }
}
