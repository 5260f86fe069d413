"""
The HTTP side of a worker: the factory of its connections
(L{prefork.web.connection}), which counts the requests it admits, keeps
the access log, enforces every connection's deadline, and can close every
connection it has without losing a request.

A worker retires after its limit of requests.  The request that reaches the
limit is answered with C{Connection: close}, and so is every request admitted
while the worker drains; the worker closes idle keep-alive connections after
a short grace (L{closeIdleConnections}), which lets a request already on its
way arrive.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory
from twisted.web.resource import IResource

from prefork.web.accesslog import AccessLog
from prefork.web.connection import HTTPConnection
from prefork.web.counting import RequestCounter
from prefork.web.limits import DEFAULT_LIMITS, RequestLimits
from prefork.web.request import WorkerRequest
from prefork.web.sweep import Sweep


class WorkerSite(RequestCounter[HTTPConnection], Factory):
    """
    The factory of a worker's own HTTP/1.1 connections, counting their
    requests as L{RequestCounter} says.

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
        self.startCounting(limit, atLimit, accessLog, nearLimit, nearingLimit, changed)
        self.limits = limits
        self.continueOnRead = continueOnRead
        self.seconds = self.reactor.seconds
        self.sweep = Sweep(self.reactor, limits, lambda: self.channels)

    def buildProtocol(self, addr: IAddress | None) -> HTTPConnection:
        return HTTPConnection(self)

    def startFactory(self) -> None:
        self.sweep.start()

    def stopFactory(self) -> None:
        self.sweep.stop()

    def requestsInFlight(self) -> list[WorkerRequest]:
        return [channel.current for channel in self.channels if channel.current is not None]

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
