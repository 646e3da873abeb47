"""Kernel crash detection, sans-IO: pure functions over str, cheap enough for every kernel line of a fleet.

- `printk.split_printk(text) -> PrintkLine(level, ts, caller, body)`: the `<4>`, `[  12.345678]`, `[T123]`/`[C2]`
  prefixes parsed and stripped (lines without them pass through).
- `detect.classify(body) -> Hit(kind, fatal) | None`: trigger lines (start or escalate a crash report), kinds from
  the fixed vocabulary in `detect.KINDS`; `detect.is_boot_marker(body)`, `detect.is_clean_shutdown(msg)`,
  `detect.is_crash_continuation(body)` (registers, traces, report bodies), `detect.ends_report(body)`.
- `report.analyze(kind, lines) -> Report` (title, function, module, kernel_release, taint, cpu, pid, comm, hardware,
  frames, signature): `lines` from the trigger on, printk-stripped or raw (raw lines keep caller ids, which keep
  other tasks' interleaved output out of the report).
"""
