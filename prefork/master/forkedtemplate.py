"""
The first generation's template, forked from the master instead of started
as a new Python.

A new Python that imports Twisted and its web stack needs a quarter of a
second before it can fork its first worker; when twistd starts the master's
services it has imported most of that already, so a fork of the master is
ready in a few milliseconds (this halves the time from C{twistd} to the
first response).  Later generations are new processes: that is what lets
HUP load new code.

The fork happens only before the master's reactor runs, with one thread, so
that the child inherits no running loop, signal handler or connection; and
only when process titles can be set, since without them C{ps} would show
the template and its workers as copies of the master.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import Any, NoReturn

from twisted.internet.protocol import ProcessProtocol

from prefork import proctitle
from prefork.child import childlog
from prefork.messages import TemplateSetup
from prefork.proctitle import AVAILABLE as TITLES
from prefork.twistedinternals import InPlaceProcess, detachSpareDescriptor

#: What the child took over from the master and must never free: their
#: descriptors were closed when the fork set up the child's descriptors, and
#: an object freed now would close whatever has since got the same number.
_detached: list[Any] = []


def canFork(reactor: Any) -> bool:
    """
    Whether the master is still in a state a template can be forked from.
    """
    return TITLES and not getattr(reactor, "running", True) and threading.active_count() == 1


class ForkedTemplate(InPlaceProcess):
    """
    A child process that, after Twisted has set up its descriptors, becomes
    the template in place of C{exec}ing a new Python.  Its configuration is
    in its memory already: nothing comes on its command pipe before the
    master's first command.
    """

    def __init__(self, setup: TemplateSetup, *args: Any, **kwargs: Any) -> None:
        # Set before Process forks, which it does as it is made.
        self.setup = setup
        super().__init__(*args, **kwargs)

    def becomeChild(self, args: list[str], environment: dict[str, str]) -> NoReturn:
        _forgetMaster(environment, args)
        from prefork.child import template

        template.runForked(self.setup)


def forkTemplate(
    reactor: Any,
    protocol: ProcessProtocol,
    args: list[str],
    environment: dict[str, str],
    childFDs: dict[int, int | str],
    setup: TemplateSetup,
) -> ForkedTemplate:
    """
    Fork the master into a template that runs as C{python args[1:]} would
    with C{setup} on its command pipe, with the given environment and
    descriptors.
    """
    # What the master has buffered would be written twice.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    return ForkedTemplate(setup, reactor, args[0], args, environment, os.getcwd(), protocol, childFDs=childFDs)


def _textStream(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), errors="backslashreplace", line_buffering=True)


def _forgetMaster(environment: dict[str, str], args: list[str]) -> None:
    """
    In the child: let go of what belongs to the master, so that the rest runs
    as in a template started with C{exec}.
    """
    _detached.extend(childlog.takeOverFromParent(f"template {os.getpid()}"))
    # twistd points sys.stdout and sys.stderr at its log; the descriptors are
    # the template's now.  (Python leaves sys.__stderr__ None in a master
    # started without a descriptor 2.)  typeshed declares sys.__stdout__ and
    # sys.__stderr__ Final; a forked child that takes the descriptors over
    # must rebind them all the same.
    _detached.extend([sys.stdout, sys.stderr])
    sys.stdout = sys.__stdout__ = sys.__stdout__ or _textStream(1)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = sys.__stderr__ or _textStream(2)  # type: ignore[misc]
    # The master's reactor (its epoll and wakers are closed): each worker
    # installs its own.  The two places are where Twisted's installReactor
    # puts a reactor (in prefork.twistedinternals.MIRRORS).
    import twisted.internet

    _detached.append(sys.modules.pop("twisted.internet.reactor", None))
    if hasattr(twisted.internet, "reactor"):
        del twisted.internet.reactor
    # Twisted keeps a descriptor in reserve against EMFILE; the master's is
    # closed, and workers must inherit an open one.
    _detached.append(detachSpareDescriptor())
    proctitle.prepare()
    os.environ.clear()
    os.environ.update(environment)
    sys.argv = args[2:]
