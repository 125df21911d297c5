//! The `_bulk` response classifier (`elastic::classify::classify`).
//!
//! Input layout: byte 0 picks the mode (bit 0), the rest drives it.
//! - Raw (bit 0 clear): bytes 1..=2 are the expected item count (`u16`,
//!   little endian, `% 2048`), the rest is the response body as it comes.
//!   `classify` must not panic; when it says `Ok`, there are exactly as many
//!   outcomes as expected and their counts add up.
//! - Built (bit 0 set): a well-formed response is written from the input:
//!   byte 1 sets the shape (bit 0 `errors` written before `items`, bit 1
//!   extra fields `took`/`ingest_took`, bit 2 whitespace and newlines
//!   between tokens, bit 3 `errors:false` when every item is 2xx (else
//!   `errors:true`, which must be read item by item all the same), bit 4
//!   unknown extra keys inside items); then 3 bytes per item: the status
//!   (from a table of real ones, or raw when the high bit of the first byte
//!   is set), the action (`create`, `index`, `update`, `delete`) and
//!   whether it has an `error` object (type, reason, sometimes a
//!   `caused_by`, or a bare string), whose texts are the next field bytes of
//!   the input, any bytes, JSON-escaped by serde_json. `classify` must say
//!   `Ok` with one outcome per item, each exactly what the status says:
//!   2xx `Done`, 409 to `create` `Duplicate`, 429 and 5xx `Retry`, others
//!   `Reject`, with the error's type and reason (and its cause).
//!
//! The expected count of a built response is its item count; a second call
//! with one more expected item must fail (the count check), and the
//! `Outcomes` are reused across calls, as the transfer does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logcollect::classify::{classify, ClassifyError, ItemError, ItemOutcome, Outcomes};
use std::fmt::Write;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let b = self.0.first().copied().unwrap_or(0);
        self.0 = self.0.get(1..).unwrap_or(&[]);
        b
    }

    /// A length byte (`% 24`, short texts) and that many bytes, as text.
    fn text(&mut self) -> String {
        let n = (self.byte() % 24) as usize;
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        String::from_utf8_lossy(head).into_owned()
    }
}

/// Statuses Elasticsearch answers items with.
const STATUSES: [u16; 16] = [200, 201, 201, 201, 202, 400, 403, 404, 409, 409, 413, 429, 500, 502, 503, 504];
const ACTIONS: [&str; 4] = ["create", "index", "update", "delete"];

fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fuzz_target!(|data: &[u8]| {
    let mut out = Outcomes::new();
    let mut inp = Input(data);
    if inp.byte() & 1 == 0 {
        let expected = (usize::from(inp.byte()) | usize::from(inp.byte()) << 8) % 2048;
        let mut body = inp.0.to_vec();
        if classify(&mut body, expected, &mut out).is_ok() {
            assert_eq!(out.len(), expected);
            assert_eq!(out.iter().count(), expected);
            let c = out.counts();
            assert_eq!(c.done + c.duplicate + c.retry + c.reject, expected);
        } else {
            assert!(out.is_empty(), "outcomes are cleared on error");
        }
        return;
    }

    let shape = inp.byte();
    let ws = if shape & 4 != 0 { " \n\t" } else { "" };
    let mut items = String::new();
    let mut want = Vec::new();
    while !inp.0.is_empty() && want.len() < 1000 {
        let (a, b, c) = (inp.byte(), inp.byte(), inp.byte());
        let status = if a & 0x80 != 0 { u16::from(a & 0x7f) << 8 | u16::from(b) } else { STATUSES[usize::from(a % 16)] };
        let action = ACTIONS[usize::from(b % 4)];
        let (mut kind, mut reason) = (String::new(), String::new());
        let mut fields = format!(r#""status"{ws}:{ws}{status}"#);
        if shape & 16 != 0 {
            fields = format!(r#""_index":"i","_id":"x{}",{fields},"_version":1,"result":"created""#, want.len());
        }
        match c % 4 {
            0 => {}
            1 => {
                kind = inp.text();
                reason = inp.text();
                let _ = write!(fields, r#","error":{{"type":{},"reason":{}}}"#, json(&kind), json(&reason));
            }
            2 => {
                kind = inp.text();
                reason = inp.text();
                let (ck, cr) = (inp.text(), inp.text());
                let _ = write!(
                    fields,
                    r#","error":{{"root_cause":[],"type":{},"reason":{},"caused_by":{{"type":{},"reason":{}}}}}"#,
                    json(&kind),
                    json(&reason),
                    json(&ck),
                    json(&cr)
                );
                reason = format!("{reason}; caused by {ck}: {cr}");
            }
            _ => {
                reason = inp.text();
                let _ = write!(fields, r#","error":{}"#, json(&reason));
            }
        }
        if !items.is_empty() {
            items.push(',');
        }
        let _ = write!(items, r#"{ws}{{"{action}"{ws}:{ws}{{{fields}}}}}"#);
        let err = ItemError { status, kind, reason };
        want.push(match status {
            200..=299 => ItemOutcome::Done,
            409 if action == "create" => ItemOutcome::Duplicate,
            429 | 500..=599 => ItemOutcome::Retry(err),
            _ => ItemOutcome::Reject(err),
        });
    }
    let all_ok = want.iter().all(|o| *o == ItemOutcome::Done);
    // Elasticsearch says `errors:true` when an item failed; `true` with
    // only successes must be read item by item all the same.
    let errors = if all_ok && shape & 8 != 0 { "false" } else { "true" };
    let mut body = String::from("{");
    let extra = if shape & 2 != 0 { r#""took":17,"ingest_took":0,"# } else { "" };
    body.push_str(extra);
    if shape & 1 != 0 {
        let _ = write!(body, r#"{ws}"errors"{ws}:{ws}{errors},"items":[{items}{ws}]}}"#);
    } else {
        let _ = write!(body, r#""items"{ws}:{ws}[{items}],{ws}"errors":{errors}{ws}}}"#);
    }

    let mut bytes = body.clone().into_bytes();
    classify(&mut bytes, want.len(), &mut out).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(out.len(), want.len(), "{body}");
    let got: Vec<ItemOutcome> = out.iter().cloned().collect();
    assert_eq!(got, want, "{body}");
    if errors == "false" {
        assert!(out.all_done(), "{body}");
    }

    let mut bytes = body.clone().into_bytes();
    match classify(&mut bytes, want.len() + 1, &mut out) {
        Err(ClassifyError::ItemCount { expected, got }) => assert_eq!((expected, got), (want.len() + 1, want.len())),
        other => panic!("{body}: one item too few gave {other:?}"),
    }
    assert!(out.is_empty());
});
