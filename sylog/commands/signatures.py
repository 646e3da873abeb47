"""``sylog signatures``: the fleet view — one row per crash signature, ordered by how many hosts it hit.

This is how a fleet spots one driver bug hitting many nodes: the same bug on two hosts has the same signature, so
grouping every incident file by it and counting distinct hosts puts the widespread bugs on top.
Reads DATA/incidents/*/*.json only (safe while the server runs; half-written or foreign files are skipped).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import msgspec
import orjson

from sylog.query.incidents import iter_incidents  # shared reader (INCIDENTS): skips temp/half files
from sylog.query.timefilter import TimeSpecError, format_utc, parse_stored_time, parse_time


class SignatureRow(msgspec.Struct, kw_only=True):
    """One line of the fleet view; ``hosts`` is the sorted list of distinct hosts."""

    signature: str | None
    kind: str | None
    title: str | None
    incidents: int
    hosts: list[str]
    kernel_releases: list[str]
    modules: list[str]
    first_seen: str | float | None
    last_seen: str | float | None


def _as_list(v: object) -> list[str]:
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v if x not in (None, "")]
    return [str(v)]


class _Group:
    __slots__ = ("signature", "kinds", "titles", "n", "hosts", "releases", "modules", "first", "last")

    def __init__(self, signature: str | None) -> None:
        self.signature = signature
        self.kinds: Counter[str] = Counter()
        self.titles: Counter[str] = Counter()
        self.n = 0
        self.hosts: set[str] = set()
        self.releases: set[str] = set()
        self.modules: set[str] = set()
        self.first: tuple[float, object] | None = None
        self.last: tuple[float, object] | None = None


def group_signatures(incidents, since: float | None = None, until: float | None = None) -> list[SignatureRow]:
    """Group incidents by signature (incidents without one by kind+title) and order by distinct hosts.

    ``since``/``until`` keep incidents active in the window: last_seen >= since and first_seen <= until.
    """
    groups: dict[tuple, _Group] = {}
    for inc in incidents:
        first_raw = inc.get("first_seen")
        last_raw = inc.get("last_seen", first_raw)
        t_first = parse_stored_time(first_raw)
        t_last = parse_stored_time(last_raw)
        if t_last is None:
            t_last, last_raw = t_first, first_raw
        if since is not None and (t_last is None or t_last < since):
            continue
        if until is not None and (t_first is None or t_first > until):
            continue
        sig = inc.get("signature") or None
        key = ("sig", sig) if sig else ("none", inc.get("kind"), inc.get("title"))
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(sig)
        g.n += 1
        if inc.get("kind"):
            g.kinds[str(inc["kind"])] += 1
        if inc.get("title"):
            g.titles[str(inc["title"])] += 1
        if inc.get("host"):
            g.hosts.add(str(inc["host"]))
        g.releases.update(_as_list(inc.get("kernel_release")))
        g.modules.update(_as_list(inc.get("module")))
        if t_first is not None and (g.first is None or t_first < g.first[0]):
            g.first = (t_first, first_raw)
        if t_last is not None and (g.last is None or t_last > g.last[0]):
            g.last = (t_last, last_raw)
    rows = []
    for g in groups.values():
        rows.append(
            (
                (-len(g.hosts), -g.n, -(g.last[0] if g.last else 0.0), g.signature or ""),
                SignatureRow(
                    signature=g.signature,
                    kind=g.kinds.most_common(1)[0][0] if g.kinds else None,
                    title=g.titles.most_common(1)[0][0] if g.titles else None,
                    incidents=g.n,
                    hosts=sorted(g.hosts),
                    kernel_releases=sorted(g.releases),
                    modules=sorted(g.modules),
                    first_seen=g.first[1] if g.first else None,
                    last_seen=g.last[1] if g.last else None,
                ),
            )
        )
    rows.sort(key=lambda r: r[0])
    return [r[1] for r in rows]


def _short_time(v: object) -> str:
    t = parse_stored_time(v)
    return format_utc(t)[:19].replace("T", " ") if t is not None else "-"


def _join(items: list[str], limit: int = 3) -> str:
    if not items:
        return "-"
    s = ",".join(items[:limit])
    return s + (f",+{len(items) - limit}" if len(items) > limit else "")


def render_table(rows: list[SignatureRow]) -> str:
    head = ("HOSTS", "INCIDENTS", "KIND", "SIGNATURE", "FIRST_SEEN", "LAST_SEEN", "RELEASES", "MODULES", "TITLE")
    table = [head]
    for r in rows:
        table.append(
            (
                str(len(r.hosts)),
                str(r.incidents),
                r.kind or "-",
                r.signature or "-",
                _short_time(r.first_seen),
                _short_time(r.last_seen),
                _join(r.kernel_releases),
                _join(r.modules),
                r.title or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = []
    for row in table:
        cells = [c.rjust(w) if i < 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "signatures",
        help="fleet view: crash signatures ordered by distinct hosts",
        description="One row per crash signature: kind, title, incidents, distinct hosts, kernel releases, "
        "modules, first and last seen; ordered by distinct hosts.",
    )
    p.add_argument("--data-dir", default=None, help="data directory (default: from --config, else ./sylog-data)")
    p.add_argument("--config", default=None, help="config file to take data_dir from")
    p.add_argument("--since", help="only incidents active since: duration (30m, 2h, 7d) or date/time")
    p.add_argument("--until", help="only incidents that started before this: duration or date/time")
    p.add_argument("--json", action="store_true", help="JSON array for scripts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sylog.commands.timeline import TimelineError, resolve_data_dir

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        data_dir = resolve_data_dir(args)
    except (TimeSpecError, TimelineError) as e:
        print(f"sylog signatures: {e}", file=sys.stderr)
        return 1
    if not data_dir.is_dir():
        print(f"sylog signatures: no data directory {str(data_dir)!r}", file=sys.stderr)
        return 1
    rows = group_signatures(iter_incidents(data_dir), since, until)
    out = sys.stdout.buffer
    if args.json:
        out.write(orjson.dumps([msgspec.structs.asdict(r) for r in rows], option=orjson.OPT_INDENT_2))
        out.write(b"\n")
    else:
        out.write(render_table(rows).encode("utf-8", "surrogateescape"))
    out.flush()
    return 0
