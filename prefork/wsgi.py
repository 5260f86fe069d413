"""
Serving a WSGI application (PEP 3333) from a worker.

L{WorkerWSGIResource} is a L{twisted.web.wsgi.WSGIResource} that fixes what
the stock container gets wrong in a prefork server: C{wsgi.multiprocess} is
true, requests over UNIX sockets work (Twisted reads a port number from every
address, twisted issue 5406), C{CONTENT_TYPE} and C{CONTENT_LENGTH} are not
repeated as C{HTTP_} keys, and the iterable's C{close()} is always called.

It runs the application in one of two ways:

  - in the reactor thread (no thread pool), as Twiggy::Prefork runs a PSGI
    application in its event loop: one request at a time, no thread
    hand-offs; a streamed body is pulled one chunk each time the connection
    can take more;
  - in a thread pool, for applications that block: one hand-off to the pool
    and, for a body returned whole, one back.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Optional
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.http import INTERNAL_SERVER_ERROR, NO_BODY_CODES
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.wsgi import WSGIResource

from prefork.appload import WSGIApplication

ExcInfo = tuple[type[BaseException], BaseException, Optional[TracebackType]]
WriteCallable = Callable[[bytes], None]

_log = Logger()


def _native(b: bytes) -> str:
    return b.decode("latin-1")


def _addressParts(address: Any) -> tuple[str, str]:
    """
    The host and port of a peer or local address; a UNIX socket is local.
    """
    host = getattr(address, "host", None)
    if host is None:
        return "127.0.0.1", "0"
    return host, str(address.port)


#: Header names already turned into environ keys.  Clients choose the names,
#: so the cache is bounded; past the bound, names are converted every time.
_environKeys: dict[bytes, str] = {}
_MAX_ENVIRON_KEYS = 256


def _environKey(name: bytes) -> str:
    """
    The environ key of request header C{name}: C{HTTP_} and the name in upper
    case with C{_} for C{-}, except C{CONTENT_TYPE} and C{CONTENT_LENGTH}.
    """
    key = _environKeys.get(name)
    if key is None:
        key = _native(name).upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if len(_environKeys) < _MAX_ENVIRON_KEYS:
            _environKeys[name] = key
    return key


def _connectionEnviron(request: Request) -> dict[str, str]:
    """
    The environ keys that depend only on the connection, worked out once per
    connection: a keep-alive connection carries many requests, and
    C{isSecure} adapts the transport to an interface on every call.
    """
    channel = request.channel
    cached: dict[str, str] | None = getattr(channel, "_preforkEnviron", None)
    if cached is not None:
        return cached
    remoteHost, remotePort = _addressParts(request.getClientAddress())
    localHost, localPort = _addressParts(request.getHost())
    secure = request.isSecure()
    if localPort == "0":
        # A UNIX socket has no port: say what the client would have used.
        localPort = "443" if secure else "80"
    cached = channel._preforkEnviron = {
        "SERVER_NAME": localHost,
        "SERVER_PORT": localPort,
        "REMOTE_ADDR": remoteHost,
        "REMOTE_PORT": remotePort,
        "wsgi.url_scheme": "https" if secure else "http",
    }
    return cached


def buildEnviron(request: Request, extra: dict[str, Any]) -> dict[str, Any]:
    """
    The WSGI environ of C{request}.

    @param extra: Keys added to every environ (the exit guard, say).
    """
    path, _, query = request.uri.partition(b"?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": _native(request.method),
        "SCRIPT_NAME": "",
        # Most paths have nothing to unquote.
        "PATH_INFO": _native(unquote_to_bytes(path) if b"%" in path else path),
        "QUERY_STRING": _native(query),
        "SERVER_PROTOCOL": _native(request.clientproto),
        "wsgi.version": (1, 0),
        "wsgi.input": request.content,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    environ.update(_connectionEnviron(request))
    if request.getHeader(b"host"):
        environ["SERVER_NAME"] = _native(request.getRequestHostname())
    for name, values in request.requestHeaders.getAllRawHeaders():
        # Most headers come once: no join needed.
        value = _native(values[0]) if len(values) == 1 else ",".join(_native(v) for v in values)
        environ[_environKey(name)] = value
    environ.update(extra)
    return environ


class _Exchange:
    """
    One request and the application's response to it: C{start_response},
    the status and headers, and how they reach the L{Request}.

    Methods named C{send*} and L{fail} run in the reactor thread.
    """

    def __init__(self, request: Request, environ: dict[str, Any]) -> None:
        self.request = request
        self.environ = environ
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.headersSent = False
        self.disconnected = False
        request.defaultContentType = None
        request.notifyFinish().addErrback(self._lost)

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
        if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit():
            raise ValueError(f"WSGI status must be a str like '200 OK', not {status!r}")
        for header in headers:
            # Plain tests and no generator per header: this runs for every
            # header of every response.
            if not (isinstance(header, tuple) and len(header) == 2
                    and isinstance(header[0], str) and isinstance(header[1], str)):
                raise TypeError(f"WSGI header must be a (str, str) tuple, not {header!r}")
            text = header[0] + header[1]
            if "\n" in text or "\r" in text or "\0" in text or ":" in header[0]:
                raise ValueError(f"invalid WSGI header {header!r}")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """
        The legacy C{write()} callable returned by C{start_response}.
        """
        self.writeChunk(data)

    def writeChunk(self, data: bytes) -> None:
        """
        Send one piece of the body, from whichever thread runs the app.
        """
        raise NotImplementedError()

    def sendHeaders(self, bodyLength: int | None = None) -> None:
        if self.status is None:
            raise RuntimeError("WSGI application returned without calling start_response()")
        code, _, message = self.status.partition(" ")
        request = self.request
        request.setResponseCode(int(code), message.encode("latin-1"))
        responseHeaders = request.responseHeaders
        haveLength = False
        for name, value in self.headers:
            lower = name.lower()
            rawName, rawValue = name.encode("latin-1"), value.encode("latin-1")
            if lower in ("server", "date"):
                responseHeaders.setRawHeaders(rawName, [rawValue])
            else:
                responseHeaders.addRawHeader(rawName, rawValue)
            haveLength = haveLength or lower == "content-length"
        if (
            bodyLength is not None
            and not haveLength
            and request.method != b"HEAD"
            and request.code not in NO_BODY_CODES
        ):
            responseHeaders.setRawHeaders(b"content-length", [b"%d" % bodyLength])
        self.headersSent = True

    def sendWhole(self, body: bytes) -> None:
        """
        Send the whole response at once, with a C{Content-Length}.
        """
        if self.disconnected:
            return
        self.sendHeaders(len(body))
        if body:
            self.request.write(body)
        self.request.finish()

    def sendChunk(self, data: bytes) -> None:
        if self.disconnected:
            return
        if not self.headersSent:
            self.sendHeaders()
        self.request.write(data)

    def sendEnd(self) -> None:
        if self.disconnected:
            return
        if not self.headersSent:
            self.sendHeaders(0)
        self.request.finish()

    def fail(self, failure: Failure) -> None:
        """
        The application raised: answer 500 if nothing was sent yet, or cut the
        connection so that the client cannot take a truncated body for whole.
        """
        _log.failure("WSGI application error in {method} {uri}", failure,
                     method=self.environ["REQUEST_METHOD"], uri=self.request.uri)
        if self.disconnected:
            return
        request = self.request
        if self.headersSent:
            request.channel.transport.abortConnection()
            return
        body = b"Internal Server Error\n"
        request.setResponseCode(INTERNAL_SERVER_ERROR)
        request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain"])
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
        request.write(body)
        request.finish()


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

    def run(self, application: WSGIApplication) -> None:
        try:
            self._iterable = application(self.environ, self.startResponse)
            if isinstance(self._iterable, (list, tuple)):
                body = b"".join(self._iterable)
                self._closeIterable()
                self.sendWhole(body)
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
                    return
                chunk = next(self._iterator)  # type: ignore[arg-type]
            self.sendChunk(chunk)
        except StopIteration:
            self._stop()
            self._closeIterable()
            self.sendEnd()
        except BaseException:
            self._stop()
            self._failed()

    def stopProducing(self) -> None:
        self.disconnected = True
        self._closeIterable()

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


class _ThreadedExchange(_Exchange):
    """
    Runs the application in a thread pool.

    A body returned whole makes one hop back to the reactor thread.  A
    streamed body is a push producer: while the connection's buffer is full
    the application's thread waits, so a slow client slows the application
    instead of filling the worker's memory.
    """

    def __init__(self, request: Request, environ: dict[str, Any], reactor: IReactorThreads) -> None:
        super().__init__(request, environ)
        self.reactor = reactor
        self._writable = threading.Event()
        self._writable.set()
        self._producing = False

    def run(self, application: WSGIApplication) -> None:
        iterable: Iterable[bytes] = ()
        try:
            iterable = application(self.environ, self.startResponse)
            if isinstance(iterable, (list, tuple)):
                body = b"".join(iterable)
                _close(iterable)
                self.reactor.callFromThread(self.sendWhole, body)
                return
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
            return
        self.reactor.callFromThread(self.sendEnd)

    def writeChunk(self, data: bytes) -> None:
        # Waiting for the reactor thread, and then for the connection to
        # take more, keeps the application from running ahead of the client.
        blockingCallFromThread(self.reactor, self._sendPaced, data)
        self._writable.wait()

    def _lost(self, reason: Failure) -> None:
        super()._lost(reason)
        self._writable.set()

    def _sendPaced(self, data: bytes) -> None:
        if not self._producing and not self.disconnected:
            self._producing = True
            self.request.registerProducer(self, True)
        self.sendChunk(data)

    def _unregister(self) -> None:
        if self._producing:
            self._producing = False
            if not self.disconnected:
                self.request.unregisterProducer()

    def sendEnd(self) -> None:
        self._unregister()
        super().sendEnd()

    def fail(self, failure: Failure) -> None:
        self._unregister()
        super().fail(failure)

    # IPushProducer, called by the connection in the reactor thread.

    def pauseProducing(self) -> None:
        self._writable.clear()

    def resumeProducing(self) -> None:
        self._writable.set()

    def stopProducing(self) -> None:
        self.disconnected = True
        self._writable.set()


class WorkerWSGIResource(WSGIResource):
    """
    A WSGI resource for a prefork worker.

    @param threadpool: Run the application in this pool; L{None} runs it in
        the reactor thread.
    @param extraEnviron: Keys added to every request's environ.
    """

    def __init__(
        self,
        reactor: IReactorThreads,
        threadpool: ThreadPool | None,
        application: WSGIApplication,
        extraEnviron: dict[str, Any],
    ) -> None:
        super().__init__(reactor, threadpool, application)
        self._extraEnviron = dict(extraEnviron, **{"wsgi.multithread": threadpool is not None})

    def render(self, request: Request) -> object:
        environ = buildEnviron(request, self._extraEnviron)
        if self._threadpool is None:
            _InReactorExchange(request, environ).run(self._application)
        else:
            exchange = _ThreadedExchange(request, environ, self._reactor)
            self._threadpool.callInThread(exchange.run, self._application)
        return NOT_DONE_YET
