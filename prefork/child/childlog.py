"""
How the template and the workers log: each event as lines on standard error,
a pipe that the master reads and logs, prefixed with who wrote them.
"""

from __future__ import annotations

import os

from twisted.logger import ILogObserver, LogEvent, LogLevel, eventAsText, globalLogBeginner, globalLogPublisher
from zope.interface import implementer

from prefork.twistedinternals import observersOf

#: The observer this process logs to, once it has one.
_current: ILogObserver | None = None


def _isTwistedRoutine(event: LogEvent) -> bool:
    namespace: str = event.get("log_namespace", "")
    return namespace.startswith("twisted.") or namespace == "log_legacy"


@implementer(ILogObserver)
class StderrObserver:
    """
    Writes each event to descriptor 2 in one C{write}, so that lines from
    processes sharing the pipe do not mix.
    """

    def __init__(self, who: str) -> None:
        self.who = who

    def __call__(self, event: LogEvent) -> None:
        # Twisted's own chatter (ports opening, the loop ending) repeats with
        # every recycled worker; keep its warnings and the application's log.
        if event.get("log_level", LogLevel.info) < LogLevel.warn and _isTwistedRoutine(event):
            return
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        lines = "".join(f"[{self.who}] {line}\n" for line in text.splitlines())
        try:
            os.write(2, lines.encode("utf-8", "replace"))
        except OSError:
            pass


def logToStderr(who: str) -> None:
    """
    Send this process's log events to its standard error, labelled C{who}
    (C{"worker 1234"}), instead of wherever they went before.
    """
    global _current
    observer = StderrObserver(who)
    if _current is None:
        # Flushes (and ends) what Twisted buffers until logging begins.
        globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    else:
        # Logging began in a parent; beginning again would only warn.
        globalLogPublisher.removeObserver(_current)
        globalLogPublisher.addObserver(observer)
    _current = observer


def takeOverFromParent(who: str) -> list[ILogObserver]:
    """
    In a process forked from one whose logging had begun (the master), drop
    the parent's observers and log to standard error instead.

    @return: The parent's observers, which the caller must keep alive (see
        L{prefork.master.forkedtemplate}).
    """
    global _current
    inherited = observersOf(globalLogPublisher)
    for observer in inherited:
        globalLogPublisher.removeObserver(observer)
    observer = StderrObserver(who)
    globalLogPublisher.addObserver(observer)
    _current = observer
    return inherited
