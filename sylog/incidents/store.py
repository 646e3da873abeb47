"""Incident files: ``DATA/incidents/<host>/<id>.json`` (the Incident) and ``<id>.log`` (context, separator, crash).

Every write is atomic (temp file in the same directory, complete, then renamed), so a reader — or a restart after
kill -9 — only ever sees a previous complete version or the new complete one. The ``.log`` is renamed before the
``.json`` so a JSON never announces lines its log does not have. Directories are 0700, files 0600.

Durability: a durable write (the default) fsyncs the temp file before the rename and the directory after it. The
engine publishes the FIRST version of a new incident with ``durable=False`` (temp + rename, no fsync: visible
within a millisecond instead of after an fsync that can take hundreds of ms while the timelines are being
written) and then calls :meth:`IncidentStore.sync_batch` on its writer thread, which fsyncs the files and their
directory. So the file is never half-written for any reader or after a kill; only a power loss in the few ms
between the rename and that fsync can lose (or, on filesystems without rename ordering, empty) that first
version, which recovery then counts as unreadable.

Blocking functions: the engine calls them from an executor thread, one batch per tick (except the
``durable=False`` first version, written on the event loop: a few page-cache syscalls).
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

    def write(self, host: str, iid: str, json_bytes: bytes, log_bytes: bytes | None, durable: bool = True) -> None:
        """Atomically write one incident's files (``log_bytes`` None: leave the .log as it is); ``durable`` False:
        no fsync (call :meth:`sync` later)."""
        jp, lp = self.paths(host, iid)
        self._ensure_dir(jp.parent)
        if log_bytes is not None:
            _atomic_write(lp, log_bytes, durable)
        _atomic_write(jp, json_bytes, durable)

    def sync(self, host: str, iid: str) -> None:
        """fsync an incident's files as they are now (after a ``durable=False`` write); a missing .log is fine."""
        jp, lp = self.paths(host, iid)
        for p in (lp, jp):
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                if p is jp:
                    raise
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def sync_batch(self, keys: list[tuple[str, str]]) -> list[tuple[str, str, OSError]]:
        """:meth:`sync` many incidents and their directories (writer thread); returns the failures."""
        return self._batch([(h, i, None, None) for h, i in keys])

    def write_batch(self, items: list[tuple[str, str, bytes, bytes | None]],
                    durable: bool = True) -> list[tuple[str, str, OSError]]:
        """Write many incidents; one failure (ENOSPC, EIO) does not stop the others. Returns the failures.

        fsync costs ~3 ms per file on a VM disk and a crash storm writes hundreds of incidents at once: the files
        are written by up to FSYNC_THREADS threads, whose fsyncs the filesystem journal commits together (~5x).
        ``durable`` False: written in the calling thread, no fsync (the engine's first version of a new incident;
        it calls :meth:`sync_batch` for them next)."""
        if not durable:
            failed: list[tuple[str, str, OSError]] = []
            for host, iid, jb, lb in items:
                try:
                    self.write(host, iid, jb, lb, False)
                except OSError as e:
                    failed.append((host, iid, e))
            return failed
        return self._batch(items)

    def _batch(self, items: list[tuple[str, str, bytes | None, bytes | None]]) -> list[tuple[str, str, OSError]]:
        """Durable writes (json None: fsync what is there) on up to FSYNC_THREADS threads, then the directories."""
        failed: list[tuple[str, str, OSError]] = []
        dirs: set[Path] = set()

        def one(item: tuple[str, str, bytes, bytes | None]) -> None:
            host, iid, jb, lb = item
            try:
                if jb is None:
                    self.sync(host, iid)
                else:
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


def _atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if durable:
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
