"""
The reactor a template lends to the C{--resource} it preloads.

Klein's own module, like many a Twisted application's, does C{from
twisted.internet import reactor} as it is imported.  In a template that
would install Twisted's default reactor, whose epoll instance every worker
would then share: so the template would have to leave the import to each
worker.  Instead, while it imports the resource, the template puts a
L{LateReactor} where the reactor would be.  What takes it at import time
keeps it; once a worker has installed its own reactor after the fork, the
stand-in forwards every attribute to it, so C{reactor.callLater} and
C{deferLater(reactor, ...)} in a handler run on the worker's reactor.

What uses the stand-in before then (a module that calls the reactor as it
is imported) gets an L{AttributeError}, and the template imports the
resource in each worker instead, as it does for anything that starts
threads or installs a reactor.
"""

from __future__ import annotations

import sys
from typing import Any

import twisted.internet

_MODULE = "twisted.internet.reactor"


class LateReactor:
    """
    Stands in for the reactor a worker installs after the fork.

    @ivar used: Whether anything asked for the reactor before there was one.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_real", None)
        object.__setattr__(self, "used", False)

    def __getattr__(self, name: str) -> Any:
        real = object.__getattribute__(self, "_real")
        if real is None:
            object.__setattr__(self, "used", True)
            raise AttributeError(f"the reactor is not installed before the fork: reactor.{name} used at import time")
        return getattr(real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_real"), name, value)

    def __repr__(self) -> str:
        return f"<LateReactor for {object.__getattribute__(self, '_real')!r}>"

    def become(self, reactor: Any) -> None:
        """
        Forward to C{reactor} from now on.
        """
        object.__setattr__(self, "_real", reactor)


def lend() -> LateReactor | None:
    """
    Put a L{LateReactor} where the reactor would be, unless a reactor is
    installed already.
    """
    if _MODULE in sys.modules:
        return None
    late = LateReactor()
    sys.modules[_MODULE] = late  # type: ignore[assignment]
    twisted.internet.reactor = late  # type: ignore[assignment]
    return late


def lent() -> LateReactor | None:
    """
    The stand-in, if one is where the reactor would be.
    """
    found = sys.modules.get(_MODULE)
    return found if isinstance(found, LateReactor) else None


def takeBack() -> LateReactor | None:
    """
    Remove the stand-in, so that a reactor can be installed; return it.
    """
    late = lent()
    if late is not None:
        del sys.modules[_MODULE]
        del twisted.internet.reactor
    return late
