//! Text from outside (file names, log lines, etcd values) made safe to
//! draw in a terminal, and cut to a size.

use std::borrow::Cow;

/// `s` with its control characters (ESC, CR, BEL, DEL, C1 …) written as
/// `\u{1b}`-style escapes, so a file name or an etcd value cannot move the
/// cursor, retitle or rewrite the terminal it is printed in. With
/// `keep_lines`, newlines and tabs stay (multi-line JSON).
pub fn printable(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && !(keep_lines && (c == '\n' || c == '\t'));
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The longest start of `s` of at most `max_bytes` that ends on a
/// character boundary.
pub fn prefix(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut cut = max_bytes;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_on_a_character_boundary() {
        assert_eq!(prefix("abc", 10), "abc");
        assert_eq!(prefix("abc", 2), "ab");
        assert_eq!(prefix("a\u{20ac}b", 3), "a");
        assert_eq!(prefix("a\u{20ac}b", 4), "a\u{20ac}");
        assert_eq!(prefix("\u{20ac}", 0), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        // (input, keep_lines, shown)
        let table = [
            ("/var/log/a.log", false, "/var/log/a.log"),
            ("x\x1b]0;pwned\x07y", false, "x\\u{1b}]0;pwned\\u{7}y"),
            ("a\rb\nc\td", false, "a\\u{d}b\\u{a}c\\u{9}d"),
            ("a\rb\nc\td", true, "a\\u{d}b\nc\td"),
            ("\u{9b}31m", false, "\\u{9b}31m"),
            ("ünïcödé", false, "ünïcödé"),
        ];
        for (input, keep, want) in table {
            assert_eq!(printable(input, keep), want, "{input:?}");
        }
        assert!(matches!(printable("plain", false), Cow::Borrowed(_)));
    }
}
