"""Crash incidents: per-host correlation of kernel lines into incident files.

- ``model``: the ``Incident`` record (the JSON schema below), IDs, RFC 3339 helpers.
- ``ring``: the compact per-host last-gasp ring (recent lines raw, older ones deflated).
- ``correlator``: sans-IO per-host state machine (``feed`` every message, ``tick(now)``; events to a sink).
- ``store``: ``DATA/incidents/<host>/<id>.json`` + ``<id>.log``, atomic writes, recovery of open incidents.
- ``engine``: the asyncio observer the server registers (``feed``/``tick``/``aclose``; writes off the loop).

Files (dirs 0700, files 0600, every write = temp file in the same dir + fsync + rename, ``.log`` before ``.json``):

``<id>.json`` — one object; ``sylog incidents --json`` prints an array of these:
  id              ``YYYYMMDDTHHMMSSZ-xxxxxx`` (UTC second of first_seen + 24 random bits; sorts by time)
  host            folded host name (also the directory name)
  kind            first trigger's kind (root cause): panic oops bug page-fault gpf mce hw-error soft-lockup
                  hard-lockup hung-task rcu-stall sanitizer warning oom unclean-reboot
  kinds           every kind seen, in order; fatal: true when it ended in a panic
  title function module kernel_release taint cpu pid comm hardware frames signature   (from sylog.kernel.report)
  state           open | closed; closed_reason: quiet | reboot | restart | shutdown | max-open | unclean-reboot
  first_seen last_seen   RFC 3339 UTC with microseconds (receive times)
  lines           crash lines attached; lines_cut: how many of them the per-incident cap kept out of the .log
  path log_path   absolute paths of the two files
  vmcore          null, or the vmcore linker's object (path, size, mtime, dmesg, matched_by, crash command, ...)
  vmcore_missing  set by the linker when a fatal incident got no dump within its window
  source          syslog | netconsole | vmcore; trigger: the trigger line's text (printk prefix stripped)
  context_lines   number of last-gasp context lines in the .log

``<id>.log`` — the host's last ``incidents.context_lines`` timeline lines before the trigger (all facilities), one
separator line ``---- sylog: crash lines of incident <id> follow (N context lines above) ----``, then the crash
lines (timeline lines: receive time first). A ``---- sylog: N crash lines cut here ... ----`` line marks a cut.
"""
