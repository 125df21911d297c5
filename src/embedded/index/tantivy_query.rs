//! The query model ([`crate::search::query::Node`]) as a tantivy query.

use super::{F_HOST, F_MESSAGE, F_PATH, F_TOPIC};
use crate::search::query::{Field as QField, Node};
use tantivy::query::{AllQuery, BooleanQuery, Occur, PhraseQuery, Query, RegexQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

/// The tantivy query for a node (time range aside). A prefix tantivy
/// cannot build (its automaton has a size limit; the parser keeps
/// prefixes well under it) is an error, not a panic.
pub fn to_tantivy(node: &Node) -> tantivy::Result<Box<dyn Query>> {
    let text_field = |f: QField| match f {
        QField::Message => F_MESSAGE,
        QField::Host => F_HOST,
        QField::Path => F_PATH,
        QField::Topic => F_TOPIC,
    };
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
