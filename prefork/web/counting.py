"""
What every site of a worker does besides speaking HTTP: count the requests
it admits against the worker's limit, keep the figures the heartbeat
reports, hand each finished request to the access log, and tell the worker
when its last connection has closed.

Both kinds of site share it: L{prefork.web.site.WorkerSite} (the WSGI
path's own HTTP/1.1) and L{prefork.web.resourcesite.ResourceSite}
(Twisted's C{Site}, for C{--resource}).  Each keeps its own connections and
knows how to close them; this part only counts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred

from prefork.web.accesslog import AccessLog
from prefork.web.shapes import CountedRequest, LoggedRequest

_Channel = TypeVar("_Channel")


class RequestCounter(Generic[_Channel]):
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
    """

    def startCounting(
        self,
        limit: int,
        atLimit: Callable[[], None],
        accessLog: AccessLog | None,
        nearLimit: int,
        nearingLimit: Callable[[], None],
        changed: Callable[[], None],
    ) -> None:
        """
        @param nearLimit: After this many requests (0: never),
            C{nearingLimit} is called.
        """
        self.limit = limit
        self.atLimit = atLimit
        self.accessLog = accessLog
        self.nearLimit = nearLimit
        self.nearingLimit = nearingLimit
        self.changed = changed
        self.served = 0
        self.inFlight = 0
        self.lastPath = b""
        self.lastDuration = 0.0
        self.refusals: dict[int, int] = {}
        self.closing = False
        self.channels: set[_Channel] = set()
        self._emptyWaiters: list[Deferred[None]] = []

    def admit(self, request: CountedRequest) -> bool:
        """
        Count one more request, whose C{startedAt} its connection has set.

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

    def requestEnded(self, request: CountedRequest) -> None:
        """
        C{request} was answered, or its connection lost before it was.
        """
        request.ended = True
        self.inFlight -= 1
        self.lastDuration = time.perf_counter() - request.startedAt
        if self.inFlight == 0:
            self.changed()

    def requestFinished(self, request: CountedRequest) -> None:
        """
        C{request}'s response ended: count it, and log it.
        """
        if request.ended or not request.startedAt:
            return
        self.requestEnded(request)
        if self.accessLog is not None:
            self.accessLog.write(request, self.lastDuration)

    def refused(self, request: LoggedRequest, code: int, response: bytes) -> None:
        """
        The server answered C{request} with C{code} (C{response}, whole)
        itself, and closes its connection: count it, and log it.
        """
        self.refusals[code] = self.refusals.get(code, 0) + 1
        request.code = code
        request.sentLength = len(response) - response.index(b"\r\n\r\n") - 4
        if self.accessLog is not None:
            self.accessLog.write(request, 0.0)

    def requestsInFlight(self) -> list[Any]:
        """
        The requests admitted and not yet answered.
        """
        raise NotImplementedError

    def closeIdleConnections(self) -> None:
        """
        Close every connection that is between requests.
        """
        raise NotImplementedError

    def abortConnections(self) -> None:
        raise NotImplementedError

    def whenEmpty(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no connection is open.
        """
        waiter: Deferred[None] = Deferred()
        self._emptyWaiters.append(waiter)
        self._checkEmpty()
        return waiter

    def channelClosed(self, channel: _Channel) -> None:
        self.channels.discard(channel)
        self._checkEmpty()

    def _checkEmpty(self) -> None:
        if self.channels:
            return
        waiters, self._emptyWaiters = self._emptyWaiters, []
        for waiter in waiters:
            waiter.callback(None)
