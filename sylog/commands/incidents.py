"""``sylog incidents``: list crash incidents, newest first — an aligned table for people, ``--json`` for scripts.

Reads DATA/incidents/ only (safe while the server runs). ``--json`` prints one JSON array; each object is the
incident file as stored (at least id host kind kinds fatal title function module kernel_release signature state
first_seen last_seen lines path vmcore).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time

import orjson

from sylog.incidents.model import KINDS
from sylog.query.incidents import iter_incidents
from sylog.query.timefilter import TimeSpecError, parse_stored_time, parse_time

DEFAULT_WINDOW = 7200.0  # seconds a fatal incident waits for its vmcore before it counts as missing one
CONTRACT_FIELDS = ("id", "host", "kind", "kinds", "fatal", "title", "function", "module", "kernel_release",
                   "signature", "state", "first_seen", "last_seen", "lines", "path", "vmcore")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("incidents", help="list crash incidents (newest first)",
                       description="List crash incidents from DATA/incidents, newest first.")
    p.add_argument("--data-dir", default="./sylog-data", help="sylog data directory (default ./sylog-data)")
    p.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    p.add_argument("--host", metavar="GLOB", help="only hosts matching this shell pattern (e.g. 'db-*')")
    p.add_argument("--kind", metavar="K", help=f"only this kind (comma-separated list allowed): {', '.join(KINDS)}")
    p.add_argument("--since", metavar="WHEN", help="seen at or after: a duration back from now (2h, 30m, 7d) or a date")
    p.add_argument("--until", metavar="WHEN", help="first seen at or before: a duration or a date")
    p.add_argument("--state", choices=("open", "closed"), help="only open or only closed incidents")
    p.add_argument("--missing-vmcore", action="store_true",
                   help="only fatal incidents that got no vmcore within the link window (kdump broken?)")
    p.add_argument("--window", type=float, default=DEFAULT_WINDOW, metavar="S",
                   help="seconds a fatal incident may wait for its dump (default 7200; --missing-vmcore)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N incidents (the newest)")
    p.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"sylog incidents: {msg}", file=sys.stderr)
    return 2


def select(args: argparse.Namespace, now: float | None = None) -> list[dict]:
    """The incidents the filters keep, newest first. Raises TimeSpecError / ValueError with a one-line message."""
    now = time.time() if now is None else now
    since = parse_time(args.since, now=now) if args.since else None
    until = parse_time(args.until, now=now) if args.until else None
    kinds = None
    if args.kind:
        kinds = {k.strip() for k in args.kind.split(",") if k.strip()}
        bad = sorted(kinds - set(KINDS))
        if bad:
            raise ValueError(f"unknown kind {', '.join(bad)!s}; kinds are: {', '.join(KINDS)}")
    out = []
    for inc in iter_incidents(args.data_dir):
        if args.host and not fnmatch.fnmatchcase(str(inc.get("host", "")), args.host):
            continue
        if kinds is not None and inc.get("kind") not in kinds:
            continue
        if args.state and inc.get("state") != args.state:
            continue
        first = parse_stored_time(inc.get("first_seen"))
        last = parse_stored_time(inc.get("last_seen")) or first
        if since is not None and (last is None or last < since):
            continue
        if until is not None and (first is None or first > until):
            continue
        if args.missing_vmcore and not missing_vmcore(inc, now, args.window):
            continue
        out.append(inc)
    out.sort(key=lambda i: (parse_stored_time(i.get("first_seen")) or 0.0, str(i.get("id", ""))), reverse=True)
    if args.limit is not None and args.limit >= 0:
        out = out[:args.limit]
    return out


def missing_vmcore(inc: dict, now: float, window: float) -> bool:
    """Marked so by the vmcore linker, or: ended in a panic, no dump linked, and the window has passed."""
    if inc.get("vmcore"):
        return False
    if inc.get("vmcore_missing"):
        return True
    if not inc.get("fatal") or inc.get("source") == "vmcore":
        return False
    last = parse_stored_time(inc.get("last_seen")) or parse_stored_time(inc.get("first_seen"))
    return last is not None and now - last >= window


def _short_time(v: object) -> str:
    s = str(v or "-")
    return s[:19].replace("T", " ") if len(s) >= 19 else s


def table(rows: list[dict]) -> str:
    head = ("ID", "HOST", "KIND", "FATAL", "STATE", "FIRST SEEN (UTC)", "LINES", "VMCORE", "TITLE")
    body = []
    for i in rows:
        title = str(i.get("title") or "")
        if len(title) > 90:
            title = title[:87] + "..."
        body.append((str(i.get("id", "")), str(i.get("host", "")), str(i.get("kind", "")),
                     "yes" if i.get("fatal") else "-", str(i.get("state", "")), _short_time(i.get("first_seen")),
                     str(i.get("lines", "")), "yes" if i.get("vmcore") else "-", title))
    w = [max(len(h), *(len(r[n]) for r in body)) if body else len(h) for n, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.ljust(w[n]) if n < len(r) - 1 else c for n, c in enumerate(r)).rstrip()
    return "\n".join([fmt(head), *(fmt(r) for r in body)]) + "\n"


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.data_dir):
        return _err(f"no data directory {args.data_dir!r} (use --data-dir DIR)")
    try:
        rows = select(args)
    except (TimeSpecError, ValueError) as e:
        return _err(str(e))
    if args.json:
        for i in rows:
            for f in CONTRACT_FIELDS:
                i.setdefault(f, None)
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
    elif rows:
        sys.stdout.write(table(rows))
        sys.stdout.write(f"{len(rows)} incident(s)\n")
    else:
        sys.stdout.write("no incidents\n")
    sys.stdout.flush()
    return 0
