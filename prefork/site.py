"""
The HTTP side of a worker: a L{Site} that counts the requests it admits and
can close every connection it has without losing a request.

A worker retires after its limit of requests.  The request that reaches the
limit is answered with C{Connection: close}, and so is every request admitted
while the worker drains; idle keep-alive connections are closed at once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from prefork.accesslog import AccessLog


class WorkerRequest(Request):
    """
    A request that is counted by its site before it is processed, and
    reported to it when it ends, answered or not.
    """

    startedAt = 0.0
    ended = False

    def process(self) -> None:
        site: WorkerSite = self.channel.site
        self.startedAt = time.perf_counter()
        if site.admit(self):
            self.closeConnectionAfterResponse()
        super().process()

    def connectionLost(self, reason: Failure) -> None:
        site = self.channel.site if self.channel is not None else None
        super().connectionLost(reason)
        if site is not None and self.startedAt and not self.ended:
            site.requestEnded(self)

    def closeConnectionAfterResponse(self) -> None:
        """
        Announce C{Connection: close} and close the connection once this
        response is complete.
        """
        self.channel.persistent = False
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])


class WorkerChannel(HTTPChannel):
    """
    An HTTP connection its site keeps track of.
    """

    site: WorkerSite
    answered = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.site.channelClosed(self)

    def requestDone(self, request: Request) -> None:
        self.answered += 1
        super().requestDone(request)

    def isIdle(self) -> bool:
        """
        Whether this connection is between requests with nothing to read: a
        keep-alive connection that can be closed without losing a request.
        A new connection is not idle: its client is about to send.
        """
        if not self.answered or self.requests or getattr(self, "_buffer", b""):
            return False
        try:
            # A request may already be waiting in the kernel: then it is
            # read, answered with Connection: close, and only then closed.
            pending = self.transport.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return True
        return pending == b""


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
    """

    requestFactory = WorkerRequest
    protocol = WorkerChannel
    noisy = False

    def __init__(
        self,
        resource: IResource,
        limit: int,
        atLimit: Callable[[], None],
        accessLog: AccessLog | None = None,
    ) -> None:
        super().__init__(resource)
        self.limit = limit
        self.atLimit = atLimit
        self.accessLog = accessLog
        self.changed: Callable[[], None] = lambda: None
        self.served = 0
        self.inFlight = 0
        self.lastPath = b""
        self.lastDuration = 0.0
        self.closing = False
        self.channels: set[WorkerChannel] = set()
        self._emptyWaiters: list[Deferred[None]] = []

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
                channel.transport.loseConnection()

    def abortConnections(self) -> None:
        for channel in list(self.channels):
            channel.transport.abortConnection()

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
