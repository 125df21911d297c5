//! Counter totals as one log line (`name=value name=value …`), the same
//! names `/api/status` shows.

use std::fmt;

/// Displays `(name, value)` pairs as `name=value`, space separated.
pub struct Totals<'a>(pub &'a [(&'static str, u64)]);

impl fmt::Display for Totals<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_as_name_equals_value() {
        assert_eq!(Totals(&[("records", 3), ("docs_indexed", 2)]).to_string(), "records=3 docs_indexed=2");
        assert_eq!(Totals(&[]).to_string(), "");
    }
}
