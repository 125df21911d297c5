//! The query parser: any text gives an AST or an error, never a panic or a
//! stack overflow; an error points inside the text; an AST translates to
//! tantivy and Elasticsearch queries, its highlights are character ranges of
//! the message, and the model gives the same answer as the model of the
//! AST's parts (De Morgan on the top node).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logcollect::query::{self, DocView, Node};

const MESSAGE: &str = "GET /api/v1 error: Disk full Ünï 42 timeout";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match query::parse(text) {
        Err(e) => {
            assert!(e.position <= text.chars().count(), "{e} in {text:?}");
            assert!(!e.expected.is_empty() && !e.found.is_empty(), "{e:?}");
        }
        Ok(node) => {
            let _ = logcollect::to_tantivy(&node);
            let es = query::es_query_in_range(&node, 0, 1);
            assert!(serde_json::to_string(&es).is_ok());
            let chars = MESSAGE.chars().count();
            let mut last = 0;
            for r in node.highlights(MESSAGE) {
                assert!(r.start < r.end && r.end <= chars && r.start >= last, "{r:?} for {text:?}");
                last = r.end;
            }
            let doc = DocView { message: MESSAGE, host: "web-1", path: "/var/log/a.log", topic: "app" };
            let m = node.matches(&doc);
            match &node {
                Node::And(k) => assert_eq!(m, k.iter().all(|n| n.matches(&doc))),
                Node::Or(k) => assert_eq!(m, k.iter().any(|n| n.matches(&doc))),
                Node::Not(n) => assert_eq!(m, !n.matches(&doc)),
                _ => {}
            }
        }
    }
});
