"""
The server hooks of the request path, C{pre_request} and C{post_request}:
called in the thread that runs the application, so that what they keep in
thread-local state is the request's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

_log = Logger()

#: What the request hooks are told of a request whose application raised
#: before its response started.
FAILED_STATUS = "500 Internal Server Error"

#: C{pre_request}, called with the request's environ.
BeforeHook = Callable[[dict[str, Any]], None]
#: C{post_request}, called with the environ, the status and the seconds
#: the request took.
AfterHook = Callable[[dict[str, Any], str, float], None]


class RequestHooks:
    """
    Calls made around each request in the thread that runs the application:
    C{before(environ)} before it, C{after(environ, status, elapsed)} once
    the response is done.  What they raise is logged, and the request goes
    on as if they had not been called.
    """

    def __init__(self, before: BeforeHook | None, after: AfterHook | None) -> None:
        self.before = before
        self.after = after

    @classmethod
    def of(cls, before: BeforeHook | None, after: AfterHook | None) -> RequestHooks | None:
        """
        The hooks, or L{None} when there are none to call.
        """
        return None if before is None and after is None else cls(before, after)

    def started(self, environ: dict[str, Any]) -> float:
        if self.before is not None:
            try:
                self.before(environ)
            except BaseException:
                _log.failure("Hook pre_request raised")
        return time.perf_counter()

    def finished(self, environ: dict[str, Any], status: str, started: float) -> None:
        if self.after is not None:
            try:
                self.after(environ, status, time.perf_counter() - started)
            except BaseException:
                _log.failure("Hook post_request raised")
