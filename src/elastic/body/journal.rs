//! The fields of a systemd journal entry's document (records with the
//! agent's `journal` header): ECS names, as Filebeat's journald input
//! writes them.
//!
//! ```text
//! ,"host":{"name":"web1"},"log":{"offset":4242,"level":"info","syslog":{"priority":6}},
//!  "systemd":{"unit":"ssh.service"},"process":{"pid":812,"name":"sshd"}
//! ```
//!
//! `log.offset` is the entry's sequence number in its journal; there is no
//! `log.file.path`. Fields the entry lacks are left out, and an object left
//! empty is not written.

use super::escape::write_str;
use crate::record::{Cut, Origin};

/// `log.level` of each syslog priority (RFC 5424 names, as syslog(3)).
const LEVELS: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// Writes the journal origin fields after `message`; returns whether a
/// string needed U+FFFD. `o.journal` is `Some`.
pub(super) fn write_origin(buf: &mut Vec<u8>, o: &Origin<'_>) -> bool {
    let j = o.journal.unwrap_or_default();
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(br#","host":{"name":"#);
    let mut lossy = write_str(buf, o.host);
    buf.extend_from_slice(br#"},"log":{"offset":"#);
    buf.extend_from_slice(num.format(o.offset).as_bytes());
    match o.cut {
        Cut::Truncated => buf.extend_from_slice(br#","flags":["truncated"]"#),
        // The journal source only truncates; other cuts are marked as files mark them.
        Cut::Partial => buf.extend_from_slice(br#","flags":["partial"]"#),
        Cut::Part(n) => {
            buf.extend_from_slice(br#","flags":["split"],"part":"#);
            buf.extend_from_slice(num.format(n).as_bytes());
        }
        Cut::Whole => {}
    }
    if let Some(p) = j.priority {
        buf.extend_from_slice(br#","level":""#);
        buf.extend_from_slice(LEVELS[usize::from(p & 7)].as_bytes());
        buf.extend_from_slice(br#"","syslog":{"priority":"#);
        buf.extend_from_slice(num.format(p).as_bytes());
        buf.push(b'}');
    }
    buf.push(b'}');
    if let Some(unit) = j.unit {
        buf.extend_from_slice(br#","systemd":{"unit":"#);
        lossy |= write_str(buf, unit);
        buf.push(b'}');
    }
    if j.pid.is_some() || j.ident.is_some() {
        buf.extend_from_slice(br#","process":{"#);
        if let Some(pid) = j.pid {
            buf.extend_from_slice(br#""pid":"#);
            buf.extend_from_slice(num.format(pid).as_bytes());
            if j.ident.is_some() {
                buf.push(b',');
            }
        }
        if let Some(name) = j.ident {
            buf.extend_from_slice(br#""name":"#);
            lossy |= write_str(buf, name);
        }
        buf.push(b'}');
    }
    lossy
}

#[cfg(test)]
mod tests {
    use crate::body::{BulkBody, MessageMode, PushOutcome};
    use crate::record::testutil::{origin, rec};
    use crate::record::{Cut, Journal, Origin, Record};
    use serde_json::{json, Value};

    fn doc(r: &Record<'_>) -> Value {
        let mut body = BulkBody::new(1 << 20);
        assert!(matches!(body.push(r, "journal-2026.12.04", MessageMode::Plain), PushOutcome::Added { .. }));
        let text = std::str::from_utf8(body.as_bytes()).unwrap();
        serde_json::from_str(text.lines().nth(1).unwrap()).unwrap()
    }

    #[test]
    fn journal_documents_have_ecs_fields() {
        let j = Journal { unit: Some(b"ssh.service"), ident: Some(b"sshd"), pid: Some(812), priority: Some(6) };
        let o = Origin { path: b"journal", journal: Some(j), ..origin(4242) };
        let d = doc(&Record { origin: Some(o), ..rec(b"Accepted publickey \xff") });
        assert_eq!(d["message"], "Accepted publickey \u{fffd}");
        assert_eq!(d["host"], json!({"name": "web1"}));
        assert_eq!(d["log"], json!({"offset": 4242, "level": "info", "syslog": {"priority": 6}}));
        assert_eq!(d["systemd"], json!({"unit": "ssh.service"}));
        assert_eq!(d["process"], json!({"pid": 812, "name": "sshd"}));
        assert_eq!(d["@timestamp"], "2026-11-25T10:44:34.123Z");
        // (fields present, process object): missing fields are left out.
        let table = [
            (Journal::default(), None, None),
            (Journal { pid: Some(1), ..Journal::default() }, Some(json!({"pid": 1})), None),
            (Journal { ident: Some(b"k\"x"), ..Journal::default() }, Some(json!({"name": "k\"x"})), None),
            (
                Journal { priority: Some(0), ..Journal::default() },
                None,
                Some(json!({"offset": 1, "level": "emerg", "syslog": {"priority": 0}})),
            ),
        ];
        for (j, process, log) in table {
            let o = Origin { journal: Some(j), cut: Cut::Whole, ..origin(1) };
            let d = doc(&Record { origin: Some(o), ..rec(b"m") });
            assert_eq!(d.get("process").cloned(), process, "{j:?}");
            assert_eq!(d["log"], log.unwrap_or(json!({"offset": 1})), "{j:?}");
            assert!(d.get("systemd").is_none() && d["log"].get("file").is_none());
        }
        let o = Origin { journal: Some(Journal::default()), cut: Cut::Truncated, ..origin(7) };
        assert_eq!(doc(&Record { origin: Some(o), ..rec(b"m") })["log"], json!({"offset": 7, "flags": ["truncated"]}));
    }
}
