"""``sylog link-vmcore PATH [--host H] [--incident ID]``: link one kdump dump directory to an incident by hand.

Works offline on the data dir and is safe while the server runs (the same lock as the server's watcher). PATH is
the dump directory (``127.0.0.1-2026-11-25-10:15:02/``, ``202611251015/``, ``db-07-2026-11-25-10-15/``) or the
dump file inside it. The same rules as the watcher apply (signature, then time window, else a new incident from
the dump's dmesg); ``--incident`` forces the target (recorded as ``matched_by: manual``).
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link-vmcore", help="link a kdump dump directory to an incident by hand",
                       description="Link a kdump dump directory (RHEL/Fedora, Debian/Ubuntu or SUSE layout) to "
                                   "the incident it belongs to, or create one from its dmesg.",
                       epilog="Exit status: 0 linked (or already linked), 1 error, 2 the dump is still being "
                              "written (retry later).")
    p.add_argument("path", metavar="PATH", help="the dump directory (or the vmcore file in it)")
    p.add_argument("--host", help="the host the dump is from (default: from the path, the sender address map, "
                                  "or the dump's node name)")
    p.add_argument("--incident", metavar="ID", help="link to this incident (ID or unique prefix) instead of "
                                                    "choosing")
    p.add_argument("--data-dir", default="./sylog-data", help="sylog data directory (default ./sylog-data)")
    p.add_argument("--config", help="sylog config file (for vmcore.window and incidents.quiet)")
    p.add_argument("--window", type=float, default=None,
                   help="seconds before the dump an incident may have opened (default: config vmcore.window, 7200)")
    p.add_argument("--force", action="store_true",
                   help="link even if the incident is still open (only when no server is running on this data dir)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"sylog link-vmcore: {msg}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from sylog.config import ConfigError, load_config
    from sylog.vmcore import scan

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        return _err(str(e))
    window = args.window if args.window is not None else cfg.vmcore.window
    if window <= 0:
        return _err("--window must be positive")
    path = args.path
    if not os.path.exists(path):
        return _err(f"no such file or directory: {path}")
    if os.path.isfile(path):
        path = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(args.data_dir):
        return _err(f"no data directory {args.data_dir!r} (use --data-dir DIR)")
    path = os.path.abspath(path)
    # The dump directory's own name only: unlike the watcher we do not know where a collector's per-host
    # folders start (the parent of /var/crash/<dump> is "crash", not a host), so --host covers that case.
    rel = os.path.basename(path)
    iid = args.incident
    host = args.host
    if iid:
        found = _resolve_id(args.data_dir, iid)
        if found is None:
            return _err(f"no incident matches {args.incident!r} (or the prefix is not unique)")
        iid, inc_host = found
        if host is None:
            host = inc_host
    try:
        res = scan.link_one(args.data_dir, path, relpath=rel, host=host, incident_id=iid, window=window,
                            quiet=cfg.incidents.quiet, allow_open=args.force)
    except OSError as e:
        return _err(f"{e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "))
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(_jsonable(res), option=orjson.OPT_INDENT_2) + b"\n")
    if res.status in ("linked", "created", "already"):
        if not args.json:
            verb = {"linked": "linked to", "created": "created", "already": "already linked to"}[res.status]
            print(f"{res.dir}: {verb} incident {res.incident_id} (host {res.host}, matched by {res.matched_by})")
            if res.vmcore and res.vmcore.get("crash_command"):
                print(f"  $ {res.vmcore['crash_command']}")
        return 0
    if not args.json:
        hint = " (use --force if no server is running on this data dir)" if res.status == "deferred" else ""
        if res.status == "error" and "not a kdump directory" in res.message:
            inner = [rel for _, rel in scan.find_dump_dirs(path)]
            if inner:
                hint = (f"; it holds {len(inner)} dump director{'y' if len(inner) == 1 else 'ies'}: give one, e.g. "
                        f"{os.path.join(path, inner[0])}")
        print(f"sylog link-vmcore: {res.dir}: {res.status}: {res.message}{hint}", file=sys.stderr)
    return 1 if res.status != "pending" else 2


def _jsonable(res) -> dict:
    import msgspec

    return msgspec.to_builtins(res)


def _resolve_id(data_dir: str, prefix: str) -> tuple[str, str] | None:
    """(id, host) of the one incident whose ID starts with ``prefix``."""
    from sylog.incidents.model import decode
    from sylog.incidents.store import IncidentStore

    hits = [p for p in IncidentStore(data_dir).iter_json_paths() if p.stem.startswith(prefix)]
    if len({p.stem for p in hits}) != 1:
        return None
    try:
        inc = decode(hits[0].read_bytes())
    except Exception:
        return None
    return inc.id, inc.host
