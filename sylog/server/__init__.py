"""The asyncio shell of ``sylog serve``: sockets in, timeline lines and observer calls out.

Shape (one process)::

    listeners.py  TcpConnection (BufferedProtocol, one shared read buffer) -> TcpDeframer (sans-IO)
    udp.py        UdpReader (batched reads: every datagram of one wake, kernel lines steered to their own socket)
        |  every frame of one TCP read (one peer) or every datagram of one UDP wake (a peer each), ONE receive time
        v
    pipeline.py   parse (lenient) -> fold_host -> format line -> writer queue -> observer.feed(...)
        v
    timeline/writer.py   per-(day, host) lists; every 200 ms one executor hop writes all hosts (O_APPEND)
    app.py        wiring from a Config, observers (incident engine, peer map, vmcore watcher), periodic
                  tick / flush / idle sweep / stats tasks, signals, drain-and-flush shutdown
    counters.py   every counter in one place (stats lines; later metrics)

Multi-core (issue 6) is meant to be N copies of this process sharing the ports with ``listen.reuse_port``: the
kernel keeps one TCP connection (and one UDP source) on one worker, timeline appends are whole-line O_APPEND
writes (safe from several processes), and nothing in the pipeline is global. What still needs design there is
per-host state that must see all of a host's lines (the incident correlator) when a host reaches two workers.
Back-pressure: TCP reading pauses while ``timeline.max_pending_lines`` wait to be written.
"""
