"""
A connection's transport as the request path uses it.

Twisted annotates a protocol's transport as an optional L{ITransport}.  A
worker's connections run on TCP or UNIX server transports, or on a TLS or
PROXY header wrapper that hands on to the transport beneath whatever it
does not do itself; the request path needs their socket and their abort,
which no interface of Twisted's names together.
"""

from __future__ import annotations

import socket
from typing import Any, Protocol, cast

from twisted.internet.interfaces import IAddress, ITransport


class StreamTransport(Protocol):
    """
    A connected stream socket's transport.
    """

    socket: socket.socket

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: Any, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def getPeer(self) -> IAddress: ...

    def getHost(self) -> IAddress: ...


def streamTransport(transport: ITransport | None) -> StreamTransport:
    """
    The transport of a protocol that has been connected (its transport is
    set as it connects, and stays set once it has closed), as what it is.
    """
    assert transport is not None, "the connection was never made"
    return cast(StreamTransport, transport)
