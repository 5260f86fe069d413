"""
The HTTP/1.1 connection C{--resource} serves on: Twisted's own
C{HTTPChannel}, behind the same checks, limits and timeouts as the WSGI
path's L{prefork.web.connection.HTTPConnection}.

Each request head is gathered line by line, bounded as it comes in, and
parsed and checked whole by the WSGI path's own rules (L{prefork.web.head},
L{prefork.web.http}) before Twisted sees any of it; Twisted is then handed
the head as those rules read it: the request line with an origin-form
target, one line per field, folded lines unfolded.  So a request both paths
accept means the same to both, and what one refuses the other refuses with
the same status.  A body framed by its length Twisted reads itself; a
chunked body is decoded here, by the WSGI path's decoder, as it arrives,
and handed to Twisted in plain chunks, so that where a body ends is decided
by one set of rules.  An C{Expect: 100-continue} on a request without a
body is dropped: there is nothing to continue to.  HTTP/1.0 keep-alive is
honoured, as by the WSGI path, when the response has a length.

A request the connection refuses is answered with the server's short
response, counted and logged as a refusal; so is one Twisted refuses itself
(its bare 400), which is seen as Twisted closing a connection in the middle
of a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import BAD_REQUEST, NO_BODY_CODES, HTTPChannel
from twisted.web.http_headers import Headers

from prefork.web.connection import CLOSE_TIMEOUT, REQUEST_TIMEOUT
from prefork.web.head import REQUEST_HEADER_FIELDS_TOO_LARGE, REQUEST_URI_TOO_LONG, loggedParts, parseHead
from prefork.web.http import (
    REQUEST_ENTITY_TOO_LARGE,
    ChunkedDecoder,
    Rejection,
    checkRequest,
    isPersistent,
    rejectionResponse,
)

if TYPE_CHECKING:
    from prefork.web.resourcesite import ResourceSite

#: What Twisted writes when it refuses a request itself.
TWISTED_REFUSAL = b"HTTP/1.1 400 Bad Request\r\n\r\n"


class RefusedRequest:
    """
    A request refused before it became one of Twisted's, as much as its
    first line tells: what the access log reads of it.
    """

    code = 0
    sentLength = 0
    preforkClient: str | None = None
    preforkScheme: str | None

    def __init__(self, line: bytes, peer: Any, secure: bool) -> None:
        self.method, self.uri, self.clientproto = loggedParts(line)
        self.requestHeaders = Headers()
        self.responseHeaders = Headers()
        self.preforkScheme = "https" if secure else "http"
        self._peer = peer

    def getHeader(self, name: bytes) -> bytes | None:
        return None

    def getClientAddress(self) -> Any:
        return self._peer

    def isSecure(self) -> bool:
        return self.preforkScheme == "https"


class ResourceChannel(HTTPChannel):
    """
    Twisted's HTTP/1.1 connection, checked and bounded as the module says,
    which its L{ResourceSite} tracks, and which closes after its response
    while the worker drains.

    @ivar reading: Whether a request is being read: from its first byte to
        the end of its body.
    @ivar deadline: When this connection times out (L{None}: never), which
        its site's sweep enforces (L{prefork.web.sweep}): Twisted's own
        timer per connection is off.
    """

    site: ResourceSite
    reading = False
    deadline: float | None = None
    #: The lines of the head being gathered, or L{None} between heads.
    _head: list[bytes] | None = None
    #: The first line of the request being read, for the access log.
    _line = b""
    _blankLine = False
    _busy = False
    _refused = False
    _closing = False
    #: The decoder of the chunked body being read, if any.
    _chunks: ChunkedDecoder | None = None
    _bodySize = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        limits = self.site.limits
        self.MAX_LENGTH = limits.longestLine
        # The head is checked against the limits before Twisted reads it:
        # Twisted's own bounds only need to be no tighter (one more field:
        # the Host an absolute-form target gives).
        self.maxHeaders = limits.fields + 1
        self.totalHeadersSize = limits.headSize
        # A new connection's client is about to send: the header timeout.
        self._deadlineIn(limits.headerTimeout)
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.deadline = None
        self.site.channelClosed(self)

    # Reading a request.

    def dataReceived(self, data: bytes) -> None:
        if self._refused or self._closing:
            return
        if not self._busy and not self.reading:
            self._beginRequest()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        head = self._head
        if head is None:
            if not line:
                # One empty line may come before a request (RFC 9112
                # section 2.2), no more.
                if self._blankLine:
                    self.refuse(BAD_REQUEST, "empty lines before the request")
                self._blankLine = True
                return
            if not self.reading:
                # The next request, read from what was pipelined.
                self._beginRequest()
            self._line = line[: self.site.limits.requestLine]
            self._head = head = []
        head.append(line)
        if line:
            if len(head) > self.site.limits.fields + 1:
                self.refuse(REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields")
            return
        self._head, self._blankLine = None, False
        self._headReceived(head)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._head is None:
            self._line = line[: self.site.limits.requestLine]
            self.refuse(REQUEST_URI_TOO_LONG, "request line too long")
        else:
            self.refuse(REQUEST_HEADER_FIELDS_TOO_LARGE, "header field too long")

    def _headReceived(self, lines: list[bytes]) -> None:
        """
        Check a whole head, and hand Twisted the head as the checks read it.
        """
        try:
            head = parseHead(b"\r\n".join(lines) + b"\r\n", self.site.limits)
            target, length = checkRequest(head.method, head.target, head.version, head.fields, self.site.limits)
        except Rejection as e:
            self.refuse(e.code, e.reason)
            return
        if not self.persistent:
            # After a response that closes the connection: as Twisted, read
            # nothing more.
            return
        if length is None:
            self._chunks, self._bodySize = ChunkedDecoder(self._chunkReceived, self._chunksEnded), 0
            head.fields[b"transfer-encoding"] = [b"chunked"]
        elif length == 0:
            head.fields.pop(b"expect", None)
        checked = [b"%s %s %s" % (head.method, target, head.version)]
        checked.extend(name + b": " + value for name, values in head.fields.items() for value in values)
        checked.append(b"")
        for line in checked:
            super().lineReceived(line)
            if self._refused:
                return

    def allHeadersReceived(self) -> None:
        self._deadlineIn(self.site.limits.headerTimeout)
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.reading:
            # The longest pause in a body.
            self._deadlineIn(self.site.limits.headerTimeout)
        if self._chunks is None:
            super().rawDataReceived(data)
            return
        try:
            self._chunks.dataReceived(data)
        except Rejection as e:
            # A bare status, as for any malformed body.
            self.refuse(e.code, e.reason if e.code == REQUEST_ENTITY_TOO_LARGE else "")

    def _chunkReceived(self, data: bytes) -> None:
        self._bodySize += len(data)
        if self.site.limits.bodyTooLarge(self._bodySize):
            raise Rejection(REQUEST_ENTITY_TOO_LARGE, "request body too large")
        super().rawDataReceived(b"%x\r\n%s\r\n" % (len(data), data))

    def _chunksEnded(self, rest: bytes) -> None:
        self._chunks = None
        super().rawDataReceived(b"0\r\n\r\n")
        if rest:
            # Inside Twisted's reading of the data: it reads this next.
            self.dataReceived(rest)

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self.reading, self._busy, self.deadline = False, True, None
        super().allContentReceived()

    def _beginRequest(self) -> None:
        # The whole head must be in by then, however slowly it trickles.
        self.reading = True
        self._deadlineIn(self.site.limits.headerTimeout)

    def _deadlineIn(self, seconds: float) -> None:
        self.deadline = self.site.reactor.seconds() + seconds

    # Answering.

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        if version == b"HTTP/1.0":
            return isPersistent(version, request.requestHeaders.getRawHeaders(b"connection"))
        return bool(super().checkPersistence(request, version))

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        # Twisted decides whether the connection persists as the request
        # arrives; a drain that began since closes it after this response.
        if self.persistent and isinstance(headers, Headers):
            if self.site.closing:
                self.persistent = False
                headers.setRawHeaders(b"connection", [b"close"])
            elif version == b"HTTP/1.0":
                # Without a length, only the close ends the response.
                sized = headers.hasHeader(b"content-length") or int(code) in NO_BODY_CODES
                self.persistent = sized
                headers.setRawHeaders(b"connection", [b"keep-alive" if sized else b"close"])
        super().writeHeaders(version, code, reason, headers)

    def requestDone(self, request: Any) -> None:
        self._busy = False
        # Twisted reads what was pipelined behind the request here, which
        # may begin the next one.
        super().requestDone(request)
        if self.transport is None or not self.persistent or self.reading:
            return
        if self.site.closing and not self.requests:
            # A response that began before the drain kept its connection:
            # close it now that it is idle.
            self.loseConnection()
        else:
            self._deadlineIn(self.site.limits.keepaliveTimeout)

    def isIdle(self) -> bool:
        """
        Whether no request has begun on this connection since the last
        response.
        """
        return not self.requests and not self.reading

    # Refusing and closing.

    def refuse(self, code: int, reason: str = "") -> None:
        """
        Answer the request being read with C{code}, count and log it, and
        close the connection.
        """
        if self._refused:
            return
        self._refused = True
        response = rejectionResponse(code, reason)
        self.site.refused(self._refusedRequest(), code, response)
        self._transport.write(response)
        self.loseConnection()

    def _refusedRequest(self) -> RefusedRequest:
        return RefusedRequest(self._line, self._transport.getPeer(), self.isSecure())

    @property
    def _transport(self) -> Any:
        # Connected: a TCP, UNIX or TLS transport, which can abort.
        return self.transport

    def loseConnection(self) -> None:
        if self.reading and not self._refused:
            # Only a refusal makes Twisted close in the middle of a request:
            # it has answered with its bare 400.
            self._refused = True
            self.site.refused(self._refusedRequest(), BAD_REQUEST, TWISTED_REFUSAL)
        if not self._closing:
            # A client that does not read cannot keep a closed connection.
            self._closing = True
            self._deadlineIn(CLOSE_TIMEOUT)
        super().loseConnection()

    def timedOut(self) -> None:
        """
        The deadline passed: cut a connection that would not close; answer
        a request not in by then with 408; close an idle keep-alive
        connection quietly, as a client that reuses it expects.
        """
        if self._closing:
            self.abort()
        elif self.reading:
            self.refuse(REQUEST_TIMEOUT, "request not received in time")
        else:
            self.loseConnection()

    def abort(self) -> None:
        """
        Cut the connection now.
        """
        self._closing, self.deadline = True, None
        if self.transport is not None:
            self._transport.abortConnection()
