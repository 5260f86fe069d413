"""
The threads that run the WSGI application in a worker started with
C{--threads N}: a fixed number of threads that take calls from one queue.

Twisted's L{twisted.python.threadpool.ThreadPool} grows and shrinks, and
carries the caller's logging context into every call through a team, a
coordinator and a worker object per thread: each call passes through
several locks and closures.  A worker's pool never changes size and its
calls need no context, so threads blocked on one queue do the same work
with a single hand-off, which matters when the call is a whole request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from twisted.logger import Logger

_log = Logger()

#: What a thread takes from the queue: a call, or L{None} to exit.
_Call = Callable[[], object]


class RequestThreads:
    """
    C{size} threads named C{name-0}, C{name-1}, ..., running calls in the
    order they are queued.
    """

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one thread, not {size}")
        self.size = size
        self.name = name
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def start(self) -> None:
        """
        Start the threads; calls queued before run now.
        """
        if self._threads:
            return
        for index in range(self.size):
            thread = threading.Thread(target=self._serve, name=f"{self.name}-{index}")
            thread.start()
            self._threads.append(thread)

    def callInThread(self, function: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """
        Run C{function(*args, **kwargs)} in one of the threads.  What it
        raises is logged.
        """
        self._calls.put(lambda: function(*args, **kwargs))

    def stop(self) -> None:
        """
        Let the threads finish every call queued so far, then wait for them
        to exit.
        """
        threads, self._threads = self._threads, []
        for _ in threads:
            self._calls.put(None)
        for thread in threads:
            thread.join()

    def _serve(self) -> None:
        take = self._calls.get
        while (call := take()) is not None:
            try:
                call()
            except BaseException:
                _log.failure("Unhandled error in a thread of {name}", name=self.name)
