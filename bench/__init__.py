"""sylog benchmark suite: deterministic load generator, harness, and side-by-side runs against rsyslog.

Entry points: ``python -m bench.loadgen`` (send a workload), ``python -m bench.run tcp|udp|latency|state|parse|
profile`` (one benchmark each, results into ``bench/RESULTS.md``).
"""
