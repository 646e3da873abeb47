"""``sylog parse``: raw syslog frames on stdin (one per line) -> one JSON object per line on stdout.

The conformance view of the parser: by default strict (``{"error": ...}`` for what is not valid syslog), with
``--lenient`` exactly what the server stores (plus ``missing``). Streams line by line, so a million lines never sit
in memory, and writes in batches. Non-UTF-8 bytes print as ``\\xNN`` escapes (orjson refuses lone surrogates).
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from sylog.syslog.parse import ParseError, parse

_KEYS = ("format", "pri", "facility", "severity", "version", "timestamp", "hostname", "app_name", "procid",
         "msgid", "structured_data", "msg")
_BATCH = 2048


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parse", help="parse raw syslog lines from stdin, print JSON per line",
                       description="Read raw syslog messages from stdin, one per line (a trailing CR is dropped), "
                                   "and print one JSON object per line: the parsed fields, or {\"error\": ...}.")
    p.add_argument("--lenient", action="store_true",
                   help="print what the server stores (best effort, never an error; adds \"missing\")")
    p.set_defaults(func=run)


def _display(s: str) -> str:
    """Lone surrogates (undecodable bytes kept by surrogateescape) -> backslash escapes \\xNN."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _clean(obj):
    if isinstance(obj, str):
        return _display(obj)
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _dumps(d: dict) -> bytes:
    try:
        return orjson.dumps(d)
    except orjson.JSONEncodeError:  # rare: text held undecodable bytes
        return orjson.dumps(_clean(d))


def render(line: bytes, lenient: bool, now: float) -> bytes:
    """One input line (without its newline) -> one JSON document (without newline)."""
    try:
        m = parse(line, strict=not lenient, now=now)
    except ParseError as e:
        return _dumps({"error": str(e)})
    d = {
        "format": m.format, "pri": m.pri, "facility": m.facility, "severity": m.severity, "version": m.version,
        "timestamp": m.timestamp, "hostname": m.hostname, "app_name": m.app_name, "procid": m.procid,
        "msgid": m.msgid, "structured_data": m.structured_data, "msg": m.msg,
    }
    if lenient:
        d["missing"] = m.missing
    return _dumps(d)


def run(args: argparse.Namespace) -> int:
    lenient = bool(args.lenient)
    now = time.time()
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    buf: list[bytes] = []
    for line in inp:
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        buf.append(render(line, lenient, now))
        if len(buf) >= _BATCH:
            buf.append(b"")
            out.write(b"\n".join(buf))
            buf.clear()
    if buf:
        buf.append(b"")
        out.write(b"\n".join(buf))
    out.flush()
    return 0
