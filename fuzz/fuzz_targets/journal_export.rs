//! The journal export-format parser (`logcollect::journal_export`), over
//! arbitrary bytes fed in chunks.
//!
//! Input: byte 0 is the chunk size (1 + b), so an entry, a field name, a
//! binary length or its bytes are split across reads at every place; the
//! rest is the stream. Checks: parsing the whole stream at once and
//! chunk by chunk gives the same entries (same MESSAGE, cursor, field
//! counts) and the same error; what an entry consumed is never more than
//! the buffer; an entry's borrowed fields lie within what it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logcollect::journal_export::{next_entry, ExportError};

/// (MESSAGE, cursor, fields) of each entry, and the error that ended it.
type Parsed = (Vec<(Option<Vec<u8>>, Option<Vec<u8>>, usize)>, Option<ExportError>);

fn parse(stream: &[u8], chunk: usize) -> Parsed {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match next_entry(&buf) {
                Ok(Some((e, used))) => {
                    assert!(used <= buf.len() && used > 0);
                    let base = buf.as_ptr() as usize;
                    for f in [e.message, e.cursor, e.unit, e.pid, e.ident, e.priority, e.hostname].into_iter().flatten()
                    {
                        let at = f.as_ptr() as usize - base;
                        assert!(at + f.len() <= used, "a field outside its entry");
                    }
                    out.push((e.message.map(<[u8]>::to_vec), e.cursor.map(<[u8]>::to_vec), e.fields));
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(err) => return (out, Some(err)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, stream)) = data.split_first() else { return };
    let whole = parse(stream, stream.len());
    let chunked = parse(stream, 1 + c as usize);
    // An error's offset is within the entry, so it is the same both ways.
    assert_eq!(whole, chunked);
});
