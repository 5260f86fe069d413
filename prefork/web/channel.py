"""
One HTTP/1.1 connection in a worker, and the requests it carries.

Twisted's L{HTTPChannel} parses each request.  L{WorkerChannel} adds what a
front server needs on top (L{prefork.web.http} holds the rules themselves): the
request-target forms, Host, body framing, the request line, header and body
limits, HTTP/1.0 keep-alive, and two timeouts that keep idle and slow clients
from costing more than a file descriptor.  L{WorkerRequest} asks its site to
admit it and closes its connection once the worker drains.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, REQUEST_ENTITY_TOO_LARGE, REQUEST_URI_TOO_LONG, parse_qs
from twisted.web.server import Request, version

from prefork.twistedinternals import HookedHTTPChannel
from prefork.web.bodyinput import ContinueInput
from prefork.web.http import (
    ChunkedDecoder,
    HTTPDate,
    IdentityDecoder,
    Rejection,
    checkHost,
    checkTransferCoding,
    isPersistent,
    parseContentLength,
    parseTarget,
    rejectionResponse,
)
from prefork.web.limits import RequestLimits
from prefork.web.transport import streamTransport

if TYPE_CHECKING:
    from prefork.web.site import WorkerSite

REQUEST_HEADER_FIELDS_TOO_LARGE = 431
REQUEST_TIMEOUT = 408

_log = Logger()
_date = HTTPDate()


class WorkerRequest(Request):
    """
    A request that is counted by its site before it is processed, and
    reported to it when it ends, answered or not.
    """

    channel: WorkerChannel
    #: The body: Twisted's buffer, or a ContinueInput for a request
    #: dispatched early.
    content: Any
    startedAt = 0.0
    ended = False
    #: The application got this request before its body.
    dispatchedEarly = False
    #: Its connection was lost.
    lost = False
    #: Called with the reason if the connection is lost before the
    #: response is finished: what C{notifyFinish()}'s errback tells, for
    #: the one party that needs it, without a Deferred per request.
    whenLost: Callable[[Failure], object] | None = None
    _handedOver = False

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # Once only: a request dispatched early is not handed over again
        # when its body is complete.
        if self._handedOver:
            return
        self._handedOver = True
        # Twisted's, less the parsing of form bodies into args: a WSGI
        # application reads its body itself.
        self.content.seek(0, 0)
        self.method, self.uri, self.clientproto = command, path, version
        self.path, question, query = path.partition(b"?")
        self.args = parse_qs(query, 1) if question else {}
        self.process()

    def process(self) -> None:
        site: WorkerSite = self.channel.site
        self.startedAt = time.perf_counter()
        if site.admit(self):
            self.closeConnectionAfterResponse()
        if self.path == b"*" or not site.resource.isLeaf:
            super().process()
            return
        # Twisted's process, for the one resource a worker serves, which
        # takes the whole path: no traversal of the path, and the Date
        # formatted once a second.
        self.site = site
        self.setHeader(b"Server", version)
        self.setHeader(b"Date", _date())
        self.prepath = []
        self.postpath = []
        self.sitepath = self.prepath[:]
        try:
            self.render(site.resource)
        except BaseException:
            self.processingFailed(Failure())

    def connectionLost(self, reason: Failure) -> None:
        self.lost = True
        site = self.channel.site if self.channel is not None else None
        super().connectionLost(reason)
        if self.whenLost is not None and not self.finished:
            self.whenLost(reason)
        if site is not None and self.startedAt and not self.ended:
            site.requestEnded(self)

    def closeConnectionAfterResponse(self) -> None:
        """
        Announce C{Connection: close} and close the connection once this
        response is complete.
        """
        self.channel.persistent = False
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def write(self, data: bytes) -> None:
        if not self.startedWriting and not self.lost:
            if self.channel.site.closing:
                # Admitted before the worker began to drain.
                self.closeConnectionAfterResponse()
            elif self.clientproto == b"HTTP/1.0" and self.channel.persistent:
                self._keepAliveHTTP10()
            elif self.dispatchedEarly and not self.content.complete:
                # Answered without (all of) its body: the connection ends.
                self.closeConnectionAfterResponse()
        super().write(data)

    def _keepAliveHTTP10(self) -> None:
        # An HTTP/1.0 client has no chunked coding: without a length, only
        # closing the connection can end the body.
        if (
            self.responseHeaders.hasHeader(b"content-length")
            or self.method == b"HEAD"
            or self.code in NO_BODY_CODES
        ):
            self.responseHeaders.setRawHeaders(b"connection", [b"keep-alive"])
        else:
            self.channel.persistent = False


# Where a connection is in its request cycle, which decides its timeout.
_IDLE = "idle"  # between requests: the keep-alive timeout
_HEAD = "head"  # reading a request head: the header timeout, from its start
_BODY = "body"  # reading a body: the header timeout, from the last byte
_BUSY = "busy"  # the application has the request: no timeout


class WorkerChannel(HookedHTTPChannel):
    """
    An HTTP connection its site keeps track of, which enforces the site's
    L{RequestLimits} and answers a request it rejects with a short error
    and a close.

    Its timeouts replace Twisted's idle timeout: a client has
    C{headerTimeout} seconds to send a request head, however it trickles
    it; may pause that long at most while sending a body; and may keep an
    idle connection for C{keepaliveTimeout} seconds.  A connection only
    notes its deadline; its site's sweep enforces it, which costs a request
    two clock reads instead of a timer.

    @ivar deadline: When this connection times out (L{None}: never).
    """

    site: WorkerSite
    requestFactory = WorkerRequest
    limits: RequestLimits
    deadline: float | None = None
    _phase = _HEAD
    #: The connection takes no more requests: it answered one it refused,
    #: or an early response (below) did not wait for its body.
    _finished = False
    #: A request handed to the application before its body (see
    #: L{prefork.web.bodyinput}), while that body arrives.
    _early: WorkerRequest | None = None
    _expectsContinue = False
    _bodyReceived = 0
    answered = 0

    def connectionMade(self) -> None:
        limits = self.limits = self.site.limits
        # Lines longer than this are refused before they are buffered whole;
        # a request line that is shorter but still too long is refused once
        # its head is in.
        self.MAX_LENGTH = limits.longestLine
        self.maxHeaders = limits.fields
        self.totalHeadersSize = limits.headSize
        self._seconds = self.site.seconds
        super().connectionMade()
        self.deadline = self._seconds() + limits.headerTimeout
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.deadline = None
        if self._early is not None:
            self._early.content.fail()
        super().connectionLost(reason)
        self.site.channelClosed(self)

    def dataReceived(self, data: bytes) -> None:
        phase = self._phase
        if phase is _IDLE:
            self._phase = _HEAD
            self.deadline = self._seconds() + self.limits.headerTimeout
        elif phase is _BODY:
            self.deadline = self._seconds() + self.limits.headerTimeout
        super().dataReceived(data)

    def timedOut(self) -> None:
        """
        The deadline passed: close an idle connection quietly, as a client
        that reuses it expects; answer a request that did not arrive in
        time with 408.
        """
        self.deadline = None
        if self._phase is _IDLE or (not self.requests and not self.bufferedBytes):
            self.loseConnection()
        else:
            self.reject(REQUEST_TIMEOUT, "request not received in time")

    def reject(self, code: int, reason: str = "") -> None:
        """
        Answer the request being read with C{code} and close the connection;
        the application never sees it.
        """
        if self._finished:
            return
        self._finished = True
        self._phase = _BUSY
        self.persistent = False
        self.deadline = None
        if self._early is not None:
            # The application has this request and may be answering it:
            # no second answer, only a cut.
            self._early.content.fail()
            self._early = None
            streamTransport(self.transport).abortConnection()
            return
        streamTransport(self.transport).write(rejectionResponse(code, reason))
        self.loseConnection()

    def badRequest(self) -> None:
        # Twisted's own rejections, in the same form as ours; its count of
        # header fields is ours.
        if self.receivedHeaderCount > self.maxHeaders:
            self.reject(REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields")
        else:
            self.reject(400)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self.readingRequestLine:
            self.reject(REQUEST_URI_TOO_LONG, "request line too long")
        else:
            self.reject(REQUEST_HEADER_FIELDS_TOO_LARGE, "header field too long")

    def headerReceived(self, line: bytes) -> bool:
        # Lines are checked against the longer of the two limits, and an
        # obsolete line folding can make a field longer than any line.
        if len(line) > self.limits.fieldSize:
            self.reject(REQUEST_HEADER_FIELDS_TOO_LARGE, "header field too long")
            return False
        if len(line.translate(None, b"\0\r\n")) != len(line):
            # RFC 9110 section 5.5; Twisted checks this itself from 25.x on.
            self.reject(400)
            return False
        accepted: bool = super().headerReceived(line)
        return accepted

    def bodyFramingReceived(self, name: bytes, value: bytes) -> bool:
        try:
            if name == b"content-length":
                size = parseContentLength(value)
                length: int | None = size
                decoder: IdentityDecoder | _Refusing = IdentityDecoder(
                    size, self.requests[-1].handleContentChunk, self.bodyComplete
                )
            else:
                checkTransferCoding(self.requestLine[2], value)
                length = None
                decoder = _Refusing(ChunkedDecoder(self._chunkReceiver(self.requests[-1]), self.bodyComplete), self)
            if self.hasBodyDecoder:
                raise Rejection(400, "more than one Content-Length or Transfer-Encoding")
        except Rejection as e:
            self.reject(e.code, e.reason)
            self.length = None
            return False
        self.useBodyDecoder(decoder, length)
        return True

    def _chunkReceiver(self, request: Request) -> Callable[[bytes], None]:
        """
        What receives the pieces of C{request}'s chunked body, counted
        against the body limit.
        """

        def chunkReceived(data: bytes) -> None:
            if self._finished:
                return
            self._bodyReceived += len(data)
            if self.limits.bodyTooLarge(self._bodyReceived):
                self.reject(REQUEST_ENTITY_TOO_LARGE, "request body too large")
                return
            request.handleContentChunk(data)

        return chunkReceived

    def allHeadersReceived(self) -> None:
        try:
            self._checkHead(self.requests[-1])
        except Rejection as e:
            self.reject(e.code, e.reason)
            return
        super().allHeadersReceived()
        if self.length != 0:
            self._phase = _BODY
            self._bodyReceived = 0
            self.deadline = self._seconds() + self.limits.headerTimeout
            if self._expectsContinue:
                self._expectsContinue = False
                self._dispatchEarly(self.requests[-1])

    def _checkHead(self, request: Request) -> None:
        """
        Check what Twisted leaves open in a complete request head, before
        any of its body is read; bring an absolute-form target to
        origin-form, the target's authority becoming the Host.

        @raise Rejection: The request cannot be served.
        """
        method, target, version = self.requestLine
        if len(method) + len(target) + len(version) + 2 > self.limits.requestLine:
            raise Rejection(REQUEST_URI_TOO_LONG, "request line too long")
        target, authority = parseTarget(method, target)
        headers = request.requestHeaders
        checkHost(version, headers.getRawHeaders(b"host"))
        if authority is not None:
            # RFC 9112 section 3.2.2: the target's authority wins over Host.
            self.setRequestTarget(target)
            headers.setRawHeaders(b"host", [authority])
        if self.length and self.limits.bodyTooLarge(self.length):
            raise Rejection(REQUEST_ENTITY_TOO_LARGE, "request body too large")

    def checkPersistence(self, request: Request, version: bytes) -> bool:
        persistent = isPersistent(version, request.requestHeaders.getRawHeaders(b"connection"))
        if not persistent and version == b"HTTP/1.1":
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return persistent

    def continueExpected(self) -> None:
        # Only a request with a body waits for the go-ahead; one refused on
        # its head (413, say) got its final answer instead.  With a thread
        # pool, the go-ahead waits for the application to read the body.
        if self.length == 0:
            return
        if self.site.continueOnRead:
            self._expectsContinue = True
        else:
            self.sendContinue()

    def _dispatchEarly(self, request: WorkerRequest) -> None:
        """
        Hand C{request} to the application now, its body to follow as the
        application reads it.
        """
        self._early = request

        def askForBody() -> None:
            # Even when the body is already in: the application asked.
            if not request.startedWriting and not request.lost:
                self.sendContinue()

        request.content = ContinueInput(IReactorThreads(self.site.reactor), askForBody)
        request.dispatchedEarly = True
        request.requestReceived(*self.requestLine)

    def allContentReceived(self) -> None:
        if self._finished:
            return
        self._phase = _BUSY
        self.deadline = None
        if self._early is not None:
            self._early.content.finish()
            self._early = None
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        self.answered += 1
        if self._early is request:
            # Answered before its body arrived: the rest of the body would
            # be read as the next request.
            self._early = None
            self._finished = True
            self.persistent = False
        if self.site.closing:
            # Its head went out before the worker began to drain.
            self.persistent = False
        if self.persistent:
            # Before Twisted replays a pipelined request, which moves the
            # connection on to reading its head.
            self._phase = _IDLE
            self.deadline = self._seconds() + self.limits.keepaliveTimeout
        super().requestDone(request)

    def isIdle(self) -> bool:
        """
        Whether this connection is between requests with nothing to read: a
        keep-alive connection that can be closed without losing a request.
        A new connection is not idle: its client is about to send.
        """
        if not self.answered or self.requests or self.bufferedBytes:
            return False
        try:
            # A request may already be waiting in the kernel: then it is
            # read, answered with Connection: close, and only then closed.
            pending = streamTransport(self.transport).socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return True
        return pending == b""


class _Refusing:
    """
    Feeds a body decoder, and answers the body it finds malformed.
    """

    def __init__(self, decoder: ChunkedDecoder, channel: WorkerChannel) -> None:
        self.decoder = decoder
        self.channel = channel

    def dataReceived(self, data: bytes) -> None:
        try:
            self.decoder.dataReceived(data)
        except Rejection as e:
            # A bare status, as Twisted's own refusal of a malformed body.
            self.channel.reject(e.code)
