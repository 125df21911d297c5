//! The `_bulk` response classifier: [`classify`] reads the response (sent
//! with `filter_path=errors,items.*.status,items.*.error`) into one
//! [`ItemOutcome`] per document, item `i` answering the `i`-th document
//! pushed. Pure code over bytes: the workers act on the outcomes.

use crate::elastic::tape::span;
use simd_json::{Buffers, Node, StaticNode, Tape};
use std::fmt;

/// Why Elasticsearch did not store a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemError {
    /// HTTP status of the item.
    pub status: u16,
    /// Elasticsearch's error `type` (`mapper_parsing_exception`, …); empty
    /// if the item had no error object.
    pub kind: String,
    /// The error `reason`, followed by `caused by <type>: <reason>` of the
    /// first cause when there is one.
    pub reason: String,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.kind.is_empty() {
            write!(f, " {}", self.kind)?;
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// What became of one document of a `_bulk` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored (2xx).
    Done,
    /// Already stored: 409 to a `create`, the `_id` exists (a redelivery).
    Duplicate,
    /// Refused for now (429, 5xx): send it again later.
    Retry(ItemError),
    /// Refused for good (other statuses, e.g. 400 mapping errors).
    Reject(ItemError),
}

impl ItemOutcome {
    /// Done or duplicate: the record can be acknowledged.
    pub fn is_stored(&self) -> bool {
        matches!(self, ItemOutcome::Done | ItemOutcome::Duplicate)
    }
}

static DONE: ItemOutcome = ItemOutcome::Done;

/// How many items ended which way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Stored.
    pub done: usize,
    /// Already there (409).
    pub duplicate: usize,
    /// To send again (429, 5xx).
    pub retry: usize,
    /// Refused for good.
    pub reject: usize,
}

/// The classified response of one `_bulk` request; reused between calls to
/// [`classify`] (it also keeps simd-json's buffers).
pub struct Outcomes {
    /// One per item when `all_done` is false; empty when it is true.
    items: Vec<ItemOutcome>,
    /// `errors: false`: every item is `Done` and `items` stays empty.
    all_done: bool,
    /// Number of items answered; `items.len()` unless `all_done`.
    len: usize,
    counts: Counts,
    buffers: Buffers,
    /// Kept between calls for its allocation only; always empty here.
    tape: Option<Tape<'static>>,
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes::new()
    }
}

impl fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcomes")
            .field("len", &self.len)
            .field("all_done", &self.all_done)
            .field("counts", &self.counts)
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
}

impl Outcomes {
    /// Empty outcomes, ready for [`classify`].
    pub fn new() -> Self {
        Outcomes {
            items: Vec::new(),
            all_done: true,
            len: 0,
            counts: Counts::default(),
            buffers: Buffers::default(),
            tape: None,
        }
    }

    /// Number of items (= documents sent).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every item was stored as new (the `errors: false` answer).
    pub fn all_done(&self) -> bool {
        self.all_done
    }

    /// The outcome of the `i`-th document. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> &ItemOutcome {
        assert!(i < self.len, "item {i} of {}", self.len);
        if self.all_done {
            &DONE
        } else {
            &self.items[i]
        }
    }

    /// Outcomes in document order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ItemOutcome> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }

    /// Totals per outcome.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn set_all_done(&mut self, n: usize) {
        self.items.clear();
        self.all_done = true;
        self.len = n;
        self.counts = Counts { done: n, ..Counts::default() };
    }
}

/// A `_bulk` response that cannot be matched to the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// Not JSON, or not shaped like a `_bulk` response.
    #[error("_bulk response: {what}; it starts with {excerpt:?}")]
    Malformed {
        /// What was expected and not found.
        what: String,
        /// The start of the answer.
        excerpt: String,
    },
    /// Elasticsearch refused the whole request (`{"error":…,"status":…}`).
    #[error("_bulk request refused{}: {kind}: {reason}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Request {
        /// The `status` of the answer, when it has one.
        status: Option<u16>,
        /// Elasticsearch's `error.type`.
        kind: String,
        /// Elasticsearch's `error.reason`.
        reason: String,
    },
    /// As many items as documents are expected.
    #[error("_bulk response has {got} items for {expected} documents sent")]
    ItemCount {
        /// Documents sent.
        expected: usize,
        /// Items answered.
        got: usize,
    },
}

/// Bytes of the response quoted in [`ClassifyError::Malformed`].
const EXCERPT: usize = 160;

/// Classifies a `_bulk` response for a request of `expected_items`
/// documents into `out` (item `i` answers document `i`). The body is parsed
/// in place, so it is left scrambled.
///
/// `{"errors":false}` means every document was stored; the items are then
/// not read (only counted, if present). Otherwise per item: 2xx → `Done`;
/// 409 to `create` → `Duplicate`; 429, 5xx → `Retry`; anything else →
/// `Reject`. On error `out` is left empty.
pub fn classify(body: &mut [u8], expected_items: usize, out: &mut Outcomes) -> Result<(), ClassifyError> {
    out.set_all_done(0);
    if body.trim_ascii() == br#"{"errors":false}"# {
        out.set_all_done(expected_items);
        return Ok(());
    }
    // simd-json scrambles the body: keep its head for error messages, one
    // byte more than is quoted to tell whether there was more.
    let mut head = [0u8; EXCERPT + 1];
    let head_len = body.len().min(head.len());
    head[..head_len].copy_from_slice(&body[..head_len]);
    let malformed = |what: String| ClassifyError::Malformed { what, excerpt: excerpt(&head[..head_len], EXCERPT) };

    let mut tape: Tape<'_> = out.tape.take().unwrap_or_else(Tape::null).reset();
    let result = match simd_json::fill_tape(body, &mut out.buffers, &mut tape) {
        Err(e) => Err(Fail::Malformed(format!("not JSON ({e})"))),
        Ok(()) => read_response(&tape.0, expected_items, out),
    };
    out.tape = Some(tape.reset());
    result.map_err(|fail| {
        out.set_all_done(0);
        match fail {
            Fail::Malformed(what) => malformed(what),
            Fail::Error(e) => e,
        }
    })
}

/// Why [`read_response`] gave up.
enum Fail {
    /// Becomes [`ClassifyError::Malformed`] with the excerpt.
    Malformed(String),
    Error(ClassifyError),
}

/// Iterates the entries of the object at `tape[at]`: (key, value index).
fn entries<'t, 'i>(tape: &'t [Node<'i>], at: usize) -> impl Iterator<Item = (&'i str, usize)> + 't {
    let len = match tape.get(at) {
        Some(Node::Object { len, .. }) => *len,
        _ => 0,
    };
    let mut i = at + 1;
    (0..len).map_while(move |_| {
        let key = match tape.get(i)? {
            Node::String(k) => *k,
            _ => return None,
        };
        let value = i + 1;
        i = value + span(tape.get(value)?);
        Some((key, value))
    })
}

/// Iterates the element indices of the array at `tape[at]`.
fn elements<'t>(tape: &'t [Node<'_>], at: usize) -> impl Iterator<Item = usize> + 't {
    let len = match tape.get(at) {
        Some(Node::Array { len, .. }) => *len,
        _ => 0,
    };
    let mut i = at + 1;
    (0..len).map_while(move |_| {
        let here = i;
        i += span(tape.get(here)?);
        Some(here)
    })
}

fn string_at<'i>(tape: &[Node<'i>], at: usize) -> Option<&'i str> {
    match tape.get(at)? {
        Node::String(s) => Some(s),
        _ => None,
    }
}

fn u64_at(tape: &[Node<'_>], at: usize) -> Option<u64> {
    match tape.get(at)? {
        Node::Static(StaticNode::U64(n)) => Some(*n),
        Node::Static(StaticNode::I64(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn read_response(tape: &[Node<'_>], expected: usize, out: &mut Outcomes) -> Result<(), Fail> {
    if !matches!(tape.first(), Some(Node::Object { .. })) {
        return Err(Fail::Malformed("not a JSON object".into()));
    }
    let (mut errors, mut items, mut error, mut status) = (None, None, None, None);
    for (key, v) in entries(tape, 0) {
        match key {
            "errors" => match tape[v] {
                Node::Static(StaticNode::Bool(b)) => errors = Some(b),
                _ => return Err(Fail::Malformed("\"errors\" is not a boolean".into())),
            },
            "items" => items = Some(v),
            "error" => error = Some(v),
            "status" => status = u64_at(tape, v).and_then(|s| u16::try_from(s).ok()),
            _ => {}
        }
    }
    let items = match items {
        Some(v) => match tape[v] {
            Node::Array { len, .. } if len == expected => Some(v),
            Node::Array { len, .. } => return Err(Fail::Error(ClassifyError::ItemCount { expected, got: len })),
            _ => return Err(Fail::Malformed("\"items\" is not an array".into())),
        },
        None => None,
    };
    match (errors, items, error) {
        (Some(false), _, _) => {
            // Everything was stored: the items need not be read.
            out.set_all_done(expected);
            Ok(())
        }
        (_, Some(items), _) => {
            out.all_done = false;
            out.len = expected;
            out.items.reserve(expected);
            for (n, item) in elements(tape, items).enumerate() {
                let outcome = read_item(tape, item)
                    .ok_or_else(|| Fail::Malformed(format!("item {n} has no action with a status")))?;
                match &outcome {
                    ItemOutcome::Done => out.counts.done += 1,
                    ItemOutcome::Duplicate => out.counts.duplicate += 1,
                    ItemOutcome::Retry(_) => out.counts.retry += 1,
                    ItemOutcome::Reject(_) => out.counts.reject += 1,
                }
                out.items.push(outcome);
            }
            Ok(())
        }
        (_, None, Some(e)) => {
            let (kind, reason) = error_text(tape, e);
            Err(Fail::Error(ClassifyError::Request { status, kind, reason }))
        }
        (Some(true), None, None) => Err(Fail::Malformed("\"errors\" is true but there are no items".into())),
        (None, None, None) => Err(Fail::Malformed("neither \"errors\" nor \"items\"".into())),
    }
}

/// `{"<action>":{"status":N,"error":{…}}}` → outcome; `None` if malformed.
fn read_item(tape: &[Node<'_>], item: usize) -> Option<ItemOutcome> {
    let (action, body) = entries(tape, item).next()?;
    let (mut status, mut error) = (None, None);
    for (key, v) in entries(tape, body) {
        match key {
            "status" => status = u64_at(tape, v).and_then(|s| u16::try_from(s).ok()),
            "error" => error = Some(v),
            _ => {}
        }
    }
    let status = status?;
    let failure = || {
        let (kind, reason) = error.map(|e| error_text(tape, e)).unwrap_or_default();
        ItemError { status, kind, reason }
    };
    Some(match status {
        200..=299 => ItemOutcome::Done,
        // The `_id` exists: this record was stored before (redelivery).
        409 if action == "create" => ItemOutcome::Duplicate,
        429 | 500..=599 => ItemOutcome::Retry(failure()),
        _ => ItemOutcome::Reject(failure()),
    })
}

/// (type, reason + first cause) of an Elasticsearch error object; a bare
/// string is taken as the reason.
fn error_text(tape: &[Node<'_>], at: usize) -> (String, String) {
    if let Some(s) = string_at(tape, at) {
        return (String::new(), s.to_string());
    }
    let (mut kind, mut reason, mut cause) = ("", "", None);
    for (key, v) in entries(tape, at) {
        match key {
            "type" => kind = string_at(tape, v).unwrap_or(""),
            "reason" => reason = string_at(tape, v).unwrap_or(""),
            "caused_by" => cause = Some(v),
            _ => {}
        }
    }
    let mut reason = reason.to_string();
    if let Some(c) = cause {
        let (ck, cr) = (
            entries(tape, c).find(|e| e.0 == "type").and_then(|e| string_at(tape, e.1)),
            entries(tape, c).find(|e| e.0 == "reason").and_then(|e| string_at(tape, e.1)),
        );
        if ck.is_some() || cr.is_some() {
            reason.push_str(&format!("; caused by {}: {}", ck.unwrap_or(""), cr.unwrap_or("")));
        }
    }
    (kind.to_string(), reason)
}

/// The first `max` bytes of an answer, for a message: lossy UTF-8, on one
/// line (newlines become spaces), and `…` when there was more.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).replace('\n', " ");
    if bytes.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str, expected: usize) -> Result<Outcomes, ClassifyError> {
        let mut out = Outcomes::new();
        let mut bytes = body.as_bytes().to_vec();
        classify(&mut bytes, expected, &mut out).map(|()| out)
    }

    fn err(status: u16, kind: &str, reason: &str) -> ItemError {
        ItemError { status, kind: kind.into(), reason: reason.into() }
    }

    #[test]
    fn classify_table() {
        use ItemOutcome::*;
        // (response, expected items, outcomes)
        let table: Vec<(&str, usize, Vec<ItemOutcome>)> = vec![
            (r#"{"errors":false}"#, 3, vec![Done, Done, Done]),
            (" {\"errors\":false}\n", 0, vec![]),
            (r#"{ "errors" : false }"#, 2, vec![Done, Done]),
            (r#"{"took":3,"errors":false,"items":[{"create":{"status":201}}]}"#, 1, vec![Done]),
            (
                r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict"}}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},{"create":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary not active"}}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}},{"index":{"status":409}},{"create":{"status":404,"error":"no such index"}},{"create":{"status":200}}]}"#,
                8,
                vec![
                    Done,
                    Duplicate,
                    Retry(err(429, "es_rejected_execution_exception", "queue full")),
                    Retry(err(503, "unavailable_shards_exception", "primary not active")),
                    Reject(err(
                        400,
                        "mapper_parsing_exception",
                        "failed to parse field [n]; caused by illegal_argument_exception: For input string: \"abc\"",
                    )),
                    Reject(err(409, "", "")),
                    Reject(err(404, "", "no such index")),
                    Done,
                ],
            ),
            (r#"{"items":[{"create":{"status":500}}]}"#, 1, vec![Retry(err(500, "", ""))]),
        ];
        for (body, expected, want) in table {
            let out = run(body, expected).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(out.len(), want.len(), "{body}");
            assert_eq!(out.iter().cloned().collect::<Vec<_>>(), want, "{body}");
            let c = out.counts();
            let count = |f: fn(&ItemOutcome) -> bool| want.iter().filter(|o| f(o)).count();
            assert_eq!(
                (c.done, c.duplicate, c.retry, c.reject),
                (
                    count(|o| matches!(o, Done)),
                    count(|o| matches!(o, Duplicate)),
                    count(|o| matches!(o, Retry(_))),
                    count(|o| matches!(o, Reject(_)))
                ),
                "{body}"
            );
            assert_eq!(out.all_done(), want.iter().all(|o| *o == Done), "{body}");
        }
    }

    #[test]
    fn classify_errors() {
        // (response, expected items, error fragment)
        let table: &[(&str, usize, &str)] = &[
            ("", 1, "not JSON"),
            ("<html>502 Bad Gateway</html>", 1, "<html>502 Bad Gateway</html>"),
            ("[1,2]", 1, "not a JSON object"),
            ("{}", 1, "neither"),
            (r#"{"errors":"no"}"#, 1, "not a boolean"),
            (r#"{"errors":true}"#, 1, "no items"),
            (r#"{"errors":true,"items":{}}"#, 1, "not an array"),
            (r#"{"errors":true,"items":[{"create":{"status":201}}]}"#, 2, "1 items for 2 documents"),
            (r#"{"errors":false,"items":[]}"#, 2, "0 items for 2 documents"),
            (r#"{"errors":true,"items":[{"create":{}}]}"#, 1, "item 0 has no action"),
            (r#"{"errors":true,"items":[{}]}"#, 1, "item 0 has no action"),
            (r#"{"errors":true,"items":[7]}"#, 1, "item 0 has no action"),
            (r#"{"errors":true,"items":[{"create":{"status":70000}}]}"#, 1, "item 0"),
            (
                r#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline"},"status":400}"#,
                3,
                "refused with status 400: illegal_argument_exception: The bulk request must be terminated by a newline",
            ),
        ];
        for &(body, expected, fragment) in table {
            let mut out = Outcomes::new();
            let mut bytes = body.as_bytes().to_vec();
            let e = classify(&mut bytes, expected, &mut out).expect_err(body);
            assert!(e.to_string().contains(fragment), "{body}: {e}");
            assert!(out.is_empty(), "{body}: outcomes cleared on error");
        }
        let long = format!("garbage {}", "x".repeat(1000));
        let e = run(&long, 1).unwrap_err().to_string();
        assert!(e.len() < 400 && e.contains('…'), "{e}");
    }

    #[test]
    fn excerpts() {
        // (answer, max, excerpt)
        let table: &[(&[u8], usize, &str)] = &[
            (b"", 4, ""),
            (b"abcd", 4, "abcd"),
            (b"abcde", 4, "abcd…"),
            (b"a\nb\n", 4, "a b "),
            (b"<html>\n502\n</html>", 9, "<html> 50…"),
            ("é".as_bytes(), 1, "\u{FFFD}…"),
            (b"\xff", 4, "\u{FFFD}"),
        ];
        for &(answer, max, want) in table {
            assert_eq!(excerpt(answer, max), want, "{answer:?}");
        }
    }

    #[test]
    fn outcomes_are_reused() {
        let mut out = Outcomes::new();
        let mut mixed = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429}}]}"#.to_vec();
        classify(&mut mixed, 2, &mut out).unwrap();
        assert_eq!(out.counts().retry, 1);
        let mut ok = br#"{"errors":false}"#.to_vec();
        classify(&mut ok, 5, &mut out).unwrap();
        assert!(out.all_done());
        assert_eq!(out.len(), 5);
        assert_eq!(out.get(4), &ItemOutcome::Done);
        assert_eq!(out.counts(), Counts { done: 5, ..Counts::default() });
        let mut mixed = br#"{"errors":true,"items":[{"create":{"status":400}}]}"#.to_vec();
        classify(&mut mixed, 1, &mut out).unwrap();
        assert_eq!(out.iter().filter(|o| !o.is_stored()).count(), 1);
    }
}
