"""``sylog show ID``: one incident in full — header, trigger, trace, last-gasp context, vmcore and its crash command.

The ID may be abbreviated to any unique prefix. Reads DATA/incidents/ only (safe while the server runs).
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from sylog.query.incidents import QueryError, find_incident, read_log


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show one incident in full",
                       description="Show one incident: header, trigger, trace, last-gasp context, vmcore.")
    p.add_argument("id", metavar="ID", help="incident ID (or a unique prefix of one)")
    p.add_argument("--data-dir", default="./sylog-data", help="sylog data directory (default ./sylog-data)")
    p.add_argument("--json", action="store_true", help="print the incident and its log lines as one JSON object")
    p.add_argument("--context", type=int, default=None, metavar="N",
                   help="show only the last N context lines (default: all kept)")
    p.add_argument("--raw", action="store_true",
                   help="print crash and context lines exactly as stored (full timeline lines)")
    p.set_defaults(func=run)


def _v(x: object) -> str:
    if x is None or x == "" or x == []:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def short(line: str) -> str:
    """``2026-11-25T10:00:00.123456Z host kern.warning kernel: text`` -> ``10:00:00.123456 kernel: text``: the
    date and host are in the header already; a line of another shape is shown as it is."""
    parts = line.split(" ", 4)
    if len(parts) == 5 and len(parts[0]) >= 26 and parts[0][10:11] == "T" and parts[0].endswith("Z"):
        return f"{parts[0][11:26]} {parts[3]} {parts[4]}"
    return line


def render(inc: dict, context: list[str], crash: list[str], raw: bool = False) -> str:
    if not raw:
        context = [short(x) for x in context]
        crash = [short(x) for x in crash]
    out: list[str] = []
    add = out.append
    state = _v(inc.get("state"))
    if inc.get("closed_reason"):
        state += f" ({inc['closed_reason']})"
    add(f"Incident {inc.get('id')}  [{state}]")
    add(f"  host:        {_v(inc.get('host'))}")
    kinds = inc.get("kinds") or []
    kind = _v(inc.get("kind")) + (f"   (kinds seen: {', '.join(map(str, kinds))})" if len(kinds) > 1 else "")
    add(f"  kind:        {kind}")
    add(f"  title:       {_v(inc.get('title'))}")
    fn = _v(inc.get("function"))
    if inc.get("module"):
        fn += f" [{inc['module']}]"
    add(f"  function:    {fn}")
    add(f"  fatal:       {_v(bool(inc.get('fatal')))}")
    add(f"  release:     {_v(inc.get('kernel_release'))}")
    extra = []
    for k in ("taint", "cpu", "pid", "comm"):
        if inc.get(k) not in (None, ""):
            extra.append(f"{k} {inc[k]}")
    if extra:
        add(f"  task:        {', '.join(extra)}")
    if inc.get("hardware"):
        add(f"  hardware:    {inc['hardware']}")
    add(f"  first seen:  {_v(inc.get('first_seen'))}")
    add(f"  last seen:   {_v(inc.get('last_seen'))}")
    add(f"  signature:   {_v(inc.get('signature'))}")
    add(f"  source:      {_v(inc.get('source'))}")
    cut = inc.get("lines_cut") or 0
    add(f"  lines:       {_v(inc.get('lines'))} crash line(s){f' ({cut} cut)' if cut else ''}, "
        f"{len(context)} context line(s)")
    add(f"  files:       {_v(inc.get('path'))}")
    add("")
    add("Trigger:")
    add(f"  {_v(inc.get('trigger'))}")
    frames = inc.get("frames") or []
    if frames:
        add("")
        add("Frames:")
        out.extend(f"  {f}" for f in frames)
    add("")
    add(f"Crash lines ({len(crash)}):")
    out.extend(crash or ["  (none on disk)"])
    add("")
    add(f"Last-gasp context ({len(context)} line(s) before the trigger):")
    out.extend(context or ["  (none)"])
    add("")
    vm = inc.get("vmcore")
    if vm:
        add("vmcore:")
        if isinstance(vm, dict):
            cmd = vm.get("crash_command") or vm.get("command")
            for k, v in vm.items():
                if k in ("crash_command", "command", "crash_commands", "first_commands", "crash_hints"):
                    continue
                add(f"  {k + ':':<14}{_v(v)}")
            if cmd:
                add("")
                add(f"  $ {cmd}")
            firsts = vm.get("first_commands") or vm.get("crash_commands") or vm.get("crash_hints")
            if firsts:
                add(f"  then inside crash: {', '.join(map(str, firsts)) if isinstance(firsts, list) else firsts}")
        else:
            add(f"  {vm}")
    else:
        missing = " (marked missing: kdump may be broken on this host)" if inc.get("vmcore_missing") else ""
        add(f"vmcore: none linked{missing}")
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.data_dir):
        print(f"sylog show: no data directory {args.data_dir!r} (use --data-dir DIR)", file=sys.stderr)
        return 2
    try:
        inc = find_incident(args.data_dir, args.id)
    except QueryError as e:
        print(f"sylog show: {e}", file=sys.stderr)
        return 1
    context, crash = read_log(inc)
    if args.context is not None and args.context >= 0:
        context = context[-args.context:] if args.context else []
    if args.json:
        obj = dict(inc)
        obj["context_log"] = context
        obj["crash_log"] = crash
        sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render(inc, context, crash, raw=args.raw))
    sys.stdout.flush()
    return 0
