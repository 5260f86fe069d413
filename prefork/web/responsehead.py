"""
The status and header fields a WSGI application passes to
C{start_response} (PEP 3333), checked and encoded.

A header name must be a token (RFC 9110 section 5.1) and no value may hold
a line break or a NUL: either would let the application split the
response.  Most responses repeat the same few statuses and fields, so what
was found good is remembered, by what the application passed.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\0]")
_STATUS = re.compile(r"[0-9]{3} [^\r\n\0]*")

#: The fields that frame a message or manage its connection: hop-by-hop
#: (RFC 9110 section 7.6.1), which PEP 3333 forbids applications to set;
#: the server alone sets them.
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade")
)

#: What was checked, by what the application passed.  Bounded: an
#: application may put anything in a field.
_checkedStatuses: dict[str, bytes] = {}
_checkedHeaders: dict[tuple[str, str], tuple[str, bytes, bytes]] = {}
_MAX_CHECKED = 512


def checkedStatus(status: object) -> bytes:
    """
    A WSGI status, encoded.

    @raise ValueError: It is no str like C{"200 OK"}.
    """
    if not isinstance(status, str):
        raise ValueError(f"WSGI status must be a str like '200 OK', not {status!r}")
    encoded = _checkedStatuses.get(status)
    if encoded is None:
        if not _STATUS.fullmatch(status):
            raise ValueError(f"WSGI status must be a str like '200 OK', not {status!r}")
        encoded = status.encode("latin-1")
        if len(_checkedStatuses) < _MAX_CHECKED:
            _checkedStatuses[status] = encoded
    return encoded


def checkedHeader(header: object) -> tuple[str, bytes, bytes]:
    """
    A WSGI header field as the name in lower case, the name and the value,
    encoded.

    @raise TypeError: It is no C{(str, str)} tuple.
    @raise ValueError: Its name is no token, its value has a line break or
        a NUL, or it is a C{Content-Length} that is not a number.
    """
    if not (isinstance(header, tuple) and len(header) == 2 and all(isinstance(x, str) for x in header)):
        raise TypeError(f"WSGI header must be a (str, str) tuple, not {header!r}")
    checked = _checkedHeaders.get(header)
    if checked is None:
        name, value = header
        lower = name.lower()
        if (
            not _TOKEN.fullmatch(name)
            or _BAD_VALUE.search(value)
            or (lower == "content-length" and not value.isdigit())
        ):
            raise ValueError(f"invalid WSGI header {header!r}")
        checked = (lower, name.encode("latin-1"), value.encode("latin-1"))
        if len(_checkedHeaders) < _MAX_CHECKED:
            _checkedHeaders[header] = checked
    return checked
