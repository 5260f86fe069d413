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

The connections (L{prefork.web.resourcechannel}) apply the WSGI path's
checks, limits and timeouts; a request from a trusted proxy is given the
client, scheme and host the proxy names, as the WSGI environ is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import ILoggingContext, IProtocolFactory, IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer_only

from prefork.web.accesslog import AccessLog
from prefork.web.counting import RequestCounter
from prefork.web.forwarded import FORWARDING_FIELDS, applyForwarded
from prefork.web.limits import DEFAULT_LIMITS, RequestLimits
from prefork.web.proxies import TrustedProxies
from prefork.web.resourcechannel import ResourceChannel
from prefork.web.sweep import Sweep


class ResourceRequest(Request):
    """
    Twisted's request, counted by its L{ResourceSite} from the moment it is
    handed to the resource until its response ends or its connection is
    lost.

    @ivar counter: The site that counts it, once it is handed over.
    @ivar startedAt: When the resource was handed it (C{time.perf_counter}),
        0 before.
    @ivar ended: Whether it was answered, or its connection lost.
    @ivar preforkClient: The client's address, as a trusted proxy gave it
        (L{getClientAddress} returns it too).
    @ivar preforkScheme: The scheme, for the access log: Twisted's request
        forgets its connection, and so whether it was secure, as it ends.
    @ivar forwardedScheme: The scheme a trusted proxy gave, or L{None}.
    """

    counter: ResourceSite
    startedAt = 0.0
    ended = False
    preforkClient: str | None = None
    preforkScheme: str | None = None
    forwardedScheme: str | None = None

    def process(self) -> None:
        self.counter = site = cast(ResourceChannel, self.channel).site
        self.startedAt = time.perf_counter()
        if site.trusted is not None:
            self._applyForwarded(site.trusted)
        self.preforkScheme = "https" if self.isSecure() else "http"
        site.admit(self)
        super().process()

    def finish(self) -> None:
        super().finish()
        if self.startedAt and self.finished:
            self.counter.requestFinished(self)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self.startedAt and not self.ended:
            # Lost before its response ended.
            self.counter.requestEnded(self)

    def isSecure(self) -> bool:
        if self.forwardedScheme is not None:
            return self.forwardedScheme == "https"
        return bool(super().isSecure())

    def _applyForwarded(self, trusted: TrustedProxies) -> None:
        """
        Take the client, scheme and host a trusted proxy gives, as the WSGI
        environ does (L{prefork.web.forwarded}).
        """
        environ: dict[str, str] = {}
        for name, key in FORWARDING_FIELDS.items():
            values = self.requestHeaders.getRawHeaders(name)
            if values:
                environ[key] = b",".join(values).decode("latin-1")
        peer = self.getClientAddress()
        peerHost = getattr(peer, "host", None)
        if not environ or peerHost not in trusted:
            return
        host, port = (self.getHeader(b"host") or b"").decode("latin-1"), str(self.getHost().port)
        environ.update(
            REMOTE_ADDR=peerHost or "",
            REMOTE_PORT=str(getattr(peer, "port", 0)),
            HTTP_HOST=host,
            SERVER_NAME=self.getRequestHostname().decode("latin-1"),
            SERVER_PORT=port,
        )
        environ["wsgi.url_scheme"] = "https" if super().isSecure() else "http"
        applyForwarded(environ, trusted)
        if environ["REMOTE_ADDR"] != peerHost:
            self.preforkClient = client = environ["REMOTE_ADDR"]
            self.client = (IPv6Address if ":" in client else IPv4Address)("TCP", client, int(environ["REMOTE_PORT"]))
        self.forwardedScheme = environ["wsgi.url_scheme"]
        if (environ["HTTP_HOST"], environ["SERVER_PORT"]) != (host, port):
            self.requestHeaders.setRawHeaders(b"host", [environ["HTTP_HOST"].encode("latin-1")])
            server = environ["SERVER_NAME"]
            self.host = (IPv6Address if ":" in server else IPv4Address)("TCP", server, int(environ["SERVER_PORT"]))


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
        limits: RequestLimits = DEFAULT_LIMITS,
        trusted: TrustedProxies | None = None,
        reactor: IReactorTime | None = None,
        nearLimit: int = 0,
        nearingLimit: Callable[[], None] = lambda: None,
        changed: Callable[[], None] = lambda: None,
        displayTracebacks: bool = False,
    ) -> None:
        """
        @param limits: What a request may be, and how long it may take.
        @param trusted: The peers whose forwarding fields are believed.
        @param nearLimit: After this many requests (0: never),
            C{nearingLimit} is called.
        """
        # Twisted's timer per connection is off: the sweep keeps the time.
        super().__init__(resource, requestFactory=ResourceRequest, timeout=None, reactor=reactor)
        self.limits = limits
        self.sweep = Sweep(self.reactor, limits, lambda: self.channels)
        self.trusted = trusted
        self.displayTracebacks = displayTracebacks
        self.startCounting(limit, atLimit, accessLog, nearLimit, nearingLimit, changed)

    def startFactory(self) -> None:
        super().startFactory()
        self.sweep.start()

    def stopFactory(self) -> None:
        self.sweep.stop()
        super().stopFactory()

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
