//! The query model ([`crate::search::query::Node`]) as a tantivy query.

use super::{F_HOST, F_MESSAGE, F_PATH, F_TOPIC};
use crate::search::query::{Field as QField, Node};
use tantivy::query::{AllQuery, BooleanQuery, Occur, PhraseQuery, Query, RegexQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

/// Most distinct terms one prefix of a query may match in the index
/// (summed over segments): a prefix expands to a union of every term it
/// matches, so `ab*` over millions of distinct words would cost as much as
/// many searches (review finding 6). Counted in the term dictionary before
/// the search runs.
pub const MAX_PREFIX_TERMS: usize = 20_000;

/// The index field of a query field.
fn text_field(f: QField) -> tantivy::schema::Field {
    match f {
        QField::Message => F_MESSAGE,
        QField::Host => F_HOST,
        QField::Path => F_PATH,
        QField::Topic => F_TOPIC,
    }
}

/// The first prefix of `node` that matches more than [`MAX_PREFIX_TERMS`]
/// terms in `searcher`'s segments, if one does.
pub fn too_broad_prefix(node: &Node, searcher: &tantivy::Searcher) -> tantivy::Result<Option<String>> {
    let (field, prefix) = match node {
        Node::Text { words, prefix: true, .. } => (F_MESSAGE, words[0].text.as_str()),
        Node::Exact { field, value, prefix: true } => (text_field(*field), value.as_str()),
        Node::And(kids) | Node::Or(kids) => {
            for k in kids {
                if let Some(p) = too_broad_prefix(k, searcher)? {
                    return Ok(Some(p));
                }
            }
            return Ok(None);
        }
        Node::Not(inner) => return too_broad_prefix(inner, searcher),
        _ => return Ok(None),
    };
    let end = successor(prefix.as_bytes());
    let mut terms = 0;
    for seg in searcher.segment_readers() {
        let dict = seg.inverted_index(field)?;
        let mut range = dict.terms().range().ge(prefix.as_bytes());
        if let Some(end) = &end {
            range = range.lt(end);
        }
        let mut stream = range.into_stream()?;
        while stream.advance() {
            terms += 1;
            if terms > MAX_PREFIX_TERMS {
                return Ok(Some(prefix.to_string()));
            }
        }
    }
    Ok(None)
}

/// The smallest byte string greater than every string starting with
/// `prefix`; `None` when there is none (all bytes 0xFF).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// The tantivy query for a node (time range aside). A prefix tantivy
/// cannot build (its automaton has a size limit; the parser keeps
/// prefixes well under it) is an error, not a panic.
pub fn to_tantivy(node: &Node) -> tantivy::Result<Box<dyn Query>> {
    Ok(match node {
        Node::All => Box::new(AllQuery),
        // Words are letters and digits only: nothing to escape.
        Node::Text { words, prefix: true, .. } => {
            Box::new(RegexQuery::from_pattern(&format!("{}.*", words[0].text), F_MESSAGE)?)
        }
        Node::Text { words, .. } if words.len() == 1 => {
            Box::new(TermQuery::new(Term::from_field_text(F_MESSAGE, &words[0].text), IndexRecordOption::Basic))
        }
        Node::Text { words, .. } => {
            let first = words[0].position;
            Box::new(PhraseQuery::new_with_offset(
                words
                    .iter()
                    .map(|w| ((w.position - first) as usize, Term::from_field_text(F_MESSAGE, &w.text)))
                    .collect(),
            ))
        }
        Node::Exact { field, value, prefix: false } => {
            Box::new(TermQuery::new(Term::from_field_text(text_field(*field), value), IndexRecordOption::Basic))
        }
        Node::Exact { field, value, prefix: true } => {
            Box::new(RegexQuery::from_pattern(&format!("(?s){}.*", regex_syntax::escape(value)), text_field(*field))?)
        }
        Node::And(kids) => {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = kids
                .iter()
                .map(|k| match k {
                    Node::Not(inner) => Ok((Occur::MustNot, to_tantivy(inner)?)),
                    other => Ok((Occur::Must, to_tantivy(other)?)),
                })
                .collect::<tantivy::Result<_>>()?;
            if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        Node::Or(kids) => Box::new(BooleanQuery::new(
            kids.iter().map(|k| Ok((Occur::Should, to_tantivy(k)?))).collect::<tantivy::Result<_>>()?,
        )),
        Node::Not(inner) => {
            Box::new(BooleanQuery::new(vec![(Occur::Must, Box::new(AllQuery)), (Occur::MustNot, to_tantivy(inner)?)]))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::successor;

    #[test]
    fn successors_bound_every_string_of_a_prefix() {
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
    }
}
