"""Command-line front: ``sylog <command>``. Each command lives in ``sylog.commands.<name>`` and exposes
``add_parser(subparsers)`` (registering itself, with ``set_defaults(func=run)``) and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from sylog import __version__

# Order is the order shown in --help.
COMMANDS: tuple[str, ...] = ("serve", "parse", "incidents", "show", "timeline", "signatures", "link-vmcore",
                             "check-config", "client-setup")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sylog", description="Remote syslog crash-log receiver.")
    ap.add_argument("--version", action="version", version=f"sylog {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"sylog.commands.{name.replace('-', '_')}").add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `sylog incidents | head`: the reader went away; not an error worth a traceback.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
