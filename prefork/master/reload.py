"""
C{--reload}: a new generation whenever a source file of the application
changes, for development.

The master never imports the application, so it learns which files to
watch from the processes that do: each template (or, without preloading,
each worker) reports the source files of the modules it imported from
outside the Python installation (L{prefork.child.appload.ownSources}).
C{--reload-extra-file} adds files of the operator's choosing.

On Linux the watcher asks the kernel (L{twisted.internet.inotify}), watching
each file's directory rather than the file, so that an editor that saves by
writing a new file and renaming it over the old one is seen too; elsewhere
it compares modification times once a second.  Saves that come in a burst
(an editor writing a file twice, a C{git checkout}) start one generation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.python.runtime import platform

#: How long after a change the watcher waits for the burst to end, in seconds.
DEBOUNCE = 0.3
#: How often the fallback compares modification times, in seconds.
POLL_INTERVAL = 1.0

#: A file's state as the poll sees it: modification time and size, or
#: L{None} while it does not exist.
Stamp = tuple[int, int] | None


def stamp(path: str) -> Stamp:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size)


class SourceWatcher(Service):
    """
    Calls C{changed} once for each burst of changes to the watched files.

    @ivar files: The watched files, by absolute path.
    """

    _log = Logger()

    def __init__(
        self,
        changed: Callable[[], None],
        paths: Iterable[str] = (),
        reactor: Any = None,
        useINotify: bool | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.changed = changed
        self.useINotify = platform.supportsINotify() if useINotify is None else useINotify
        self.files: dict[str, Stamp] = {}
        self._directories: set[str] = set()
        self._notifier: Any = None
        self._poll = LoopingCall(self._compare)
        self._poll.clock = reactor
        self._due: IDelayedCall | None = None
        for path in paths:
            self.watch(path)

    def startService(self) -> None:
        super().startService()
        if self.useINotify:
            from twisted.internet import inotify

            self._notifier = inotify.INotify(self.reactor)
            self._notifier.startReading()
            for directory in sorted(self._directories):
                self._watchDirectory(directory)
        else:
            self._poll.start(POLL_INTERVAL, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
        if self._poll.running:
            self._poll.stop()
        if self._due is not None and self._due.active():
            self._due.cancel()

    def watch(self, path: str) -> None:
        """
        Watch one more file (again: nothing new).
        """
        path = os.path.abspath(path)
        if path in self.files:
            return
        self.files[path] = stamp(path)
        self._log.info("Watching {path} for changes", path=path)
        directory = os.path.dirname(path)
        if directory not in self._directories:
            self._directories.add(directory)
            if self._notifier is not None:
                self._watchDirectory(directory)

    def _watchDirectory(self, directory: str) -> None:
        from twisted.internet import inotify

        mask = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_CREATE | inotify.IN_DELETE | inotify.IN_MODIFY
        try:
            self._notifier.watch(FilePath(directory), mask=mask, callbacks=[self._notified])
        except inotify.INotifyError as e:
            self._log.warn("Cannot watch {directory} for changes: {error}", directory=directory, error=e)

    def _notified(self, ignored: object, path: FilePath[Any], mask: int) -> None:
        name = os.fsdecode(path.path)
        if name in self.files:
            self._changedNow(name)

    def _compare(self) -> None:
        for path, before in list(self.files.items()):
            now = stamp(path)
            if now != before:
                self.files[path] = now
                self._changedNow(path)

    def _changedNow(self, path: str) -> None:
        if self._due is not None and self._due.active():
            self._due.reset(DEBOUNCE)
            return
        self._log.info("{path} changed: reloading", path=path)
        self._due = self.reactor.callLater(DEBOUNCE, self._fire)

    def _fire(self) -> None:
        self._due = None
        self.changed()
