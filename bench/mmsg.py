"""``sendmmsg``/``recvmmsg`` through ctypes (Linux): one syscall and no Python call per datagram.

Used by the UDP load generator (so pacing 200k msg/s does not need a Python ``send`` per datagram on a 2-core box)
and by the UDP socket sink (the machine's ceiling should not be Python's per-datagram cost). Falls back to plain
``send``/``recv_into`` loops where ctypes or the calls are unavailable.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Sequence

MSG_WAITFORONE = 0x10000

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _sendmmsg = _libc.sendmmsg
    _recvmmsg = _libc.recvmmsg
except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
    _sendmmsg = _recvmmsg = None


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_Iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


AVAILABLE = _sendmmsg is not None


class Batch:
    """A fixed set of datagrams laid out once for ``sendmmsg`` (the bytes objects are kept alive here)."""

    def __init__(self, datagrams: Sequence[bytes]) -> None:
        n = len(datagrams)
        self.n = n
        blob = b"".join(datagrams)
        self._buf = ctypes.create_string_buffer(blob, len(blob))
        self._iov = (_Iovec * n)()
        self._msgs = (_Mmsghdr * n)()
        base = ctypes.addressof(self._buf)
        iov_size = ctypes.sizeof(_Iovec)
        iov_base = ctypes.addressof(self._iov)
        off = 0
        for i, d in enumerate(datagrams):
            self._iov[i].iov_base = base + off
            self._iov[i].iov_len = len(d)
            off += len(d)
            self._msgs[i].msg_hdr.msg_iov = ctypes.cast(iov_base + i * iov_size, ctypes.POINTER(_Iovec))
            self._msgs[i].msg_hdr.msg_iovlen = 1

    def send(self, sock: socket.socket, start: int = 0, count: int | None = None) -> int:
        """Send datagrams ``start .. start+count`` on a connected socket; returns how many went out."""
        end = self.n if count is None else min(self.n, start + count)
        fd = sock.fileno()
        i = start
        while i < end:
            k = _sendmmsg(fd, ctypes.byref(self._msgs[i]), end - i, 0)
            if k <= 0:
                err = ctypes.get_errno()
                if err in (11, 105, 111):  # EAGAIN, ENOBUFS, ECONNREFUSED: count as sent and lost
                    i += 1
                    continue
                raise OSError(err, "sendmmsg failed")
            i += k
        return end - start


class Receiver:
    """``recvmmsg`` into ``n`` preallocated buffers; :meth:`recv` returns (datagrams, bytes), 0s on timeout."""

    def __init__(self, sock: socket.socket, n: int = 256, size: int = 65536, timeout: float = 0.05) -> None:
        sock.setblocking(True)
        tv = struct.pack("ll", int(timeout), int((timeout % 1) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.fd = sock.fileno()
        self.n = n
        self._buf = ctypes.create_string_buffer(n * size)
        self._iov = (_Iovec * n)()
        self._msgs = (_Mmsghdr * n)()
        base = ctypes.addressof(self._buf)
        for i in range(n):
            self._iov[i].iov_base = base + i * size
            self._iov[i].iov_len = size
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1

    def recv(self) -> tuple[int, int]:
        k = _recvmmsg(self.fd, self._msgs, self.n, MSG_WAITFORONE, None)
        if k <= 0:
            return 0, 0
        return k, sum(self._msgs[i].msg_len for i in range(k))
