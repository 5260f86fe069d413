"""
The head of an HTTP/1.1 request (RFC 9112 sections 2 to 5): finding its end
in what a connection has received, and splitting it into a request line and
header fields, with the limits of L{prefork.web.limits} applied before
anything is buffered past them.

A head is read whole (a request line, field lines, an empty line, each
ended by CRLF) and parsed in one pass over bytes; heads are short, and
splitting them with C{bytes} methods costs less than feeding a parser
piece by piece.  What the fields mean (Host, framing, persistence) is
L{prefork.web.http}'s business.
"""

from __future__ import annotations

import re

from twisted.web.http import BAD_REQUEST

from prefork.web.http import Rejection
from prefork.web.limits import RequestLimits

REQUEST_URI_TOO_LONG = 414
REQUEST_HEADER_FIELDS_TOO_LARGE = 431

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
#: What a field value may not hold (RFC 9110 section 5.5).
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_END = b"\r\n\r\n"


class Head:
    """
    A parsed request head.

    @ivar method: The method, a token.
    @ivar target: The request-target as sent.
    @ivar version: C{HTTP/1.0} or C{HTTP/1.1}.
    @ivar fields: Each field's values in the order received, by its name in
        lower case.
    """

    __slots__ = ("fields", "method", "target", "version")

    def __init__(self, method: bytes, target: bytes, version: bytes, fields: dict[bytes, list[bytes]]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields


def findHead(buffer: bytes, limits: RequestLimits) -> int:
    """
    Where the head at the start of C{buffer} ends (the index just past its
    empty line), or -1 when it is not all in yet.

    @raise Rejection: What is in already is longer than the limits allow
        (414 in the request line, 431 in a field line), or the head starts
        with more than one empty line.
    """
    end = buffer.find(_END)
    if end != -1:
        return end + 4
    # Not all in: what is in may already be refused, without waiting for
    # the rest (a client that sent garbage may wait for an answer).
    start = 2 if buffer.startswith(b"\r\n") else 0
    lineEnd = buffer.find(b"\r\n", start)
    if lineEnd == -1:
        if len(buffer) - start > limits.requestLine:
            raise Rejection(REQUEST_URI_TOO_LONG, "request line too long")
        return -1
    _requestLine(buffer[start:lineEnd], limits)
    lineStart = buffer.rfind(b"\r\n") + 2
    if len(buffer) - lineStart > limits.fieldSize or len(buffer) > limits.headSize:
        raise Rejection(REQUEST_HEADER_FIELDS_TOO_LARGE, "header field too long")
    return -1


def loggedParts(line: bytes) -> tuple[bytes, bytes, bytes]:
    """
    The method, target and version of a request line that may be malformed
    or cut short, as the access log names a refused request: the whole line
    as its target when it does not split in three.
    """
    parts = line.split(b" ")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return b"-", line, b"-"


def parseHead(head: bytes, limits: RequestLimits) -> Head:
    """
    Parse a whole head, its final empty line included (as L{findHead}
    delimited it).  One empty line before the request line is ignored (RFC
    9112 section 2.2); a field line folded onto the next (obs-fold) is
    joined to it with a space (section 5.2).

    @raise Rejection: The head is malformed (400) or over the limits (414,
        431).
    """
    lines = head[:-4].split(b"\r\n")
    if not lines[0]:
        del lines[0]
    method, target, version = _requestLine(lines[0] if lines else b"", limits)
    if len(lines) > limits.fields + 1:
        raise Rejection(REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields")
    return Head(method, target, version, _parseFields(lines, limits.fieldSize))


def _requestLine(line: bytes, limits: RequestLimits) -> list[bytes]:
    """
    The method, target and version of a request line.

    @raise Rejection: It is too long (414) or malformed (400).
    """
    if len(line) > limits.requestLine:
        raise Rejection(REQUEST_URI_TOO_LONG, "request line too long")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise Rejection(BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not target or not _VERSION.fullmatch(version):
        raise Rejection(BAD_REQUEST, "malformed request line")
    return parts


def _parseFields(lines: list[bytes], fieldSize: int) -> dict[bytes, list[bytes]]:
    fields: dict[bytes, list[bytes]] = {}
    last: list[bytes] | None = None
    for line in lines[1:]:
        if len(line) > fieldSize:
            raise Rejection(REQUEST_HEADER_FIELDS_TOO_LARGE, "header field too long")
        if line[:1] in (b" ", b"\t"):
            if last is None:
                raise Rejection(BAD_REQUEST, "folded line before any field")
            folded = last[-1] + b" " + line.strip(b" \t")
            if _BAD_VALUE.search(folded):
                raise Rejection(BAD_REQUEST, "invalid character in header field")
            if len(folded) > fieldSize:
                raise Rejection(REQUEST_HEADER_FIELDS_TOO_LARGE, "header field too long")
            last[-1] = folded
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise Rejection(BAD_REQUEST, "malformed header field")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise Rejection(BAD_REQUEST, "invalid character in header field")
        last = fields.setdefault(name.lower(), [])
        last.append(value)
    return fields
