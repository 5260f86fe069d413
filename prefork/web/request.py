"""
One request on a worker's connection, as the application's side sees it:
what was asked (method, target, version, fields, body), and the response
going out (status, fields, body), framed by this server alone.

The response head is built here in one piece: the application's fields, a
C{Server} and C{Date} unless the application gave its own, and the
framing (C{Content-Length}, C{Transfer-Encoding: chunked}, or the end of
the connection for an HTTP/1.0 client) and C{Connection} that the request
and the connection call for.  A response small enough to have a length
goes out as one write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress, IPushProducer, ISSLTransport
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, RESPONSES
from twisted.web.server import version as _twistedVersion

from prefork.web.http import HTTPDate

if TYPE_CHECKING:
    from prefork.web.connection import HTTPConnection

#: The C{Server} field of every response the application does not name one
#: for.
SERVER = _twistedVersion
_date = HTTPDate()


class Fields:
    """
    Header fields, by name in lower case; the values of each in the order
    received.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[bytes, list[bytes]] | None = None) -> None:
        self._fields = fields if fields is not None else {}

    def getRawHeaders(self, name: bytes) -> list[bytes] | None:
        return self._fields.get(name.lower())

    def getAllRawHeaders(self) -> Any:
        return self._fields.items()

    def addRawHeader(self, name: bytes, value: bytes) -> None:
        self._fields.setdefault(name.lower(), []).append(value)


class WorkerRequest:
    """
    A request read by an L{HTTPConnection}, and its response.

    @ivar uri: The request-target in origin-form (or C{*}).
    @ivar path: C{uri} without its query.
    @ivar clientproto: The request's HTTP version.
    @ivar content: The body, for C{wsgi.input}.
    @ivar code: The response's status code (0 until it is set).
    @ivar sentLength: How many bytes of body went out.
    @ivar persistent: Whether the connection takes another request after
        this one's response.
    @ivar startedAt: When the application was handed this request
        (C{time.perf_counter}).
    @ivar lost: The connection was lost before the response ended.
    @ivar finished: The response ended.
    @ivar whenLost: Called with the reason if the connection is lost
        before the response ends.
    @ivar preforkClient: The client's address, as a trusted proxy gave it.
    @ivar preforkScheme: The URL scheme, as a trusted proxy gave it.
    """

    code = 0
    sentLength = 0
    startedAt = 0.0
    lost = False
    finished = False
    headSent = False
    chunked = False
    ended = False
    dispatchedEarly = False
    whenLost: Callable[[Failure], object] | None = None
    preforkClient: str | None = None
    preforkScheme: str | None = None

    def __init__(
        self,
        connection: HTTPConnection,
        method: bytes,
        uri: bytes,
        clientproto: bytes,
        fields: dict[bytes, list[bytes]],
        persistent: bool,
        content: Any,
    ) -> None:
        self.connection = connection
        self.method = method
        self.uri = uri
        self.path = uri.partition(b"?")[0]
        self.clientproto = clientproto
        self.requestHeaders = Fields(fields)
        self.responseHeaders = Fields()
        self.persistent = persistent
        self.content = content

    # What was asked.

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders._fields.get(name)
        return values[-1] if values else None

    def getClientAddress(self) -> IAddress:
        return self.connection.peer

    def getHost(self) -> IAddress:
        return self.connection.host

    def isSecure(self) -> bool:
        return self.connection.secure

    # The response.

    def _head(
        self, code: int, reason: bytes | None, fields: Sequence[tuple[bytes, bytes]], length: int | None
    ) -> bytes:
        """
        The response head, and how its body is framed from here on.
        """
        self.code = code
        self.headSent = True
        if reason is None:
            reason = RESPONSES.get(code, b"Unknown Status")
        lines = [b"HTTP/1.1 %d %s\r\n" % (code, reason)]
        server = date = False
        for name, value in fields:
            lower = name.lower()
            if lower == b"server":
                server = True
            elif lower == b"date":
                date = True
            lines.append(b"%s: %s\r\n" % (name, value))
            self.responseHeaders.addRawHeader(lower, value)
        if not server:
            lines.append(b"Server: " + SERVER + b"\r\n")
        if not date:
            lines.append(b"Date: " + _date() + b"\r\n")
        if code in NO_BODY_CODES or self.method == b"HEAD":
            pass
        elif length is not None:
            lines.append(b"Content-Length: %d\r\n" % length)
        elif self.clientproto == b"HTTP/1.1":
            self.chunked = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
        else:
            # An HTTP/1.0 body of unknown length ends with the connection.
            self.persistent = False
        if self.connection.site.closing or (self.dispatchedEarly and not self.content.complete):
            # Draining; or answered before the body it did not wait for,
            # whose rest would be read as the next request.
            self.persistent = False
        if not self.persistent:
            lines.append(b"Connection: close\r\n")
        elif self.clientproto == b"HTTP/1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def respond(
        self, code: int, reason: bytes | None, fields: Sequence[tuple[bytes, bytes]], body: bytes, length: int | None
    ) -> None:
        """
        Send the whole response: its head and C{body}, in one write, and end
        it.  C{length} is the C{Content-Length} to announce (L{None}: none).
        """
        if self.lost:
            return
        head = self._head(code, reason, fields, length)
        if self.method == b"HEAD" or code in NO_BODY_CODES:
            body = b""
        elif self.chunked:
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
            self.chunked = False
        self.sentLength += len(body)
        self.connection.stream.write(head + body)
        self.finish()

    def writeHead(
        self, code: int, reason: bytes | None, fields: Sequence[tuple[bytes, bytes]], length: int | None
    ) -> None:
        """
        Send the response head; the body follows through L{write}.
        """
        if not self.lost:
            self.connection.stream.write(self._head(code, reason, fields, length))

    def write(self, data: bytes) -> None:
        """
        Send a piece of the body, framed as the head said.
        """
        if not self.headSent:
            self.writeHead(200, None, [], None)
        if self.lost or not data or self.method == b"HEAD" or self.code in NO_BODY_CODES:
            return
        self.sentLength += len(data)
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.connection.stream.write(data)

    def finish(self) -> None:
        """
        End the response; the connection moves on.
        """
        if self.finished or self.lost:
            return
        if not self.headSent:
            # Ended without a word: an empty 200, as Twisted's requests do.
            self.respond(200, None, [], b"", 0)
            return
        self.finished = True
        if self.chunked:
            self.connection.stream.write(b"0\r\n\r\n")
        self.connection.requestDone(self)

    def registerProducer(self, producer: IPushProducer | Any, streaming: bool) -> None:
        self.connection.stream.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.connection.stream.unregisterProducer()

    def connectionLost(self, reason: Failure) -> None:
        """
        The connection was lost before this response ended.
        """
        self.lost = True
        if self.whenLost is not None:
            self.whenLost(reason)


def isSecure(transport: object) -> bool:
    """
    Whether C{transport} is a TLS connection.
    """
    return ISSLTransport.providedBy(transport)
