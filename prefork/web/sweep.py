"""
The timeouts of a site's connections, enforced by one timer: each
connection keeps the time by which it must have moved on (its
C{deadline}), which costs a float per change of phase, and the site sweeps
the connections whose deadline has passed a few times per shortest timeout.
A timer per connection and phase would cost more than the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from prefork.web.limits import RequestLimits

_log = Logger()


class Timed(Protocol):
    """
    A connection the sweep times out.

    @ivar deadline: When it times out (L{None}: never), in the reactor's
        seconds.
    """

    deadline: float | None

    def timedOut(self) -> None:
        """
        The deadline passed: do what its phase says.
        """

    def abort(self) -> None:
        """
        Cut the connection now.
        """


class Sweep:
    """
    A timer of the site's own reactor (not a C{LoopingCall}, which imports
    the global reactor, so that a template can build a site) that times out
    the connections C{connections} returns.
    """

    def __init__(self, reactor: IReactorTime, limits: RequestLimits, connections: Callable[[], Iterable[Timed]]):
        self.reactor = reactor
        self.connections = connections
        # Often enough for a small part of the shortest timeout, not so
        # often that sweeping would cost more than serving.
        self.interval = max(0.05, min(1.0, limits.headerTimeout / 4, limits.keepaliveTimeout / 4))
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        self._call = self.reactor.callLater(self.interval, self._sweepAndRepeat)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _sweepAndRepeat(self) -> None:
        try:
            self.sweep()
        finally:
            self.start()

    def sweep(self) -> None:
        """
        Time out every connection whose deadline has passed.
        """
        now = self.reactor.seconds()
        for connection in [c for c in self.connections() if c.deadline is not None and c.deadline <= now]:
            try:
                connection.timedOut()
            except Exception:
                # One connection's trouble must not stop the sweeping.
                _log.failure("Timing out a connection failed")
                connection.abort()
