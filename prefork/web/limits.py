"""
How much a client may send and how long it may take: the limits and timeouts
a worker enforces on every connection, before a request reaches the
application.

The defaults follow gunicorn's (request line, header fields, body) and keep
the timeouts short enough that idle and slow clients cost a worker nothing
but a file descriptor for a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Longest request line, in bytes: above it, 414.
DEFAULT_REQUEST_LINE = 4094
#: Most header fields in one request: above it, 431.
DEFAULT_REQUEST_FIELDS = 100
#: Longest header field line, in bytes: above it, 431.
DEFAULT_REQUEST_FIELD_SIZE = 8190
#: Largest request body, in bytes; 0 means no limit (as gunicorn).
DEFAULT_REQUEST_BODY = 0
#: Seconds a client has to send a whole request head.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection is kept open.
DEFAULT_KEEPALIVE_TIMEOUT = 5.0


@dataclass(frozen=True)
class RequestLimits:
    """
    The limits a connection enforces.

    @ivar requestLine: The longest request line, in bytes.
    @ivar fields: The most header fields in a request.
    @ivar fieldSize: The longest header field line, in bytes.
    @ivar body: The largest request body, in bytes; 0 means no limit.
    @ivar headerTimeout: Seconds a client has to send its request head, from
        its first byte (or from the connection's start); also the longest
        pause allowed while a request body is received.
    @ivar keepaliveTimeout: Seconds a connection may sit idle between
        requests.
    """

    requestLine: int = DEFAULT_REQUEST_LINE
    fields: int = DEFAULT_REQUEST_FIELDS
    fieldSize: int = DEFAULT_REQUEST_FIELD_SIZE
    body: int = DEFAULT_REQUEST_BODY
    headerTimeout: float = DEFAULT_HEADER_TIMEOUT
    keepaliveTimeout: float = DEFAULT_KEEPALIVE_TIMEOUT

    @property
    def longestLine(self) -> int:
        """
        The longest line the connection needs to buffer before it can tell
        whether the line is too long.
        """
        return max(self.requestLine, self.fieldSize)

    @property
    def headSize(self) -> int:
        """
        The most bytes a request head within these limits can take.
        """
        return self.requestLine + (self.fields + 1) * (self.fieldSize + 2)

    def bodyTooLarge(self, size: int) -> bool:
        return self.body != 0 and size > self.body


#: The limits of a connection given none of its own.
DEFAULT_LIMITS = RequestLimits()
