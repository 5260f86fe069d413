"""
One HTTP/1.1 connection in a worker: it reads request heads
(L{prefork.web.head}) and bodies (L{prefork.web.http}'s decoders), hands
each request to its site's resource, and moves on to the next once the
response has ended.

It is a plain L{Protocol}, under whatever transport the port gives it
(TCP, UNIX, TLS, a PROXY protocol header): one request path for all.
Requests are served one at a time, in order; what a client pipelines
behind one waits in a buffer, which stops the transport from reading when
it grows.  Two timeouts keep idle and slow clients from costing more than
a file descriptor: a client has C{headerTimeout} seconds to send a request
head, may pause that long at most while sending a body, and may keep an
idle connection for C{keepaliveTimeout} seconds.  A connection only notes
its deadline; its site's sweep enforces it.  Once the server decides to
close a connection, the connection is gone within L{CLOSE_TIMEOUT}
seconds whatever the peer does (a TLS client that never answers
close_notify, say).
"""

from __future__ import annotations

import io
import socket
import tempfile
import time
from typing import IO, TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress, IReactorThreads
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import INTERNAL_SERVER_ERROR

from prefork.web.bodyinput import ContinueInput
from prefork.web.head import Head, findHead, loggedParts, parseHead
from prefork.web.http import (
    REQUEST_ENTITY_TOO_LARGE,
    ChunkedDecoder,
    IdentityDecoder,
    Rejection,
    checkRequest,
    isPersistent,
    rejectionResponse,
)
from prefork.web.limits import RequestLimits
from prefork.web.request import WorkerRequest, isSecure
from prefork.web.transport import StreamTransport, streamTransport

if TYPE_CHECKING:
    from prefork.web.site import WorkerSite

REQUEST_TIMEOUT = 408
#: Seconds a connection the server closes may take to go: time for a TLS
#: close_notify to be answered, after which it is cut.
CLOSE_TIMEOUT = 2.0
#: Bytes a client may pipeline behind a request being served before the
#: connection stops reading.
PIPELINE_BUFFER = 65536
#: The largest request body kept in memory; a larger one goes to a file.
BODY_IN_MEMORY = 100_000

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_log = Logger()

# Where a connection is in its request cycle, which decides its timeout.
_IDLE = "idle"  # between requests: the keep-alive timeout
_HEAD = "head"  # reading a request head: the header timeout, from its start
_BODY = "body"  # reading a body: the header timeout, from the last byte
_BUSY = "busy"  # the application has the request: no timeout
_CLOSING = "closing"  # the server closes it: CLOSE_TIMEOUT, then a cut


def _bodyFile(length: int | None) -> IO[bytes]:
    """
    Where a body of C{length} bytes (L{None}: not known) is kept until the
    application reads it: in memory while it is small, else in a file.
    """
    if length is None:
        return tempfile.SpooledTemporaryFile(BODY_IN_MEMORY)
    if length > BODY_IN_MEMORY:
        return tempfile.TemporaryFile()
    return io.BytesIO()


class HTTPConnection(Protocol):
    """
    An HTTP/1.1 connection its site keeps track of, which enforces the
    site's L{RequestLimits} and answers a request it rejects with a short
    error and a close.

    @ivar deadline: When this connection times out (L{None}: never).
    @ivar answered: How many responses it has ended.
    @ivar facts: What the WSGI environ says of this connection, worked out
        by L{prefork.web.environ} for its first request.
    """

    deadline: float | None = None
    #: Its transport may end it (call connectionLost) before
    #: loseConnection returns.
    closesAtOnce = True
    answered = 0
    facts: Any = None
    secure = False
    _phase = _HEAD
    _buffer = b""
    _reading = False
    _paused = False
    _current: WorkerRequest | None = None
    #: A request handed to the application before its body (see
    #: L{prefork.web.bodyinput}), while that body arrives.
    _early: WorkerRequest | None = None
    _decoder: IdentityDecoder | ChunkedDecoder | None = None
    _bodyReceived = 0

    def __init__(self, site: WorkerSite) -> None:
        self.site = site
        self.limits: RequestLimits = site.limits
        self._seconds = site.seconds

    def connectionMade(self) -> None:
        self.secure = isSecure(self.transport)
        self.deadline = self._seconds() + self.limits.headerTimeout
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.deadline = None
        self._phase = _CLOSING
        if self._early is not None:
            self._early.content.fail()
            self._early = None
        current, self._current = self._current, None
        if current is not None and not current.finished:
            current.connectionLost(reason)
            if current.startedAt:
                self.site.requestEnded(current)
        self.site.channelClosed(self)

    @property
    def current(self) -> WorkerRequest | None:
        """
        The request this connection is reading or serving, if any.
        """
        return self._current

    @property
    def stream(self) -> StreamTransport:
        """
        The transport, as the request path uses it.
        """
        return streamTransport(self.transport)

    @property
    def peer(self) -> IAddress:
        # Asked each time: a PROXY protocol header, read after the
        # connection is made, changes it.
        return self.stream.getPeer()

    @property
    def host(self) -> IAddress:
        return self.stream.getHost()

    # Reading.

    def dataReceived(self, data: bytes) -> None:
        phase = self._phase
        if phase is _IDLE:
            phase = self._phase = _HEAD
            self.deadline = self._seconds() + self.limits.headerTimeout
        elif phase is _BODY:
            self.deadline = self._seconds() + self.limits.headerTimeout
            self._feedBody(data)
            return
        elif phase is _CLOSING:
            return
        self._buffer = self._buffer + data if self._buffer else data
        if phase is _HEAD:
            self._readHeads()
        elif len(self._buffer) > PIPELINE_BUFFER:
            self._pause()

    def _readHeads(self) -> None:
        """
        Read and start the requests in the buffer, one after another while
        each is answered at once.
        """
        if self._reading:
            return
        self._reading = True
        head = b""
        try:
            while self._phase is _HEAD and self._buffer:
                head = self._buffer
                end = findHead(head, self.limits)
                if end == -1:
                    return
                head, self._buffer = head[:end], head[end:]
                self._startRequest(parseHead(head, self.limits))
        except Rejection as e:
            self.reject(e.code, e.reason, head)
        finally:
            self._reading = False

    def _startRequest(self, head: Head) -> None:
        """
        Check what the head asks for, and either hand the request over or
        start reading its body.

        @raise Rejection: The request cannot be served.
        """
        fields = head.fields
        version = head.version
        target, length = checkRequest(head.method, head.target, version, fields, self.limits)
        request = WorkerRequest(
            self, head.method, target, version, fields, isPersistent(version, fields.get(b"connection")), None
        )
        if length == 0:
            request.content = io.BytesIO()
            self._dispatch(request)
            return
        self._phase = _BODY
        self._bodyReceived = 0
        self.deadline = self._seconds() + self.limits.headerTimeout
        expects = fields.get(b"expect")
        continues = version == b"HTTP/1.1" and expects is not None and expects[-1].lower() == b"100-continue"
        if continues and self.site.continueOnRead:
            self._early = request
            request.content = ContinueInput(IReactorThreads(self.site.reactor), self._askForBody(request))
            request.dispatchedEarly = True
        else:
            request.content = _bodyFile(length)
            if continues:
                self.stream.write(_CONTINUE)
        self._current = request
        if length is None:
            self._decoder = ChunkedDecoder(self._chunkReceived, self._bodyComplete)
        else:
            self._decoder = IdentityDecoder(length, request.content.write, self._bodyComplete)
        rest, self._buffer = self._buffer, b""
        if request.dispatchedEarly:
            self._dispatch(request, reading=True)
        if rest:
            self._feedBody(rest)

    def _feedBody(self, data: bytes) -> None:
        try:
            self._decoder.dataReceived(data)  # type: ignore[union-attr]
        except Rejection as e:
            # A bare status, as for any malformed body.
            self.reject(e.code, e.reason if e.code == REQUEST_ENTITY_TOO_LARGE else "")

    def _chunkReceived(self, data: bytes) -> None:
        self._bodyReceived += len(data)
        if self.limits.bodyTooLarge(self._bodyReceived):
            raise Rejection(REQUEST_ENTITY_TOO_LARGE, "request body too large")
        self._current.content.write(data)  # type: ignore[union-attr]

    def _bodyComplete(self, rest: bytes) -> None:
        self._decoder = None
        self._buffer = rest
        request = self._current
        assert request is not None
        if self._early is not None:
            self._early = None
            request.content.finish()
            if request.finished:
                return
            self._phase = _BUSY
            self.deadline = None
            if len(rest) > PIPELINE_BUFFER:
                self._pause()
            return
        request.content.seek(0)
        self._dispatch(request)
        if self._phase is _HEAD and self._buffer:
            self._readHeads()

    def _askForBody(self, request: WorkerRequest) -> Any:
        def askForBody() -> None:
            # Even when the body is already in: the application asked.
            if not request.headSent and not request.lost:
                self.stream.write(_CONTINUE)

        return askForBody

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.stream.pauseProducing()

    # Serving.

    def _dispatch(self, request: WorkerRequest, reading: bool = False) -> None:
        """
        Hand C{request} to the application; with C{reading}, its body is
        still being read.
        """
        if not reading:
            self._phase = _BUSY
            self.deadline = None
        self._current = request
        request.startedAt = time.perf_counter()
        if self.site.admit(request):
            request.persistent = False
        if request.uri == b"*":
            # OPTIONS * asks about the server, not the application (RFC 9110
            # section 9.3.7): nothing to say beyond the response itself.
            request.respond(200, None, [], b"", 0)
            return
        try:
            self.site.resource.render(request)
        except BaseException:
            _log.failure("Serving {uri} failed", uri=request.uri)
            if not request.headSent:
                body = b"Internal Server Error\n"
                request.persistent = False
                request.respond(
                    INTERNAL_SERVER_ERROR, None, [(b"Content-Type", b"text/plain; charset=utf-8")], body, len(body)
                )
            elif not request.finished:
                self.abort()

    def requestDone(self, request: WorkerRequest) -> None:
        """
        C{request}'s response has ended: log it, and read the next request
        or close.
        """
        self.answered += 1
        self._current = None
        self.site.requestFinished(request)
        if self._early is request:
            # Answered before its body arrived: the rest of the body would
            # be read as the next request.
            request.persistent = False
        if not request.persistent or self.site.closing:
            self.close()
            return
        if self._paused:
            self._paused = False
            self.stream.resumeProducing()
        if self._buffer:
            self._phase = _HEAD
            self.deadline = self._seconds() + self.limits.headerTimeout
            self._readHeads()
        else:
            self._phase = _IDLE
            self.deadline = self._seconds() + self.limits.keepaliveTimeout

    # Ending.

    def timedOut(self) -> None:
        """
        The deadline passed: close an idle connection quietly, as a client
        that reuses it expects; answer a request that did not arrive in
        time with 408; cut a connection that would not close.
        """
        self.deadline = None
        phase = self._phase
        if phase is _CLOSING:
            self.abort()
        elif phase is _IDLE or (phase is _HEAD and not self._buffer):
            self.close()
        else:
            self.reject(REQUEST_TIMEOUT, "request not received in time")

    def reject(self, code: int, reason: str = "", head: bytes | None = None) -> None:
        """
        Answer the request being read with C{code} and close the connection;
        the application never sees it.

        @param head: What was read of the request's head, when the request
            being read has no L{WorkerRequest} yet.
        """
        if self._phase is _CLOSING:
            return
        if self._early is not None:
            # The application has this request and may be answering it:
            # no second answer, only a cut.
            self._early.content.fail()
            self._early = None
            self.abort()
            return
        response = rejectionResponse(code, reason)
        self.site.refused(self._current or self._refusedRequest(head or self._buffer), code, response)
        self.stream.write(response)
        self.close()

    def _refusedRequest(self, head: bytes) -> WorkerRequest:
        """
        A request as much as its first line tells, for the access log.
        """
        line = head.lstrip(b"\r\n").split(b"\r\n", 1)[0][: self.limits.requestLine]
        method, target, version = loggedParts(line)
        return WorkerRequest(self, method, target, version, {}, False, None)

    def close(self) -> None:
        """
        Close the connection once what was written is sent; cut it if that
        takes longer than L{CLOSE_TIMEOUT}.
        """
        if self._phase is _CLOSING:
            return
        self._phase = _CLOSING
        self._buffer = b""
        self.deadline = self._seconds() + CLOSE_TIMEOUT
        if self._paused:
            self._paused = False
            self.stream.resumeProducing()
        self.stream.loseConnection()

    def abort(self) -> None:
        """
        Cut the connection now.
        """
        self._phase = _CLOSING
        self.deadline = None
        self.stream.abortConnection()

    def isIdle(self) -> bool:
        """
        Whether this connection is between requests with nothing to read: a
        keep-alive connection that can be closed without losing a request.
        A new connection is not idle: its client is about to send.
        """
        if self._phase is not _IDLE or not self.answered or self._buffer:
            return False
        try:
            # A request may already be waiting in the kernel: then it is
            # read, answered with Connection: close, and only then closed.
            pending = self.stream.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return True
        return pending == b""
