"""Readers for DATA/incidents/ used by ``sylog incidents`` and ``sylog show`` (never talk to the server).

Safe while the server runs: the server replaces files by rename, so a read sees a whole old or a whole new file; a
file that vanishes between listing and reading (or a temp file) is skipped, and a read that fails is retried once.
Incidents are handled as plain dicts so that fields added later (vmcore, ...) pass through untouched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import orjson

from sylog.incidents.store import SEPARATOR_PREFIX

ID_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


class QueryError(Exception):
    """A one-line, user-facing error (unknown ID, bad filter)."""


def _read_json(path: str) -> dict | None:
    for _ in range(2):
        try:
            with open(path, "rb") as f:
                obj = orjson.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError):
            continue  # replaced under us mid-read: try once more
        return obj if isinstance(obj, dict) else None
    return None


def iter_incidents(data_dir: str | os.PathLike, *, modified_since: float | None = None) -> Iterator[dict]:
    """Every readable incident under ``DATA/incidents/<host>/<id>.json``; ``host``/``id``/``path`` default to what
    the file's place says. ``modified_since`` (epoch seconds) skips files last written before it, unread."""
    base = Path(data_dir) / "incidents"
    try:
        hosts = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return
    for hent in hosts:
        if hent.name.startswith(".") or not hent.is_dir(follow_symlinks=False):
            continue
        try:
            files = list(os.scandir(hent.path))
        except OSError:
            continue
        for fent in files:
            name = fent.name
            if name.startswith(".") or not name.endswith(".json"):
                continue
            if modified_since is not None:
                try:
                    if fent.stat().st_mtime < modified_since:
                        continue
                except OSError:
                    continue
            inc = _read_json(fent.path)
            if inc is None:
                continue
            inc.setdefault("id", name[:-5])
            inc.setdefault("host", hent.name)
            if not inc.get("path"):
                inc["path"] = fent.path
            yield inc


def find_incident(data_dir: str | os.PathLike, iid: str) -> dict:
    """The incident with this ID (or the only one whose ID starts with it). Raises QueryError."""
    iid = iid.strip()
    if not iid or not ID_CHARS.match(iid) or "/" in iid:
        raise QueryError(f"not an incident ID: {iid!r}")
    base = Path(data_dir) / "incidents"
    if not base.is_dir():
        raise QueryError(f"no incidents in {data_dir} (no {base})")
    try:
        hosts = [h for h in os.scandir(base) if h.is_dir(follow_symlinks=False) and not h.name.startswith(".")]
    except OSError as e:
        raise QueryError(f"cannot read {base}: {e.strerror}") from None
    for h in hosts:  # exact match: one stat per host directory
        p = os.path.join(h.path, iid + ".json")
        inc = _read_json(p)
        if inc is not None:
            inc.setdefault("id", iid)
            inc.setdefault("host", h.name)
            inc.setdefault("path", p)
            return inc
    matches = []
    for h in hosts:
        try:
            for f in os.scandir(h.path):
                if f.name.startswith(iid) and f.name.endswith(".json"):
                    matches.append((h.name, f.path, f.name[:-5]))
        except OSError:
            continue
    if len(matches) == 1:
        inc = _read_json(matches[0][1])
        if inc is not None:
            inc.setdefault("id", matches[0][2])
            inc.setdefault("host", matches[0][0])
            inc.setdefault("path", matches[0][1])
            return inc
    if len(matches) > 1:
        raise QueryError(f"incident ID {iid!r} is ambiguous: {len(matches)} incidents start with it")
    raise QueryError(f"unknown incident {iid!r} in {data_dir}")


def read_log(inc: dict) -> tuple[list[str], list[str]]:
    """(context lines, crash lines) of an incident's .log, decoded for display (undecodable bytes escaped)."""
    lp = inc.get("log_path") or (str(inc["path"])[:-5] + ".log" if str(inc.get("path", "")).endswith(".json")
                                 else None)
    if not lp:
        return [], []
    try:
        with open(lp, "rb") as f:
            data = f.read()
    except OSError:
        return [], []
    i = data.find(SEPARATOR_PREFIX)
    if i < 0:
        ctx, crash = data, b""
    else:
        j = data.find(b"\n", i)
        ctx, crash = data[:i], (data[j + 1:] if j >= 0 else b"")

    def lines(b: bytes) -> list[str]:
        return [ln.decode("utf-8", "backslashreplace") for ln in b.split(b"\n") if ln]

    return lines(ctx), lines(crash)
