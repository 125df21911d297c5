#!/usr/bin/env python3
"""Writes the seeds of the `bulk_body` and `classify` fuzz targets into
fuzz/seeds/<target>/ (the layouts are described at the top of each target).
Run from anywhere: python3 fuzz/seeds/make.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- bulk_body --------------------------------------------------------------
PARSE_JSON, ORIGIN, TS, FOREIGN_TOPIC = 1, 2, 0x10, 0x80
WHOLE, TRUNCATED, PARTIAL, PART = 0, 1 << 2, 2 << 2, 3 << 2


def field(b):
    assert len(b) < 256
    return bytes([len(b)]) + b


def record(value, flags=ORIGIN | TS, partition=0, offset=0, ts=1795603474123, repeat=0,
           host=b"web-17", path=b"/var/log/app.log", fid=b"803-1a2b3c-9f8e7d6c", file_offset=0, part=1):
    out = bytes([flags | repeat << 5, partition & 0xFF]) + struct.pack("<q", offset)
    if flags & TS:
        out += struct.pack("<q", ts)
    out += field(value)
    if flags & ORIGIN:
        out += field(host) + field(path) + field(fid) + struct.pack("<Q", file_offset)
        if flags & (3 << 2) == PART:
            out += struct.pack("<I", part)
    return out


def body(max_sel, *records):
    return bytes([max_sel]) + b"".join(records)


write("bulk_body", "access_lines", body(200,
    record(b'10.1.2.3 - - [25/Nov/2026:10:44:34 +0000] "GET /api/v1/orders?id=7 HTTP/1.1" 200 512 "-" "curl/8.5"'),
    record(b"2026-11-25T10:44:34.123Z INFO  [worker-3] c.e.OrderService: placed order 42", offset=1, file_offset=97)))
write("bulk_body", "escapes_and_controls", body(255,
    record(b'quote " backslash \\ nl \n cr \r tab \t nul \x00 us \x1f del \x7f slash /'),
    record(b'"\\"\\\\\x01\x02\x03\x08\x0c', flags=ORIGIN, offset=2)))
write("bulk_body", "invalid_utf8", body(255,
    record(b"caf\xe9 \xff\xfe lone, cut \xe2\x82 and ok \xe2\x82\xac \xc3(", host=b"h\xffst", path=b"/var/log/\xc3.log"),
    record(b"\xed\xa0\x80 surrogate, \xf4\x90\x80\x80 too big, \xc0\xaf overlong", flags=0, offset=9)))
write("bulk_body", "json_merge", body(255,
    record(b'{"level":"info","host":"x","_id":"y","a.b":1,"json_k":2,"n":[1,2.5,-0,{"m":null}],"s":"\\u00e9\\n"}',
           flags=PARSE_JSON | ORIGIN | TS),
    record(b'  {"message":"inner","kafka":{"x":1e3},"@timestamp":"no"}', flags=PARSE_JSON, offset=1)))
write("bulk_body", "json_refused", body(255,
    record(b'{"a":1,"a":2}', flags=PARSE_JSON | ORIGIN),
    record(b'{"":1}', flags=PARSE_JSON),
    record(b'{"a..b":1, "c": {"d": {"d": 1, "d": 2}}}', flags=PARSE_JSON),
    record(b'{"x":' * 25 + b"1" + b"}" * 25, flags=PARSE_JSON),
    record(b'{"x": tru}', flags=PARSE_JSON),
    record(b'[1,2]', flags=PARSE_JSON)))
write("bulk_body", "cuts", body(255,
    record(b"whole", flags=ORIGIN | WHOLE),
    record(b"truncated", flags=ORIGIN | TRUNCATED),
    record(b"partial", flags=ORIGIN | PARTIAL),
    record(b"part seven", flags=ORIGIN | PART, part=7),
    record(b"part max", flags=ORIGIN | PART, part=0xFFFFFFFF)))
write("bulk_body", "timestamps_edge", body(255,
    record(b"epoch-1", ts=-1), record(b"max", ts=2**63 - 1), record(b"min", ts=-2**63),
    record(b"9999", ts=253402300799999), record(b"10000", ts=253402300800000),
    record(b"year0", ts=-62167219200000), record(b"before0", ts=-62167219200001)))
write("bulk_body", "body_full_reuse", body(0, *[record(b"line %d" % i, offset=i, file_offset=7 * i) for i in range(12)]))
write("bulk_body", "long_repeated", body(255,
    record(b'0123456789abcdef "q" \\ \t\xc3\xa9', repeat=3),
    record(b"abcdefgh", repeat=2, flags=0)))
write("bulk_body", "foreign_records", body(255,
    record(b"no headers", flags=FOREIGN_TOPIC, partition=-1, offset=-5),
    record(b"no headers, a timestamp", flags=FOREIGN_TOPIC | TS, partition=127, offset=2**63 - 1)))

# --- classify -----------------------------------------------------------------


def raw(expected, text):
    return bytes([0]) + struct.pack("<H", expected) + text


write("classify", "raw_errors_false", raw(3, b'{"errors":false}'))
write("classify", "raw_mixed", raw(4, json.dumps({"took": 3, "errors": True, "items": [
    {"create": {"status": 201}},
    {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
    {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue"}}},
    {"create": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad",
                                         "caused_by": {"type": "illegal_argument_exception", "reason": "x"}}}},
]}).encode()))
write("classify", "raw_request_error", raw(2, b'{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline"},"status":400}'))
write("classify", "raw_html", raw(1, b"<html><body>502 Bad Gateway</body></html>"))
write("classify", "raw_count_mismatch", raw(2, b'{"errors":false,"items":[{"create":{"status":201}}]}'))
write("classify", "raw_deep", raw(1, b'{"errors":true,"items":[' + b"[" * 200 + b"]" * 200 + b"]}"))
write("classify", "raw_odd_status", raw(2, b'{"errors":true,"items":[{"create":{"status":-1}},{"create":{"status":1e3}}]}'))


def built(shape, *items):
    return bytes([1, shape]) + b"".join(items)


def item(status_sel, action, err, *texts):
    out = bytes([status_sel, action, err])
    for t in texts:
        out += bytes([len(t)]) + t
    return out


CREATE, INDEX, UPDATE, DELETE = 0, 1, 2, 3
# status table index: 0=200 1..3=201 4=202 5=400 6=403 7=404 8,9=409 10=413 11=429 12=500 13=502 14=503 15=504
write("classify", "built_all_ok", built(0x0B, *[item(1, CREATE, 0)] * 3))
write("classify", "built_mixed", built(0x15,
    item(1, CREATE, 0), item(8, CREATE, 1, b"version_conflict_engine_exception", b"exists"),
    item(11, CREATE, 1, b"es_rejected_execution_exception", b"queue \"full\""),
    item(5, CREATE, 2, b"mapper_parsing_exception", b"failed", b"illegal_argument_exception", b"\xff\x00"),
    item(14, INDEX, 3, b"unavailable"), item(9, UPDATE, 0), item(7, DELETE, 1, b"", b"")))
write("classify", "built_raw_statuses", built(0x06,
    item(0x80 | 0x02, 0x58, 0), item(0x80, 0x00, 0), item(0x80 | 0x7F, 0xFF, 3, b"big")))
write("classify", "built_empty", built(0x09))
