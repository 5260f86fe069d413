"""
A warm-up of the request path in the template, before it freezes what its
workers will share.

What a worker's first request builds once and keeps (the interface
declarations of the classes that serve it, the caches of header names and
of environ keys, the objects Twisted creates on first use) would otherwise
be built again in every worker, on pages each of them then copies.  Built
once here, it is shared.

The warm-up serves one request on an in-memory transport, with a site and a
resource of the classes a worker uses, to an application of its own: the
user's application is never called in the template.  No reactor is
installed: a clock stands in for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementedBy

from prefork.child.accept import FairTCPPort, FairUNIXPort
from prefork.web.connection import HTTPConnection
from prefork.web.request import WorkerRequest
from prefork.web.site import WorkerSite
from prefork.web.wsgi import WorkerWSGIResource

#: What the warm-up asks for: a typical request of a browser or a proxy.
WARMUP_REQUEST = (
    b"GET /prefork-warmup?a=1 HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"User-Agent: prefork-warmup\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: gzip\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)


class _ThreadlessClock(Clock):
    """
    A clock that a L{WorkerWSGIResource} takes for a reactor: the warm-up
    runs the application in the calling thread and never calls these.
    """

    def callFromThread(self, f: Callable[..., Any], *args: object, **kwargs: object) -> None:
        f(*args, **kwargs)


def _application(environ: dict[str, Any], startResponse: Callable[..., Any]) -> Iterable[bytes]:
    body = b"warm\n"
    startResponse("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class _Transport(StringTransport):
    """
    An in-memory TCP connection that tells its channel when it closes.
    """

    def __init__(self, channel: HTTPConnection) -> None:
        super().__init__(IPv4Address("TCP", "127.0.0.1", 80), IPv4Address("TCP", "127.0.0.1", 1))
        self.channel = channel

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self.channel.connectionLost()

    def abortConnection(self) -> None:
        self.loseConnection()


def warmRequestPath() -> bytes:
    """
    Serve one request in-process, so that what it builds once is built here.

    @return: The response, for a test to check that the path really ran.
    """
    for cls in (FairTCPPort, FairUNIXPort, HTTPConnection, WorkerRequest, WorkerSite, WorkerWSGIResource):
        implementedBy(cls)
    clock = _ThreadlessClock()
    resource = WorkerWSGIResource(clock, None, _application, {})  # type: ignore[arg-type]
    site = WorkerSite(resource, 0, lambda: None, reactor=clock)
    site.startFactory()
    try:
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = _Transport(channel)
        channel.makeConnection(transport)
        channel.dataReceived(WARMUP_REQUEST)
        if not transport.disconnecting:
            transport.loseConnection()
        response: bytes = transport.value()
        return response
    finally:
        site.stopFactory()
