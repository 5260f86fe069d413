"""
The shapes of a request that the access log and the sites' counting read:
typing protocols, so that both kinds of request fit them, a
L{prefork.web.request.WorkerRequest} (the WSGI path) and Twisted's own
C{twisted.web.server.Request} as C{--resource} serves it (see
L{prefork.web.resourcesite}).
"""

from __future__ import annotations

from typing import Any, Protocol


class LoggedRequest(Protocol):
    """
    What the log reads of a request: a L{prefork.web.request.WorkerRequest}
    has it, and so has Twisted's own C{Request} as C{--resource} serves it
    (see L{prefork.web.resourcesite}).

    @ivar preforkClient: The client's address, as a trusted proxy gave it.
    @ivar preforkScheme: The URL scheme, as a trusted proxy gave it.
    """

    method: bytes
    uri: bytes
    clientproto: bytes
    code: int
    sentLength: int
    requestHeaders: Any
    responseHeaders: Any
    preforkClient: str | None
    preforkScheme: str | None

    def getHeader(self, name: bytes) -> bytes | None: ...

    def getClientAddress(self) -> Any: ...

    def isSecure(self) -> bool: ...


class CountedRequest(LoggedRequest, Protocol):
    """
    A request as a site counts it.

    @ivar path: Its path, without the query.
    @ivar startedAt: When it was admitted (C{time.perf_counter}), 0 before.
    @ivar ended: Whether it was answered, or its connection lost.
    """

    path: bytes
    startedAt: float
    ended: bool
