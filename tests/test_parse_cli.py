"""`python -m sylog parse` end to end: one JSON line per input line, errors as {"error": ...}, bytes survive."""

from __future__ import annotations

import json
import subprocess
import sys

KEYS = ["format", "pri", "facility", "severity", "version", "timestamp", "hostname", "app_name", "procid", "msgid",
        "structured_data", "msg"]

LINES = [
    b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
    b'eventSource="Application" eventID="1011"] \xef\xbb\xbfAn application event log entry...',
    b"<4>Nov 25 10:00:00 db-07 kernel: [   12.345678] BUG: kernel NULL pointer dereference\r",
    b"<13>Nov 25 10:00:00 h app: caf\xc3\xa9 \xff\xfe end",
    b"",
    b"<13>1 2003-13-11T22:14:15Z h a - - - bad month",
    b"<abc>x",
]


def run(args: list[str], data: bytes) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "sylog", "parse", *args], input=data, capture_output=True,
                       timeout=60, check=True)
    out = r.stdout.decode("utf-8")  # must be valid UTF-8 whatever the input bytes were
    lines = out.split("\n")
    assert lines[-1] == ""
    return [json.loads(x) for x in lines[:-1]]


def test_parse_cli_strict():
    got = run([], b"\n".join(LINES) + b"\n")
    assert len(got) == len(LINES)
    a, b, c, d, e, f = got
    assert list(a) == KEYS
    assert a["structured_data"] == {"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}}
    assert a["msg"] == "An application event log entry..." and a["format"] == "rfc5424"
    assert (b["hostname"], b["app_name"], b["msg"]) == ("db-07", "kernel",
                                                       "[   12.345678] BUG: kernel NULL pointer dereference")
    assert c["msg"] == "caf\u00e9 \\xff\\xfe end"
    assert "error" in d and "empty" in d["error"]
    assert "TIMESTAMP" in e["error"]
    assert f["error"].startswith("not syslog: bad PRI")


def test_parse_cli_lenient_and_no_trailing_newline():
    got = run(["--lenient"], b"\n".join(LINES))
    assert len(got) == len(LINES)
    assert all("error" not in g and list(g) == KEYS + ["missing"] for g in got)
    assert got[3] == {**dict.fromkeys(KEYS), "format": "raw", "msg": "", "missing": ["pri", "timestamp", "hostname"]}
    assert got[4]["format"] == "rfc5424" and got[4]["msg"] == "bad month" and "timestamp" in got[4]["missing"]
    assert got[5]["format"] == "raw" and got[5]["msg"] == "<abc>x"


def test_parse_cli_many_lines_keeps_count():
    data = b"".join(b"<13>Nov 25 10:00:%02d h a[%d]: n\n" % (i % 60, i) for i in range(5000)) + b"\n\n"
    got = run([], data)
    assert len(got) == 5002
    assert got[4999]["procid"] == "4999" and "error" in got[-1]
