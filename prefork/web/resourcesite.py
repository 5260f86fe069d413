"""
C{--resource}: a worker serves a C{twisted.web} resource (a Klein
application's among them) through Twisted's own C{Site}, C{HTTPChannel}
and C{Request}, as C{twist web} does, on the worker's reactor.

A handler that returns a L{Deferred} (or a coroutine, in Klein) leaves the
reactor free, so one worker keeps many requests in flight.  The site counts
each request toward the worker's limit as it is handed to the resource, and
out of the requests in flight as it ends, when it writes its access log line
(L{RequestCounter}, the counting the WSGI path's
L{prefork.web.site.WorkerSite} does too); it can close its connections
without losing a request, which is what a retiring worker needs.

The limits are Twisted's: its C{HTTPChannel} closes a connection idle for
C{timeout} seconds (C{--keepalive-timeout}) and enforces its own bounds on
request heads; the WSGI path's C{--limit-*} options and
C{--header-timeout} do not apply (docs/resources.rst).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, ILoggingContext, IProtocolFactory, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer_only

from prefork.web.accesslog import AccessLog
from prefork.web.counting import RequestCounter


class ResourceRequest(Request):
    """
    Twisted's request, counted by its L{ResourceSite} from the moment it is
    handed to the resource until its response ends or its connection is
    lost.

    @ivar startedAt: When the resource was handed it (C{time.perf_counter}),
        0 before.
    @ivar ended: Whether it was answered, or its connection lost.
    @ivar preforkClient: Always L{None}: Twisted's request knows its client
        from its transport (which the PROXY protocol, when on, has set).
    @ivar preforkScheme: The scheme, for the access log: Twisted's request
        forgets its connection, and so whether it was secure, as it ends.
    """

    startedAt = 0.0
    ended = False
    preforkClient: str | None = None
    preforkScheme: str | None = None

    def process(self) -> None:
        site = cast(ResourceChannel, self.channel).site
        self.startedAt = time.perf_counter()
        self.preforkScheme = "https" if self.isSecure() else "http"
        site.admit(self)
        self.notifyFinish().addBoth(self._ended, site)
        super().process()

    def _ended(self, result: Failure | None, site: ResourceSite) -> None:
        if result is None:
            site.requestFinished(self)
        elif not self.ended:
            # The connection was lost before the response ended.
            site.requestEnded(self)


class ResourceChannel(HTTPChannel):
    """
    Twisted's HTTP/1.1 connection, which its L{ResourceSite} tracks, and
    which closes after its response while the worker drains.
    """

    site: ResourceSite
    _abortLater: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self._abortLater is not None and self._abortLater.active():
            self._abortLater.cancel()
        self.site.channelClosed(self)

    def timeoutConnection(self) -> None:
        # As Twisted's, without its log line: a keep-alive connection left
        # idle until it times out is routine, not news.
        if self.abortTimeout is not None:
            self._abortLater = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        # Twisted decides whether the connection persists as the request
        # arrives; a drain that began since closes it after this response.
        if self.site.closing and self.persistent and isinstance(headers, Headers):
            self.persistent = False
            headers.setRawHeaders(b"connection", [b"close"])
        super().writeHeaders(version, code, reason, headers)

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        # A response that began before the drain kept its connection: close
        # it now that it is idle, unless the next request has begun.
        if self.site.closing and self.persistent and not self.requests and self.transport is not None:
            self.loseConnection()

    def isIdle(self) -> bool:
        """
        Whether no request has begun on this connection since the last
        response.
        """
        return not self.requests


# Not IProtocolNegotiationFactory, which Twisted's Site provides: through
# it, Twisted before 25.5 sets the ALPN callback on the shared TLS context
# at every connection, which pyOpenSSL 25 and later refuse.  The TLS context
# announces HTTP/1.1 itself (prefork.tls), once.
@implementer_only(IProtocolFactory, ILoggingContext)
class ResourceSite(RequestCounter[ResourceChannel], Site):
    """
    Twisted's C{Site} for C{resource}, counting its requests as
    L{RequestCounter} says; the same interface to the worker and its
    heartbeat as L{prefork.web.site.WorkerSite}.
    """

    noisy = False
    # Twisted's annotation names its default, which would negotiate HTTP/2
    # over TLS; the workers serve HTTP/1.1.
    protocol = ResourceChannel  # type: ignore[assignment]
    requestFactory = ResourceRequest

    def __init__(
        self,
        resource: IResource,
        limit: int,
        atLimit: Callable[[], None],
        accessLog: AccessLog | None = None,
        timeout: float = 60.0,
        reactor: IReactorTime | None = None,
        nearLimit: int = 0,
        nearingLimit: Callable[[], None] = lambda: None,
        changed: Callable[[], None] = lambda: None,
        displayTracebacks: bool = False,
    ) -> None:
        """
        @param timeout: How long a connection may stay idle, in seconds.
        @param nearLimit: After this many requests (0: never),
            C{nearingLimit} is called.
        """
        super().__init__(resource, requestFactory=ResourceRequest, timeout=timeout, reactor=reactor)
        self.displayTracebacks = displayTracebacks
        self.startCounting(limit, atLimit, accessLog, nearLimit, nearingLimit, changed)

    def log(self, request: Any) -> None:
        # Twisted writes its own access log to the twistd log; this site
        # writes the server's, as each request ends.
        pass

    def requestsInFlight(self) -> list[Any]:
        return [r for channel in self.channels for r in channel.requests if r.startedAt and not r.ended]

    def closeIdleConnections(self) -> None:
        for channel in list(self.channels):
            if channel.isIdle():
                channel.loseConnection()

    def abortConnections(self) -> None:
        for channel in list(self.channels):
            transport: Any = channel.transport
            if transport is not None:
                transport.abortConnection()
