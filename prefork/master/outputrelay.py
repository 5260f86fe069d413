"""
The template's and the workers' output, written into the master's log.

Every line a worker writes on its standard output or error reaches the
master through its generation's pipe.  Turning each into a log event costs
the master tens of microseconds a line (a dictionary, the formatting of
its time and system, a write); at a few thousand lines a second that makes
the master's one core the ceiling of the whole server.  Where twistd logs
as text to a file or to standard output (its default), the lines are
formatted with twistd's own formatter once per batch instead, and written
in one write, through the same file object as every other event, so that
size rotation, C{USR1} and the order of lines stay twistd's.  Reading a
trickle of lines is paced (L{BATCH_INTERVAL}), so that lines arriving
together go out together; a flood is read as fast as it comes.  Any other
destination (syslog, JSON, a custom observer) gets one event a line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import FileLogObserver, ILogObserver, Logger, LogLevel, globalLogPublisher

from prefork.lineframing import Line
from prefork.twistedinternals import observersOf, outputFileOf

#: The longest a worker's line waits in its pipe for the next ones, in
#: seconds.
BATCH_INTERVAL = 0.005
#: A read shorter than this found the pipe drained: the output trickles.
TRICKLE = 4096

#: What stands for a line when twistd's formatter shows where lines go.
_PLACEHOLDER = "\x00prefork-line\x00"

_log = Logger()


class TextLogTarget:
    """
    Where lines are written as twistd's text file observer writes events,
    with the prefix and suffix it gives a line of this system at a time.

    @param observer: twistd's observer.
    @param namespace: The log namespace the lines are attributed to.
    """

    def __init__(self, observer: FileLogObserver, namespace: str, clock: Callable[[], float] = time.time) -> None:
        self._observer = observer
        self._file = outputFileOf(observer)
        self._namespace = namespace
        self._clock = clock
        self._second = -1
        self._around: tuple[str, str] = ("", "")

    @classmethod
    def find(cls, namespace: str, observers: Sequence[ILogObserver] | None = None) -> TextLogTarget | None:
        """
        twistd's text observer when it is the only place events go, else
        L{None}.
        """
        if observers is None:
            observers = observersOf(globalLogPublisher)
        if len(observers) != 1 or not isinstance(observers[0], FileLogObserver):
            return None
        target = cls(observers[0], namespace)
        return target if target._formats() else None

    def _formats(self) -> bool:
        """
        Whether the observer writes a line as text around it, unchanged.
        """
        try:
            self._aroundAt(self._clock())
        except ValueError:
            return False
        return True

    def _aroundAt(self, now: float) -> tuple[str, str]:
        second = int(now)
        if second != self._second:
            text = self._observer.formatEvent(
                {
                    "log_format": "{line}",
                    "line": _PLACEHOLDER,
                    "log_namespace": self._namespace,
                    "log_level": LogLevel.info,
                    "log_time": float(second),
                }
            )
            if text is None or text.count(_PLACEHOLDER) != 1 or "\n" in text.partition(_PLACEHOLDER)[0]:
                raise ValueError("not a text format")
            before, _, after = text.partition(_PLACEHOLDER)
            self._around, self._second = (before, after), second
        return self._around

    def write(self, lines: Sequence[str]) -> None:
        before, after = self._aroundAt(self._clock())
        self._file.write("".join([before + line + after for line in lines]))
        self._file.flush()


class OutputRelay:
    """
    Relays the lines of a generation's output pipes into the master's log.

    @param pause: Called with a pipe's descriptor to stop reading it.
    @param resume: Called with it to read it again.
    @param callLater: The reactor's.
    """

    def __init__(
        self,
        log: Logger,
        pause: Callable[[int], None],
        resume: Callable[[int], None],
        callLater: Callable[..., Any],
        target: TextLogTarget | None = None,
    ) -> None:
        self._log = log
        self._pause = pause
        self._resume = resume
        self._callLater = callLater
        self._target = target
        self._looked = target is not None
        self._paused: set[int] = set()

    def received(self, childFD: int, size: int, lines: Sequence[Line]) -> None:
        """
        C{lines} were cut from a read of C{size} bytes from C{childFD}.
        """
        if not self._looked:
            # Once logging has begun: twistd sets up its observers after
            # the service is made.
            self._looked = True
            self._target = TextLogTarget.find(self._log.namespace)
        if lines:
            if self._target is None:
                for line in lines:
                    self._log.info("{line}", line=line.text())
            else:
                self._target.write([line.text() for line in lines])
        if size < TRICKLE and childFD not in self._paused:
            # Let the next lines gather: one write for many.
            self._paused.add(childFD)
            self._pause(childFD)
            self._callLater(BATCH_INTERVAL, self._readAgain, childFD)

    def _readAgain(self, childFD: int) -> None:
        self._paused.discard(childFD)
        self._resume(childFD)

    def flush(self, lines: Sequence[Line]) -> None:
        """
        The last lines of a pipe that closed.
        """
        self.received(-1, TRICKLE, lines)
