"""
The master's watch over its workers' heartbeats.

A worker reports from its reactor every second.  One not heard from for
C{--timeout} seconds is stuck (a deadlock, or C code holding the GIL): it is
sent C{SIGABRT}, so that it prints where each of its threads was, and is
killed soon after.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

if TYPE_CHECKING:
    from prefork.master.generation import Generation

#: How long a worker aborted for silence may take to print its stack.
KILL_AFTER_ABORT = 2.0


class HeartbeatWatchdog:
    """
    Checks every second for workers silent for C{timeout} seconds (0:
    never), among those of the generations C{generations} returns.

    @ivar log: Where an abort is told: the master's log.
    """

    def __init__(
        self, generations: Callable[[], Iterable[Generation]], timeout: float, reactor: Any, log: Logger
    ) -> None:
        self.generations = generations
        self.timeout = timeout
        self.reactor = reactor
        self.log = log
        self._checking = LoopingCall(self.check)
        self._checking.clock = reactor

    def start(self) -> None:
        if self.timeout:
            self._checking.start(1.0, now=False)

    def stop(self) -> None:
        if self._checking.running:
            self._checking.stop()

    def check(self) -> None:
        """
        Abort the workers silent for too long, and kill them soon after.
        """
        now = self.reactor.seconds()
        for generation in self.generations():
            for record in generation.silent(self.timeout):
                self.log.error(
                    "Worker {pid} sent no heartbeat for {silent:.0f} s: aborting it",
                    pid=record.pid, silent=record.silentFor(now),
                )
                generation.abort(record)
                self.reactor.callLater(KILL_AFTER_ABORT, generation.signal, record.pid, signal.SIGKILL)
