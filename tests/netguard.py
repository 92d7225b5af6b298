"""Fail fast when a test tries to reach the network beyond the loopback interface.

``install()`` patches ``socket.socket.connect``/``connect_ex``/``sendto`` and
``socket.getaddrinfo`` (used by asyncio and aiohttp's default resolver) so that any address other
than loopback (127.0.0.0/8, ::1, "localhost") or a unix socket raises :class:`NetworkBlocked`
(an AssertionError) before anything is sent. ``uninstall()`` restores the originals.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

__all__ = ["NetworkBlocked", "install", "installed", "uninstall"]


class NetworkBlocked(AssertionError):
    """A test tried to reach a non-loopback address."""


_originals: dict[str, Any] = {}


def _is_local_host(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard/loopback
    host = str(host).split("%", 1)[0]
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


def _check_address(address: Any) -> None:
    if isinstance(address, str | bytes):  # unix socket path (or abstract name)
        return
    if isinstance(address, tuple) and address and _is_local_host(address[0]):
        return
    raise NetworkBlocked(f"test tried to reach {address!r}: only loopback is allowed in tests")


def install() -> None:
    """Block non-loopback connections (idempotent)."""
    if _originals:
        return
    _originals.update(connect=socket.socket.connect, connect_ex=socket.socket.connect_ex,
                      sendto=socket.socket.sendto, getaddrinfo=socket.getaddrinfo)  # fmt: skip
    orig_connect, orig_connect_ex = _originals["connect"], _originals["connect_ex"]
    orig_sendto, orig_getaddrinfo = _originals["sendto"], _originals["getaddrinfo"]

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_address(address)
        return orig_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_address(address)
        return orig_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _check_address(args[-1])
        return orig_sendto(self, data, *args)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_host(host):
            raise NetworkBlocked(f"test tried to resolve/reach {host!r}: only loopback is allowed")
        return orig_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo


def uninstall() -> None:
    """Restore the original socket functions."""
    if not _originals:
        return
    socket.socket.connect = _originals["connect"]  # type: ignore[method-assign]
    socket.socket.connect_ex = _originals["connect_ex"]  # type: ignore[method-assign]
    socket.socket.sendto = _originals["sendto"]  # type: ignore[method-assign]
    socket.getaddrinfo = _originals["getaddrinfo"]
    _originals.clear()


def installed() -> bool:
    return bool(_originals)
