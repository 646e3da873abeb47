"""Incident files: ``DATA/incidents/<host>/<id>.json`` (the Incident) and ``<id>.log`` (context, separator, crash).

Every write is atomic (temp file in the same directory, fsync, rename), so a reader — or a restart after kill -9 —
only ever sees a previous complete version or the new complete one. The ``.log`` is renamed before the ``.json``
so a JSON never announces lines its log does not have. Directories are 0700, files 0600.

Blocking functions: the engine calls them from an executor thread, one batch per tick.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from sylog.incidents.model import ID_RE, Incident, decode

SEPARATOR_PREFIX = b"---- sylog: crash lines of incident "
TMP_MARK = ".tmp-"
FSYNC_THREADS = 16


def separator(iid: str, context_lines: int) -> bytes:
    """The line between the last-gasp context and the crash lines (the reader splits on its prefix)."""
    return SEPARATOR_PREFIX + iid.encode() + b" follow (%d context lines above) ----\n" % context_lines


def safe_host_dir(host: str) -> str:
    """A directory name for a host that cannot leave ``incidents/`` (hosts are folded upstream; this is the belt
    to that braces)."""
    h = "".join(c if (c.isalnum() or c in "-_.:") and c.isascii() else "_" for c in host)[:255]
    if not h or h.startswith("."):
        h = "_" + h[:254]
    return h


class IncidentStore:
    """Paths and atomic writes under ``<data_dir>/incidents``."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.root = self.data_dir / "incidents"
        self._made: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    def paths(self, host: str, iid: str) -> tuple[Path, Path]:
        d = self.root / safe_host_dir(host)
        return d / f"{iid}.json", d / f"{iid}.log"

    def _ensure_dir(self, d: Path) -> None:
        key = str(d)
        if key in self._made:
            return
        for p in (self.data_dir, self.root, d):
            try:
                p.mkdir(mode=0o700)
            except FileExistsError:
                pass
        self._made.add(key)

    def write(self, host: str, iid: str, json_bytes: bytes, log_bytes: bytes | None) -> None:
        """Atomically write one incident's files (``log_bytes`` None: leave the .log as it is)."""
        jp, lp = self.paths(host, iid)
        self._ensure_dir(jp.parent)
        if log_bytes is not None:
            _atomic_write(lp, log_bytes)
        _atomic_write(jp, json_bytes)

    def write_batch(self, items: list[tuple[str, str, bytes, bytes | None]]) -> list[tuple[str, str, OSError]]:
        """Write many incidents; one failure (ENOSPC, EIO) does not stop the others. Returns the failures.

        fsync costs ~3 ms per file on a VM disk and a crash storm writes hundreds of incidents at once: the files
        are written by up to FSYNC_THREADS threads, whose fsyncs the filesystem journal commits together (~5x)."""
        failed: list[tuple[str, str, OSError]] = []
        dirs: set[Path] = set()

        def one(item: tuple[str, str, bytes, bytes | None]) -> None:
            host, iid, jb, lb = item
            try:
                self.write(host, iid, jb, lb)
                dirs.add(self.paths(host, iid)[0].parent)
            except OSError as e:
                failed.append((host, iid, e))

        if len(items) <= 2:
            for it in items:
                one(it)
        else:
            list(self._fsync_pool().map(one, items))
        for d in dirs:  # make the renames durable too (one fsync per host dir per batch)
            try:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass
        return failed

    def _fsync_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="sylog-fsync")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # --- reading (recovery) -----------------------------------------------------------------------------------

    def iter_json_paths(self):
        if not self.root.is_dir():
            return
        for hd in sorted(self.root.iterdir()):
            if not hd.is_dir():
                continue
            for p in sorted(hd.glob("*.json")):
                if ID_RE.match(p.stem):
                    yield p

    def load_open(self) -> tuple[list[tuple[Incident, bytes, list[bytes]]], int]:
        """Incidents whose file says ``open`` (sylog stopped or was killed while they were), with their context
        and crash lines; also removes temp files a kill left behind. Returns (items, unreadable count)."""
        out, bad = [], 0
        if not self.root.is_dir():
            return out, bad
        for hd in self.root.iterdir():
            if hd.is_dir():
                for tmp in hd.glob(f".*{TMP_MARK}*"):
                    try:
                        tmp.unlink()
                    except OSError:
                        pass
        for p in self.iter_json_paths():
            try:
                data = p.read_bytes()
            except OSError:
                bad += 1
                continue
            if b'"state":"open"' not in data:
                continue
            try:
                inc = decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                bad += 1
                continue
            if inc.state != "open":
                continue
            ctx, crash = read_log(p.with_suffix(".log"))
            out.append((inc, ctx, crash))
        return out, bad


def read_log(path: Path) -> tuple[bytes, list[bytes]]:
    """(context bytes, crash lines) of an incident .log; empty when missing."""
    try:
        data = path.read_bytes()
    except OSError:
        return b"", []
    i = data.find(SEPARATOR_PREFIX)
    if i < 0 or (i > 0 and data[i - 1:i] != b"\n"):
        return data, []
    j = data.find(b"\n", i)
    crash = data[j + 1:] if j >= 0 else b""
    lines = [ln + b"\n" for ln in crash.split(b"\n")]
    if lines and lines[-1] == b"\n":
        lines.pop()
    lines = [ln for ln in lines if not ln.startswith(b"---- sylog: ")]
    return data[:i], lines


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
