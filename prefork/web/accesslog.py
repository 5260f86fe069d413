"""
The access log: one line per answered request, written by every worker to
the same file.

Each line is one C{write(2)} to a descriptor opened with C{O_APPEND}, so
lines from concurrent workers never interleave and none overwrites another.
On C{SIGUSR1} each worker reopens the file by its name, which is what
logrotate's default (move the file, then signal) needs.

The format is a C{str.format} template over L{FIELDS}; the default is the
combined log format of Apache and nginx.
"""

from __future__ import annotations

import os
import string
import time
from typing import Any

from twisted.logger import Logger
from twisted.web.server import Request

_log = Logger()

#: The fields a format may use, and what each one is.
FIELDS = {
    "remote_addr": "the client's address",
    "time": "when the response ended, as [27/Nov/2026:13:21:22 +0000]",
    "request": "the request line: method, target and protocol",
    "method": "the request method",
    "path": "the request target without its query",
    "query": "the query string, without the '?' (empty when there is none)",
    "protocol": "the HTTP version, as HTTP/1.1",
    "status": "the response status code",
    "bytes": "body bytes sent, '-' for none",
    "referer": "the Referer header, '-' when absent",
    "user_agent": "the User-Agent header, '-' when absent",
    "request_time_us": "from the request being read to its response ending, in microseconds",
    "pid": "the worker's process id",
}

COMBINED = '{remote_addr} - - {time} "{request}" {status} {bytes} "{referer}" "{user_agent}"'

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def checkFormat(template: str) -> None:
    """
    @raise ValueError: C{template} is not a format over L{FIELDS}.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"is not a valid format: {e}") from None
    for _, name, _, _ in parsed:
        if name is not None and name not in FIELDS:
            raise ValueError(f"has an unknown field {{{name}}}; the fields are {', '.join(FIELDS)}")


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


def logTime(seconds: float) -> str:
    t = time.gmtime(seconds)
    return f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]"


def fields(request: Request, duration: float, pid: int) -> dict[str, Any]:
    """
    The values of L{FIELDS} for C{request}, answered in C{duration} seconds.
    """
    path, _, query = request.uri.partition(b"?")
    address = request.getClientAddress()
    return {
        "remote_addr": getattr(address, "host", None) or "-",
        "time": logTime(time.time()),
        "request": escape(b"%s %s %s" % (request.method, request.uri, request.clientproto)),
        "method": escape(request.method),
        "path": escape(path),
        "query": escape(query),
        "protocol": escape(request.clientproto),
        "status": request.code,
        "bytes": request.sentLength or "-",
        "referer": escape(request.getHeader(b"referer") or b"-"),
        "user_agent": escape(request.getHeader(b"user-agent") or b"-"),
        "request_time_us": int(duration * 1_000_000),
        "pid": pid,
    }


class AccessLog:
    """
    An access log file shared by every worker, or standard output for
    C{"-"}.
    """

    def __init__(self, path: str, template: str = COMBINED) -> None:
        self.path = path
        self.template = template
        self.pid = os.getpid()
        self.fd = 1 if path == "-" else self._open()
        self._failing = False

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, request: Request, duration: float) -> None:
        line = self.template.format_map(fields(request, duration, self.pid)) + "\n"
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
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
        to a new file.
        """
        if self.path == "-":
            return
        old, self.fd = self.fd, self._open()
        os.close(old)

    def close(self) -> None:
        if self.path != "-":
            os.close(self.fd)
