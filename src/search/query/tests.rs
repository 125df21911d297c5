//! The query language: parsing, errors, translation, highlighting and times.

use super::*;

fn text(t: &str) -> Node {
    Node::Text { text: t.into(), words: words(t), prefix: false }
}

fn exact(field: Field, v: &str) -> Node {
    Node::Exact { field, value: v.into(), prefix: false }
}

#[test]
fn words_are_lowercased_alphanumeric_runs() {
    let ws = words("GET /api/v1?x=Ünïcode  42");
    let t: Vec<_> =
        ws.iter().map(|w| (w.position, w.text.as_str(), &"GET /api/v1?x=Ünïcode  42"[w.range.clone()])).collect();
    assert_eq!(
        t,
        vec![
            (0, "get", "GET"),
            (1, "api", "api"),
            (2, "v1", "v1"),
            (3, "x", "x"),
            (4, "ünïcode", "Ünïcode"),
            (5, "42", "42")
        ]
    );
    assert!(words("").is_empty() && words(" -- ").is_empty());
    let long = "a".repeat(MAX_WORD_BYTES + 1);
    let ws = words(&format!("x {long} y"));
    assert_eq!(ws.iter().map(|w| (w.position, w.text.as_str())).collect::<Vec<_>>(), vec![(0, "x"), (2, "y")]);
}

#[test]
fn parses_the_grammar() {
    use Field::*;
    let not = |n: Node| Node::Not(Box::new(n));
    // (query, AST)
    let table: Vec<(&str, Node)> = vec![
        ("", Node::All),
        ("   ", Node::All),
        ("*", Node::All),
        ("error", text("error")),
        ("\"disk full\"", text("disk full")),
        ("a b", Node::And(vec![text("a"), text("b")])),
        ("a AND b", Node::And(vec![text("a"), text("b")])),
        ("a OR b c", Node::Or(vec![text("a"), Node::And(vec![text("b"), text("c")])])),
        ("a OR b OR c", Node::Or(vec![text("a"), text("b"), text("c")])),
        ("(a OR b) c", Node::And(vec![Node::Or(vec![text("a"), text("b")]), text("c")])),
        ("NOT a", not(text("a"))),
        ("-a", not(text("a"))),
        ("NOT NOT a", text("a")),
        ("a -b", Node::And(vec![text("a"), not(text("b"))])),
        ("-(a b)", not(Node::And(vec![text("a"), text("b")]))),
        ("host:web-1", exact(Host, "web-1")),
        ("host.name:web-1", exact(Host, "web-1")),
        ("path:\"/var/log/my app.log\"", exact(Path, "/var/log/my app.log")),
        ("path:/var/log/*", Node::Exact { field: Path, value: "/var/log/".into(), prefix: true }),
        ("topic:\"a*\"", exact(Topic, "a*")),
        ("message:Error", text("Error")),
        ("time*", Node::Text { text: "time".into(), words: words("time"), prefix: true }),
        ("status:500", text("status:500")),
        ("and or", Node::And(vec![text("and"), text("or")])),
        ("\"say \\\"hi\\\"\"", text("say \"hi\"")),
        (
            "a AND (b OR (c d))",
            Node::And(vec![text("a"), Node::Or(vec![text("b"), Node::And(vec![text("c"), text("d")])])]),
        ),
    ];
    for (q, want) in table {
        assert_eq!(parse(q), Ok(want), "{q:?}");
    }
}

#[test]
fn errors_say_where_and_what_was_expected() {
    // (query, character position, words in `expected`, words in `found`)
    let table: &[(&str, usize, &str, &str)] = &[
        ("a AND", 5, "a word", "end of the query"),
        ("OR a", 0, "a word", "OR"),
        ("(a b", 4, ") to close the ( at character 1", "end of the query"),
        ("a)", 1, "closes nothing", ")"),
        ("()", 1, "inside the parentheses", ")"),
        ("\"open", 0, "closing \"", "end of the query"),
        ("host:", 5, "a value right after host:", "end of the query"),
        ("host: web", 5, "a value right after host:", "a space"),
        ("host:(a OR b)", 5, "(host:a OR host:b)", "("),
        ("...", 0, "letters or digits", "\"...\""),
        ("\"\"", 0, "letters or digits", "\"\""),
        ("foo-bar*", 0, "single word before *", "\"foo-bar*\""),
        ("é AND", 5, "a word", "end"),
        ("a NOT", 5, "a word", "end"),
    ];
    for &(q, pos, expected, found) in table {
        let e = parse(q).unwrap_err();
        assert_eq!(e.position, pos, "{q:?}: {e}");
        assert!(e.expected.contains(expected), "{q:?}: {e}");
        assert!(e.found.contains(found), "{q:?}: {e}");
        assert!(e.to_string().starts_with(&format!("at character {}", pos + 1)), "{e}");
    }
    let long = |n: usize| format!("a host:{}*", "é".repeat(n / 2));
    let e = parse(&long(MAX_PREFIX_BYTES + 2)).unwrap_err();
    assert_eq!((e.position, e.found.as_str()), (2, "514 bytes"), "{e}");
    assert!(e.expected.contains("at most 512 bytes"), "{e}");
    assert!(parse(&long(MAX_PREFIX_BYTES)).is_ok());
    let deep = "(".repeat(MAX_DEPTH + 1) + "a" + &")".repeat(MAX_DEPTH + 1);
    assert!(parse(&deep).unwrap_err().expected.contains("levels"));
    assert!(parse(&"NOT ".repeat(MAX_DEPTH + 1)).is_err());
    assert!(parse(&"a ".repeat(MAX_QUERY_BYTES)).is_err());
}

fn doc<'a>(message: &'a str, host: &'a str) -> DocView<'a> {
    DocView { message, host, path: "/var/log/app.log", topic: "app" }
}

#[test]
fn the_model_matches_lines() {
    let d = doc("POST /api/v1/items 500 Error: disk full (timeout)", "web-1");
    // (query, matches)
    let table: &[(&str, bool)] = &[
        ("", true),
        ("error", true),
        ("ERROR", true),
        ("err", false),
        ("err*", true),
        ("\"disk full\"", true),
        ("\"full disk\"", false),
        ("api/v1/items", true),
        ("\"api items\"", false),
        ("disk full", true),
        ("disk AND nothere", false),
        ("disk OR nothere", true),
        ("NOT disk", false),
        ("-nothere", true),
        ("host:web-1", true),
        ("host:web", false),
        ("host:web*", true),
        ("host:WEB-1", false),
        ("path:/var/log/app.log topic:app", true),
        ("topic:ap", false),
        ("(nothere OR timeout) -host:web-2", true),
        ("message:500", true),
    ];
    for &(q, want) in table {
        assert_eq!(parse(q).unwrap().matches(&d), want, "{q:?}");
    }
}

#[test]
fn highlights_are_character_ranges_of_positive_terms() {
    let m = "Ünï error: disk full, error again";
    let h = |q: &str| parse(q).unwrap().highlights(m);
    assert_eq!(h("error"), vec![4..9, 22..27]);
    assert_eq!(h("\"disk full\""), vec![11..15, 16..20]);
    assert_eq!(h("ünï"), vec![0..3]);
    assert_eq!(h("err* -disk"), vec![4..9, 22..27]);
    assert_eq!(h("host:x"), Vec::<Range<usize>>::new());
    assert_eq!(h("error OR again"), vec![4..9, 22..27, 28..33]);
}

#[test]
fn the_longest_prefixes_translate_for_the_embedded_index() {
    // tantivy builds a prefix's automaton with a state per byte and
    // refuses past 1,000 states (`index::to_tantivy` then errs).
    for field in ["host", "path", "topic"] {
        let q = format!("{field}:{}*", "é".repeat(MAX_PREFIX_BYTES / 2));
        assert!(crate::embedded::index::to_tantivy(&parse(&q).unwrap()).is_ok(), "{field}");
    }
    // Words are at most MAX_WORD_BYTES; lower-casing may lengthen them.
    let q = parse(&format!("{}*", "Ⱥ".repeat(MAX_WORD_BYTES / 2))).unwrap();
    assert!(crate::embedded::index::to_tantivy(&q).is_ok());
}

#[test]
fn elasticsearch_queries_are_bool_trees_of_the_ast() {
    let q = parse("error -host:web-1 (path:/var/* OR \"disk full\") tim*").unwrap();
    assert_eq!(
        es_query(&q),
        json!({"bool": {
            "filter": [
                {"match_phrase": {"message": {"query": "error"}}},
                {"bool": {"should": [
                    {"prefix": {"log.file.path": {"value": "/var/"}}},
                    {"match_phrase": {"message": {"query": "disk full"}}}
                ], "minimum_should_match": 1}},
                {"prefix": {"message": {"value": "tim"}}}
            ],
            "must_not": [{"term": {"host.name": {"value": "web-1"}}}]
        }})
    );
    assert_eq!(
        es_query(&parse("NOT a").unwrap()),
        json!({"bool": {"must_not": [{"match_phrase": {"message": {"query": "a"}}}]}})
    );
    let r = es_query_in_range(&Node::All, 1, 2);
    assert_eq!(r["bool"]["filter"][0]["range"]["@timestamp"]["lt"], 2);
}

#[test]
fn times() {
    let now = 1_800_000_000_000;
    assert_eq!(parse_time("now", now), Ok(now));
    assert_eq!(parse_time("now-15m", now), Ok(now - 900_000));
    assert_eq!(parse_time("now-2d", now), Ok(now - 2 * 86_400_000));
    assert_eq!(parse_time("1700000000123", now), Ok(1_700_000_000_123));
    assert_eq!(parse_time("2026-11-25T10:00:00.5Z", now), Ok(1_795_600_800_500));
    assert_eq!(parse_time("253402300799999", now), Ok(TIME_MAX_MS - 1));
    for bad in [
        "",
        "yesterday",
        "now-15",
        "now-x m",
        "now-5y",
        "2026-13-01T00:00:00Z",
        "99999999999999999999999",
        "9223372036854775807",
        "253402300800000",
        "now-9223372036854775s",
        "now-100000w",
        "1969-12-31T23:59:59Z",
    ] {
        assert!(parse_time(bad, now).is_err(), "{bad}");
    }
}

#[test]
fn highlighting_a_huge_line_of_one_word_is_bounded() {
    // 1 MiB of one repeated word: every word matches both queries.
    let line = "error ".repeat((1 << 20) / 6);
    for q in ["error", "\"error error\"", "err*"] {
        let h = parse(q).unwrap().highlights(&line);
        assert_eq!(h.len(), HIGHLIGHT_MAX_RANGES, "{q}");
        assert!(h.iter().all(|r| r.end <= HIGHLIGHT_MAX_BYTES), "{q}: only the analysed part");
        assert_eq!(h[0], 0..5, "{q}");
    }
    // A multi-byte character across the cut is not split.
    let wide = format!("{}é error", "a".repeat(HIGHLIGHT_MAX_BYTES - 1));
    assert!(parse("error").unwrap().highlights(&wide).is_empty());
}

#[test]
fn at_most_sixteen_prefixes_in_one_query() {
    let many = |n: usize| (0..n).map(|i| format!("ab{i}*")).collect::<Vec<_>>().join(" OR ");
    assert!(parse(&many(MAX_PREFIXES)).is_ok());
    let e = parse(&many(MAX_PREFIXES + 1)).unwrap_err();
    assert!(e.to_string().contains("at most 16 prefixes"), "{e}");
    let mixed = format!("{} AND NOT (path:/x/* OR host:h*)", many(MAX_PREFIXES - 1));
    assert!(parse(&mixed).unwrap_err().to_string().contains("17"));
}
