//! The search language of the page and the `/api/` endpoints: text to an
//! AST ([`Node`]) with errors that say where and what was expected, and the
//! AST to an Elasticsearch query. Pure code; the embedded index turns the
//! same AST into a tantivy query (`index::to_tantivy`), and [`Node::matches`]
//! is the plain model both are tested against.
//!
//! # Syntax
//!
//! ```text
//! query  := or | (nothing: every line)
//! or     := and ( "OR" and )*
//! and    := unary ( "AND"? unary )*           two terms side by side: AND
//! unary  := ( "NOT" | "-" ) unary | atom
//! atom   := "(" or ")" | FIELD ":" value | value | "*"
//! value  := WORD | WORD* | "PHRASE"
//! FIELD  := host | path | topic | message  (or host.name, log.file.path)
//! ```
//!
//! NOT binds tighter than AND, AND tighter than OR. Operators are upper case
//! (`and` is a word to search for). `"…"` takes `\"` and `\\` escapes.
//!
//! # Meaning
//!
//! - A word or phrase searches the `message`, case-insensitively, by words:
//!   the text is cut into words (runs of letters and digits, lower-cased),
//!   and the line must hold those words in a row. So `GET /api/v1` finds
//!   lines with the words `get api v1` side by side, whatever the
//!   punctuation between them. A word with a trailing `*` (`time*`) is a
//!   prefix of one word.
//! - `host:`, `path:` and `topic:` compare the whole field, exactly (case
//!   matters); a trailing `*` makes it a prefix (`path:/var/log/*`). Any
//!   other `name:value` is plain text (`status:500` finds those words).
//! - A time range is not part of the text: the API takes `from` and `to`
//!   ([`parse_time`]).
//!
//! Elasticsearch gets a `bool` query built from the AST ([`es_query`]):
//! `match_phrase` for text (analyzed by the transfer's index template with
//! the same word cutting as [`words`], so a phrase means the same there),
//! `prefix`, and `term`/`prefix` on `host.name`, `log.file.path` and `topic`,
//! which the transfer's index template maps as `keyword` (exact values).

#![deny(missing_docs)]

use serde_json::{json, Value};
use std::fmt;
use std::ops::Range;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Deepest nesting of parentheses and NOTs.
pub const MAX_DEPTH: usize = 32;
/// Longest prefix (`path:/var/log/*`) of a keyword field, in bytes. The
/// embedded index matches a prefix with an automaton of a state per byte,
/// which tantivy refuses past 1,000 states; and no real host, path or topic
/// needs more to be told apart.
pub const MAX_PREFIX_BYTES: usize = 512;
/// Bytes of a message [`Node::highlights`] analyses; the rest of a longer
/// line is not highlighted.
pub const HIGHLIGHT_MAX_BYTES: usize = 64 << 10;
/// Most ranges [`Node::highlights`] returns for one message.
pub const HIGHLIGHT_MAX_RANGES: usize = 200;
/// Shortest word prefix (`ti*`) accepted, in characters.
pub const MIN_PREFIX_CHARS: usize = 2;
/// Most prefixes (`ti*`, `path:/x/*`) in one query: each expands to every
/// term it matches, so hundreds of them ORed in 4 KiB would be as costly as
/// many searches (review finding 6).
pub const MAX_PREFIXES: usize = 16;
/// Longest word the index keeps, in bytes; longer ones are not searchable
/// (the embedded index drops them, and so does [`words`]).
pub const MAX_WORD_BYTES: usize = 255;

/// A field a query can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `message`: the line, searched by words.
    Message,
    /// `host.name`: exact.
    Host,
    /// `log.file.path`: exact.
    Path,
    /// `topic`: exact.
    Topic,
}

impl Field {
    /// The document field (the Elasticsearch name, also the embedded index's).
    pub fn doc_name(self) -> &'static str {
        match self {
            Field::Message => "message",
            Field::Host => "host.name",
            Field::Path => "log.file.path",
            Field::Topic => "topic",
        }
    }

    /// The name a query writes.
    pub fn short_name(self) -> &'static str {
        match self {
            Field::Message => "message",
            Field::Host => "host",
            Field::Path => "path",
            Field::Topic => "topic",
        }
    }

    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "message" => Field::Message,
            "host" | "host.name" => Field::Host,
            "path" | "log.file.path" => Field::Path,
            "topic" => Field::Topic,
            _ => return None,
        })
    }
}

/// A word of the message: its lower-cased text and its place in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// Position in the word sequence, counting words too long to keep.
    pub position: u32,
    /// Byte range in the text it was cut from.
    pub range: Range<usize>,
    /// Lower-cased.
    pub text: String,
}

/// The words of a text, as the embedded index cuts them: maximal runs of
/// alphanumeric characters (`char::is_alphanumeric`), lower-cased
/// (`char::to_lowercase`); a run longer than [`MAX_WORD_BYTES`] keeps its
/// position but is left out.
pub fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut position = 0u32;
    let mut start = None;
    let mut push = |s: usize, e: usize, position: &mut u32| {
        if e - s <= MAX_WORD_BYTES {
            let w = &text[s..e];
            let lower =
                if w.is_ascii() { w.to_ascii_lowercase() } else { w.chars().flat_map(char::to_lowercase).collect() };
            out.push(Word { position: *position, range: s..e, text: lower });
        }
        *position += 1;
    };
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                push(s, i, &mut position);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        push(s, text.len(), &mut position);
    }
    out
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// Every line (the empty query, or `*`).
    All,
    /// Words of the message, side by side in this order.
    Text {
        /// As written (the phrase without its quotes): Elasticsearch analyzes it.
        text: String,
        /// [`words`] of `text`, at least one; exactly one with `prefix`.
        words: Vec<Word>,
        /// The (single) word is a prefix.
        prefix: bool,
    },
    /// A keyword field equal to `value`, or starting with it.
    Exact {
        /// Never [`Field::Message`].
        field: Field,
        /// As written.
        value: String,
        /// `value` is a prefix of the field's value.
        prefix: bool,
    },
    /// Every child; at least two.
    And(Vec<Node>),
    /// Any child; at least two.
    Or(Vec<Node>),
    /// Everything the child does not match.
    Not(Box<Node>),
}

/// A query that could not be parsed: where, and what would have fit there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Character (not byte) offset in the query, 0-based.
    pub position: usize,
    /// What the parser expected there, in words.
    pub expected: String,
    /// What it found there.
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: expected {}, found {}", self.position + 1, self.expected, self.found)
    }
}

impl std::error::Error for ParseError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    /// `-` right before a term.
    Minus,
    And,
    Or,
    Not,
    Word(String),
    Phrase(String),
}

#[derive(Clone, Debug)]
struct Lexed {
    tok: Tok,
    /// Byte range in the query.
    span: Range<usize>,
}

const TERM_START: &str = "a word, a \"phrase\", field:value, NOT or (";

fn describe(t: Option<&Lexed>) -> String {
    match t.map(|l| &l.tok) {
        None => "the end of the query".into(),
        Some(Tok::LParen) => "(".into(),
        Some(Tok::RParen) => ")".into(),
        Some(Tok::Minus) => "-".into(),
        Some(Tok::And) => "AND".into(),
        Some(Tok::Or) => "OR".into(),
        Some(Tok::Not) => "NOT".into(),
        Some(Tok::Word(w)) => format!("{w:?}"),
        Some(Tok::Phrase(p)) => format!("the phrase {p:?}"),
    }
}

struct Lexer<'a> {
    q: &'a str,
}

impl Lexer<'_> {
    fn error(&self, byte: usize, expected: impl Into<String>, found: impl Into<String>) -> ParseError {
        ParseError { position: char_pos(self.q, byte), expected: expected.into(), found: found.into() }
    }

    fn run(&self) -> Result<Vec<Lexed>, ParseError> {
        let q = self.q;
        let b = q.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            let tok = match c {
                b'(' => {
                    i += 1;
                    Tok::LParen
                }
                b')' => {
                    i += 1;
                    Tok::RParen
                }
                b'"' => {
                    i += 1;
                    let mut s = String::new();
                    loop {
                        let Some(ch) = q[i..].chars().next() else {
                            return Err(self.error(
                                start,
                                "a closing \" for the phrase that starts here",
                                "the end of the query",
                            ));
                        };
                        i += ch.len_utf8();
                        match ch {
                            '"' => break,
                            '\\' => match q[i..].chars().next() {
                                Some(e @ ('"' | '\\')) => {
                                    s.push(e);
                                    i += 1;
                                }
                                _ => s.push('\\'),
                            },
                            other => s.push(other),
                        }
                    }
                    Tok::Phrase(s)
                }
                b'-' if b.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace() && *n != b')') => {
                    i += 1;
                    Tok::Minus
                }
                _ => {
                    while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'(' | b')' | b'"') {
                        i += 1;
                    }
                    match &q[start..i] {
                        "AND" => Tok::And,
                        "OR" => Tok::Or,
                        "NOT" => Tok::Not,
                        w => Tok::Word(w.to_string()),
                    }
                }
            };
            out.push(Lexed { tok, span: start..i });
        }
        Ok(out)
    }
}

fn char_pos(q: &str, byte: usize) -> usize {
    q.get(..byte).map(|s| s.chars().count()).unwrap_or_else(|| q.chars().count())
}

struct Parser<'a> {
    q: &'a str,
    toks: Vec<Lexed>,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Lexed> {
        self.toks.get(self.at)
    }

    fn error_here(&self, expected: impl Into<String>) -> ParseError {
        let byte = self.peek().map(|l| l.span.start).unwrap_or(self.q.len());
        ParseError { position: char_pos(self.q, byte), expected: expected.into(), found: describe(self.peek()) }
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut kids = vec![self.and()?];
        while matches!(self.peek().map(|l| &l.tok), Some(Tok::Or)) {
            self.at += 1;
            kids.push(self.and()?);
        }
        Ok(join(kids, Node::Or))
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut kids = vec![self.unary()?];
        loop {
            match self.peek().map(|l| &l.tok) {
                Some(Tok::And) => {
                    self.at += 1;
                    kids.push(self.unary()?);
                }
                None | Some(Tok::Or) | Some(Tok::RParen) => break,
                Some(_) => kids.push(self.unary()?),
            }
        }
        Ok(join(kids, Node::And))
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        match self.peek().map(|l| &l.tok) {
            Some(Tok::Not) | Some(Tok::Minus) => {
                self.deeper()?;
                self.at += 1;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(match inner {
                    Node::Not(x) => *x,
                    x => Node::Not(Box::new(x)),
                })
            }
            _ => self.atom(),
        }
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!("at most {MAX_DEPTH} levels of parentheses and NOT")));
        }
        Ok(())
    }

    fn atom(&mut self) -> Result<Node, ParseError> {
        let Some(l) = self.peek().cloned() else {
            return Err(self.error_here(TERM_START));
        };
        match l.tok.clone() {
            Tok::LParen => {
                self.deeper()?;
                self.at += 1;
                if matches!(self.peek().map(|l| &l.tok), Some(Tok::RParen)) {
                    return Err(self.error_here(format!("a query inside the parentheses ({TERM_START})")));
                }
                let inner = self.or()?;
                match self.peek().map(|l| &l.tok) {
                    Some(Tok::RParen) => self.at += 1,
                    _ => {
                        return Err(self.error_here(format!(
                            ") to close the ( at character {}",
                            char_pos(self.q, l.span.start) + 1
                        )))
                    }
                }
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Phrase(p) => {
                self.at += 1;
                self.text(&p, false, l.span)
            }
            Tok::Word(w) => {
                self.at += 1;
                if w == "*" {
                    return Ok(Node::All);
                }
                if let Some((name, rest)) = w.split_once(':') {
                    if let Some(field) = Field::parse(name) {
                        return self.field(field, rest, &l);
                    }
                }
                match w.strip_suffix('*') {
                    Some(p) => self.text(p, true, l.span),
                    None => self.text(&w, false, l.span),
                }
            }
            Tok::RParen => Err(self.error_here(format!("{TERM_START} (this ) closes nothing)"))),
            _ => Err(self.error_here(TERM_START)),
        }
    }

    /// `field:` has been read (`rest` is what followed the colon in the word).
    fn field(&mut self, field: Field, rest: &str, l: &Lexed) -> Result<Node, ParseError> {
        let (value, quoted, span) = if !rest.is_empty() {
            (rest.to_string(), false, l.span.clone())
        } else {
            match self.peek().cloned() {
                Some(Lexed { tok: Tok::Phrase(p), span }) if span.start == l.span.end => {
                    self.at += 1;
                    (p, true, span)
                }
                _ => {
                    let byte = l.span.end;
                    let found = match self.peek() {
                        Some(n) if n.span.start == byte => describe(Some(n)),
                        Some(_) => "a space".into(),
                        None => describe(None),
                    };
                    return Err(ParseError {
                        position: char_pos(self.q, byte),
                        expected: format!(
                            "a value right after {}: (a word or a \"phrase\"; for several, write (host:a OR host:b))",
                            field.short_name()
                        ),
                        found,
                    });
                }
            }
        };
        if field == Field::Message {
            return match (quoted, value.strip_suffix('*')) {
                (false, Some(p)) => self.text(p, true, span),
                _ => self.text(&value, false, span),
            };
        }
        Ok(match (quoted, value.strip_suffix('*')) {
            (false, Some(p)) if p.len() > MAX_PREFIX_BYTES => {
                return Err(ParseError {
                    position: char_pos(self.q, span.start),
                    expected: format!(
                        "a prefix of at most {MAX_PREFIX_BYTES} bytes before * (or the whole value, without *)"
                    ),
                    found: format!("{} bytes", p.len()),
                })
            }
            (false, Some(p)) => Node::Exact { field, value: p.to_string(), prefix: true },
            _ => Node::Exact { field, value, prefix: false },
        })
    }

    fn text(&self, text: &str, prefix: bool, span: Range<usize>) -> Result<Node, ParseError> {
        let ws = words(text);
        let what = if prefix { format!("{text}*") } else { text.to_string() };
        let here =
            ParseError { position: char_pos(self.q, span.start), expected: String::new(), found: format!("{what:?}") };
        if ws.is_empty() {
            return Err(ParseError { expected: "letters or digits to search for".into(), ..here });
        }
        if prefix && ws.len() > 1 {
            return Err(ParseError { expected: "a single word before * (a prefix matches one word)".into(), ..here });
        }
        if prefix && ws[0].text.chars().count() < MIN_PREFIX_CHARS {
            return Err(ParseError {
                expected: format!(
                    "at least {MIN_PREFIX_CHARS} characters before * (a shorter prefix matches too much)"
                ),
                ..here
            });
        }
        Ok(Node::Text { text: text.to_string(), words: ws, prefix })
    }
}

/// One child stands for itself; nested nodes of the same kind are flattened.
fn join(kids: Vec<Node>, make: fn(Vec<Node>) -> Node) -> Node {
    if kids.len() == 1 {
        return kids.into_iter().next().expect("one");
    }
    let and = matches!(make(Vec::new()), Node::And(_));
    let mut flat = Vec::with_capacity(kids.len());
    for k in kids {
        match k {
            Node::And(inner) if and => flat.extend(inner),
            Node::Or(inner) if !and => flat.extend(inner),
            k => flat.push(k),
        }
    }
    make(flat)
}

/// Parses a query; empty (or blank) text is [`Node::All`].
pub fn parse(query: &str) -> Result<Node, ParseError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            position: 0,
            expected: format!("a query of at most {MAX_QUERY_BYTES} bytes"),
            found: format!("{} bytes", query.len()),
        });
    }
    let toks = Lexer { q: query }.run()?;
    if toks.is_empty() {
        return Ok(Node::All);
    }
    let mut p = Parser { q: query, toks, at: 0, depth: 0 };
    let node = p.or()?;
    if p.peek().is_some() {
        let expected = match p.peek().map(|l| &l.tok) {
            Some(Tok::RParen) => "the end of the query (this ) closes nothing)".to_string(),
            _ => format!("AND, OR or {TERM_START}"),
        };
        return Err(p.error_here(expected));
    }
    let prefixes = count_prefixes(&node);
    if prefixes > MAX_PREFIXES {
        return Err(ParseError {
            position: 0,
            expected: format!("at most {MAX_PREFIXES} prefixes (word*) in one query"),
            found: format!("{prefixes}"),
        });
    }
    Ok(node)
}

/// Prefix terms (`ti*`, `path:/x/*`) in `node`.
fn count_prefixes(node: &Node) -> usize {
    match node {
        Node::Text { prefix, .. } | Node::Exact { prefix, .. } => usize::from(*prefix),
        Node::And(kids) | Node::Or(kids) => kids.iter().map(count_prefixes).sum(),
        Node::Not(inner) => count_prefixes(inner),
        Node::All => 0,
    }
}

// ---------------------------------------------------------------------------
// The model: what a query means, on one line
// ---------------------------------------------------------------------------

/// The fields of one line, for [`Node::matches`].
#[derive(Clone, Copy, Debug)]
pub struct DocView<'a> {
    /// The line.
    pub message: &'a str,
    /// `host.name`.
    pub host: &'a str,
    /// `log.file.path`.
    pub path: &'a str,
    /// `topic`.
    pub topic: &'a str,
}

impl Node {
    /// Whether a line matches: the plain definition the index queries are
    /// tested against (slow; for tests and the live filter of small sets).
    pub fn matches(&self, doc: &DocView<'_>) -> bool {
        self.matches_words(doc, &positioned(&words(doc.message)))
    }

    fn matches_words(&self, doc: &DocView<'_>, msg: &[Option<String>]) -> bool {
        match self {
            Node::All => true,
            Node::Text { words: q, prefix: true, .. } => {
                msg.iter().flatten().any(|w| w.starts_with(q[0].text.as_str()))
            }
            Node::Text { words: q, .. } => phrase_at(msg, q).next().is_some(),
            Node::Exact { field, value, prefix } => {
                let v = match field {
                    Field::Host => doc.host,
                    Field::Path => doc.path,
                    Field::Topic => doc.topic,
                    Field::Message => doc.message,
                };
                if *prefix {
                    v.starts_with(value.as_str())
                } else {
                    v == value
                }
            }
            Node::And(k) => k.iter().all(|n| n.matches_words(doc, msg)),
            Node::Or(k) => k.iter().any(|n| n.matches_words(doc, msg)),
            Node::Not(n) => !n.matches_words(doc, msg),
        }
    }

    /// Character ranges of `message` that the query's positive text terms
    /// match (not those under a NOT), sorted and merged: what the page
    /// highlights.
    ///
    /// Bounded whatever the line: only its first [`HIGHLIGHT_MAX_BYTES`] are
    /// analysed (as Elasticsearch's `index.highlight.max_analyzed_offset`
    /// bounds its highlighter) and at most [`HIGHLIGHT_MAX_RANGES`] ranges
    /// come back; the work is linear in the analysed part.
    pub fn highlights(&self, message: &str) -> Vec<Range<usize>> {
        let mut end = message.len().min(HIGHLIGHT_MAX_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let ws = words(message);
        let msg = positioned(&ws);
        let mut bytes: Vec<Range<usize>> = Vec::new();
        self.collect_highlights(&ws, &msg, &mut bytes);
        bytes.sort_by_key(|r| (r.start, r.end));
        let mut merged: Vec<Range<usize>> = Vec::new();
        for r in bytes {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged.truncate(HIGHLIGHT_MAX_RANGES);
        // Bytes to characters, in one pass.
        let mut out = Vec::with_capacity(merged.len());
        let (mut byte, mut chars) = (0usize, 0usize);
        let mut advance = |to: usize| {
            chars += message[byte..to].chars().count();
            byte = to;
            chars
        };
        for r in merged {
            let s = advance(r.start);
            let e = advance(r.end);
            out.push(s..e);
        }
        out
    }

    fn collect_highlights(&self, ws: &[Word], msg: &[Option<String>], out: &mut Vec<Range<usize>>) {
        match self {
            Node::Text { words: q, prefix: true, .. } => {
                out.extend(ws.iter().filter(|w| w.text.starts_with(q[0].text.as_str())).map(|w| w.range.clone()))
            }
            Node::Text { words: q, .. } => {
                for start in phrase_at(msg, q) {
                    for w in q {
                        let pos = start + (w.position - q[0].position) as usize;
                        // `ws` is in position order: a lookup, not a scan
                        // (a scan made a line of one repeated word quadratic).
                        if let Ok(i) = ws.binary_search_by_key(&pos, |x| x.position as usize) {
                            out.push(ws[i].range.clone());
                        }
                    }
                }
            }
            Node::And(k) | Node::Or(k) => k.iter().for_each(|n| n.collect_highlights(ws, msg, out)),
            Node::All | Node::Exact { .. } | Node::Not(_) => {}
        }
    }
}

/// Words by position (`None` where a word was too long to keep).
fn positioned(ws: &[Word]) -> Vec<Option<String>> {
    let n = ws.last().map(|w| w.position as usize + 1).unwrap_or(0);
    let mut v = vec![None; n];
    for w in ws {
        v[w.position as usize] = Some(w.text.clone());
    }
    v
}

/// Positions in `msg` where the phrase `q` starts.
fn phrase_at<'a>(msg: &'a [Option<String>], q: &'a [Word]) -> impl Iterator<Item = usize> + 'a {
    let span = (q[q.len() - 1].position - q[0].position) as usize;
    (0..msg.len().saturating_sub(span)).filter(move |&start| {
        q.iter().all(|w| msg[start + (w.position - q[0].position) as usize].as_deref() == Some(w.text.as_str()))
    })
}

// ---------------------------------------------------------------------------
// Elasticsearch
// ---------------------------------------------------------------------------

/// The Elasticsearch query for a node (a `bool` tree; see the module docs).
pub fn es_query(node: &Node) -> Value {
    match node {
        Node::All => json!({"match_all": {}}),
        Node::Text { words, prefix: true, .. } => json!({"prefix": {"message": {"value": words[0].text}}}),
        Node::Text { text, .. } => json!({"match_phrase": {"message": {"query": text}}}),
        Node::Exact { field, value, prefix } => {
            let kind = if *prefix { "prefix" } else { "term" };
            json!({kind: {field.doc_name(): {"value": value}}})
        }
        Node::And(kids) => {
            let (mut filter, mut must_not) = (Vec::new(), Vec::new());
            for k in kids {
                match k {
                    Node::Not(inner) => must_not.push(es_query(inner)),
                    other => filter.push(es_query(other)),
                }
            }
            let mut b = serde_json::Map::new();
            if !filter.is_empty() {
                b.insert("filter".into(), Value::Array(filter));
            }
            if !must_not.is_empty() {
                b.insert("must_not".into(), Value::Array(must_not));
            }
            json!({"bool": b})
        }
        Node::Or(kids) => {
            json!({"bool": {"should": kids.iter().map(es_query).collect::<Vec<_>>(), "minimum_should_match": 1}})
        }
        Node::Not(inner) => json!({"bool": {"must_not": [es_query(inner)]}}),
    }
}

/// The query with a time range `[from_ms, to_ms)` on `@timestamp`.
pub fn es_query_in_range(node: &Node, from_ms: i64, to_ms: i64) -> Value {
    let range = json!({"range": {"@timestamp": {"gte": from_ms, "lt": to_ms, "format": "epoch_millis"}}});
    match node {
        Node::All => json!({"bool": {"filter": [range]}}),
        n => json!({"bool": {"filter": [es_query(n), range]}}),
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// The latest time [`parse_time`] accepts (exclusive): year 10000, in ms.
pub const TIME_MAX_MS: i64 = 253_402_300_800_000;

/// A point in time, in ms since the epoch: `now`, `now-15m` (units s, m, h,
/// d, w), a whole number of ms since the epoch, or RFC 3339
/// (`2026-11-25T10:00:00Z`); within years 1970–9999, so the arithmetic on
/// ranges and buckets that follows cannot overflow.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let ms = parse_time_any(text, now_ms)?;
    if !(0..TIME_MAX_MS).contains(&ms) {
        return Err(format!("{:?}: outside years 1970 to 9999", text.trim()));
    }
    Ok(ms)
}

fn parse_time_any(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = t.strip_prefix("now-") {
        let split = rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len());
        let (n, unit) = rel.split_at(split);
        let n: i64 = n.parse().map_err(|_| format!("{t:?}: expected now-<number><unit>, like now-15m"))?;
        let unit_ms: i64 = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(format!("{t:?}: the unit must be one of s, m, h, d, w")),
        };
        return n
            .checked_mul(unit_ms)
            .and_then(|d| now_ms.checked_sub(d))
            .ok_or_else(|| format!("{t:?}: too far back"));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| format!("{t:?}: too large for ms since the epoch"));
    }
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| format!("{t:?}: expected now, now-15m, ms since the epoch or RFC 3339 ({e})"))
}

#[cfg(test)]
mod tests;
