"""
The exit guard: work the application has started that its worker must not
exit before, the counterpart of Twiggy::Prefork's C{psgix.exit_guard}.

A WSGI application finds it in C{environ['prefork.exit_guard']}; any code
in a worker (a C{--resource}'s handlers) gets it from C{prefork.exitGuard()}.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.python.threadable import isInIOThread

_T = TypeVar("_T")


class ExitGuard:
    """
    A count of pieces of work in progress, safe to use from any thread.

    Call L{begin} when work starts and L{end} when it has finished, or hand a
    L{Deferred} to L{add}.  The worker waits for L{wait} before it exits.
    """

    def __init__(self, reactor: IReactorThreads) -> None:
        self._reactor = reactor
        self._lock = threading.Lock()
        self._pending = 0
        self._waiters: list[Deferred[None]] = []

    @property
    def pending(self) -> int:
        """
        How many pieces of work have begun and not ended.
        """
        return self._pending

    def begin(self) -> None:
        """
        Note that a piece of work has started.
        """
        with self._lock:
            self._pending += 1

    def end(self) -> None:
        """
        Note that a piece of work begun with L{begin} has finished.

        @raise RuntimeError: More L{end} calls than L{begin} calls; the
            guard stays as it was, so a stray C{end()} cannot let the worker
            exit while other work runs.
        """
        with self._lock:
            if self._pending == 0:
                raise RuntimeError("prefork.exit_guard.end() called more often than begin()")
            self._pending -= 1
            idle = self._pending == 0
        if idle:
            self._reactor.callFromThread(self._wakeWaiters)

    def add(self, deferred: Deferred[_T]) -> Deferred[_T]:
        """
        Guard the worker until C{deferred} fires.  Its result passes through.
        """
        self.begin()

        def ended(result: Any) -> Any:
            self.end()
            return result

        if isInIOThread():
            deferred.addBoth(ended)
        else:
            # Deferreds belong to the reactor thread.
            self._reactor.callFromThread(deferred.addBoth, ended)
        return deferred

    def wait(self) -> Deferred[None]:
        """
        A L{Deferred} that fires, in the reactor thread, once no work is
        pending.
        """
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        self._wakeWaiters()
        return waiter

    def _wakeWaiters(self) -> None:
        with self._lock:
            if self._pending:
                return
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


#: The guard of the worker this process is, once it has one.
_current: ExitGuard | None = None


def install(guard: ExitGuard) -> ExitGuard:
    """
    Make C{guard} the one L{current} returns: the worker's.
    """
    global _current
    _current = guard
    return guard


def current() -> ExitGuard:
    """
    The guard of the worker this runs in.

    @raise RuntimeError: This process is no worker (yet).
    """
    if _current is None:
        raise RuntimeError("prefork.exitGuard() is only available in a worker of twistd prefork")
    return _current
