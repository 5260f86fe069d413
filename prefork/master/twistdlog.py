"""
Reopening twistd's own log file, for logrotate.

Logging to a file, twistd installs a USR1 handler that rotates the file
itself (renaming it to C{.1}); after logrotate has moved the file away that
does nothing, and twistd goes on writing to the moved file.  The server
reopens the file instead.  twistd keeps its L{LogFile} nowhere but in that
handler, so it is found there: in the closure of C{rotateLog}, which
twistd's C{UnixAppLogger._getLogObserver} defines, registered in
L{prefork.twistedinternals.MIRRORS} so that the fence test tells when
Twisted changes it.
"""

from __future__ import annotations

from typing import Any

from twisted.python.logfile import BaseLogFile


def findLogFile(handler: Any) -> BaseLogFile | None:
    """
    The log file twistd's USR1 C{handler} rotates, if it is that handler.
    """
    for cell in getattr(handler, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:
            continue
        if isinstance(contents, BaseLogFile):
            return contents
    return None
