"""
The threads that run the WSGI application in a worker started with
C{--threads N}: a fixed number of threads that take calls from one queue.

Twisted's L{twisted.python.threadpool.ThreadPool} grows and shrinks, and
carries the caller's logging context into every call through a team, a
coordinator and a worker object per thread: each call passes through
several locks and closures.  A worker's pool never changes size and its
calls need no context, so threads blocked on one queue do the same work
with a single hand-off, which matters when the call is a whole request.

Stopping waits for the calls only so long: a worker must exit within its
graceful timeout whatever its application does, so what is still running
then is abandoned, and named (for a request: its method and path).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

from twisted.logger import Logger

_log = Logger()


@dataclass(frozen=True)
class _Call:
    """
    What a thread takes from the queue (L{None} tells it to exit).
    """

    function: Callable[..., object]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> object:
        return self.function(*self.args, **self.kwargs)

    def describe(self) -> str:
        """
        The request this call serves, as its method and path, when the
        call is a bound method of an object that has the request's WSGI
        C{environ} (as a worker's exchanges are); else the function's name.
        """
        environ = getattr(getattr(self.function, "__self__", None), "environ", None)
        if isinstance(environ, dict) and "REQUEST_METHOD" in environ:
            path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
            return f"{environ['REQUEST_METHOD']} {_printable(path)}"
        return getattr(self.function, "__qualname__", None) or repr(self.function)


def _printable(text: str, limit: int = 200) -> str:
    """
    C{text} fit for one line of a log: control characters escaped, cut.
    """
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])


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
        #: The call each busy thread runs, by thread name.
        self._running: dict[str, _Call] = {}

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
            # Daemons: a thread stop() abandons must not hold the process.
            thread = threading.Thread(target=self._serve, name=f"{self.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def callInThread(self, function: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """
        Run C{function(*args, **kwargs)} in one of the threads.  What it
        raises is logged.
        """
        self._calls.put(_Call(function, args, kwargs))

    def stop(self, timeout: float | None = None) -> list[str]:
        """
        Let the threads finish every call queued so far, then wait for them
        to exit, for at most C{timeout} seconds (L{None}: as long as it
        takes).

        @return: What was abandoned: a description of each call still
            running when the time was up (with the thread's name), then of
            each call that never started.  The threads left running are
            daemons: the process can exit without them.
        """
        threads, self._threads = self._threads, []
        for _ in threads:
            self._calls.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if not stuck:
            return []
        running = dict(self._running)
        abandoned = [f"{running[name].describe()} (in {name})" for name in stuck if name in running]
        while True:
            try:
                queued = self._calls.get_nowait()
            except Empty:
                break
            if queued is not None:
                abandoned.append(f"{queued.describe()} (not started)")
        return abandoned

    def _serve(self) -> None:
        take = self._calls.get
        running = self._running
        name = threading.current_thread().name
        while (call := take()) is not None:
            running[name] = call
            try:
                call()
            except BaseException:
                _log.failure("Unhandled error in a thread of {name}", name=self.name)
            finally:
                del running[name]
