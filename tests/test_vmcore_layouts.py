"""The kdump directory recogniser (sans-IO) and the dump header reader, on real-format names and bytes."""

from __future__ import annotations

import gzip
import os
import struct
import time
from datetime import datetime
from pathlib import Path

import pytest

from sylog.vmcore import layouts
from sylog.vmcore.layouts import crash_command, debug_vmlinux, recognise, suse_readme_final
from sylog.vmcore.vmcoreinfo import (build_elf, build_kdump_compressed, flatten, parse_prefix, read_dump_info,
                                     unflatten, vmcoreinfo_text)

WHEN = datetime(2026, 11, 25, 10, 15, 2)


# --- RHEL / Fedora ------------------------------------------------------------------------------------------

def test_rhel_local_complete() -> None:
    d = recognise("127.0.0.1-2026-11-25-10:15:02", ["vmcore", "vmcore-dmesg.txt", "kexec-dmesg.log"])
    assert d is not None
    assert (d.layout, d.host_hint, d.host_hint_is_ip, d.complete) == ("rhel", "127.0.0.1", True, True)
    assert d.time_from_name == WHEN
    assert (d.vmcore, d.dmesg, d.flattened) == ("vmcore", "vmcore-dmesg.txt", False)


def test_rhel_ssh_flattened_and_ipv6() -> None:
    d = recognise("fd00::7-2026-11-25-10:15:02", ["vmcore.flat", "vmcore-dmesg.txt"])
    assert d is not None and d.complete and d.flattened
    assert d.host_hint == "fd00::7" and d.host_hint_is_ip


@pytest.mark.parametrize("names", [
    ["vmcore-incomplete", "vmcore-dmesg.txt"],
    ["vmcore-dmesg-incomplete.txt"],
    ["vmcore-incomplete", "vmcore-dmesg-incomplete.txt"],
    ["vmcore-dmesg.txt"],  # dmesg saved, the core collector still running (or failed)
])
def test_rhel_being_written_is_not_complete(names: list[str]) -> None:
    d = recognise("10.0.0.7-2026-11-25-10:15:02", names)
    assert d is not None and d.layout == "rhel" and not d.complete and d.pending


def test_rhel_per_host_folder() -> None:
    d = recognise("db-07/127.0.0.1-2026-11-25-10:15:02", ["vmcore", "vmcore-dmesg.txt"])
    assert d is not None and d.folder_host == "db-07"


# --- Debian / Ubuntu ----------------------------------------------------------------------------------------

def test_debian_local() -> None:
    d = recognise("202611251015", ["dmesg.202611251015", "dump.202611251015", "kernel_link"])
    assert d is not None
    assert (d.layout, d.host_hint, d.complete, d.flattened) == ("debian", None, True, True)
    assert (d.vmcore, d.dmesg) == ("dump.202611251015", "dmesg.202611251015")
    assert d.time_from_name == datetime(2026, 11, 25, 10, 15)


def test_debian_remote_ip_hostname_and_compressed() -> None:
    d = recognise("10.1.2.3-202611251015", ["dmesg.202611251015", "dump.202611251015.gz"])
    assert d is not None and d.host_hint == "10.1.2.3" and d.host_hint_is_ip and d.vmcore.endswith(".gz")
    d = recognise("db-07.example.com-202611251015", ["dmesg.202611251015", "dump.202611251015"])
    assert d is not None and d.host_hint == "db-07.example.com" and not d.host_hint_is_ip


def test_debian_incomplete_and_cp_fallback() -> None:
    d = recognise("202611251015", ["dmesg.202611251015", "dump-incomplete"])
    assert d is not None and not d.complete and "dump-incomplete" in d.pending
    d = recognise("202611251015", ["dmesg.202611251015", "dump-incomplete.xz"])
    assert d is not None and not d.complete
    d = recognise("202611251015", ["dmesg.202611251015", "vmcore-incomplete"])
    assert d is not None and not d.complete
    d = recognise("202611251015", ["dmesg.202611251015", "vmcore.202611251015"])
    assert d is not None and d.complete and d.vmcore == "vmcore.202611251015" and not d.flattened


def test_kdump_tools_own_files_are_not_dumps(tmp_path: Path) -> None:
    assert recognise("kexec_cmd", []) is None
    assert recognise("kdump_lock", []) is None
    assert recognise("lost+found", []) is None
    assert recognise("202611251015", []) is None  # empty stamp dir: a save that failed before writing
    assert recognise("../202611251015", ["dump.202611251015"]) is None


# --- SUSE ---------------------------------------------------------------------------------------------------

def test_suse_remote_and_local() -> None:
    d = recognise("web-3-2026-11-25-10-15", ["README.txt", "dmesg", "vmcore"])
    assert d is not None and d.layout == "suse" and d.host_hint == "web-3" and d.complete and d.needs_readme
    assert d.time_from_name == datetime(2026, 11, 25, 10, 15)
    d = recognise("2026-11-25-10-15", ["README.txt", "dmesg", "vmcore"])
    assert d is not None and d.host_hint is None
    d = recognise("2026-11-25-10:15", ["README.txt", "vmcore"])  # older kdumptool naming
    assert d is not None and d.layout == "suse"


def test_suse_without_readme_is_incomplete_and_temp_readme_detected() -> None:
    d = recognise("web-3-2026-11-25-10-15", ["dmesg", "vmcore"])
    assert d is not None and not d.complete
    assert not suse_readme_final("This file will be overwritten when the dump is finished.\n")
    assert suse_readme_final("Kernel crashdump\n----------------\nvmcore status: saved successfully\n")


def test_hostile_names_never_become_hosts() -> None:
    assert recognise("a b-202611251015", ["dump.202611251015"]) is None
    d = recognise("x/../y/202611251015", ["dump.202611251015"])
    assert d is None


# --- crash commands -----------------------------------------------------------------------------------------

def test_crash_command_per_distribution() -> None:
    assert crash_command("debian", "6.1.0-18-amd64", "/srv/crash/x/dump.1") == \
        "crash /usr/lib/debug/boot/vmlinux-6.1.0-18-amd64 /srv/crash/x/dump.1"
    assert crash_command("rhel", "5.14.0-362.el9.x86_64", "/var/crash/v") == \
        "crash /usr/lib/debug/lib/modules/5.14.0-362.el9.x86_64/vmlinux /var/crash/v"
    assert crash_command("suse", "5.14.21-150500.55.39-default", "/k/vmcore") == \
        "crash /boot/vmlinux-5.14.21-150500.55.39-default.gz /k/vmcore"
    assert debug_vmlinux("suse", "5.14.21-default") == "/usr/lib/debug/boot/vmlinux-5.14.21-default.debug"
    assert "<kernel-release>" in crash_command("rhel", None, "/v")
    assert crash_command("rhel", "5.14", "/var/crash/10.0.0.7-2026-11-25-10:15:02/vmcore").endswith(
        "/var/crash/10.0.0.7-2026-11-25-10:15:02/vmcore")
    assert crash_command("rhel", "5.14", "/a b/vmcore").endswith("'/a b/vmcore'")


# --- dump headers -------------------------------------------------------------------------------------------

def test_kdump_compressed_header_and_vmcoreinfo() -> None:
    raw = build_kdump_compressed("6.1.0-18-amd64", 1764065702, nodename="db-07")
    info = parse_prefix(raw)
    assert info.format == "kdump-compressed"
    assert (info.crashtime, info.osrelease, info.nodename, info.machine) == (
        1764065702, "6.1.0-18-amd64", "db-07", "x86_64")
    assert not info.incomplete


def test_incomplete_flag_from_makedumpfile_status() -> None:
    raw = bytearray(build_kdump_compressed("6.1.0", 1))
    struct.pack_into("<I", raw, 424, 8)  # DUMP_DH_COMPRESSED_INCOMPLETE
    assert parse_prefix(bytes(raw)).incomplete


def test_flattened_is_replayed_out_of_order() -> None:
    raw = build_kdump_compressed("5.14.0-362.el9.x86_64", 1764065702)
    flat = flatten(raw, chunk=1000)
    assert flat.startswith(b"makedumpfile")
    assert unflatten(flat)[: len(raw)] == raw
    info = parse_prefix(flat)
    assert (info.format, info.crashtime, info.osrelease) == ("flattened", 1764065702, "5.14.0-362.el9.x86_64")


def test_elf_vmcoreinfo_note() -> None:
    info = parse_prefix(build_elf("6.8.0-45-generic", 1764065702))
    assert (info.format, info.crashtime, info.osrelease) == ("elf", 1764065702, "6.8.0-45-generic")


def test_text_scan_fallback_and_no_crashtime() -> None:
    blob = os.urandom(5000).replace(b"OSRELEASE=", b"") + b"\x00" + vmcoreinfo_text("6.1.0-x", None) + b"\x00"
    info = parse_prefix(blob)
    assert info.format == "unknown" and info.osrelease == "6.1.0-x" and info.crashtime is None
    assert parse_prefix(b"").format == "unknown"
    assert parse_prefix(b"KDUMP   " + b"\xff" * 10).format == "kdump-compressed"  # truncated: no crash


def test_gzip_dump_read_through(tmp_path: Path) -> None:
    p = tmp_path / "dump.202611251015.gz"
    p.write_bytes(gzip.compress(flatten(build_kdump_compressed("6.1.0-18-amd64", 42))))
    info = read_dump_info(str(p))
    assert info.crashtime == 42 and info.format == "flattened"


def test_huge_dump_reads_only_a_prefix(tmp_path: Path) -> None:
    """A 64 GiB (sparse) ELF dump: parsed from its first megabytes in well under a second."""
    p = tmp_path / "vmcore"
    with open(p, "wb") as f:
        f.write(build_elf("6.1.0-18-amd64", 1764065702))
        f.truncate(64 << 30)
    t0 = time.monotonic()
    info = read_dump_info(str(p))
    assert time.monotonic() - t0 < 2.0
    assert info.crashtime == 1764065702


def test_layout_module_documents_its_sources() -> None:
    doc = layouts.__doc__ or ""
    for src in ("kdump.sh", "kdump-config", "kdump-save", "savedump.cc"):
        assert src in doc


# --- hostile bytes never raise -----------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(head=st.sampled_from([b"", b"KDUMP   ", b"DISKDUMP", b"\x7fELF\x02\x01", b"\x7fELF\x01\x02", b"makedumpfile"]),
       body=st.binary(max_size=6000))
def test_parse_prefix_never_raises(head: bytes, body: bytes) -> None:
    info = parse_prefix(head + body)
    assert info.format in ("kdump-compressed", "diskdump", "flattened", "elf", "unknown")


@settings(max_examples=200, deadline=None)
@given(recs=st.lists(st.tuples(st.integers(-2, 1 << 40), st.integers(-2, 1 << 20), st.binary(max_size=64)),
                     max_size=20))
def test_unflatten_bounded_on_garbage_records(recs) -> None:
    data = bytearray(4096)
    data[:12] = b"makedumpfile"
    for off, size, payload in recs:
        data += struct.pack(">qq", off, size) + payload
    out = unflatten(bytes(data), limit=1 << 16)
    assert len(out) <= 1 << 16


@settings(max_examples=300, deadline=None)
@given(rel=st.text(max_size=40), names=st.lists(st.text(max_size=30), max_size=8))
def test_recognise_never_raises(rel: str, names: list[str]) -> None:
    d = recognise(rel, names)
    if d is not None:
        assert d.layout in ("rhel", "debian", "suse")
        assert d.host_hint is None or ("/" not in d.host_hint and d.host_hint not in (".", ".."))


def test_dumpdir_knows_its_debug_vmlinux_rule() -> None:
    d = recognise("202611251015", ["dmesg.202611251015", "dump.202611251015"])
    assert d.debug_vmlinux("6.1.0-18-amd64") == "/usr/lib/debug/boot/vmlinux-6.1.0-18-amd64"
    d = recognise("10.0.0.7-2026-11-25-10:15:02", ["vmcore"])
    assert d.debug_vmlinux("5.14.0-362.el9.x86_64") == "/usr/lib/debug/lib/modules/5.14.0-362.el9.x86_64/vmlinux"
    assert d.crash_command("5.14", "/v").startswith("crash /usr/lib/debug/lib/modules/5.14/vmlinux")
