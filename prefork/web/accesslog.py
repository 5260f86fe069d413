"""
The access log: one line per answered request, written by every worker to
the same file.

Lines are written in few C{write(2)}s to a descriptor opened with
C{O_APPEND}, each ending on a line boundary, so lines from concurrent
workers never interleave and none overwrites another; on a pipe (standard
output) no write passes C{PIPE_BUF}, up to which the kernel keeps a write
whole.  On C{SIGUSR1} each worker reopens the file by its name, which is
what logrotate's default (move the file, then signal) needs.

Logging stays off the request's path: as a request ends, its log only
keeps it; the lines are formatted and written two turns of the event loop
later, after the reactor has sent the responses of the turn they ended in,
in one write for all of them.

The format is either C{json} (L{JSON_FIELDS}, one object a line, that
C{json.loads} reads whatever bytes a client sent), or a C{str.format}
template over L{FIELDS} and the header fields C{{in:NAME}} (a request
header) and C{{out:NAME}} (a response header); the default is the combined
log format of Apache and nginx.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import string
import time
from collections.abc import Callable
from itertools import count
from typing import Any

from twisted.logger import Logger

from prefork.web.shapes import LoggedRequest

_log = Logger()

#: The fields a text format may use, and what each one is.
FIELDS = {
    "remote_addr": "the client's address",
    "time": "when the response ended, as [27/Nov/2026:13:21:22 +0000]",
    "time_iso": "when the response ended, as 2026-11-27T13:21:22.123+00:00",
    "request": "the request line: method, target and protocol",
    "method": "the request method",
    "path": "the request target without its query",
    "query": "the query string, without the '?' (empty when there is none)",
    "protocol": "the HTTP version, as HTTP/1.1",
    "scheme": "http, or https when the client used TLS (or a trusted proxy says it did)",
    "http_host": "the Host header, '-' when absent",
    "status": "the response status code",
    "bytes": "body bytes sent, '-' for none",
    "referer": "the Referer header, '-' when absent",
    "user_agent": "the User-Agent header, '-' when absent",
    "request_time_us": "from the request being read to its response ending, in microseconds",
    "pid": "the worker's process id",
    "generation": "the worker's generation",
    "request_id": "the X-Request-Id header the client sent, else one made up, unique to this request",
}

#: The header fields: C{{in:x-request-id}}, C{{out:content-type}}.
HEADER_FIELDS = {"in": "a request header", "out": "a response header"}

#: The keys of a C{json} line.
JSON_FIELDS = (
    "time", "remote_addr", "method", "path", "query", "protocol", "scheme", "host", "status", "bytes_sent",
    "duration_us", "user_agent", "referer", "pid", "generation", "request_id",
)

JSON = "json"
COMBINED = '{remote_addr} - - {time} "{request}" {status} {bytes} "{referer}" "{user_agent}"'

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: The most a write to a pipe may carry and still be written whole.
_PIPE_BUF = 4096
#: The most one write to a file carries.
_FILE_CHUNK = 65536


class Ended:
    """
    What a request leaves for its log line as it ends.
    """

    __slots__ = ("duration", "ended", "request", "scheme")

    def __init__(self, request: LoggedRequest, duration: float, ended: float, scheme: str) -> None:
        self.request = request
        self.duration = duration
        self.ended = ended
        self.scheme = scheme


def escape(value: bytes) -> str:
    """
    C{value} safe inside a double-quoted log field: quotes, backslashes and
    anything not printable ASCII escaped.
    """
    out = []
    for byte in value:
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def text(value: bytes) -> str:
    """
    C{value} as a JSON string takes it: UTF-8, with any byte that is not
    shown as C{\\xNN}.
    """
    return value.decode("utf-8", "backslashreplace")


def logTime(seconds: float) -> str:
    t = time.gmtime(seconds)
    return f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"


def isoTime(seconds: float) -> str:
    t = time.gmtime(seconds)
    milliseconds = int(seconds * 1000) % 1000
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        f".{milliseconds:03d}+00:00"
    )


def clientAddress(request: LoggedRequest) -> str | None:
    """
    The client as the application was told of it: by a trusted proxy, or
    the connection's peer (L{None} on a UNIX socket).
    """
    return request.preforkClient or getattr(request.getClientAddress(), "host", None)


def _header(headers: Any, name: bytes) -> bytes | None:
    values = headers.getRawHeaders(name)
    return b", ".join(values) if values else None


class _Line:
    """
    The values of one line's fields, worked out as a format asks for them.
    """

    def __init__(self, log: AccessLog, entry: Ended) -> None:
        self.log = log
        self.entry = entry
        self.request = entry.request

    def _remote_addr(self) -> str:
        return clientAddress(self.request) or "-"

    def _time(self) -> str:
        return logTime(self.entry.ended)

    def _time_iso(self) -> str:
        return isoTime(self.entry.ended)

    def _request(self) -> str:
        request = self.request
        return escape(b"%s %s %s" % (request.method, request.uri, request.clientproto))

    def _method(self) -> str:
        return escape(self.request.method)

    def _path(self) -> str:
        return escape(self.request.uri.partition(b"?")[0])

    def _query(self) -> str:
        return escape(self.request.uri.partition(b"?")[2])

    def _protocol(self) -> str:
        return escape(self.request.clientproto)

    def _scheme(self) -> str:
        return self.entry.scheme

    def _http_host(self) -> str:
        return escape(self.request.getHeader(b"host") or b"-")

    def _status(self) -> int:
        return self.request.code

    def _bytes(self) -> int | str:
        return self.request.sentLength or "-"

    def _referer(self) -> str:
        return escape(self.request.getHeader(b"referer") or b"-")

    def _user_agent(self) -> str:
        return escape(self.request.getHeader(b"user-agent") or b"-")

    def _request_time_us(self) -> int:
        return int(self.entry.duration * 1_000_000)

    def _pid(self) -> int:
        return self.log.pid

    def _generation(self) -> int:
        return self.log.generation

    def _request_id(self) -> str:
        return escape(self.requestID())

    def requestID(self) -> bytes:
        sent = self.request.getHeader(b"x-request-id")
        return sent if sent else self.log.newRequestID()

    def header(self, direction: str, name: bytes) -> str:
        headers = self.request.requestHeaders if direction == "in" else self.request.responseHeaders
        value = _header(headers, name)
        return "-" if value is None else escape(value)

    def json(self) -> str:
        request = self.request
        path, _, query = request.uri.partition(b"?")
        agent, referer, host = (request.getHeader(name) for name in (b"user-agent", b"referer", b"host"))
        return json.dumps(
            {
                "time": isoTime(self.entry.ended),
                "remote_addr": clientAddress(request),
                "method": text(request.method),
                "path": text(path),
                "query": text(query),
                "protocol": text(request.clientproto),
                "scheme": self.entry.scheme,
                "host": None if host is None else text(host),
                "status": request.code,
                "bytes_sent": request.sentLength,
                "duration_us": int(self.entry.duration * 1_000_000),
                "user_agent": None if agent is None else text(agent),
                "referer": None if referer is None else text(referer),
                "pid": self.log.pid,
                "generation": self.log.generation,
                "request_id": text(self.requestID()),
            },
            separators=(",", ":"),
        )


#: A compiled text format: its literal texts, each followed by the field
#: to put after it (if any) as C{(getter, conversion, spec)}.
_Part = tuple[str, Callable[[_Line], Any] | None, str | None, str]
_CONVERSIONS: dict[str, Callable[[Any], str]] = {"s": str, "r": repr, "a": ascii}


def compileFormat(template: str) -> list[_Part]:
    """
    The parts of a text format.

    @raise ValueError: C{template} is not a format over L{FIELDS} and
        L{HEADER_FIELDS}.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"is not a valid format: {e}") from None
    parts: list[_Part] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None, None, ""))
        elif name in HEADER_FIELDS:
            if not spec or not _HEADER_NAME.fullmatch(spec) or conversion:
                raise ValueError(f"has {{{name}:{spec}}}: write a header field as {{{name}:header-name}}")
            parts.append((literal, _headerGetter(name, spec.lower().encode("ascii")), None, ""))
        elif name in FIELDS:
            if conversion is not None and conversion not in _CONVERSIONS:
                raise ValueError(f"has an unknown conversion !{conversion}")
            parts.append((literal, _fieldGetter(name), conversion, spec or ""))
        else:
            raise ValueError(
                f"has an unknown field {{{name}}}; the fields are {', '.join(FIELDS)}, in:NAME and out:NAME"
            )
    return parts


def _headerGetter(direction: str, name: bytes) -> Callable[[_Line], str]:
    return lambda line: line.header(direction, name)


def _fieldGetter(name: str) -> Callable[[_Line], Any]:
    getter: Callable[[_Line], Any] = getattr(_Line, "_" + name)
    return getter


def render(parts: list[_Part], line: _Line) -> str:
    out = []
    for literal, getter, conversion, spec in parts:
        out.append(literal)
        if getter is not None:
            value = getter(line)
            if conversion is not None:
                value = _CONVERSIONS[conversion](value)
            out.append(format(value, spec) if spec else str(value))
    return "".join(out)


def checkFormat(template: str) -> None:
    """
    @raise ValueError: C{template} is neither C{json} nor a text format over
        L{FIELDS} and L{HEADER_FIELDS}, or a field's format specification
        does not suit its value.
    """
    if template == JSON:
        return
    compileFormat(template)
    # A specification that fails on a real value (say {remote_addr:d}) must
    # fail now, not in every worker for every request.
    numbers = {"status": 200, "request_time_us": 0, "pid": 1, "generation": 1}
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name in FIELDS and spec:
            value: Any = numbers.get(name, "text")
            if conversion:
                value = _CONVERSIONS[conversion](value)
            try:
                format(value, spec)
            except (ValueError, TypeError) as e:
                raise ValueError(f"has {{{name}:{spec}}}, which does not format its value: {e}") from None


class AccessLog:
    """
    An access log file shared by every worker, or standard output for
    C{"-"}.

    @param clock: Where to schedule the writing of lines (the reactor);
        L{None} writes each line as its request ends.
    """

    def __init__(self, path: str, template: str = COMBINED, generation: int = 0, clock: Any = None) -> None:
        self.path = path
        self.template = template
        self.generation = generation
        self.clock = clock
        self.pid = os.getpid()
        self.fd = 1 if path == "-" else self._open()
        self._pipe = _isPipe(self.fd)
        self._failing = False
        self._parts = None if template == JSON else compileFormat(template)
        self._pending: list[Ended] = []
        self._scheduled: Any = None
        self._idPrefix = secrets.token_hex(6)
        self._ids = count(1)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def newRequestID(self) -> bytes:
        """
        An id no other request of any worker gets: this worker's random
        prefix and a count.
        """
        return f"{self._idPrefix}-{next(self._ids)}".encode("ascii")

    def write(self, request: LoggedRequest, duration: float) -> None:
        """
        Log C{request}, which has just ended after C{duration} seconds.
        """
        self._pending.append(Ended(request, duration, time.time(), "https" if _secure(request) else "http"))
        if self.clock is None:
            self.flush()
        elif self._scheduled is None:
            self._scheduled = self.clock.callLater(0, self._afterResponses)

    def _afterResponses(self) -> None:
        # Calls scheduled now run on the next turn of the loop, after this
        # turn has written the responses out.
        self._scheduled = self.clock.callLater(0, self.flush)

    def format(self, entry: Ended) -> str:
        line = _Line(self, entry)
        return line.json() if self._parts is None else render(self._parts, line)

    def flush(self) -> None:
        """
        Write every pending line now.
        """
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        lines = [(self.format(entry) + "\n").encode("utf-8", "replace") for entry in pending]
        limit = _PIPE_BUF if self._pipe else _FILE_CHUNK
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > limit:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError as e:
            # A full disk must not cost the request; say so once.
            if not self._failing:
                self._failing = True
                _log.error("Cannot write the access log {path}: {error}", path=self.path, error=e)
        else:
            self._failing = False

    def reopen(self) -> None:
        """
        Open the file by its name again: after logrotate moved it, lines go
        to a new file (those already pending, to the old one).
        """
        self.flush()
        if self.path == "-":
            return
        old, self.fd = self.fd, self._open()
        self._pipe = _isPipe(self.fd)
        os.close(old)

    def close(self) -> None:
        self.flush()
        if self.path != "-":
            os.close(self.fd)


def _isPipe(fd: int) -> bool:
    """
    Whether C{fd} is anything but a regular file, to which a long write may
    not arrive whole.
    """
    try:
        return not stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return True


def _secure(request: LoggedRequest) -> bool:
    forwarded = request.preforkScheme
    if forwarded is not None:
        return forwarded == "https"
    return bool(request.isSecure())
