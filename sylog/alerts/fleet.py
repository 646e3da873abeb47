"""Fleet rule, sans-IO: "one signature reached N distinct hosts within W seconds".

The signal that lets automation isolate nodes running a bad driver. Fed (signature, host, time, incident) per
incident event; returns a payload the first time the threshold is reached, then stays quiet for that signature
until the count falls below N again (hosts age out of the window), so a flapping fleet does not page per crash.
Times are the incidents' own times (first_seen), not the wall clock, so the rule is deterministic and a replay
of old incidents is judged by when they happened.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class _Sig:
    hosts: dict[str, tuple[float, str]] = field(default_factory=dict)  # host -> (latest time, incident id)
    latest: float = float("-inf")
    fired: bool = False
    kind: str | None = None
    title: str | None = None


class FleetRule:
    """Distinct hosts per signature in a sliding window; bounded to ``max_signatures`` (oldest forgotten)."""

    def __init__(self, hosts: int, window: float, *, max_signatures: int = 10000) -> None:
        if hosts < 1 or window <= 0:
            raise ValueError("fleet rule needs hosts >= 1 and window > 0")
        self.threshold = hosts
        self.window = float(window)
        self.max_signatures = max_signatures
        self._sigs: OrderedDict[str, _Sig] = OrderedDict()
        self.fired = 0

    def observe(self, signature: str, host: str, t: float, incident_id: str = "", *,
                kind: str | None = None, title: str | None = None) -> dict | None:
        """Record one incident; the fleet payload (a dict) when this makes the signature cross the threshold."""
        if not signature or not host:
            return None
        st = self._sigs.get(signature)
        if st is None:
            st = self._sigs[signature] = _Sig()
            if len(self._sigs) > self.max_signatures:
                self._sigs.popitem(last=False)
        else:
            self._sigs.move_to_end(signature)
        prev = st.hosts.get(host)
        if prev is None or t >= prev[0]:
            st.hosts[host] = (t, incident_id or (prev[1] if prev else ""))
        st.kind = kind or st.kind
        st.title = title or st.title
        st.latest = max(st.latest, t)
        lo = st.latest - self.window
        for h in [h for h, (ht, _) in st.hosts.items() if ht < lo]:
            del st.hosts[h]
        n = len(st.hosts)
        if n < self.threshold:
            st.fired = False  # re-armed: the next crossing fires again
            return None
        if st.fired:
            return None
        st.fired = True
        self.fired += 1
        hosts = sorted(st.hosts)
        times = [st.hosts[h][0] for h in hosts]
        return {
            "event": "fleet",
            "signature": signature,
            "kind": st.kind,
            "title": st.title,
            "hosts": hosts,
            "host_count": n,
            "threshold": self.threshold,
            "window": self.window,
            "incidents": [st.hosts[h][1] for h in hosts if st.hosts[h][1]],
            "first_seen": min(times),
            "last_seen": max(times),
        }

    def hosts_for(self, signature: str) -> list[str]:
        st = self._sigs.get(signature)
        return sorted(st.hosts) if st else []
