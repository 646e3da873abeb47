"""Fuzz properties of the TCP deframer that tests/test_framing*.py do not already state.

Those tests cover: generated mixed streams split anywhere (max 16/50/64K), byte-by-byte == whole, arbitrary bytes
(max 32) split-invariant. Added here: NUL/CR/LF/digit noise injected *inside* mixed octet/LF streams with tiny size
limits (1..40), the documented bounds after every chunk (``buffered <= max_size + 12``, every frame non-empty and
at most ``max_size``), the counters (truncated/fallbacks) and the error text split-invariant, nothing after an
error, a model check of frame contents under truncation, and ``udp_frame`` on arbitrary datagrams.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sylog.syslog.framing import TcpDeframer, Truncated, udp_frame

SETTINGS = dict(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NOISE = st.sampled_from([b"\0", b"\r", b"\n", b"\r\n", b"\n\n", b" ", b"0", b"9", b"12", b"12 ", b"<", b"3 <",
                         b"99999999999", b"\xff", b"\xef\xbb\xbf"])


@st.composite
def noisy_streams(draw) -> bytes:
    """Well-formed octet-counted and LF frames (the count sometimes lying), with noise spliced in anywhere."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 10))):
        body = b"<%d>" % draw(st.integers(0, 191)) + draw(st.binary(max_size=50))
        kind = draw(st.sampled_from(["octet", "octet_lie", "lf", "crlf", "nul"]))
        if kind == "octet":
            parts.append(b"%d %s" % (len(body), body))
        elif kind == "octet_lie":
            parts.append(b"%d %s" % (max(0, len(body) + draw(st.integers(-5, 5))), body))
        else:
            body = body.replace(b"\n", b"").replace(b"\0", b"")
            parts.append(body + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\0"}[kind])
    data = b"".join(parts)
    for _ in range(draw(st.integers(0, 6))):  # splice noise at arbitrary positions
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(NOISE) + data[at:]
    return data


def _cuts(data: bytes, cuts: list[int]) -> list[bytes]:
    pts = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in pts + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def _run(chunks: list[bytes], max_size: int) -> tuple[list[bytes], list[type], TcpDeframer]:
    d = TcpDeframer(max_size=max_size)
    frames: list[bytes] = []
    for c in chunks:
        got = d.feed(c)
        frames += got
        # documented bound: whatever a peer sends, what is held for one frame stays bounded
        assert d.buffered <= max_size + 12, (d.buffered, max_size)
        if d.error is not None:
            assert d.feed(b"5 <1>x\n") == []  # nothing after a framing error
    frames += d.eof()
    assert d.eof() == []  # a second eof delivers nothing more
    return [bytes(f) for f in frames], [type(f) for f in frames], d


@settings(**SETTINGS)
@given(noisy_streams(), st.lists(st.integers(0, 100_000), max_size=25), st.integers(1, 40))
def test_noisy_mixed_stream_split_invariant_and_bounded(data, cuts, max_size):
    whole, wt, d1 = _run([data], max_size)
    parts, pt, d2 = _run(_cuts(data, cuts), max_size)
    assert parts == whole and pt == wt
    assert (d1.error, d1.truncated, d1.fallbacks) == (d2.error, d2.truncated, d2.fallbacks)
    for f, t in zip(whole, wt):
        assert f and len(f) <= max_size
    # every frame cut short is counted (eof may also count a partial octet frame that had only LF/CR/NUL in it)
    assert sum(t is Truncated for t in wt) <= d1.truncated


@settings(**SETTINGS)
@given(noisy_streams(), st.integers(1, 40))
def test_noisy_stream_byte_by_byte(data, max_size):
    whole, wt, d1 = _run([data], max_size)
    bytewise, bt, d2 = _run([data[i:i + 1] for i in range(len(data))], max_size)
    assert bytewise == whole and bt == wt and d1.error == d2.error and d1.truncated == d2.truncated


# Model check: what each frame must contain, with truncation.
_octet_body = st.binary(max_size=60).map(lambda b: b"<13>" + b.replace(b"\n", b"").replace(b"\r", b"")
                                          .replace(b"\0", b""))
_lf_body = st.binary(max_size=60).map(lambda b: b"<13>" + b.replace(b"\n", b"").replace(b"\0", b"").rstrip(b"\r"))


@settings(**SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(["octet", "octet_lf", "lf", "crlf", "nul"]), _octet_body, _lf_body),
                max_size=15),
       st.integers(1, 80), st.lists(st.integers(0, 100_000), max_size=10))
def test_frames_are_the_messages_cut_to_max_size(items, max_size, cuts):
    stream, expect = b"", []
    for kind, ob, lb in items:
        if kind.startswith("octet"):
            stream += b"%d %s" % (len(ob), ob) + (b"\n" if kind == "octet_lf" else b"")
            m = ob
        else:
            stream += lb + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\0"}[kind]
            m = lb
        expect.append((m[:max_size], len(m) > max_size))
    frames, types, d = _run(_cuts(stream, cuts), max_size)
    assert d.error is None
    assert frames == [m for m, _ in expect]
    assert [t is Truncated for t in types] == [cut for _, cut in expect]
    assert d.truncated == sum(cut for _, cut in expect)


@settings(**SETTINGS)
@given(st.binary(max_size=300), st.integers(1, 300))
def test_udp_frame_arbitrary_datagrams(data, max_size):
    f = udp_frame(data, max_size)
    if f is None:
        assert not data.rstrip(b"\r\n\0")
        return
    assert 0 < len(f) <= max_size
    assert data.startswith(f)
    assert isinstance(f, Truncated) == (len(data.rstrip(b"\r\n\0")) > max_size)
