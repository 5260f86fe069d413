"""
Process titles, so that C{ps} and C{top} tell the master, the templates and
the workers apart::

    prefork master [myapp.wsgi:application] gen 3 workers 10
    prefork template [myapp.wsgi:application] gen 3
    prefork worker [myapp.wsgi:application] gen 3 57/100

Titles need the C{setproctitle} package, a dependency; where it could not
be installed (a platform it has no wheel for, say), setting a title does
nothing and everything else works the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

_getproctitle: Callable[[], str] | None
_setproctitle: Callable[[str], None] | None
try:
    from setproctitle import getproctitle as _getproctitle
    from setproctitle import setproctitle as _setproctitle
except ImportError:
    _getproctitle = _setproctitle = None

#: Whether titles can be set at all.
AVAILABLE = _setproctitle is not None


def setTitle(title: str) -> None:
    if _setproctitle is not None:
        _setproctitle(title)


def prepare() -> None:
    """
    Get ready to set titles before this process changes its environment:
    setproctitle claims the memory of the environment it started with, and
    cannot once that is rewritten.
    """
    if _getproctitle is not None:
        _getproctitle()


def masterTitle(app: str, generation: int, workers: int) -> str:
    return f"prefork master [{app}] gen {generation} workers {workers}"


def templateTitle(app: str, generation: int) -> str:
    return f"prefork template [{app}] gen {generation}"


def workerTitle(app: str, generation: int, served: int, limit: int, spare: bool = False) -> str:
    if spare:
        return f"prefork worker [{app}] gen {generation} spare"
    return f"prefork worker [{app}] gen {generation} {served}/{limit or '-'}"


class TitleService(Service):
    """
    Keeps a process's title up to date: every C{interval} seconds it asks
    C{describe} for the title and sets it when it changed.
    """

    def __init__(self, describe: Callable[[], str], interval: float = 1.0, clock: Any = None) -> None:
        self.describe = describe
        self._title = ""
        self._loop = LoopingCall(self.update)
        if clock is not None:
            self._loop.clock = clock
        self._interval = interval

    def update(self) -> None:
        title = self.describe()
        if title != self._title:
            self._title = title
            setTitle(title)

    def startService(self) -> None:
        super().startService()
        if AVAILABLE:
            self._loop.start(self._interval)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
