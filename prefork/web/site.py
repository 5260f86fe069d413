"""
The HTTP side of a worker: the factory of its connections
(L{prefork.web.connection}), which counts the requests it admits, keeps
the access log, enforces every connection's deadline, and can close every
connection it has without losing a request.

A worker retires after its limit of requests.  The request that reaches the
limit is answered with C{Connection: close}, and so is every request admitted
while the worker drains; idle keep-alive connections are closed as soon as
the sweep finds them idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.web.resource import IResource

from prefork.web.accesslog import AccessLog
from prefork.web.connection import HTTPConnection
from prefork.web.limits import DEFAULT_LIMITS, RequestLimits
from prefork.web.request import WorkerRequest

_log = Logger()


class WorkerSite(Factory):
    """
    A site that admits at most C{limit} requests (0: no limit) and calls
    C{atLimit} when it has admitted the last one.

    @ivar served: How many requests this site has admitted.
    @ivar inFlight: How many of them are not answered yet.
    @ivar lastPath: The path of the last request admitted.
    @ivar lastDuration: How long the last request took, in seconds.
    @ivar refusals: How many requests the server refused itself, by status.
    @ivar changed: Called when the site turns busy or idle.
    @ivar closing: Set when the worker drains: every response from then on
        closes its connection.
    @ivar channels: The open connections.
    @ivar limits: What every connection enforces.
    @ivar continueOnRead: Hand a request that expects C{100 Continue} to
        the application before its body, and send the 100 when the
        application reads it; for an application run in a thread pool.
    """

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
        nearLimit: int = 0,
        nearingLimit: Callable[[], None] = lambda: None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        """
        @param nearLimit: After this many requests (0: never),
            C{nearingLimit} is called.
        """
        if reactor is None:
            from twisted.internet import reactor as installed

            reactor = installed
        self.resource = resource
        self.reactor: IReactorTime = reactor
        self.accessLog = accessLog
        self.changed = changed
        self.inFlight = 0
        self.lastPath = b""
        self.lastDuration = 0.0
        self.refusals: dict[int, int] = {}
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
        self.nearLimit = nearLimit
        self.nearingLimit = nearingLimit
        self.served = 0
        self.closing = False
        self.channels: set[HTTPConnection] = set()
        self._emptyWaiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: IAddress | None) -> HTTPConnection:
        return HTTPConnection(self)

    def startFactory(self) -> None:
        self._sweepLater()

    def stopFactory(self) -> None:
        if self._sweepCall is not None and self._sweepCall.active():
            self._sweepCall.cancel()
        self._sweepCall = None

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
                channel.abort()

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

    def requestFinished(self, request: WorkerRequest) -> None:
        """
        C{request}'s response ended: count it, and log it.
        """
        if request.ended or not request.startedAt:
            return
        self.requestEnded(request)
        if self.accessLog is not None:
            self.accessLog.write(request, self.lastDuration)

    def refused(self, request: WorkerRequest, code: int, response: bytes) -> None:
        """
        The server answered C{request} with C{code} itself, and closes its
        connection: count it, and log it.
        """
        self.refusals[code] = self.refusals.get(code, 0) + 1
        request.code = code
        request.sentLength = len(response) - response.index(b"\r\n\r\n") - 4
        if self.accessLog is not None:
            self.accessLog.write(request, 0.0)

    def closeIdleConnections(self) -> None:
        """
        Close every connection that is between requests.
        """
        for channel in list(self.channels):
            if channel.isIdle():
                channel.close()

    def abortConnections(self) -> None:
        for channel in list(self.channels):
            channel.abort()

    def whenEmpty(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no connection is open.
        """
        waiter: Deferred[None] = Deferred()
        self._emptyWaiters.append(waiter)
        self._checkEmpty()
        return waiter

    def channelClosed(self, channel: HTTPConnection) -> None:
        self.channels.discard(channel)
        self._checkEmpty()

    def _checkEmpty(self) -> None:
        if self.channels:
            return
        waiters, self._emptyWaiters = self._emptyWaiters, []
        for waiter in waiters:
            waiter.callback(None)
