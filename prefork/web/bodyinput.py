"""
C{wsgi.input} for a request the application receives before its body:
a request that says C{Expect: 100-continue}, served by a thread pool.

The client waits for C{100 Continue} before it sends the body; the server
sends it when the application first reads C{wsgi.input} (RFC 9110 section
10.1.1), so that an application that answers without the body (401, 413)
spares the client sending it.  Reads block the application's thread until
the bytes arrive, which is why only threaded workers do this: in the
reactor thread, a client slow to send its body would hold the whole worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from twisted.internet.interfaces import IReactorThreads


class ClientDisconnected(OSError):
    """
    The request body will never be complete: the connection was lost or
    cut.
    """


class ContinueInput:
    """
    A request body that is written by the reactor as it arrives and read by
    the application's thread, which blocks until there is enough.

    @param askForBody: Called in the reactor thread, once, on the first
        read: sends C{100 Continue}.
    """

    def __init__(self, reactor: IReactorThreads, askForBody: Callable[[], None]) -> None:
        self._reactor = reactor
        self._askForBody: Callable[[], None] | None = askForBody
        self._changed = threading.Condition()
        self._buffer = bytearray()
        self._complete = False
        self._failed = False

    # The reactor side: Twisted's Request writes the body here.

    def write(self, data: bytes) -> None:
        with self._changed:
            self._buffer += data
            self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self._complete = True
            self._changed.notify_all()

    def fail(self) -> None:
        with self._changed:
            self._failed = True
            self._changed.notify_all()

    def close(self) -> None:
        # Twisted closes the body of a request whose connection is lost.
        if not self._complete:
            self.fail()

    @property
    def complete(self) -> bool:
        return self._complete

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        # Twisted rewinds the body it collected; this one is read once.
        return 0

    # The application side.

    def _wait(self, enough: Callable[[], bool]) -> None:
        """
        Ask for the body if not yet asked, and wait until C{enough()}, the
        body is complete, or it never will be.  Called holding the lock.
        """
        if self._askForBody is not None:
            askForBody, self._askForBody = self._askForBody, None
            self._reactor.callFromThread(askForBody)
        while not (enough() or self._complete or self._failed):
            self._changed.wait()
        if self._failed and not enough():
            raise ClientDisconnected("the request body was not received")

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        with self._changed:
            if size is None or size < 0:
                self._wait(lambda: False)
                size = len(self._buffer)
            else:
                self._wait(lambda: len(self._buffer) >= size)
            return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = None if size is None or size < 0 else size

        def enough() -> bool:
            return b"\n" in self._buffer or (limit is not None and len(self._buffer) >= limit)

        with self._changed:
            self._wait(enough)
            end = self._buffer.find(b"\n") + 1 or len(self._buffer)
            return self._take(end if limit is None else min(end, limit))

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
