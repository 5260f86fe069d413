"""
twisted-prefork: a preforking WSGI HTTP server for Twisted.

Run it with C{twistd -n prefork --app myproject.wsgi:application}.  The
package is laid out by the process that runs each part:

  - L{prefork.master}: the twistd process, which owns the listening sockets
    and supervises one template per generation;
  - L{prefork.child}: the template, which imports the application once and
    forks the workers, and the workers themselves;
  - L{prefork.web}: the request path every worker runs (HTTP/1.1, WSGI);
  - L{prefork.status}: the status page, JSON and metrics the master serves.

What they share sits at the top: the configuration (L{prefork.config}), the
pipe messages (L{prefork.messages}) and the process titles
(L{prefork.proctitle}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefork.child.exitguard import ExitGuard

__version__ = "0.1.0"


def exitGuard() -> ExitGuard:
    """
    The exit guard of the worker this runs in: hand it a L{Deferred} with
    C{exitGuard().add(d)}, and the worker does not exit (when it retires or
    stops) before C{d} fires, within C{--graceful-timeout}.

    @raise RuntimeError: Called outside a worker.
    """
    from prefork.child.exitguard import current

    return current()
