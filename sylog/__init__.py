"""sylog: a remote syslog crash-log receiver."""

__version__ = "0.1.0"
