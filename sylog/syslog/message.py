"""The one type every stage after parsing speaks: a parsed syslog message."""

from __future__ import annotations

import msgspec

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
)
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

FORMAT_RFC5424 = "rfc5424"
FORMAT_RFC3164 = "rfc3164"
FORMAT_RAW = "raw"


class Message(msgspec.Struct, kw_only=True):
    """A syslog message as parsed.

    Text fields are ``str``; bytes that are not valid UTF-8 are kept losslessly as surrogate escapes
    (``bytes.decode("utf-8", "surrogateescape")``), so the original bytes can always be recovered with
    ``.encode("utf-8", "surrogateescape")``. ``missing`` lists what best-effort parsing had to guess
    (e.g. ``"pri"``, ``"timestamp"``, ``"hostname"``), so nothing is silently invented.
    """

    format: str
    pri: int | None = None
    facility: int | None = None
    severity: int | None = None
    version: int | None = None
    timestamp: str | None = None  # RFC 3339, as the sender meant it (offset kept when known)
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured_data: dict[str, dict[str, str]] | None = None
    msg: str = ""
    missing: list[str] = []

    @property
    def tag(self) -> str:
        """Traditional syslog tag: ``app[procid]`` (or ``-`` when there is no app name)."""
        if not self.app_name:
            return "-"
        return f"{self.app_name}[{self.procid}]" if self.procid else self.app_name

    @property
    def is_kernel(self) -> bool:
        """A kernel line: facility kern, or tag ``kernel`` (rsyslog relays sometimes lose the facility)."""
        return self.facility == 0 or self.app_name == "kernel"

    def facility_name(self) -> str:
        f = self.facility
        return FACILITIES[f] if f is not None and 0 <= f < len(FACILITIES) else "-"

    def severity_name(self) -> str:
        s = self.severity
        return SEVERITIES[s] if s is not None and 0 <= s < len(SEVERITIES) else "-"
