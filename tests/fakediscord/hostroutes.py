"""Discord's media host names, answered by the local test server, beneath the product.

The product fetches images from ``https://cdn.discordapp.com/...`` and the other media hosts
exactly as Discord's payloads give them (port 443, certificates checked). In a test process these
names must reach the test server on 127.0.0.1 instead, without the product being told:

- name resolution: ``socket.getaddrinfo`` (which asyncio's and so aiohttp's default resolver
  call) answers a routed name with ``127.0.0.1`` and the test server's TLS port. Every other name
  goes on to whatever was there before (in tests, :mod:`tests.netguard`, which refuses anything
  beyond loopback), so nothing can leave 127.0.0.1 this way either;
- certificates: one test certificate authority (``trustme``) signs the server's certificate for
  all the media names, and is added to aiohttp's default verifying SSL context, the one every
  ``aiohttp.ClientSession`` (discord.py's and the product's) uses unless told otherwise.

A bot started in a child process gets the same with :func:`child_environment` and
``python -m tests.fakediscord.child`` (see that module).
"""

from __future__ import annotations

import _socket
import os
import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trustme

#: Discord's hosts for attachments (cdn), their proxy (media), other sites' images (images-ext).
CDN_HOST = "cdn.discordapp.com"
MEDIA_PROXY_HOST = "media.discordapp.net"
EXTERNAL_PROXY_HOSTS = ("images-ext-1.discordapp.net", "images-ext-2.discordapp.net")
MEDIA_HOSTS = (CDN_HOST, MEDIA_PROXY_HOST, *EXTERNAL_PROXY_HOSTS)

ENV_PORT = "FAKEDISCORD_MEDIA_PORT"
ENV_CA = "FAKEDISCORD_MEDIA_CA"

_routes: dict[str, int] = {}
_inner: Any = None
_ca: trustme.CA | None = None
_trusted: set[int] = set()
_resolving = threading.local()


def _getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    routed = _routes.get(str(name).lower().rstrip(".")) if name else None
    if routed is not None and str(port) in ("443", "https", "None", "0"):
        if family not in (0, socket.AF_INET):
            raise socket.gaierror(socket.EAI_FAMILY, "routed test hosts are IPv4 only")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", routed))]
    if getattr(_resolving, "active", False):
        # Another wrapper installed on top of this one calls it as its original: the chain has
        # already been walked, so resolve for real.
        return _socket.getaddrinfo(host, port, family, type, proto, flags)
    _resolving.active = True
    try:
        return _inner(host, port, family, type, proto, flags)
    finally:
        _resolving.active = False


def route(port: int, *, ca_pem: bytes | None = None) -> None:
    """Send connections to the media hosts on port 443 to 127.0.0.1:``port`` in this process,
    and trust the test CA (this process's own, or the one in ``ca_pem``)."""
    global _inner
    if socket.getaddrinfo is not _getaddrinfo:  # (again, if something restored the original)
        _inner = socket.getaddrinfo
        socket.getaddrinfo = _getaddrinfo
    for host in MEDIA_HOSTS:
        _routes[host] = port
    trust_ca(ca_pem)


def unroute(port: int) -> None:
    """Forget the routes to ``port`` (those another server set since stay)."""
    for host, routed in list(_routes.items()):
        if routed == port:
            del _routes[host]


def certificate_authority() -> trustme.CA:
    """Made on first use: the bot's image, which runs the server for docker-smoke.sh without
    media, has no trustme (a test dependency)."""
    global _ca
    if _ca is None:
        import trustme

        _ca = trustme.CA(organization_name="fakediscord test CA")
    return _ca


def server_context() -> ssl.SSLContext:
    """The TLS context of the media server: one certificate for every media host name."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority().issue_cert(*MEDIA_HOSTS).configure_cert(context)
    return context


def trust_ca(pem: bytes | None = None) -> None:
    """Make aiohttp's default verifying context accept certificates of the test CA.

    aiohttp builds that context once, at import (``aiohttp.connector._SSL_CONTEXT_VERIFIED``),
    and hands it to every connection made with the default ``ssl=True``.
    """
    import aiohttp.connector

    context: ssl.SSLContext = aiohttp.connector._SSL_CONTEXT_VERIFIED
    if id(context) in _trusted:
        return
    data = pem if pem is not None else certificate_authority().cert_pem.bytes()
    context.load_verify_locations(cadata=data.decode())
    _trusted.add(id(context))


def child_environment(port: int) -> dict[str, str]:
    """What ``python -m tests.fakediscord.child`` needs to route the media hosts the same way.

    The CA's certificate travels in the variable itself (a few hundred bytes), so no file is
    left behind in the temporary folder when the test run ends."""
    return {ENV_PORT: str(port), ENV_CA: certificate_authority().cert_pem.bytes().decode()}


def route_from_environment() -> bool:
    """In a child process: apply :func:`child_environment`'s settings, if present."""
    port, ca = os.environ.get(ENV_PORT), os.environ.get(ENV_CA)
    if not port or not ca:
        return False
    route(int(port), ca_pem=ca.encode())
    return True
