"""
The HTTP side of a worker: a L{Site} that counts the requests it admits and
can close every connection it has without losing a request.

A worker retires after its limit of requests.  The request that reaches the
limit is answered with C{Connection: close}, and so is every request admitted
while the worker drains; idle keep-alive connections are closed at once.
The connections themselves are L{prefork.web.channel}'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ILoggingContext, IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.web.http import Request
from twisted.web.resource import IResource
from twisted.web.server import Site
from zope.interface import implementer_only

from prefork.web.accesslog import AccessLog
from prefork.web.channel import WorkerChannel, WorkerRequest
from prefork.web.limits import DEFAULT_LIMITS, RequestLimits
from prefork.web.transport import streamTransport

_log = Logger()


# Not IProtocolNegotiationFactory: through it, Twisted before 25.5 sets the
# ALPN callback on the shared TLS context at every connection, which
# pyOpenSSL 25 and later refuse.  The TLS context announces HTTP/1.1 itself
# (prefork.tls), once.
@implementer_only(IProtocolFactory, ILoggingContext)
class WorkerSite(Site):
    """
    A site that admits at most C{limit} requests (0: no limit) and calls
    C{atLimit} when it has admitted the last one.

    @ivar served: How many requests this site has admitted.
    @ivar inFlight: How many of them are not answered yet.
    @ivar lastPath: The path of the last request admitted.
    @ivar lastDuration: How long the last request took, in seconds.
    @ivar changed: Called when the site turns busy or idle.
    @ivar closing: Set when the worker drains: every response from then on
        closes its connection.
    @ivar channels: The open connections.
    @ivar limits: What every connection enforces.
    @ivar continueOnRead: Hand a request that expects C{100 Continue} to
        the application before its body, and send the 100 when the
        application reads it; for an application run in a thread pool.
    """

    requestFactory = WorkerRequest
    # Twisted types a site's protocol as its own wrapper of HTTPChannel; any
    # HTTPChannel serves (buildProtocol only sets its timeout and clock).
    protocol = WorkerChannel  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        resource: IResource,
        limit: int,
        atLimit: Callable[[], None],
        accessLog: AccessLog | None = None,
        limits: RequestLimits = DEFAULT_LIMITS,
        continueOnRead: bool = False,
        reactor: IReactorTime | None = None,
    ) -> None:
        # No idle timeout of Twisted's: WorkerChannel keeps its own (and
        # WorkerRequest leaves request bodies to the application unparsed).
        super().__init__(resource, timeout=None, reactor=reactor)
        self.accessLog = accessLog
        self.changed: Callable[[], None] = lambda: None
        self.inFlight = 0
        self.lastPath = b""
        self.lastDuration = 0.0
        self.limits = limits
        self.continueOnRead = continueOnRead
        self.seconds = self.reactor.seconds
        # Timeouts are enforced this often: a small part of the shortest,
        # but not so often that sweeping would cost more than serving.  A
        # timer of the site's own reactor, not a LoopingCall (which imports
        # the global reactor), so that a template can build a site.
        self._sweepCall: IDelayedCall | None = None
        self._sweepInterval = max(0.05, min(1.0, limits.headerTimeout / 4, limits.keepaliveTimeout / 4))
        self.limit = limit
        self.atLimit = atLimit
        #: After this many requests (0: never), C{nearingLimit} is called.
        self.nearLimit = 0
        self.nearingLimit: Callable[[], None] = lambda: None
        self.served = 0
        self.closing = False
        self.channels: set[WorkerChannel] = set()
        self._emptyWaiters: list[Deferred[None]] = []

    def startFactory(self) -> None:
        super().startFactory()
        self._sweepLater()

    def stopFactory(self) -> None:
        if self._sweepCall is not None and self._sweepCall.active():
            self._sweepCall.cancel()
        self._sweepCall = None
        super().stopFactory()

    def _sweepLater(self) -> None:
        self._sweepCall = self.reactor.callLater(self._sweepInterval, self._sweepAndRepeat)

    def _sweepAndRepeat(self) -> None:
        try:
            self._sweep()
        finally:
            self._sweepLater()

    def _sweep(self) -> None:
        """
        Time out every connection whose deadline has passed.
        """
        now = self.seconds()
        for channel in [c for c in self.channels if c.deadline is not None and c.deadline <= now]:
            try:
                channel.timedOut()
            except Exception:
                # One connection's trouble must not stop the sweeping.
                _log.failure("Timing out a connection failed")
                streamTransport(channel.transport).abortConnection()

    def admit(self, request: WorkerRequest) -> bool:
        """
        Count one more request.

        @return: Whether its connection must close after the response.
        """
        self.served += 1
        self.inFlight += 1
        self.lastPath = request.path
        if self.inFlight == 1:
            self.changed()
        if self.served == self.limit:
            self.atLimit()
        elif self.served == self.nearLimit:
            self.nearingLimit()
        return self.closing

    def requestEnded(self, request: WorkerRequest) -> None:
        """
        C{request} was answered, or its connection lost before it was.
        """
        request.ended = True
        self.inFlight -= 1
        self.lastDuration = time.perf_counter() - request.startedAt
        if self.inFlight == 0:
            self.changed()

    def closeIdleConnections(self) -> None:
        """
        Close every connection that is between requests.
        """
        for channel in list(self.channels):
            if channel.isIdle():
                streamTransport(channel.transport).loseConnection()

    def abortConnections(self) -> None:
        for channel in list(self.channels):
            streamTransport(channel.transport).abortConnection()

    def whenEmpty(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no connection is open.
        """
        waiter: Deferred[None] = Deferred()
        self._emptyWaiters.append(waiter)
        self._checkEmpty()
        return waiter

    def channelClosed(self, channel: WorkerChannel) -> None:
        self.channels.discard(channel)
        self._checkEmpty()

    def _checkEmpty(self) -> None:
        if self.channels:
            return
        waiters, self._emptyWaiters = self._emptyWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def log(self, request: Request) -> None:
        # Twisted calls this as a request finishes; without an access log it
        # would send every request to the worker's log instead.
        if not isinstance(request, WorkerRequest) or request.ended or not request.startedAt:
            return
        self.requestEnded(request)
        if self.accessLog is not None:
            self.accessLog.write(request, self.lastDuration)
