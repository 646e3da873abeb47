"""Parser vectors: RFC 5424 (strict ABNF and lenient fallback), RFC 3164 / what rsyslog and logger really send."""

from __future__ import annotations

import calendar

import pytest

from sylog.syslog.parse import ParseError, parse

# 2026-11-25T10:00:00Z: the injected clock for RFC 3164 year inference.
NOW = calendar.timegm((2026, 11, 25, 10, 0, 0))
BOM = b"\xef\xbb\xbf"


def p(raw: bytes, **kw):
    return parse(raw, now=NOW, **kw)


def fields(m) -> dict:
    return {k: getattr(m, k) for k in ("format", "pri", "facility", "severity", "version", "timestamp", "hostname",
                                      "app_name", "procid", "msgid", "structured_data", "msg")}


def both(raw: bytes):
    """Strict and lenient agree on valid input; return the strict result."""
    s = p(raw, strict=True)
    lenient = p(raw)
    assert fields(s) == fields(lenient)
    return s


# ---------------------------------------------------------------- RFC 5424 section 6.5 examples

def test_rfc5424_example1_bom_removed():
    m = both(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - " + BOM
             + b"'su root' failed for lonvick on /dev/pts/8")
    assert fields(m) == {
        "format": "rfc5424", "pri": 34, "facility": 4, "severity": 2, "version": 1,
        "timestamp": "2003-10-11T22:14:15.003Z", "hostname": "mymachine.example.com", "app_name": "su",
        "procid": None, "msgid": "ID47", "structured_data": None,
        "msg": "'su root' failed for lonvick on /dev/pts/8"}
    assert m.missing == []


def test_rfc5424_example2_offset_and_microseconds():
    m = both(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.")
    assert (m.timestamp, m.hostname, m.app_name, m.procid, m.msgid) == (
        "2003-08-24T05:14:15.000003-07:00", "192.0.2.1", "myproc", "8710", None)
    assert m.msg == "%% It's time to make the do-nuts."


def test_rfc5424_example3_sd_and_bom_msg():
    m = both(b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
             b'eventSource="Application" eventID="1011"] ' + BOM + b"An application event log entry...")
    assert m.structured_data == {"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}}
    assert m.msg == "An application event log entry..."
    assert m.app_name == "evntslog" and m.msgid == "ID47"


def test_rfc5424_example4_two_elements_no_msg():
    m = both(b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
             b'eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]')
    assert m.structured_data == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"}}
    assert m.msg == ""


# ---------------------------------------------------------------- RFC 5424 details

def test_all_nil():
    m = both(b"<0>1 - - - - - -")
    assert fields(m) == {"format": "rfc5424", "pri": 0, "facility": 0, "severity": 0, "version": 1,
                         "timestamp": None, "hostname": None, "app_name": None, "procid": None, "msgid": None,
                         "structured_data": None, "msg": ""}


def test_max_pri_and_version():
    m = both(b"<191>999 - h a p m - x")
    assert (m.pri, m.facility, m.severity, m.version) == (191, 23, 7, 999)


def test_sd_escapes_unescaped():
    m = both(rb'<29>2 2016-01-15T01:00:43Z h S p - [meta a="\]\"\\" b="x\ny" c="" d="\u2318"] m')
    assert m.structured_data == {"meta": {"a": ']"\\', "b": "x\\ny", "c": "", "d": "\\u2318"}}
    assert m.msg == "m"


def test_sd_space_then_bracket_is_msg():
    m = both(b'<132>1 2006-10-29T01:59:59.156+01:00 h app - - [a i="3"] [b j="1"] text')
    assert m.structured_data == {"a": {"i": "3"}}
    assert m.msg == '[b j="1"] text'


def test_sd_utf8_values():
    m = both('<29>1 2016-01-15T01:00:43Z hn S - - [meta gr="κόσμε"] x'.encode())
    assert m.structured_data == {"meta": {"gr": "κόσμε"}}


def test_sd_cache_gives_same_result_twice():
    raw = b'<13>1 2026-11-25T10:16:38.75+00:00 vm x - - [timeQuality tzKnown="1" isSynced="0"] hello'
    a, b = p(raw), p(raw)
    assert a.structured_data == b.structured_data == {"timeQuality": {"tzKnown": "1", "isSynced": "0"}}
    assert p(raw, strict=True).structured_data == a.structured_data


def test_msg_keeps_leading_space_and_embedded_newline():
    assert both(b"<13>1 - h t - - -  sp").msg == " sp"
    assert both(b"<1>1 - - - - - - x\ny\x00z").msg == "x\ny\x00z"


@pytest.mark.parametrize("ts", [
    b"2003-10-11T22:14:15Z", b"2003-10-11T22:14:15.1Z", b"2003-10-11T22:14:15.123456+05:30",
    b"2024-02-29T00:00:00-00:00", b"1985-04-12T23:20:50.52Z", b"2018-12-31T23:59:59.999999-23:59",
])
def test_valid_timestamps_kept_as_sent(ts):
    assert both(b"<13>1 " + ts + b" h a - - - m").timestamp == ts.decode()


@pytest.mark.parametrize("ts", [
    b"2003-10-11t22:14:15Z",  # lower-case t
    b"2003-10-11T22:14:15.1234567Z",  # 7 fraction digits
    b"2003-13-11T22:14:15Z", b"2003-09-31T22:14:15Z", b"2023-02-29T22:14:15Z", b"2003-10-11T24:00:00Z",
    b"2003-10-11T22:60:00Z", b"2003-10-11T22:14:15+24:00", b"2003-10-11T22:14:15-07:61",
    b"2003-10-11T22:14:15", b"2003-10-11T22:14:15Z+07:00", b"2003-10-11", b"Oct", b"2003-10-11T22:14:15.Z",
])
def test_bad_timestamp_strict_names_it(ts):
    with pytest.raises(ParseError, match=r"^RFC 5424: bad TIMESTAMP at column 6: "):
        p(b"<13>1 " + ts + b" h a - - - m", strict=True)
    m = p(b"<13>1 " + ts + b" h a - - - m")
    if ts[:4].isdigit():  # a broken RFC 3339 stamp is skipped, the header read on
        assert m.format == "rfc5424" and m.hostname == "h" and m.app_name == "a" and m.msg == "m"
    else:  # anything else ends the header: all of it is kept as MSG
        assert m.format == "rfc5424" and m.hostname is None and m.msg == ts.decode() + " h a - - - m"


def test_lenient_accepts_what_the_abnf_rejects_needlessly():
    m = p(b"<13>1 2003-10-11t22:14:15.1234567z h a - - - m")
    assert m.timestamp == "2003-10-11T22:14:15.1234567Z" and m.missing == []
    m = p(b'<165>1 2003-10-11T22:14:15.003Z h e - ID47 [x@1 iut="3" src= "App"][y class="hi"]')
    assert m.structured_data == {"x@1": {"iut": "3", "src": "App"}, "y": {"class": "hi"}}
    long_id = b"a" * 40
    assert p(b"<13>1 - h a - - [" + long_id + b' i="1"] m').structured_data == {long_id.decode(): {"i": "1"}}


@pytest.mark.parametrize("raw, what", [
    (b"<13>1 - " + b"h" * 256 + b" a - - -", "HOSTNAME"),
    (b"<13>1 - h " + b"a" * 49 + b" - - -", "APP-NAME"),
    (b"<13>1 - h a " + b"p" * 129 + b" - -", "PROCID"),
    (b"<13>1 - h a p " + b"m" * 33 + b" -", "MSGID"),
    (b"<13>1 - h\x01 a - - -", "HOSTNAME"),
    (b"<13>1 -  h a - - -", "HOSTNAME"),
    (b"<13>1 - - - - - X", "STRUCTURED-DATA"),
    (b"<13>1 - - - - - []", "STRUCTURED-DATA"),
    (b"<13>1 - - - - - [a b]", "STRUCTURED-DATA"),
    (b'<13>1 - - - - - [a b="]"]', "STRUCTURED-DATA"),
    (b'<13>1 - - - - - [a b="""]', "STRUCTURED-DATA"),
    (b'<13>1 - - - - - [a b="\\"]', "STRUCTURED-DATA"),
    (b'<13>1 - - - - - [a b="1"][a c="2"]', "STRUCTURED-DATA"),
    (b'<13>1 - - - - - [' + b"x" * 33 + b"]", "STRUCTURED-DATA"),
    (b"<13>1 - - - - - -x", "STRUCTURED-DATA"),
    (b"<13>1000 - - - - - -", "VERSION"),
    (b"<13>01 - - - - - -", "VERSION"),
    (b"<1>4a ", "VERSION"),
])
def test_strict_errors_name_the_field(raw, what):
    with pytest.raises(ParseError, match=rf"^RFC 5424: bad {what} at column \d+"):
        p(raw, strict=True)
    p(raw)  # lenient: never raises


@pytest.mark.parametrize("raw", [b"<13>1", b"<13>1 ", b"<13>1 2026-11-24T10:00:00Z", b"<13>1 - host app - -"])
def test_strict_truncated_header(raw):
    with pytest.raises(ParseError, match=r"^RFC 5424: (header ends|bad) .*(missing|column)"):
        p(raw, strict=True)


def test_lenient_truncated_header_keeps_what_it_read():
    m = p(b"<13>1 2026-11-24T10:00:00Z")
    assert (m.format, m.version, m.timestamp, m.msg) == ("rfc5424", 1, "2026-11-24T10:00:00Z", "")
    assert {"hostname", "app_name", "procid", "msgid", "structured_data"} <= set(m.missing)


def test_lenient_broken_sd_becomes_msg():
    raw = b'<13>1 - h a - - [a b="unterminated] rest of it'
    m = p(raw)
    assert m.hostname == "h" and m.app_name == "a"
    assert m.structured_data is None and "structured_data" in m.missing
    assert m.msg == '[a b="unterminated] rest of it'


def test_lenient_duplicate_sd_ids_merge_first_wins():
    m = p(b'<13>1 - h a - - [a x="1"][b y="2"][a x="9" z="3"] m')
    assert m.structured_data == {"a": {"x": "1", "z": "3"}, "b": {"y": "2"}}


def test_bom_then_invalid_utf8_strict_error_lenient_kept():
    raw = b"<1>1 - - - - - - " + BOM + b"\xc3("
    with pytest.raises(ParseError, match="BOM"):
        p(raw, strict=True)
    assert p(raw).msg.encode("utf-8", "surrogateescape") == b"\xc3("


def test_invalid_utf8_msg_is_lossless():
    raw = b"<1>1 - - - - - - fond\xfc bruucht vell ch\xe4\xe4s"
    m = both(raw)
    assert m.msg.encode("utf-8", "surrogateescape") == b"fond\xfc bruucht vell ch\xe4\xe4s"


# ---------------------------------------------------------------- what rsyslog and logger send

def test_rsyslog_traditional_forward_format():
    m = both(b"<86>Nov 25 10:16:38 web-01 sshd[12345]: Accepted publickey for deploy")
    assert fields(m) == {
        "format": "rfc3164", "pri": 86, "facility": 10, "severity": 6, "version": None,
        "timestamp": "2026-11-25T10:16:38", "hostname": "web-01", "app_name": "sshd", "procid": "12345",
        "msgid": None, "structured_data": None, "msg": "Accepted publickey for deploy"}


def test_rsyslog_forward_format_rfc3339():
    m = both(b"<13>2026-11-24T10:00:00.123456+01:00 host-a app[77]: hi")
    assert (m.format, m.timestamp, m.hostname, m.app_name, m.procid, m.msg) == (
        "rfc3164", "2026-11-24T10:00:00.123456+01:00", "host-a", "app", "77", "hi")


def test_rsyslog_syslog_protocol23_format():
    m = both(b"<13>1 2026-11-25T10:16:38.752276+00:00 vm x 4242 - - hello world")
    assert (m.format, m.hostname, m.app_name, m.procid, m.msg) == ("rfc5424", "vm", "x", "4242", "hello world")


@pytest.mark.parametrize("raw, host, body", [
    (b"<4>Nov 25 10:00:00 db-07 kernel: [   12.345678] BUG: kernel NULL pointer dereference, address: "
     b"0000000000000008", "db-07",
     "[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000008"),
    (b"<0>Jan  1 00:00:00 edge kernel: Kernel panic - not syncing: Fatal exception", "edge",
     "Kernel panic - not syncing: Fatal exception"),
    (b"<2>Nov 24 10:15:02 hv-03 kernel: mce: [Hardware Error]: CPU 7: Machine Check Exception: 5 Bank 4: "
     b"be00000000800400", "hv-03", "mce: [Hardware Error]: CPU 7: Machine Check Exception: 5 Bank 4: be00000000800400"),
])
def test_kernel_lines(raw, host, body):
    m = both(raw)
    assert (m.hostname, m.app_name, m.procid, m.msg, m.is_kernel) == (host, "kernel", None, body, True)


def test_logger_rfc3164_and_rfc5424_outputs():
    # captured from util-linux 2.38 `logger --no-act --stderr -n 127.0.0.1 ...`
    m = both(b"<13>Nov 25 10:16:38 vm x: hello")
    assert (m.hostname, m.app_name, m.msg) == ("vm", "x", "hello")
    m = both(b"<13>Nov 25 10:16:38 vm root[7202]: x")
    assert (m.app_name, m.procid, m.msg) == ("root", "7202", "x")
    m = both(b'<13>1 2026-11-25T10:16:38.752276+00:00 vm x - - [timeQuality tzKnown="1" isSynced="0"] hello')
    assert m.structured_data == {"timeQuality": {"tzKnown": "1", "isSynced": "0"}} and m.msg == "hello"
    m = both(b"<13>1 - - x - - - hi")
    assert (m.timestamp, m.hostname, m.app_name, m.msg) == (None, None, "x", "hi")


def test_missing_hostname_tag_with_pid():
    m = both(b"<13>Nov 25 10:00:00 sshd[12]: x")
    assert (m.hostname, m.app_name, m.procid, m.msg) == (None, "sshd", "12", "x")
    assert p(b"<13>Nov 25 10:00:00 sshd[12]: x").missing == ["hostname"]


@pytest.mark.parametrize("raw, host, app, procid, msg", [
    (b"<13>Nov 25 10:00:00 host tag: msg", "host", "tag", None, "msg"),
    (b"<13>Nov 25 10:00:00 host tag:msg", "host", "tag", None, "msg"),
    (b"<13>Nov 25 10:00:00 host tag msg text", "host", "tag", None, "msg text"),
    (b"<13>Nov 25 10:00:00 host postfix/smtpd[1234]: connect", "host", "postfix/smtpd", "1234", "connect"),
    (b"<13>Nov 25 10:00:00 host sshd(pam_unix)[31]: closed", "host", "sshd(pam_unix)", "31", "closed"),
    (b"<13>Nov 25 10:00:00 10.0.0.9 app[]: x", "10.0.0.9", "app", None, "x"),
    (b"<13>Nov 25 10:00:00 0002:: prg0: msgtxt", "0002::", "prg0", None, "msgtxt"),
    (b"<13>Nov 25 10:00:00 host {\"json\": 1}", "host", None, None, "{\"json\": 1}"),
    (b"<13>Nov 25 10:00:00 host", "host", None, None, ""),
    (b"<13>Nov 25 10:00:00", None, None, None, ""),
    (b"<13>Nov 25 10:00:00 host-", "host-", None, None, ""),
    (b"<13>Nov 25 10:00:00 %PIX-7-710005: UDP", None, "%PIX-7-710005", None, "UDP"),
    (b"<38>Sep 22 10:11:56 Message forwarded from cdaix66: sshd[6799]: Accepted", "cdaix66", "sshd", "6799",
     "Accepted"),
])
def test_rfc3164_host_and_tag_rules(raw, host, app, procid, msg):
    m = both(raw)
    assert (m.format, m.hostname, m.app_name, m.procid, m.msg) == ("rfc3164", host, app, procid, msg)


@pytest.mark.parametrize("raw, ts", [
    (b"<13>Aug  7 06:30:00 h a: x", "2026-08-07T06:30:00"),
    (b"<13>AUG 10 22:18:24 h a: x", "2026-08-10T22:18:24"),
    (b"<13>Nov 5 22:18:24 h a: x", "2026-11-05T22:18:24"),
    (b"<13>Oct 16 2009 23:47:31 h a: x", "2009-10-16T23:47:31"),
    (b"<13> Sep  7 19:06:53 h a: x", "2026-09-07T19:06:53"),
    (b"<13>Aug 29 02:00:00.156789 h a: x", "2026-08-29T02:00:00.156789"),
    (b"<13>2006-10-29 02:00:00.156+01:00 h a: x", "2006-10-29T02:00:00.156+01:00"),
    (b"<13>2006-10-29T02:00:00.15600000000000+0100 h a: x", "2006-10-29T02:00:00.156000+01:00"),
    (b"<13>2010-08-30T23:00:05Z h a: x", "2010-08-30T23:00:05Z"),
    (b"<13>2010-08-30T23:00:05 h a: x", "2010-08-30T23:00:05"),
    (b"<0>91: *Oct 07 03:10:04: mydevice.com %CRYPTO-4-X: decaps", "2026-10-07T03:10:04"),
    (b"<13>Apr 15 21:28:13 2007 linksys app: msg", "2007-04-15T21:28:13"),
    (b"<13>Aug 29 02:00:00. ctld snmpd[2499]: x", "2026-08-29T02:00:00"),
])
def test_rfc3164_timestamps(raw, ts):
    assert both(raw).timestamp == ts


def test_year_inference_nearest_to_now():
    jan = calendar.timegm((2027, 1, 1, 0, 10, 0))
    assert parse(b"<13>Dec 31 23:59:59 h a: x", now=jan).timestamp == "2026-12-31T23:59:59"
    dec = calendar.timegm((2026, 12, 31, 23, 50, 0))
    assert parse(b"<13>Jan  1 00:00:05 h a: x", now=dec).timestamp == "2027-01-01T00:00:05"
    mid = calendar.timegm((2026, 6, 15, 0, 0, 0))
    assert parse(b"<13>Jan  1 00:00:05 h a: x", now=mid).timestamp == "2026-01-01T00:00:05"
    # Feb 29 only exists in leap years: 2028 is the nearest one from early 2027... but 2024 from mid 2026
    leap = calendar.timegm((2028, 2, 20, 0, 0, 0))
    assert parse(b"<13>Feb 29 12:00:00 h a: x", now=leap).timestamp == "2028-02-29T12:00:00"
    # the cached rendering follows the clock
    assert parse(b"<13>Dec 31 23:59:59 h a: x", now=dec).timestamp == "2026-12-31T23:59:59"


def test_impossible_bsd_date_is_not_a_timestamp():
    m = p(b"<13>Feb 30 10:00:00 h a: x")
    assert m.timestamp is None and "timestamp" in m.missing


# ---------------------------------------------------------------- PRI, raw, strict vs lenient

def test_no_pri_assumes_13():
    m = p(b"Feb 18 16:01:59 serverX -- MARK --", strict=True)
    assert (m.pri, m.facility, m.severity, m.hostname, m.app_name, m.msg) == (13, 1, 5, "serverX", "--", "MARK --")
    m = p(b"Feb 18 16:01:59 serverX -- MARK --")
    assert m.pri == 13 and m.missing == ["pri"]


def test_headerless_has_no_host_but_a_tag():
    # RFC 3164 4.3.2: no TIMESTAMP -> no HEADER, so no host name; the MSG may still start with a TAG (syslog-ng)
    m = p(b"This is a message!", strict=True)
    assert (m.format, m.hostname, m.app_name, m.msg) == ("rfc3164", None, "This", "is a message!")
    m = p(b"This is a message!")
    assert (m.format, m.hostname, m.msg) == ("raw", None, "This is a message!")
    m = both(b"<13>hello world")
    assert (m.format, m.hostname, m.app_name, m.msg) == ("rfc3164", None, "hello", "world")
    assert set(p(b"<13>hello world").missing) == {"timestamp", "hostname"}
    m = both(b"<27>xapi: [error|xen3] died")
    assert (m.app_name, m.msg, m.hostname) == ("xapi", "[error|xen3] died", None)
    m = both(b"<15> openvpn[2499]: PTHREAD support initialized")
    assert (m.hostname, m.app_name, m.procid, m.msg) == (None, "openvpn", "2499", "PTHREAD support initialized")
    m = p(b'   [{ "c3":3 }]', strict=True)
    assert (m.app_name, m.msg) == (None, '   [{ "c3":3 }]')
    assert both(b"<13>   x y").msg == "y"


@pytest.mark.parametrize("raw", [b"<abc>Nov 24 10:00:00 h app: x", b"<192>1 - - - - - -", b"<002>1 - - - - - -",
                                 b"<>x", b"<13", b"<1234>x", b"<-1>x"])
def test_bad_pri(raw):
    with pytest.raises(ParseError, match=r"^not syslog: bad PRI"):
        p(raw, strict=True)
    m = p(raw)
    assert (m.format, m.pri, m.msg) == ("raw", None, raw.decode())
    assert "pri" in m.missing


@pytest.mark.parametrize("raw", [b"", b"   ", b"\x00\x01\x02"])
def test_not_syslog(raw):
    with pytest.raises(ParseError, match=r"^not syslog: "):
        p(raw, strict=True)
    m = p(raw)
    assert m.format == "raw" and m.msg.encode("utf-8", "surrogateescape") == raw


def test_nul_bytes_and_invalid_utf8_in_3164():
    raw = b"<13>Nov 25 10:00:00 h a: x\x00y\xff\xfe"
    m = both(raw)
    assert m.msg.encode("utf-8", "surrogateescape") == b"x\x00y\xff\xfe"


def test_broken_5424_falls_back_to_3164_when_version_is_bad():
    m = p(b"<13>1000 2018-11-22 foo")
    assert (m.format, m.pri, m.version, m.app_name, m.msg) == ("rfc3164", 13, None, "1000", "2018-11-22 foo")
    assert "timestamp" in m.missing


# ---------------------------------------------------------------- the real util-linux logger on this machine

def _logger(*args: str) -> bytes:
    import shutil
    import subprocess

    if not shutil.which("logger"):
        pytest.skip("util-linux logger not installed")
    r = subprocess.run(["logger", "--no-act", "--stderr", "-n", "127.0.0.1", "-P", "9", *args],
                       capture_output=True, timeout=30)
    return r.stderr.rstrip(b"\n")


def test_real_logger_rfc5424():
    m = parse(_logger("--rfc5424", "-t", "myapp", "-p", "local3.err", "--msgid", "ID9", "hello world"),
              strict=True)
    assert (m.format, m.facility, m.severity, m.app_name, m.msgid, m.msg) == ("rfc5424", 19, 3, "myapp", "ID9",
                                                                              "hello world")
    assert m.timestamp is not None and m.hostname
    m = parse(_logger("--rfc5424=notq,notime,nohost", "-t", "x", "hi"), strict=True)
    assert (m.timestamp, m.hostname, m.structured_data, m.msg) == (None, None, None, "hi")


def test_real_logger_rfc3164():
    m = parse(_logger("--rfc3164", "-t", "myapp", "-i", "-p", "local0.warning", "hello"), strict=True)
    assert (m.format, m.pri, m.app_name, m.msg) == ("rfc3164", 132, "myapp", "hello")
    assert m.procid and m.procid.isdigit() and m.hostname and m.timestamp


def test_sd_value_must_be_utf8_in_strict():
    raw = b'<13>1 - h a - - [x y="caf\xe9"] m'
    with pytest.raises(ParseError, match=r"STRUCTURED-DATA .*not UTF-8"):
        p(raw, strict=True)
    assert p(raw).structured_data["x"]["y"].encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_lenient_bad_timestamp_text_is_not_lost():
    m = p(b"<13>1 garbage")
    assert (m.format, m.version, m.msg) == ("rfc5424", 1, "garbage") and "timestamp" in m.missing
    m = p(b"<13>1 Nov 25 10:00:00 host app - - - text")
    assert m.msg == "Nov 25 10:00:00 host app - - - text" and m.hostname is None
    m = p(b"<13>1 2003-09-31T22:14:15Z host app - - - text")  # a broken RFC 3339 date: skipped, header read on
    assert (m.timestamp, m.hostname, m.app_name, m.msg) == (None, "host", "app", "text")
    assert m.missing == ["timestamp"]
