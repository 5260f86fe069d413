"""
The rules of HTTP/1.1 (RFC 9110, RFC 9112) a request must follow beyond its
syntax: which request-target forms a method may use, what a valid Host
is, which transfer codings frame a body, how big a length may be, when a
connection persists, the short answer a rejected request gets, and the
decoders of a request body framed by its length or chunked.

Everything here works on bytes alone, so that it can be tested on its own;
L{prefork.web.connection} applies it to live connections.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from twisted.web.http import BAD_REQUEST, RESPONSES, datetimeToString

from prefork.web.limits import RequestLimits

#: The largest body or chunk size accepted: a length is a signed 64-bit
#: number in every server and proxy a request may pass through.
MAX_SIZE = 2**63 - 1

#: RFC 3986 authority as RFC 9110 section 7.2 allows it in Host: an IP
#: literal or a reg-name (possibly empty), and an optional port.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_ABSOLUTE = re.compile(rb"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?]*)(?P<rest>.*)", re.S)
_NOT_TARGET = re.compile(rb"[^\x21-\x7e]|#")


REQUEST_ENTITY_TOO_LARGE = 413

#: RFC 9110's reason phrases where Twisted's are older or missing.
_PHRASES = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class Rejection(Exception):
    """
    The request cannot be served: answer C{code} and close the connection.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def rejectionResponse(code: int, reason: str = "") -> bytes:
    """
    The whole response to a request rejected with C{code}: a short plain
    text body and C{Connection: close}.
    """
    phrase = _PHRASES.get(code) or RESPONSES.get(code, b"Error")
    body = b"%d %s\n" % (code, phrase)
    if reason:
        body += reason.encode("ascii", "replace") + b"\n"
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (code, phrase),
            b"Content-Type: text/plain\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n\r\n",
            body,
        ]
    )


def isValidHost(value: bytes) -> bool:
    """
    Whether C{value} is a valid Host field value (RFC 9110 section 7.2).
    """
    return _HOST.fullmatch(value) is not None


def parseTarget(method: bytes, target: bytes) -> tuple[bytes, bytes | None]:
    """
    Check a request-target against the forms RFC 9112 section 3.2 allows its
    method.

    @return: The target in origin-form (C{*} for OPTIONS), and the authority
        an absolute-form target named, or L{None}.
    @raise Rejection: The target is malformed or not valid for C{method}.
    """
    if _NOT_TARGET.search(target):
        raise Rejection(BAD_REQUEST, "invalid character in request-target")
    if method == b"CONNECT":
        # authority-form; this server is no proxy, so there is nothing to
        # connect to even when the form is right.
        raise Rejection(405 if _HOST.fullmatch(target) else BAD_REQUEST, "CONNECT is not supported")
    if target[:1] == b"/":
        return target, None
    if target == b"*":
        if method != b"OPTIONS":
            raise Rejection(BAD_REQUEST, "asterisk-form is only for OPTIONS")
        return target, None
    match = _ABSOLUTE.fullmatch(target)
    if match is None or match["scheme"].lower() not in (b"http", b"https"):
        raise Rejection(BAD_REQUEST, "invalid request-target")
    authority, rest = match["authority"], match["rest"]
    if not authority or b"@" in authority or not isValidHost(authority):
        raise Rejection(BAD_REQUEST, "invalid authority in request-target")
    if rest[:1] != b"/":
        rest = b"/" + rest
    return rest, authority


def checkRequest(
    method: bytes, target: bytes, version: bytes, fields: dict[bytes, list[bytes]], limits: RequestLimits
) -> tuple[bytes, int | None]:
    """
    Check what a well-formed head asks for: its target, its Host and the
    framing of its body.  An absolute-form target's authority replaces
    C{fields}' Host (RFC 9112 section 3.2.2).

    @return: The target in origin-form, and the length of the body: a
        number of bytes, or L{None} for a chunked body.
    @raise Rejection: The request cannot be served.
    """
    target, authority = parseTarget(method, target)
    checkHost(version, fields.get(b"host"))
    if authority is not None:
        fields[b"host"] = [authority]
    return target, bodyLength(version, fields, limits)


def bodyLength(version: bytes, fields: dict[bytes, list[bytes]], limits: RequestLimits) -> int | None:
    """
    The length of the body a head announces: a number of bytes, or L{None}
    for a chunked body.

    @raise Rejection: The framing is ambiguous or invalid, or the body is
        over the limit.
    """
    codings = fields.get(b"transfer-encoding")
    lengths = fields.get(b"content-length")
    if codings is not None:
        if lengths is not None:
            raise Rejection(BAD_REQUEST, "more than one Content-Length or Transfer-Encoding")
        checkTransferCoding(version, b",".join(codings))
        return None
    if lengths is None:
        return 0
    if len(lengths) > 1:
        raise Rejection(BAD_REQUEST, "more than one Content-Length or Transfer-Encoding")
    length = parseContentLength(lengths[0])
    if limits.bodyTooLarge(length):
        raise Rejection(REQUEST_ENTITY_TOO_LARGE, "request body too large")
    return length


def checkHost(version: bytes, hosts: Sequence[bytes] | None) -> None:
    """
    RFC 9112 section 3.2: an HTTP/1.1 request needs exactly one Host, and
    no request may carry several or an invalid one.

    @raise Rejection: It does not.
    """
    if not hosts:
        if version == b"HTTP/1.1":
            raise Rejection(BAD_REQUEST, "missing Host header")
        return
    if len(hosts) > 1:
        raise Rejection(BAD_REQUEST, "more than one Host header")
    if not isValidHost(hosts[0]):
        raise Rejection(BAD_REQUEST, "invalid Host header")


def parseContentLength(value: bytes) -> int:
    """
    The body length a Content-Length field gives.

    @raise Rejection: It is not one decimal number that fits in 63 bits.
    """
    if not value.isdigit() or len(value) > 19 or int(value) > MAX_SIZE:
        raise Rejection(BAD_REQUEST, "invalid Content-Length")
    return int(value)


def checkTransferCoding(version: bytes, value: bytes) -> None:
    """
    Check that a Transfer-Encoding field frames the body with C{chunked},
    the only coding this server decodes (RFC 9112 section 6.1).

    @raise Rejection: 400 when the framing cannot be trusted, 501 for a
        coding this server does not know.
    """
    if version != b"HTTP/1.1":
        raise Rejection(BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
    codings = [coding.strip(b" \t").lower() for coding in value.split(b",")]
    if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise Rejection(BAD_REQUEST, "chunked must be the last transfer coding, once")
    if len(codings) > 1:
        raise Rejection(501, "unsupported transfer coding")


def isPersistent(version: bytes, connection: Sequence[bytes] | None) -> bool:
    """
    Whether a connection stays open after this request (RFC 9112 section
    9.3): HTTP/1.1 unless it says C{close}, HTTP/1.0 if it says
    C{keep-alive}.
    """
    if not connection:
        return version == b"HTTP/1.1"
    tokens: set[bytes] = set()
    for value in connection:
        tokens.update(token.strip(b" \t").lower() for token in value.split(b","))
    if version == b"HTTP/1.1":
        return b"close" not in tokens
    return b"keep-alive" in tokens and b"close" not in tokens


class IdentityDecoder:
    """
    A body of C{length} bytes: passes them to C{dataCallback}, then what
    follows them to C{finishCallback}.
    """

    def __init__(self, length: int, dataCallback: Callable[[bytes], None], finishCallback: Callable[[bytes], None]):
        self.length = length
        self.dataCallback = dataCallback
        self.finishCallback = finishCallback

    def dataReceived(self, data: bytes) -> None:
        if len(data) < self.length:
            self.length -= len(data)
            self.dataCallback(data)
            return
        # Done before the callbacks run, in case one feeds this decoder.
        length, self.length = self.length, 0
        finishCallback = self.finishCallback
        self.finishCallback = _finished
        self.dataCallback(data[:length])
        finishCallback(data[length:])


class ChunkedDecoder:
    """
    A body in the chunked transfer coding (RFC 9112 section 7.1): passes the
    chunks' data to C{dataCallback}, and what follows the last chunk and
    the trailer section to C{finishCallback}.  Whitespace is allowed before
    a chunk extension, and a size too large for 63 bits is an error, not a
    promise of data.  The trailer fields are read and dropped.

    @raise Rejection: From L{dataReceived}: the body is malformed (400).
    """

    def __init__(self, dataCallback: Callable[[bytes], None], finishCallback: Callable[[bytes], None]):
        self.dataCallback = dataCallback
        self.finishCallback = finishCallback
        #: What remains of the current chunk's data.
        self.length = 0
        self._state = self._chunkSize
        self._buffer = bytearray()
        #: Where to resume looking for the end of a line.
        self._start = 0
        self._trailerSize = 0

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer and self._state():
            pass

    def _chunkSize(self) -> bool:
        end = self._buffer.find(b"\r\n", self._start)
        if end == -1:
            if len(self._buffer) > _MAX_CHUNK_LINE:
                raise _malformed("chunk size line too long")
            self._start = max(len(self._buffer) - 1, 0)
            return False
        if end > _MAX_CHUNK_LINE:
            raise _malformed("chunk size line too long")
        size, _, extensions = bytes(self._buffer[:end]).partition(b";")
        size = size.rstrip(b" \t")
        if not _HEX.fullmatch(size) or len(size.lstrip(b"0")) > 16 or int(size, 16) > MAX_SIZE:
            raise _malformed("invalid chunk size")
        if extensions.translate(None, _CHUNK_EXTENSION_BYTES):
            raise _malformed("invalid chunk extension")
        self.length = int(size, 16)
        self._state = self._data if self.length else self._trailer
        del self._buffer[: end + 2]
        self._start = 0
        return True

    def _data(self) -> bool:
        if len(self._buffer) >= self.length:
            chunk = bytes(self._buffer[: self.length])
            del self._buffer[: self.length]
            self._state = self._dataEnd
        else:
            chunk = bytes(self._buffer)
            self.length -= len(chunk)
            del self._buffer[:]
        self.dataCallback(chunk)
        return True

    def _dataEnd(self) -> bool:
        if len(self._buffer) < 2:
            return False
        if not self._buffer.startswith(b"\r\n"):
            raise _malformed("chunk data not followed by CRLF")
        del self._buffer[:2]
        self._state = self._chunkSize
        return True

    def _trailer(self) -> bool:
        end = self._buffer.find(b"\r\n", self._start)
        if end == -1:
            # The shortest the trailer section can be, once its line ends.
            atLeast = self._trailerSize + len(self._buffer) + (1 if self._buffer.endswith(b"\r") else 2)
            if atLeast > _MAX_TRAILER:
                raise _malformed("trailer section too long")
            return False
        if end:
            del self._buffer[: end + 2]
            self._start = 0
            self._trailerSize += end + 2
            if self._trailerSize > _MAX_TRAILER:
                raise _malformed("trailer section too long")
            return True
        rest = bytes(self._buffer[2:])
        del self._buffer[:]
        self._state = self._finished
        self.finishCallback(rest)
        return False

    def _finished(self) -> bool:
        raise RuntimeError("chunked body data after its last chunk")


def _finished(data: bytes) -> None:
    raise RuntimeError("body data after its end")


def _malformed(reason: str) -> Rejection:
    return Rejection(BAD_REQUEST, reason)


#: Twisted's own bounds: on a chunk-size line, extensions included, and on
#: the trailer section.
_MAX_CHUNK_LINE = 1024
_MAX_TRAILER = 2**16
_HEX = re.compile(rb"[0-9A-Fa-f]+")
#: What a chunk extension may hold, as Twisted has it: HTAB, SP, the visible
#: characters but the backslash, and obs-text.
_CHUNK_EXTENSION_BYTES = b"\t" + bytes(range(0x20, 0x7F)).replace(b"\\", b"") + bytes(range(0x80, 0x100))


class HTTPDate:
    """
    The C{Date} of a response (RFC 9110 section 6.6.1): the current second,
    formatted once per second instead of once per response.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._formatted = b""

    def __call__(self) -> bytes:
        second = int(self._clock())
        if second != self._second:
            self._second = second
            self._formatted = datetimeToString(second)
        return self._formatted
