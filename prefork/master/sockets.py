"""
The listening sockets the master opens (or inherits) and shares with every
worker.

A shared listening socket must only ever be closed, never shut down:
C{shutdown(2)} acts on the socket itself, in every process that holds it,
and Twisted's ports shut theirs down when they stop listening.  So the master
uses Twisted's endpoints to open a socket, takes the socket, and from then on
handles it itself.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from socket import AddressFamily
from typing import Any

from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure


class CannotListen(Exception):
    """
    A listening socket could not be opened; the message says which and why.
    """


@dataclass
class ListeningSocket:
    """
    One listening socket held by the master.

    @ivar socket: The socket, non-blocking.
    @ivar unlinkPath: The path of a UNIX socket this server bound, removed
        when the server stops; L{None} for others and inherited ones.
    @ivar origin: Who handed the socket over, for an inherited one (e.g.
        C{"systemd fd 3 'web'"}); L{None} for a socket this server opened.
    @ivar scheme: C{"https"} when the workers serve it with TLS.
    """

    socket: socket.socket
    unlinkPath: str | None = None
    origin: str | None = None
    scheme: str = "http"

    def fileno(self) -> int:
        return self.socket.fileno()

    @property
    def family(self) -> AddressFamily:
        return self.socket.family

    def describe(self) -> str:
        """
        The address, as a URL for TCP and as C{unix:PATH} for UNIX sockets,
        followed by the origin of an inherited socket.
        """
        suffix = f" (from {self.origin})" if self.origin else ""
        return self._address() + suffix

    def _address(self) -> str:
        address: Any = self.socket.getsockname()
        if self.family == socket.AF_UNIX:
            name = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
            return f"unix:{name or '(unnamed)'}"
        host, port = address[0], address[1]
        if self.family == socket.AF_INET6:
            return f"{self.scheme}://[{host}]:{port}/"
        return f"{self.scheme}://{host}:{port}/"

    def close(self) -> None:
        """
        Close the master's copy, leaving the workers' copies working, and
        remove the UNIX socket's path so that new clients are refused.
        """
        self.socket.close()
        if self.unlinkPath is not None:
            try:
                os.unlink(self.unlinkPath)
            except OSError:
                # Gone already; or root made it and the server has since
                # switched user (twistd --uid): the next start replaces it.
                pass


def listen(endpoint: IStreamServerEndpoint, description: str) -> ListeningSocket:
    """
    Open a listening socket through a Twisted endpoint and take it over.

    @raise CannotListen: It cannot be opened.
    """
    outcome: list[Any] = []
    factory = Factory()
    factory.noisy = False
    endpoint.listen(factory).addBoth(outcome.append)
    if not outcome or isinstance(outcome[0], Failure):
        reason = outcome[0].getErrorMessage() if outcome else "it did not open at once"
        raise CannotListen(f"cannot listen on {description}: {reason}")
    port = outcome[0]
    # The port must not accept, and must never get to close (and so shut
    # down) the socket: leave it to be collected.
    port.stopReading()
    skt: socket.socket = port.socket
    path = skt.getsockname() if skt.family == socket.AF_UNIX else None
    if isinstance(path, bytes):
        path = path.decode()
    return ListeningSocket(skt, unlinkPath=path if path and not path.startswith("\0") else None)
