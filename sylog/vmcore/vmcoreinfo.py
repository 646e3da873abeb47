"""Read VMCOREINFO (``OSRELEASE=``, ``CRASHTIME=``) from the first megabytes of a dump.

The folder name only says when the capture kernel ran, in its local time; the dump itself says when the kernel
crashed (``CRASHTIME=``, epoch seconds, appended by the kernel's ``crash_save_vmcoreinfo``) and which kernel it
was (``OSRELEASE=``). Only a bounded prefix is ever read, so a 200 GB dump costs the same as a 2 MB one.

Formats (header layouts checked against makedumpfile's ``diskdump_mod.h``/``makedumpfile.h`` and
libkdumpfile's ``diskdump.c``/``flattened.c``):

* kdump-compressed: ``struct disk_dump_header`` — ``signature[8]`` ``"KDUMP   "`` (or ``"DISKDUMP"``),
  ``int header_version``, ``struct new_utsname`` (6 x 65 bytes: sysname, nodename, release, version, machine,
  domainname), ``struct timeval timestamp``, ``unsigned status``, ``int block_size``, ``int sub_hdr_size`` ...;
  one block later ``struct kdump_sub_header`` — ``unsigned long phys_base; int dump_level; int split;
  unsigned long start_pfn, end_pfn; off_t offset_vmcoreinfo; unsigned long size_vmcoreinfo; ...``
  (header_version >= 3). Decoded here for 64-bit little-endian (x86-64, arm64, ppc64le, s390x is BE and falls
  back to the text scan).
* flattened (``makedumpfile -F``, what SSH targets, Debian and SUSE write): a 4096-byte header starting with
  ``"makedumpfile"`` (``signature[16]``, ``int64 type``, ``int64 version``), then records of
  ``{int64 offset; int64 buf_size}`` **big-endian** followed by ``buf_size`` bytes, ending with offset -1.
  The records are replayed into a buffer to rebuild the start of the kdump-compressed file.
* ELF (``/proc/vmcore`` copied as is, or ``makedumpfile -E``): PT_NOTE segments hold a note named
  ``VMCOREINFO`` whose descriptor is the text.
* anything else (or a header we cannot decode): a text scan of the prefix for the ``VMCOREINFO`` block.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from typing import BinaryIO

import msgspec

PREFIX_LIMIT = 4 * 1024 * 1024  # bytes of (rebuilt) dump examined at most
_MDF_HEADER_SIZE = 4096
_DUMP_DH_COMPRESSED_INCOMPLETE = 0x8


class DumpInfo(msgspec.Struct, kw_only=True):
    """What the first megabytes of a dump say."""

    format: str  # 'kdump-compressed' | 'diskdump' | 'flattened' | 'elf' | 'unknown'
    crashtime: int | None = None  # epoch seconds (VMCOREINFO CRASHTIME=)
    osrelease: str | None = None  # VMCOREINFO OSRELEASE= (or the header's utsname.release)
    nodename: str | None = None  # utsname.nodename from a kdump-compressed header
    machine: str | None = None
    header_time: int | None = None  # disk_dump_header.timestamp.tv_sec (when makedumpfile ran)
    incomplete: bool = False  # makedumpfile flagged the dump as cut short (e.g. disk full)
    vmcoreinfo: dict[str, str] = {}


def parse_vmcoreinfo_text(text: str | bytes) -> dict[str, str]:
    """``KEY=value`` lines of a VMCOREINFO block (the first occurrence of each key wins)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    out: dict[str, str] = {}
    for line in text.split("\n"):
        k, sep, v = line.partition("=")
        if sep and k and " " not in k and len(k) < 128:
            out.setdefault(k.strip("\x00"), v.strip().strip("\x00"))
    return out


def _cstr(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def unflatten(data: bytes, limit: int = PREFIX_LIMIT) -> bytes:
    """Replay flattened-format records from ``data`` (a prefix of the file) into the first ``limit`` bytes."""
    buf = bytearray()
    pos = _MDF_HEADER_SIZE
    n = len(data)
    while pos + 16 <= n:
        off, size = struct.unpack_from(">qq", data, pos)
        pos += 16
        if off < 0 or size < 0:
            break  # END_FLAG_FLAT_HEADER (-1) or garbage
        chunk = data[pos:pos + size]
        pos += size
        if off < limit and chunk:
            end = min(off + len(chunk), limit)
            if len(buf) < end:
                buf.extend(b"\x00" * (end - len(buf)))
            buf[off:end] = chunk[: end - off]
        if len(chunk) < size:
            break  # ran past our prefix
    return bytes(buf)


def _scan_text(data: bytes) -> dict[str, str]:
    """Find the VMCOREINFO block by its keys: it starts with ``OSRELEASE=`` and ends with ``CRASHTIME=``."""
    out: dict[str, str] = {}
    i = data.find(b"OSRELEASE=")
    if i >= 0:
        end = data.find(b"\x00", i, i + 65536)
        out.update(parse_vmcoreinfo_text(data[i:end if end >= 0 else i + 65536]))
    if "CRASHTIME" not in out:
        j = data.find(b"CRASHTIME=")
        if j >= 0:
            line = data[j:j + 40].split(b"\n", 1)[0].split(b"\x00", 1)[0]
            out.update(parse_vmcoreinfo_text(line))
    return out


def _elf_vmcoreinfo(data: bytes) -> dict[str, str] | None:
    if len(data) < 64:
        return None
    cls, enc = data[4], data[5]
    if enc not in (1, 2) or cls not in (1, 2):
        return None
    e = "<" if enc == 1 else ">"
    try:
        if cls == 2:
            phoff, = struct.unpack_from(e + "Q", data, 32)
            phentsize, phnum = struct.unpack_from(e + "HH", data, 54)
        else:
            phoff, = struct.unpack_from(e + "I", data, 28)
            phentsize, phnum = struct.unpack_from(e + "HH", data, 42)
        for i in range(min(phnum, 4096)):
            p = phoff + i * phentsize
            if p + phentsize > len(data):
                break
            ptype, = struct.unpack_from(e + "I", data, p)
            if ptype != 4:  # PT_NOTE
                continue
            if cls == 2:
                off, = struct.unpack_from(e + "Q", data, p + 8)
                size, = struct.unpack_from(e + "Q", data, p + 32)
            else:
                off, = struct.unpack_from(e + "I", data, p + 4)
                size, = struct.unpack_from(e + "I", data, p + 16)
            found = _notes(data, off, min(off + size, len(data)), e)
            if found is not None:
                return found
    except struct.error:
        return None
    return None


def _notes(data: bytes, pos: int, end: int, e: str) -> dict[str, str] | None:
    while pos + 12 <= end:
        namesz, descsz, _typ = struct.unpack_from(e + "III", data, pos)
        pos += 12
        name = data[pos:pos + namesz].rstrip(b"\x00")
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        if name == b"VMCOREINFO":
            return parse_vmcoreinfo_text(desc)
        if namesz == 0 and descsz == 0:
            break
    return None


def _diskdump(data: bytes, info: DumpInfo) -> dict[str, str] | None:
    """Decode a disk_dump_header (64-bit little-endian) + kdump_sub_header; fill info; return VMCOREINFO."""
    if len(data) < 440:
        return None
    info.nodename = _cstr(data[12 + 65:12 + 130]) or None
    release = _cstr(data[12 + 130:12 + 195]) or None
    info.machine = _cstr(data[12 + 260:12 + 325]) or None
    header_version, = struct.unpack_from("<i", data, 8)
    tv_sec, = struct.unpack_from("<q", data, 408)
    status, block_size, _sub_hdr_size = struct.unpack_from("<Iii", data, 424)
    if release:
        info.osrelease = release
    if 0 < tv_sec < 1 << 40:
        info.header_time = tv_sec
    if status & _DUMP_DH_COMPRESSED_INCOMPLETE:
        info.incomplete = True
    if header_version < 3 or block_size <= 0 or block_size & (block_size - 1) or block_size > 1 << 20:
        return None
    sub = block_size
    if sub + 48 > len(data):
        return None
    off, size = struct.unpack_from("<qQ", data, sub + 32)
    if off <= 0 or size == 0 or size > 1 << 20 or off + size > len(data):
        return None
    return parse_vmcoreinfo_text(data[off:off + size])


def parse_prefix(data: bytes, limit: int = PREFIX_LIMIT) -> DumpInfo:
    """Sans-IO: what a dump's first bytes say (``data`` is the start of the file, already decompressed)."""
    fmt = "unknown"
    body = data
    if data.startswith(b"makedumpfile"):
        fmt = "flattened"
        body = unflatten(data, limit)
    info = DumpInfo(format=fmt)
    vmci: dict[str, str] | None = None
    if body.startswith(b"KDUMP   ") or body.startswith(b"DISKDUMP"):
        if fmt == "unknown":
            info.format = "kdump-compressed" if body.startswith(b"KDUMP") else "diskdump"
        try:
            vmci = _diskdump(body, info)
        except struct.error:
            vmci = None
    elif body.startswith(b"\x7fELF"):
        if fmt == "unknown":
            info.format = "elf"
        vmci = _elf_vmcoreinfo(body)
    if not vmci:
        vmci = _scan_text(body) or (_scan_text(data) if body is not data else {})
    if vmci:
        info.vmcoreinfo = {k: v for k, v in vmci.items() if k in ("OSRELEASE", "CRASHTIME", "PAGESIZE", "BUILD-ID")}
        if vmci.get("OSRELEASE"):
            info.osrelease = vmci["OSRELEASE"]
        ct = vmci.get("CRASHTIME", "")
        if ct.isdigit():
            info.crashtime = int(ct)
    return info


_DECOMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _read_prefix(f: BinaryIO, n: int) -> bytes:
    chunks = []
    left = n
    while left > 0:
        b = f.read(min(left, 1 << 20))
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_dump_info(path: str, limit: int = PREFIX_LIMIT) -> DumpInfo:
    """Read at most ``limit`` bytes (decompressed, for Debian's .gz/.bz2/.xz) of ``path`` and parse them.

    Raises OSError when the file cannot be read; a file we cannot make sense of gives format 'unknown'."""
    for ext, opener in _DECOMPRESSORS.items():
        if path.endswith(ext):
            try:
                with opener(path, "rb") as f:
                    data = _read_prefix(f, limit)
            except (EOFError, OSError, lzma.LZMAError) as e:
                if isinstance(e, FileNotFoundError | PermissionError):
                    raise
                return DumpInfo(format="unknown")
            return parse_prefix(data, limit)
    if path.endswith(".lz4"):
        return DumpInfo(format="unknown")  # no lz4 in the standard library; the folder time is used instead
    with open(path, "rb") as f:
        data = _read_prefix(f, limit)
    return parse_prefix(data, limit)


# --- building real-looking dumps (tests, and `sylog` demos) -------------------------------------------------

def vmcoreinfo_text(osrelease: str, crashtime: int | None) -> bytes:
    """A VMCOREINFO block as the kernel writes it (a few of its real keys)."""
    lines = [f"OSRELEASE={osrelease}", "BUILD-ID=0f3c8a1d2e4b5a69788796a5b4c3d2e1f0a1b2c3", "PAGESIZE=4096",
             "SYMBOL(init_uts_ns)=ffffffff82a13540", "SYMBOL(node_online_map)=ffffffff82b4a0a8",
             "OFFSET(page.flags)=0", "NUMBER(PG_lru)=4", "KERNELOFFSET=1a000000"]
    if crashtime is not None:
        lines.append(f"CRASHTIME={crashtime}")
    return ("\n".join(lines) + "\n").encode()


def build_kdump_compressed(osrelease: str, crashtime: int | None, *, nodename: str = "localhost",
                           header_time: int | None = None, block_size: int = 4096, pad: int = 8192) -> bytes:
    """A small kdump-compressed file with a real disk_dump_header and kdump_sub_header (x86-64 layout)."""
    vi = vmcoreinfo_text(osrelease, crashtime)
    hdr = bytearray(block_size)
    hdr[0:8] = b"KDUMP   "
    struct.pack_into("<i", hdr, 8, 6)
    for i, s in enumerate([b"Linux", nodename.encode(), osrelease.encode(), b"#1 SMP PREEMPT_DYNAMIC", b"x86_64",
                           b"(none)"]):
        hdr[12 + 65 * i:12 + 65 * i + len(s)] = s[:64]
    struct.pack_into("<qq", hdr, 408, header_time or crashtime or 0, 0)
    struct.pack_into("<Iii", hdr, 424, 0, block_size, 1)
    sub = bytearray(block_size)
    vi_off = 2 * block_size
    struct.pack_into("<Qii", sub, 0, 0, 31, 0)
    struct.pack_into("<qQ", sub, 32, vi_off, len(vi))
    return bytes(hdr) + bytes(sub) + vi + b"\x00" * pad


def flatten(raw: bytes, chunk: int = 4096) -> bytes:
    """Wrap ``raw`` in makedumpfile's flattened format (what ``makedumpfile -F`` streams)."""
    head = bytearray(_MDF_HEADER_SIZE)
    head[0:12] = b"makedumpfile"
    struct.pack_into(">qq", head, 16, 1, 1)
    out = [bytes(head)]
    # write out of order, as makedumpfile does (header last), to exercise the replay
    pieces = [(o, raw[o:o + chunk]) for o in range(0, len(raw), chunk)]
    for off, data in pieces[1:] + pieces[:1]:
        out.append(struct.pack(">qq", off, len(data)) + data)
    out.append(struct.pack(">qq", -1, -1))
    return b"".join(out)


def build_elf(osrelease: str, crashtime: int | None, pad: int = 8192) -> bytes:
    """A small ELF64 core (/proc/vmcore style): one PT_NOTE holding a VMCOREINFO note, one PT_LOAD."""
    vi = vmcoreinfo_text(osrelease, crashtime)
    name = b"VMCOREINFO\x00"
    note = (struct.pack("<III", len(name), len(vi), 0) + name + b"\x00" * (-len(name) % 4)
            + vi + b"\x00" * (-len(vi) % 4))
    ehsize, phentsize, phnum = 64, 56, 2
    note_off = ehsize + phentsize * phnum
    load_off = note_off + len(note)
    eh = bytearray(64)
    eh[0:4] = b"\x7fELF"
    eh[4], eh[5], eh[6] = 2, 1, 1
    struct.pack_into("<HHIQQQIHHHHHH", eh, 16, 4, 62, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 0, 0, 0)
    ph_note = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(note), len(note), 0)
    ph_load = struct.pack("<IIQQQQQQ", 1, 7, load_off, 0xffffffff81000000, 0x1000000, pad, pad, 0)
    return bytes(eh) + ph_note + ph_load + note + b"\x00" * pad
