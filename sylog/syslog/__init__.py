"""Sans-IO syslog: framing, RFC 5424 / RFC 3164 parsing, the Message type and host-name folding."""
