"""
One request's exchange with the WSGI application: C{start_response}, the
checks that keep a wrong status, header or body from reaching the client as
if it were right, and the two ways the application runs:

  - in the reactor thread (no thread pool), as Twiggy::Prefork runs a PSGI
    application in its event loop: one request at a time, no thread
    hand-offs; a streamed body is pulled one chunk each time the connection
    can take more;
  - in a thread pool, for applications that block: one hand-off to the pool
    and, for a body returned whole, one back.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import INTERNAL_SERVER_ERROR, NO_BODY_CODES

from prefork.web.environ import native
from prefork.web.request import WorkerRequest
from prefork.web.requesthooks import FAILED_STATUS, RequestHooks
from prefork.web.responsehead import HOP_BY_HOP, checkedHeader, checkedStatus

if TYPE_CHECKING:
    from prefork.web.wsgi import WSGIApplication


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WriteCallable = Callable[[bytes], None]

_log = Logger()

#: SO_LINGER on, with no time: close() resets the connection.
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Exchange:
    """
    One request and the application's response to it: C{start_response},
    the status and headers, and how they reach the L{WorkerRequest}.

    Methods named C{send*} and L{fail} run in the reactor thread.

    @ivar declaredLength: The C{Content-Length} the application gave, if
        any: the body is cut to it, and the connection closed if the body
        falls short of it.
    """

    declaredLength: int | None = None
    #: Called around the application, when there are request hooks.
    hooks: RequestHooks | None = None
    _hookStarted = 0.0

    def __init__(self, request: WorkerRequest, environ: dict[str, Any], displayTracebacks: bool = False) -> None:
        self.request = request
        self.environ = environ
        self.displayTracebacks = displayTracebacks
        self.status: str | None = None
        self.headers: list[tuple[str, bytes, bytes]] = []
        self.headersSent = False
        self.disconnected = False
        request.whenLost = self._lost

    def _lost(self, reason: Failure) -> None:
        self.disconnected = True

    def startResponse(
        self, status: str, headers: list[tuple[str, str]], excInfo: ExcInfo | None = None
    ) -> WriteCallable:
        if excInfo is not None:
            try:
                if self.headersSent:
                    raise excInfo[1].with_traceback(excInfo[2])
            finally:
                excInfo = None
        elif self.status is not None:
            raise RuntimeError("start_response() called twice without exc_info")
        # Checked and encoded here, so that a bad header raises in the
        # application, before anything of the response is set.
        statusLine = checkedStatus(status)
        encoded = [checkedHeader(header) for header in headers]
        declaredLength = None
        hopByHop = False
        for lower, rawName, rawValue in encoded:
            if lower == "content-length":
                declaredLength = int(rawValue)
            elif lower in HOP_BY_HOP:
                hopByHop = True
                # The server alone frames the message (PEP 3333, RFC 9112
                # section 6.3).
                _log.warn(
                    "WSGI application set hop-by-hop header field {name!r} for {uri}; dropped",
                    name=native(rawName), uri=native(self.request.uri),
                )
        if hopByHop:
            encoded = [field for field in encoded if field[0] not in HOP_BY_HOP]
        self.statusLine = statusLine
        self.status = status
        self.headers = encoded
        self.declaredLength = declaredLength
        return self.write

    def write(self, data: bytes) -> None:
        """
        The legacy C{write()} callable returned by C{start_response}.
        """
        if self.status is None:
            raise RuntimeError("write() called before start_response()")
        self.writeChunk(data)

    def writeChunk(self, data: bytes) -> None:
        """
        Send one piece of the body, from whichever thread runs the app.
        """
        raise NotImplementedError()

    def _head(self, bodyLength: int | None) -> tuple[int, bytes, list[tuple[bytes, bytes]], int | None]:
        """
        The status code, reason, fields and length of the response head.
        """
        if self.status is None:
            raise RuntimeError("WSGI application returned without calling start_response()")
        statusLine = self.statusLine
        code = int(statusLine[:3])
        if self.request.method == b"HEAD" or code in NO_BODY_CODES:
            # No body to frame: the application's Content-Length, if any,
            # stands as it gave it.
            return code, statusLine[4:], [(name, value) for _, name, value in self.headers], None
        fields = [(name, value) for lower, name, value in self.headers if lower != "content-length"]
        return code, statusLine[4:], fields, bodyLength if self.declaredLength is None else self.declaredLength

    def sendHeaders(self, bodyLength: int | None = None) -> None:
        self.request.writeHead(*self._head(bodyLength))
        self.headersSent = True

    def sendWhole(self, body: bytes) -> None:
        """
        Send the rest of the response at once, with a C{Content-Length} if
        nothing was sent yet.
        """
        if self.disconnected:
            return
        declared = self.declaredLength
        if not self.headersSent and (declared is None or declared <= len(body)):
            code, reason, fields, length = self._head(len(body))
            self.headersSent = True
            self.request.respond(code, reason, fields, body if declared is None else body[:declared], length)
            return
        if not self.headersSent:
            self.sendHeaders(len(body))
        if body:
            self._write(body)
        self._finish()

    def sendChunk(self, data: bytes) -> None:
        if self.disconnected:
            return
        if not self.headersSent:
            self.sendHeaders()
        self._write(data)

    def sendEnd(self) -> None:
        if self.disconnected:
            return
        if not self.headersSent:
            self.sendHeaders(0)
        self._finish()

    def _write(self, data: bytes) -> None:
        if self.declaredLength is not None:
            room = self.declaredLength - self.request.sentLength
            if len(data) > room:
                # More would be read as the start of the next response.
                data = data[: max(room, 0)]
        self.request.write(data)

    def _finish(self) -> None:
        request = self.request
        if (
            self.declaredLength is not None
            and request.sentLength < self.declaredLength
            and request.method != b"HEAD"
            and request.code not in NO_BODY_CODES
        ):
            _log.error(
                "WSGI application sent {sent} of the {declared} bytes its Content-Length promised for {uri}",
                sent=request.sentLength, declared=self.declaredLength, uri=native(request.uri),
            )
            self._abort()
            return
        request.finish()

    def _abort(self) -> None:
        """
        Cut the connection with a reset, which no client takes for the end
        of a body (a plain close ends an HTTP/1.0 body).
        """
        connection = self.request.connection
        try:
            connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except (AttributeError, OSError):
            pass
        connection.abort()

    def hookStatus(self, failed: bool) -> str:
        """
        The status the request hooks are told of.
        """
        if failed and not self.headersSent or self.status is None:
            return FAILED_STATUS
        return self.status

    def fail(self, failure: Failure) -> None:
        """
        The application raised: answer 500 if nothing was sent yet, or cut the
        connection so that the client cannot take a truncated body for whole.
        """
        _log.failure("WSGI application error in {method} {uri}", failure,
                     method=self.environ["REQUEST_METHOD"], uri=native(self.request.uri))
        if self.disconnected:
            return
        request = self.request
        if self.headersSent:
            self._abort()
            return
        if self.displayTracebacks:
            body = failure.getTraceback().encode("utf-8", "replace")
        else:
            body = b"Internal Server Error\n"
        request.respond(INTERNAL_SERVER_ERROR, None, [(b"Content-Type", b"text/plain; charset=utf-8")], body, len(body))


def _close(iterable: Iterable[bytes]) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


class _InReactorExchange(_Exchange):
    """
    Runs the application in the reactor thread.  A body that is not a list
    is pulled one chunk at a time as a pull producer, so a slow client slows
    the application instead of filling the worker's memory.
    """

    _iterable: Iterable[bytes] = ()
    _iterator: Iterator[bytes] | None = None
    _hooksDone = False

    def run(self, application: WSGIApplication) -> None:
        if self.hooks is not None:
            self._hookStarted = self.hooks.started(self.environ)
        try:
            self._iterable = application(self.environ, self.startResponse)
            if isinstance(self._iterable, (list, tuple)):
                body = b"".join(self._iterable)
                self._closeIterable()
                self.sendWhole(body)
                self._hookFinished(False)
                return
            self._iterator = iter(self._iterable)
        except BaseException:
            self._failed()
            return
        self.request.registerProducer(self, False)

    def writeChunk(self, data: bytes) -> None:
        self.sendChunk(data)

    def resumeProducing(self) -> None:
        try:
            chunk = b""
            while not chunk:
                if self.disconnected:
                    self._stop()
                    self._closeIterable()
                    self._hookFinished(False)
                    return
                chunk = next(self._iterator)  # type: ignore[arg-type]
            self.sendChunk(chunk)
        except StopIteration:
            self._stop()
            self._closeIterable()
            self.sendEnd()
            self._hookFinished(False)
        except BaseException:
            self._stop()
            self._failed()

    def stopProducing(self) -> None:
        self.disconnected = True
        self._closeIterable()
        self._hookFinished(False)

    def _lost(self, reason: Failure) -> None:
        # The client went away mid-stream: nothing will pull the rest.
        super()._lost(reason)
        self._iterator = None
        self._closeIterable()
        self._hookFinished(False)

    def _hookFinished(self, failed: bool) -> None:
        if self.hooks is not None and not self._hooksDone:
            self._hooksDone = True
            self.hooks.finished(self.environ, self.hookStatus(failed), self._hookStarted)

    def _stop(self) -> None:
        if self._iterator is None:
            return
        self._iterator = None
        if not self.disconnected:
            self.request.unregisterProducer()

    def _closeIterable(self) -> None:
        iterable, self._iterable = self._iterable, ()
        _close(iterable)

    def _failed(self) -> None:
        failure = Failure()
        try:
            self._closeIterable()
        except BaseException:
            _log.failure("WSGI iterable close() failed")
        self.fail(failure)
        self._hookFinished(True)


class _ThreadedExchange(_Exchange):
    """
    Runs the application in a thread pool.  A streamed body is a push
    producer: the application's thread waits while the connection cannot
    take more.
    """

    _producing = False

    def __init__(
        self, request: WorkerRequest, environ: dict[str, Any], reactor: IReactorThreads, displayTracebacks: bool = False
    ) -> None:
        super().__init__(request, environ, displayTracebacks)
        self.reactor = reactor
        # Whether the connection takes more of a streamed body: made with
        # the producer, which a whole body never needs.
        self._writable: threading.Event | None = None

    def _lost(self, reason: Failure) -> None:
        super()._lost(reason)
        self._resume()

    def _resume(self) -> None:
        if self._writable is not None:
            self._writable.set()

    def run(self, application: WSGIApplication) -> None:
        if self.hooks is None:
            self._run(application)
            return
        started = self.hooks.started(self.environ)
        failed = self._run(application)
        self.hooks.finished(self.environ, self.hookStatus(failed), started)

    def _run(self, application: WSGIApplication) -> bool:
        """
        Run the application; whether it raised.
        """
        iterable: Iterable[bytes] = ()
        try:
            iterable = application(self.environ, self.startResponse)
            if isinstance(iterable, (list, tuple)):
                body = b"".join(iterable)
                _close(iterable)
                self.reactor.callFromThread(self.sendWhole, body)
                return False
            for chunk in iterable:
                if self.disconnected:
                    break
                if chunk:
                    self.writeChunk(chunk)
            _close(iterable)
        except BaseException:
            failure = Failure()
            try:
                _close(iterable)
            except BaseException:
                _log.failure("WSGI iterable close() failed")
            self.reactor.callFromThread(self.fail, failure)
            return True
        self.reactor.callFromThread(self.sendEnd)
        return False

    def writeChunk(self, data: bytes) -> None:
        # Waiting for the reactor thread, and for the connection to drain,
        # keeps the application from running ahead of the client.
        blockingCallFromThread(self.reactor, self.sendChunk, data)
        writable = self._writable
        if writable is not None:
            writable.wait()

    def sendChunk(self, data: bytes) -> None:
        if not self._producing and not self.disconnected:
            self._producing = True
            if self._writable is None:
                self._writable = threading.Event()
                self._writable.set()
            self.request.registerProducer(self, True)
        super().sendChunk(data)

    def _finish(self) -> None:
        self._unregister()
        super()._finish()

    def fail(self, failure: Failure) -> None:
        self._unregister()
        super().fail(failure)

    def _unregister(self) -> None:
        if self._producing:
            self._producing = False
            if not self.disconnected:
                self.request.unregisterProducer()

    def pauseProducing(self) -> None:
        if self._writable is not None:
            self._writable.clear()

    def resumeProducing(self) -> None:
        self._resume()

    def stopProducing(self) -> None:
        self.disconnected = True
        self._resume()
