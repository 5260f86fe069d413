"""
The HTTP side of a worker: a L{Site} that counts the requests it admits and
can close every connection it has without losing a request.

A worker retires after its limit of requests.  The request that reaches the
limit is answered with C{Connection: close}, and so is every request admitted
while the worker drains; idle keep-alive connections are closed at once.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site


class WorkerRequest(Request):
    """
    A request that is counted by its site before it is processed.
    """

    def process(self) -> None:
        site: WorkerSite = self.channel.site
        if site.admit():
            self.closeConnectionAfterResponse()
        super().process()

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
        logPath: str | None = None,
    ) -> None:
        super().__init__(resource, logPath=logPath)
        self.limit = limit
        self.atLimit = atLimit
        self.served = 0
        self.closing = False
        self.channels: set[WorkerChannel] = set()
        self._emptyWaiters: list[Deferred[None]] = []

    def admit(self) -> bool:
        """
        Count one more request.

        @return: Whether its connection must close after the response.
        """
        self.served += 1
        if self.served == self.limit:
            self.atLimit()
        return self.closing

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
        # Without an access log, Twisted would send every request to the
        # worker's log instead.
        if self.logPath is not None:
            super().log(request)

    def _openLogFile(self, path: str | bytes):  # type: ignore[no-untyped-def]
        # Every worker appends to the same file: line buffering with O_APPEND
        # makes each line one atomic write.
        if path == "-":
            return open(1, "a", 1, newline="\n", closefd=False)
        return super()._openLogFile(path)
