"""One command per benchmark; results go to bench/RESULTS.md (and raw rows to bench/results/<name>.json).

    python -m bench.run tcp      [--hosts 1000 10 10000] [--messages 2000000] [--runs 3] [--targets sylog rsyslog sink]
    python -m bench.run udp      [--rates 50000 100000 200000] [--seconds 5] [--runs 3]
    python -m bench.run latency  [--crashes 50] [--rate 100000] [--background tcp|udp] [--runs 3]
    python -m bench.run state    [--hosts 10000] [--lines-per-host 210] [--runs 3]
    python -m bench.run parse    [--lines 200000] [--runs 3]
    python -m bench.run profile  [--messages 500000] [--hosts 1000]
    python -m bench.run rsyslog-sweep [--hosts 1000 10000] [--messages 1000000] [--runs 3]
    python -m bench.run smoke    (every benchmark at tiny sizes, results not written)
    python -m bench.run all      [--runs 3]   (every benchmark at full size, about 30 minutes)

Every receiver is started fresh per run in a temp dir on free loopback ports; runs of different receivers are
interleaved (sylog, rsyslog, sink, sylog, ...) so slow drifts of the machine hit them alike. Each run is bounded by
``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results
from bench.harness import IngestResult, ingest
from bench.workload import WorkloadSpec


def _cmdline() -> str:
    return "python -m bench.run " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _med(rows: list[IngestResult], attr: str) -> float:
    xs = [getattr(r, attr) for r in rows]
    return statistics.median(xs) if xs else float("nan")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _safe_ingest(*args: Any, **kw: Any) -> IngestResult | None:
    """One run; a failure (receiver did not start, crashed, timed out hard) is logged and skipped, not fatal."""
    try:
        return ingest(*args, **kw)
    except Exception as e:  # noqa: BLE001 - a benchmark suite must finish and say what failed
        _log(f"run failed: {type(e).__name__}: {e}")
        return None


def _brief(r: IngestResult) -> str:
    return (f"{r.target:8s} hosts={r.hosts:<6d} offered={r.offered:<8d} lines={r.lines:<8d} "
            f"{r.rate:>10,.0f} msg/s  cpu/M={r.cpu_per_million:5.2f}s  peakRSS={r.peak_rss_mb:6.1f}MB"
            f"  lost={r.lost} wrong_hosts={r.hosts_wrong} disorder={r.hosts_out_of_order} inc={r.incidents_matched}/{r.incidents_expected}"
            f"{'+' + str(r.incidents_extra) if r.incidents_extra else ''} {r.note}")


# -- tcp -------------------------------------------------------------------------------------------------------------
def bench_tcp(a: argparse.Namespace, write: bool = True) -> dict:
    started = results.machine_line()
    rows: list[IngestResult] = []
    for hosts in a.hosts:
        spec = WorkloadSpec(hosts=hosts, messages=a.messages, crashes=min(10, hosts), senders=a.connections,
                            seed=a.seed)
        slow: set[str] = set()
        for run in range(a.runs):
            for t in a.targets:
                if t in slow:
                    continue
                t0 = time.monotonic()
                r = _safe_ingest(t, spec, transport="tcp", framing=a.framing, timeout=a.timeout)
                if r is None:
                    continue
                rows.append(r)
                _log(f"tcp run {run + 1}/{a.runs} {_brief(r)}")
                if time.monotonic() - t0 > a.max_cell_seconds:
                    slow.add(t)  # e.g. rsyslog at 10,000 hosts: one run is all the time allows
                    _log(f"tcp: {t} at {hosts} hosts took {time.monotonic() - t0:.0f}s: no further runs of it")
    out_rows, summary = [], {}
    for hosts in a.hosts:
        med = {}
        for t in a.targets:
            rs = [r for r in rows if r.hosts == hosts and r.target == t]
            if not rs:
                continue
            med[t] = {k: _med(rs, k) for k in ("rate", "rate99", "seconds", "cpu_per_million", "peak_rss_mb", "send_rate",
                                                "main_thread_cpu", "other_threads_cpu")}
            med[t]["lost_max"] = max(r.lost for r in rs)
            med[t]["wrong_max"] = max(r.hosts_wrong for r in rs)
            med[t]["order_max"] = max(r.hosts_out_of_order for r in rs)
            med[t]["inc"] = f"{min(r.incidents_matched for r in rs)}/{rs[0].incidents_expected}" + \
                (f" (+{max(r.incidents_extra for r in rs)} extra)" if any(r.incidents_extra for r in rs) else "")
            med[t]["runs"] = [round(r.rate) for r in rs]
            med[t]["n"] = len(rs)
        summary[hosts] = med
        for t in a.targets:
            if t not in med:
                continue
            m = med[t]
            ratio_r = m["rate"] / med["rsyslog"]["rate"] if "rsyslog" in med and t != "rsyslog" else float("nan")
            ratio_s = m["rate"] / med["sink"]["rate"] if "sink" in med and t != "sink" else float("nan")
            out_rows.append([hosts, t, m["rate"], " / ".join(f"{x:,}" for x in m["runs"]), m["rate99"], m["seconds"],
                             m["cpu_per_million"] if t != "sink" else m["cpu_per_million"], m["peak_rss_mb"],
                             m["lost_max"], m["wrong_max"] if t == "sink" else f"{m['wrong_max']} / {m['order_max']}",
                             m["inc"] if t.startswith("sylog") else "-",
                             f"{ratio_r:.2f}x" if ratio_r == ratio_r else "-",
                             f"{ratio_s:.3f}x" if ratio_s == ratio_s else "-"])
    n_msgs = rows[0].offered if rows else 0
    body = [f"## TCP ingest into per-host timelines ({n_msgs:,} messages, {a.connections} connections, "
            f"{a.framing}-framed RFC 5424)", "",
            f"command: `{_cmdline()}`  ", started + "  ",
            f"finished: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.runs} run(s) per cell, medians", "",
            results.table(["hosts", "receiver", "msg/s", "runs (msg/s)", "msg/s to 99%", "seconds", "CPU s / M msgs",
                           "peak RSS MB", "lost (max)", "hosts with wrong count / out of order", "crash incidents found",
                           "vs rsyslog", "vs sink"], out_rows), "",
            "msg/s: first byte sent -> last timeline line on disk (newest file mtime), all lines counted per host "
            "against the manifest. 'msg/s to 99%': first byte -> the moment 99% of the receiver's output bytes had "
            "been written (wchar of /proc/PID/io sampled every 5 ms), which removes the flush tail (rsyslog's "
            "asyncWriting flushes at most once a second; sylog every 200 ms). CPU: utime+stime of the receiver's process tree (threads and children) during "
            "the run. Peak RSS: VmHWM summed over the tree. The sink reads and discards (no framing, no disk): "
            "the loopback ceiling; its 'seconds' end when the last byte was read."]
    if "sylog" in a.targets:
        sy = [(h, summary[h]["sylog"]) for h in a.hosts if "sylog" in summary[h]]
        body.append("")
        body.append("sylog CPU by thread (whole process life, medians): " + "; ".join(
            f"{h} hosts: main {m['main_thread_cpu']:.1f}s, other threads {m['other_threads_cpu']:.1f}s"
            for h, m in sy))
    if write:
        name = "tcp" if sorted(a.hosts) == [10, 1000, 10000] else "tcp-" + "-".join(map(str, a.hosts))
        results.update(name, "\n".join(body))
        results.save_raw(name, [r.row() for r in rows])
    print("\n".join(body))
    return summary


# -- udp -------------------------------------------------------------------------------------------------------------
def bench_udp(a: argparse.Namespace, write: bool = True) -> dict:
    started = results.machine_line()
    rows: list[IngestResult] = []
    for run in range(a.runs):
        for rate in a.rates:
            spec = WorkloadSpec(hosts=a.hosts[0], messages=int(rate * a.seconds), senders=a.senders, seed=a.seed)
            for t in a.targets:
                r = _safe_ingest(t, spec, transport="udp", rate=rate, timeout=a.timeout)
                if r is None:
                    continue
                r.note = (r.note + f" offered_rate={rate}").strip()
                rows.append(r)
                _log(f"udp run {run + 1}/{a.runs} rate={rate} {_brief(r)} rcvbuf_err={r.rcvbuf_errors}")
    out_rows, summary = [], {}
    for rate in a.rates:
        fr = {}
        for t in a.targets:
            rs = [r for r in rows if r.target == t and r.note.endswith(f"offered_rate={rate}")]
            if not rs:
                continue
            fracs = [r.lines / max(1, r.offered) for r in rs]
            fr[t] = statistics.median(fracs)
            kf = [r.kernel_received / r.kernel_sent for r in rs if r.kernel_sent]
            counted = [r.server_counters.get("udp_kernel_drops", 0) + r.server_counters.get("dropped", 0)
                       + r.server_counters.get("shed_ordinary", 0)
                       for r in rs if r.server_counters]
            lost = [r.lost for r in rs if r.server_counters]
            out_rows.append([rate, t, statistics.median([r.send_rate for r in rs]), fr[t],
                             " / ".join(f"{x:.3f}" for x in fracs),
                             statistics.median(kf) if kf else float("nan"),
                             f"{statistics.median(counted):,.0f} of {statistics.median(lost):,.0f}" if counted else "-",
                             statistics.median([r.rcvbuf_errors for r in rs]),
                             _med(rs, "cpu_per_million"), _med(rs, "peak_rss_mb")])
        summary[rate] = fr
    body = [f"## UDP: fraction received ({a.hosts[0]} hosts, {a.seconds:g} s per rate, {a.senders} sender processes "
            f"with sendmmsg)", "", f"command: `{_cmdline()}`  ", started + "  ",
            f"finished: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.runs} run(s), medians", "",
            results.table(["offered msg/s", "receiver", "achieved send msg/s", "fraction received", "runs",
                           "kernel lines received", "drops the receiver counted (of lost)", "RcvbufErrors (delta)",
                           "CPU s / M offered", "peak RSS MB"],
                          out_rows), "",
            "fraction received: lines in the timelines (sink: datagrams read) / datagrams sent. RcvbufErrors is "
            "system-wide (/proc/net/snmp), so other traffic on the machine can add to it. 'kernel lines received': "
            "the same fraction for kern-facility lines only (about 8% of the mix) - whether overload sheds "
            "ordinary messages first. 'drops counted': sylog's own final counter line (udp_kernel_drops + shed_ordinary + dropped) "
            "against the datagrams missing from its timelines - is every loss visible to the operator? sylog and rsyslog ask for an 8 MiB SO_RCVBUF(FORCE). The senders compete with "
            "the receiver for the 2 cores: 'achieved send' below 'offered' means the machine could not offer more."]
    if write:
        results.update("udp", "\n".join(body))
        results.save_raw("udp", [r.row() for r in rows])
    print("\n".join(body))
    return summary


# -- latency ---------------------------------------------------------------------------------------------------------
def bench_latency(a: argparse.Namespace, write: bool = True) -> dict:
    from bench.latency import run_latency

    started = results.machine_line()
    runs = []
    for run in range(a.runs):
        try:
            r = run_latency(crashes=a.crashes, rate=a.rate, background=a.background, hosts=a.hosts[0])
        except Exception as e:  # noqa: BLE001
            _log(f"latency run failed: {type(e).__name__}: {e}")
            continue
        runs.append(r)
        _log(f"latency run {run + 1}/{a.runs}: " + json.dumps({k: round(v, 1) if isinstance(v, float) else v
                                                              for k, v in r.items()}))
    from bench.latency import pct

    keys = ["cold_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "achieved_send_rate", "written_rate", "cpu_util"]
    med = {k: statistics.median([r[k] for r in runs]) for k in keys}
    rows = [[i + 1, r["detected"], r["missed"], r["cold_ms"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
             r["achieved_send_rate"], r["written_rate"], r["cpu_util"], r.get("loop_lag_max_ms", "")]
            for i, r in enumerate(runs)]
    rows.append(["median of runs", "", "", med["cold_ms"], med["p50_ms"], med["p90_ms"], med["p99_ms"],
                 med["max_ms"], med["achieved_send_rate"], med["written_rate"], med["cpu_util"], ""])
    pooled = [x for r in runs for x in r["latencies_ms"]]
    rows.append([f"all {len(pooled)} pooled", sum(r["detected"] for r in runs), sum(r["missed"] for r in runs),
                 "", pct(pooled, 50), pct(pooled, 90), pct(pooled, 99), max(pooled) if pooled else float("nan"),
                 "", "", "", ""])
    med["pooled_p99_ms"] = pct(pooled, 99)
    parts = [p for r in runs for p in r.get("parts_ms", []) if p]
    split = ", ".join(f"{k} {pct([p[k] for p in parts], 50):.1f} / {pct([p[k] for p in parts], 99):.1f}"
                      for k in ("recv", "to_write", "log_sync", "json_sync", "poll")) if parts else "n/a"
    body = [f"## Crash latency: trigger sent -> incident JSON on disk ({a.crashes} crashes per run, background "
            f"{a.background} paced at {a.rate:,.0f} msg/s from {a.hosts[0]} hosts)", "",
            f"command: `{_cmdline()}`  ", started + "  ",
            f"finished: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
            results.table(["run", "detected", "missed", "cold start ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
                           "background sent msg/s", "sylog wrote msg/s", "sylog CPU (cores)",
                           "loop lag max ms"], rows), "",
            f"Where the time goes, all crashes pooled, p50 / p99 ms: {split}. recv = trace sent -> received by "
            "the event loop (the incident's first_seen); to_write = received -> the .log written; log_sync / "
            "json_sync = the .log / .json written -> renamed (0 now: the first version is published without "
            "fsync, the fsync follows on the writer thread); poll = renamed -> seen by the 2 ms stat loop. File "
            "times have the kernel tick's resolution (~4 ms), so single parts can be slightly negative.", "",
            "Each run starts a fresh sylog; the first crash after start-up is the 'cold start' (not in the "
            "percentiles). Each crash host first sends 20 ordinary lines (its context), then its trace on a dedicated TCP "
            "connection; the clock starts just before the trace's sendall and stops when a *.json appears in "
            "DATA/incidents/<host>/ (stat loop every 2 ms). 'sylog wrote' = timeline lines on disk / test time: "
            "if it is below the offered rate, sylog was not keeping up with the background (TCP back-pressure "
            "slows the senders)."]
    if write:
        name = "latency" if a.rate == 100_000 and a.background == "tcp" else \
            f"latency-{a.background}-{int(a.rate)}"
        results.update(name, "\n".join(body))
        results.save_raw(name, runs)
    print("\n".join(body))
    return med


# -- state -----------------------------------------------------------------------------------------------------------
def bench_state(a: argparse.Namespace, write: bool = True) -> dict:
    started = results.machine_line()
    hosts = a.hosts[0]
    spec = WorkloadSpec(hosts=hosts, messages=hosts * a.lines_per_host, crashes=min(10, hosts),
                        senders=a.connections, seed=a.seed)
    rows: list[IngestResult] = []
    for run in range(a.runs):
        for t in a.targets:
            r = _safe_ingest(t, spec, timeout=a.timeout, settle=1.0)
            if r is None:
                continue
            rows.append(r)
            _log(f"state run {run + 1}/{a.runs} {_brief(r)} rss_after={r.rss_after_mb:.1f}MB")
    out = []
    for t in a.targets:
        rs = [r for r in rows if r.target == t]
        if not rs:
            continue
        out.append([t, hosts, a.lines_per_host, _med(rs, "peak_rss_mb"), _med(rs, "rss_after_mb"), _med(rs, "rate"),
                    max(r.lost for r in rs)])
    body = [f"## Scale of state: {hosts:,} hosts x {a.lines_per_host} lines each (context rings full)", "",
            f"command: `{_cmdline()}`  ", started + "  ",
            f"finished: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.runs} run(s), medians", "",
            results.table(["receiver", "hosts", "lines/host", "peak RSS MB (VmHWM)", "RSS after ingest MB",
                           "msg/s", "lost"], out), "",
            "Target: sylog RSS <= 150 MB with 10,000 hosts. Peak RSS includes the receive/write buffers of the "
            "ingest itself; 'after' is VmRSS 1 s after everything is on disk (the resting state: per-host context "
            "rings, open-file cache, host tables)."]
    if write:
        results.update("state", "\n".join(body))
        results.save_raw("state", [r.row() for r in rows])
    print("\n".join(body))
    return {r[0]: r[3] for r in out}


# -- parse -----------------------------------------------------------------------------------------------------------
def bench_parse(a: argparse.Namespace, write: bool = True) -> dict:
    from bench.stages import parse_cli, stages

    started = results.machine_line()
    cli = {"lenient": [], "strict": []}
    st = []
    for run in range(a.runs):
        for mode in ("lenient", "strict"):
            r = parse_cli(a.lines, lenient=mode == "lenient")
            cli[mode].append(r["lines_per_s"])
            _log(f"parse run {run + 1}/{a.runs} {mode}: {r['lines_per_s']:,.0f} lines/s (exit {r['exit']})")
        s = stages(a.lines)
        st.append(s)
        _log(f"stages run {run + 1}/{a.runs}: " + ", ".join(f"{k} {v:.2f}us" for k, v in s["us_per_msg"].items()))
    names = list(st[0]["us_per_msg"])
    us = {k: statistics.median([s["us_per_msg"][k] for s in st]) for k in names}
    tot = sum(us.values())
    rows = [[k, us[k], us[k] / tot] for k in names] + [["total", tot, 1.0]]
    body = ["## `sylog parse` throughput and hot-path stage costs", "",
            f"command: `{_cmdline()}`  ", started + "  ",
            f"finished: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.runs} run(s), medians", "",
            results.table(["`sylog parse` mode", "lines/s (start-up subtracted)", "runs"],
                          [[m, statistics.median(v), " / ".join(f"{x:,.0f}" for x in v)] for m, v in cli.items()]),
            "", f"Per-stage cost, in-process, no profiler ({st[0]['messages']:,} octet-framed messages from 1,000 "
                f"hosts; each stage timed alone over the whole input):", "",
            results.table(["stage", "us / message", "share"], rows), "",
            f"Single-threaded pipeline ceiling from these stages: {1e6 / tot:,.0f} msg/s (event loop and socket "
            f"reads not included: see the profile)."]
    if write:
        results.update("parse", "\n".join(body))
        results.save_raw("parse", {"cli": cli, "stages": st})
    print("\n".join(body))
    return us


# -- profile ---------------------------------------------------------------------------------------------------------
def bench_profile(a: argparse.Namespace, write: bool = True) -> dict:
    from bench.profile import summarise

    started = results.machine_line()
    udp = a.transport == "udp"
    spec = WorkloadSpec(hosts=a.hosts[0], messages=a.messages, crashes=0 if udp else min(10, a.hosts[0]),
                        senders=a.senders if udp else a.connections, seed=a.seed)
    name = "profile-udp" if udp else "profile"
    with tempfile.TemporaryDirectory(prefix="sylog-bench-prof-") as tmp:
        prof = Path(tmp) / "serve.prof"
        info: dict = {}
        r = ingest("sylog", spec, transport=a.transport, rate=a.rate if udp else None, timeout=a.timeout,
                   target_kw={"profile": prof}, info=info)
        _log(f"profile run: {_brief(r)}")
        s = summarise(prof)
        s_main = summarise(prof, threads=False)
        if write:
            results.RAW.mkdir(exist_ok=True)
            for p in [prof, *prof.parent.glob(prof.name + ".thread*")]:
                (results.RAW / p.name.replace("serve.prof", f"serve-{a.transport}.prof")).write_bytes(p.read_bytes())
    # the profiler inflates the many-small-calls main thread far more than the worker threads (few big calls):
    # take the main/worker CPU split from an unprofiled run of the same load, and scale the profile's stages to it
    plain = _safe_ingest("sylog", spec, transport=a.transport, rate=a.rate if udp else None, timeout=a.timeout)
    if plain is not None and plain.main_thread_cpu + plain.other_threads_cpu > 0:
        main_frac = plain.main_thread_cpu / (plain.main_thread_cpu + plain.other_threads_cpu)
    else:
        main_frac = float("nan")
    workers = {k: v - s_main["stage_seconds"].get(k, 0.0) for k, v in s["stage_seconds"].items()}
    wtot = sum(v for v in workers.values() if v > 0) or 1.0
    names = list(s_main["stage_share"])
    rows = [[k, s_main["stage_share"][k], s_main["stage_share"][k] * main_frac] for k in names]
    wdesc = ", ".join(f"{k} {v / wtot:.0%}" for k, v in sorted(workers.items(), key=lambda kv: -kv[1]) if v / wtot >= 0.05)
    rows.append([f"worker threads ({wdesc})", float("nan"), 1 - main_frac])
    top = [[t["func"], t["tottime"], t["cumtime"], t["calls"]] for t in s["top"][:20]]
    what = f"UDP at {a.rate:,.0f} msg/s offered, {r.lines:,} of {r.offered:,} received" if udp else \
        f"TCP ingest, {r.offered:,} messages"
    body = [f"## Profile of `sylog serve` under {what} ({spec.hosts} hosts, cProfile)", "", f"command: `{_cmdline()}`  ", started + "  ",
            f"finished: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; profiled rate {r.rate:,.0f} msg/s "
            f"(profiling costs a lot: timer = main-thread CPU clock); main-thread CPU in the profiled window "
            f"{info.get('window_main_cpu') or 0:.1f}s, of which the profile attributes {s_main['total_tottime']:.1f}s to "
            f"Python functions and the builtins they call (the rest: uvloop's C code - epoll, recv, callback "
            f"dispatch - and profiler overhead); whole life: main thread {r.main_thread_cpu:.1f}s, other threads "
            f"{r.other_threads_cpu:.1f}s", "",
            results.table(["stage", "share of the event-loop thread (profile)",
                           "est. share of process CPU"], rows), "",
            f"est. share of process CPU: the profile's stage shares scaled to the event-loop thread's share of the "
            f"process CPU in an unprofiled run of the same load ({main_frac:.0%}; the rest is the worker threads, "
            f"broken down by their own profiles){'' if plain is None else f'; that run: {plain.rate:,.0f} msg/s'}.",
            "",
            "Top functions by own time (all threads):", "",
            results.table(["function", "tottime s", "cumtime s", "calls"], top), "",
            "The profile covers exactly the load (bench/profserve.py: SIGUSR1/SIGUSR2 bracket it) and counts CPU "
            "time, not wall time. Own time of builtins/C functions is charged to the stage of their Python caller. "
            f"Raw profiles: bench/results/serve-{a.transport}.prof (+ .thread<N> for worker threads; "
            f"`python -m pstats`)."]
    if write:
        results.update(name, "\n".join(body))
        results.save_raw(name, {"summary": s, "summary_main": s_main, "ingest": r.row(),
                                "unprofiled": plain.row() if plain else None})
    print("\n".join(body))
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("bench", choices=("tcp", "udp", "latency", "state", "parse", "profile", "smoke", "all",
                                      "rsyslog-sweep"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hosts", type=int, nargs="+")
    ap.add_argument("--messages", type=int)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--framing", choices=("octet", "lf"), default="octet")
    ap.add_argument("--targets", nargs="+", choices=("sylog", "rsyslog", "sink", "sylog-x2"),
                    help="sylog-x2: two unmodified sylog processes sharing the port with SO_REUSEPORT (the multi-core "
                         "experiment, bench/multiserve.py)")
    ap.add_argument("--rates", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    ap.add_argument("--seconds", type=float, default=5.0, help="UDP: seconds of traffic per rate")
    ap.add_argument("--senders", type=int, default=2, help="UDP sender processes")
    ap.add_argument("--crashes", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100_000, help="latency: background msg/s")
    ap.add_argument("--background", choices=("tcp", "udp"), default="tcp")
    ap.add_argument("--transport", choices=("tcp", "udp"), default="tcp", help="profile: the load's transport "
                    "(udp uses --rate and --messages)")
    ap.add_argument("--lines-per-host", type=int, default=210)
    ap.add_argument("--lines", type=int, default=200_000, help="parse: lines")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0, help="per run")
    ap.add_argument("--max-cell-seconds", type=float, default=90.0,
                    help="tcp: a receiver whose run took longer than this is not run again for that host count")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    a = ap.parse_args(argv)
    write = not a.no_write
    if a.bench == "smoke":
        return smoke()
    if a.bench == "all":
        return run_all(a.runs)
    defaults = {"tcp": ([1000, 10, 10000], 2_000_000, ["sylog", "rsyslog", "sink"]),
                "udp": ([1000], 0, ["sylog", "rsyslog", "sink"]),
                "latency": ([1000], 0, ["sylog"]),
                "state": ([10000], 0, ["sylog"]),
                "parse": ([1000], 0, ["sylog"]),
                "profile": ([1000], 500_000, ["sylog"]),
                "rsyslog-sweep": ([1000, 10000], 1_000_000, ["rsyslog"])}[a.bench]
    a.hosts = a.hosts or defaults[0]
    a.messages = a.messages or defaults[1]
    a.targets = a.targets or defaults[2]
    fn = {"tcp": bench_tcp, "udp": bench_udp, "latency": bench_latency, "state": bench_state, "parse": bench_parse,
          "profile": bench_profile, "rsyslog-sweep": bench_rsyslog_sweep}[a.bench]
    fn(a, write)
    return 0


# -- rsyslog tuning sweep --------------------------------------------------------------------------------------------
def bench_rsyslog_sweep(a: argparse.Namespace, write: bool = True) -> dict:
    """The 'competent admin' part: try the knobs that matter and keep the best (one queue worker: two reorder)."""
    started = results.machine_line()
    configs = [{"imptcp_threads": t, "batch": b} for t in (1, 2) for b in (1024, 4096)]
    rows, out = [], {}
    for hosts in a.hosts:
        spec = WorkloadSpec(hosts=hosts, messages=a.messages, senders=a.connections, seed=a.seed)
        cfgs = configs if hosts <= 1000 else [{"cache": c} for c in (1000, 10000)]
        for kw in cfgs:
            rs = [ingest("rsyslog", spec, timeout=a.timeout, target_kw=kw) for _ in range(a.runs)]
            med = _med(rs, "rate")
            _log(f"rsyslog sweep hosts={hosts} {kw}: {med:,.0f} msg/s")
            rows.append([hosts, ", ".join(f"{k}={v}" for k, v in kw.items()), med,
                         " / ".join(f"{r.rate:,.0f}" for r in rs), _med(rs, "cpu_per_million"), max(r.lost for r in rs)])
            out[f"{hosts} {kw}"] = med
    body = [f"## rsyslog tuning sweep ({a.messages:,} messages, {a.connections} connections)", "",
            f"command: `{_cmdline()}`  ", started + "  ",
            f"finished: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.runs} run(s), medians", "",
            results.table(["hosts", "setting (others as in bench/targets.py)", "msg/s", "runs", "CPU s / M",
                           "lost"], rows), "",
            "Fixed: main queue LinkedList, one worker thread (two would interleave a host's lines out of order), "
            "omfile asyncWriting on, ioBufferSize 64k, flushOnTXEnd off, flushInterval 1. bench/targets.py uses the "
            "best of this sweep as the rsyslog configuration."]
    if write:
        tag = "rsyslog-sweep-" + "-".join(map(str, a.hosts))
        results.update(tag, "\n".join(body))
        results.save_raw(tag, out)
    print("\n".join(body))
    return out


def run_all(runs: int) -> int:
    """Every benchmark at full size, in the order that puts the long rsyslog 10,000-host run last."""
    r = str(runs)
    for argv in (["parse", "--runs", r], ["profile"], ["profile", "--transport", "udp", "--rate", "100000",
                                                        "--messages", "300000"],
                 ["latency", "--runs", r], ["udp", "--runs", r], ["state", "--runs", r],
                 ["tcp", "--runs", r, "--hosts", "1000", "10", "10000", "--targets", "sylog", "rsyslog", "sink",
                  "sylog-x2"]):
        _log("bench.run " + " ".join(argv))
        try:
            main(argv)
        except Exception as e:  # noqa: BLE001 - go on with the next benchmark
            _log(f"bench.run {argv[0]} failed: {type(e).__name__}: {e}")
    return 0


def smoke() -> int:
    """Every benchmark at tiny sizes, nothing written: checks the harness end to end in about a minute."""
    main(["tcp", "--hosts", "50", "--messages", "20000", "--runs", "1", "--no-write"])
    main(["udp", "--rates", "20000", "--seconds", "1", "--runs", "1", "--no-write"])
    main(["latency", "--crashes", "5", "--rate", "10000", "--runs", "1", "--no-write"])
    main(["state", "--hosts", "200", "--lines-per-host", "50", "--runs", "1", "--no-write"])
    main(["parse", "--lines", "5000", "--runs", "1", "--no-write"])
    main(["profile", "--messages", "20000", "--hosts", "50", "--no-write"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
