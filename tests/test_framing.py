"""Framing: RFC 6587 auto-detection, limits, split-invariance."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from sylog.syslog.framing import MAX_OCTET_COUNT, TcpDeframer, Truncated, udp_frame


def frames_of(chunks: list[bytes], max_size: int = 64 * 1024, eof: bool = True) -> tuple[list[bytes], TcpDeframer]:
    d = TcpDeframer(max_size)
    out: list[bytes] = []
    for c in chunks:
        out += d.feed(c)
    if eof:
        out += d.eof()
    return out, d


def octet(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


def test_lf_framing_with_crlf_nul_and_empty_lines():
    out, d = frames_of([b"<13>one\n<13>two\r\n\n\r\n<13>three\0<13>four\0\n<13>five"])
    assert out == [b"<13>one", b"<13>two", b"<13>three", b"<13>four", b"<13>five"]
    assert d.error is None and d.truncated == 0


def test_octet_counting_keeps_lf_and_nul_inside():
    m1, m2 = b"<13>a\nb", b"<13>x\0y z"
    out, d = frames_of([octet(m1) + octet(m2)])
    assert out == [m1, m2]


def test_trailing_lf_inside_octet_count_is_dropped_like_rsyslog():
    # rsyslog's RSYSLOG_SyslogProtocol23Format ends in LF even when octet-counting
    out, _ = frames_of([octet(b"<13>1 with lf\n") + octet(b"<13>crlf\r\n") + octet(b"<13>inner\nkept")])
    assert out == [b"<13>1 with lf", b"<13>crlf", b"<13>inner\nkept"]


def test_mixed_framing_per_frame_and_trailing_lf_after_octet_frame():
    data = octet(b"<13>counted") + b"\n" + b"<13>plain line\n" + octet(b"<14>again")
    out, _ = frames_of([data])
    assert out == [b"<13>counted", b"<13>plain line", b"<14>again"]


def test_digits_without_pri_fall_back_to_a_line():
    out, d = frames_of([b"12 monkeys went by\n<13>next\n"])
    assert out == [b"12 monkeys went by", b"<13>next"]
    assert d.fallbacks == 1 and d.error is None


def test_count_not_followed_by_sp_is_a_framing_error_after_good_frames():
    d = TcpDeframer()
    assert d.feed(b"<13>good\n" + octet(b"<13>ok") + b"123abc <13>x") == [b"<13>good", b"<13>ok"]
    assert d.error and "SP" in d.error
    assert d.feed(b"<13>more\n") == [] and d.eof() == []


def test_too_many_digits_and_absurd_counts_are_errors():
    d = TcpDeframer()
    d.feed(b"12345678901 <13>x")
    assert d.error and "10 digits" in d.error
    d = TcpDeframer()
    d.feed(b"%d <13>x" % (MAX_OCTET_COUNT + 1))
    assert d.error and "absurd" in d.error


def test_byte_by_byte_digits_error_detected():
    d = TcpDeframer()
    for b in b"1234567890123":
        d.feed(bytes([b]))
    assert d.error


def test_octet_frame_over_max_is_truncated_and_the_rest_skipped():
    big = b"<13>" + b"x" * 1000
    out, d = frames_of([octet(big) + octet(b"<13>after")], max_size=100)
    assert out == [big[:100], b"<13>after"]
    assert isinstance(out[0], Truncated) and not isinstance(out[1], Truncated)
    assert d.truncated == 1 and d.error is None


def test_lf_frame_over_max_is_truncated_then_discarded_to_lf():
    big = b"<13>" + b"y" * 10_000
    out, d = frames_of([big[i:i + 333] for i in range(0, len(big), 333)] + [b"\n<13>after\n"], max_size=100)
    assert out == [big[:100], b"<13>after"]
    assert d.truncated == 1


def test_ten_megabytes_without_newline_is_bounded():
    d = TcpDeframer(64 * 1024)
    chunk = b"z" * 65536
    got = []
    for _ in range(160):
        got += d.feed(chunk)
        assert d.buffered <= 64 * 1024 + 12
    got += d.feed(b"\n<13>alive\n")
    assert [len(f) for f in got] == [65536, 9]
    assert d.truncated == 1 and d.error is None


def test_eof_delivers_unterminated_line_and_partial_octet_frame():
    out, _ = frames_of([b"<13>first\n<13>no newline at the end"])
    assert out == [b"<13>first", b"<13>no newline at the end"]
    out, d = frames_of([b"50 <13>short"])
    assert out == [b"<13>short"] and isinstance(out[0], Truncated) and d.truncated == 1
    out, _ = frames_of([b"42"])
    assert out == [b"42"]


def test_lying_count_shorter_than_message():
    out, d = frames_of([b"5 <13>hello world\n<13>next\n"])
    assert out == [b"<13>h", b"ello world", b"<13>next"]
    assert d.error is None


def test_udp_frame():
    assert udp_frame(b"<13>hi\n") == b"<13>hi"
    assert udp_frame(b"<13>hi\r\n\0") == b"<13>hi"
    assert udp_frame(b"<13>a\nb") == b"<13>a\nb"
    assert udp_frame(b"\n") is None
    t = udp_frame(b"<13>" + b"x" * 100, max_size=10)
    assert isinstance(t, Truncated) and len(t) == 10


# -- split invariance ---------------------------------------------------------------------------------------------
_msg = st.binary(min_size=0, max_size=60).map(lambda b: b"<13>" + b.replace(b"\n", b"").replace(b"\0", b""))


@st.composite
def streams(draw):
    parts = []
    for m in draw(st.lists(_msg, max_size=12)):
        kind = draw(st.sampled_from(["lf", "crlf", "nul", "octet", "octet_lf", "digits"]))
        if kind == "lf":
            parts.append(m + b"\n")
        elif kind == "crlf":
            parts.append(m + b"\r\n")
        elif kind == "nul":
            parts.append(m + b"\0")
        elif kind == "octet":
            parts.append(octet(m + draw(st.binary(max_size=8))))
        elif kind == "octet_lf":
            parts.append(octet(m) + b"\n")
        else:
            parts.append(b"77 " + m + b"\n")
    if draw(st.booleans()):
        parts.append(draw(st.binary(max_size=40)))  # garbage tail, may be an error
    return b"".join(parts)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    pts = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in pts + [len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


@settings(max_examples=400, deadline=None)
@given(streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
       st.sampled_from([16, 50, 64 * 1024]))
def test_split_invariance(data, cuts, max_size):
    whole, d1 = frames_of([data], max_size)
    parts, d2 = frames_of(_split(data, cuts), max_size)
    assert parts == whole
    assert [type(f) for f in parts] == [type(f) for f in whole]
    assert (d1.error is None) == (d2.error is None)
    assert d1.truncated == d2.truncated


@settings(max_examples=150, deadline=None)
@given(streams(), st.sampled_from([16, 64 * 1024]))
def test_byte_by_byte_equals_whole(data, max_size):
    whole, _ = frames_of([data], max_size)
    bytewise, _ = frames_of([data[i:i + 1] for i in range(len(data))], max_size)
    assert bytewise == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_arbitrary_bytes_never_raise_and_are_split_invariant(data, cuts):
    whole, d1 = frames_of([data], 32)
    parts, d2 = frames_of(_split(data, cuts), 32)
    assert parts == whole and d1.error == d2.error
    assert all(len(f) <= 32 for f in parts)


def test_generated_roundtrip_lf_and_octet():
    msgs = [b"<13>m%d " % i + b"p" * (i % 97) for i in range(500)]
    data = b"".join(octet(m) if i % 2 else m + b"\n" for i, m in enumerate(msgs))
    for step in (1, 7, 4096):
        out, d = frames_of([data[i:i + step] for i in range(0, len(data), step)])
        assert out == msgs and d.error is None
