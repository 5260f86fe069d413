"""
Fair accept: listening ports that take only a few connections per wake-up.

Every worker polls the same listening socket.  Each time the socket is
readable, Twisted's ports accept up to as many connections as they accepted
the time before (at least one), or 20 more when that time took its whole
batch (100 at first), so the first worker to wake can take a whole burst
while the others idle; since a worker runs one request at a time, that
burst then waits behind it, a long p99 tail.  The ports made here accept
L{ACCEPTS_PER_WAKEUP} connection per wake-up and leave the rest in the
kernel's queue for whichever worker polls next; a worker busy with many
connections takes a few more, in proportion to the events of its turn,
so that connections waiting to be accepted are not starved by the ones it
serves.  A connection is read as soon as it is accepted, and written to
at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from twisted.internet import address, error, tcp, unix
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from prefork.twistedinternals import adoptListeningPort, peerAddress, startAdoptedUNIXPort, unwrittenBytes

_log = Logger()

#: How many connections a worker accepts each time its listening socket is
#: readable.  One gives the fairest spread; the cost, one more turn of the
#: event loop per connection, does not show in bench/ (docs/performance.rst).
ACCEPTS_PER_WAKEUP = 1
#: A worker whose turn of the event loop serves many connections takes
#: one more for every this many events, so that connections waiting to be
#: accepted keep up with the ones it serves instead of starving behind
#: them...
EVENTS_PER_ACCEPT = 8
#: ...up to this many per turn.
MOST_ACCEPTS_PER_WAKEUP = 64


class _FewAccepts:
    """
    Fixes a Twisted port's C{numberAccepts}, which its C{startListening}
    sets to 100 and its C{doRead} adapts at each wake-up: 20 more after a
    full batch, else as many as it accepted (at least one).

    Its C{doRead} copies the accept loop of Twisted's C{tcp.Port.doRead},
    registered in L{prefork.twistedinternals.MIRRORS}: the fence test names
    it when Twisted's changes.
    """

    acceptsPerWakeup = ACCEPTS_PER_WAKEUP

    @property
    def numberAccepts(self) -> int:
        return self.acceptsPerWakeup

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        pass

    def doRead(self) -> None:
        """
        Accept up to L{acceptsPerWakeup} connections, as Twisted's port
        does, less the log buffer and accept generator it sets up at each
        wake-up; what Twisted handles specially (out of descriptors, a
        connection aborted before it was accepted) is left to it.
        """
        # A mixin: the listening socket is the port's.
        listener: socket.socket = self.socket  # type: ignore[attr-defined]
        busy = getattr(self.reactor, "eventsThisTurn", 0) // EVENTS_PER_ACCEPT  # type: ignore[attr-defined]
        for _ in range(max(self.acceptsPerWakeup, min(busy, MOST_ACCEPTS_PER_WAKEUP))):
            try:
                client, peer = listener.accept()
            except BlockingIOError:
                return
            except OSError:
                super().doRead()  # type: ignore[misc]
                return
            try:
                self._connect(client, peer)
            except Exception:
                # One connection's failure must not close the listening port.
                _log.failure("Accepting a connection failed")

    def _connect(self, client: socket.socket, peer: Any) -> None:
        port: Any = self
        if isinstance(peer, tuple) and len(peer) == 4:
            # IPv6: the scope of a link-local address, by name.
            host, _ = socket.getnameinfo(peer, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            peer = (host, *peer[1:])
        protocol = port.factory.buildProtocol(peerAddress(port, peer))
        if protocol is None:
            client.close()
            return
        session = port.sessionno
        port.sessionno = session + 1
        transport = port.transport(client, protocol, peer, port, session, port.reactor)
        protocol.makeConnection(transport)
        _readAtOnce(transport)


def _readAtOnce(transport: Any) -> None:
    """
    Read what a connection just accepted has already received: a client
    sends its request as it connects, and reading it now spares a turn of
    the event loop.  Nothing there costs one C{recv}.
    """
    if not transport.connected:
        return
    try:
        lost = transport.doRead()
    except Exception:
        _log.failure("Reading a new connection failed")
        lost = error.ConnectionLost()
    if lost and transport.connected:
        transport.connectionLost(Failure(lost))


class _ImmediateWrites:
    """
    Writes go to the socket at once when nothing waits before them, instead
    of on the next turn of the event loop, and a close with nothing left to
    write needs no wait for writability.  A response is one write, so most
    go out without the transport ever registering for writability.
    """

    #: The connection was cut: it writes nothing more.
    _cut = False

    def write(self, data: bytes) -> None:
        transport: Any = self
        if (
            data
            and transport.connected
            and not transport.disconnecting
            and not self._cut
            # A producer is asked for more when the buffer drains: its
            # bytes go through the buffer.
            and transport.producer is None
            and not unwrittenBytes(transport)
        ):
            try:
                sent = transport.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                # Twisted's write finds the same error, and ends the
                # connection as it always does.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)  # type: ignore[misc]

    def abortConnection(self) -> None:
        self._cut = True
        super().abortConnection()  # type: ignore[misc]

    def loseConnection(self) -> None:
        transport: Any = self
        if (
            transport.connected
            and not transport.disconnecting
            and transport.producer is None
            and not unwrittenBytes(transport)
        ):
            transport.disconnecting = True
            if getattr(transport.protocol, "closesAtOnce", False):
                transport.connectionLost(Failure(ConnectionDone()))
                return
            # Closed on the next turn, not now: the protocol asking (TLS
            # ending its session, say) may not expect its connectionLost
            # before loseConnection returns.
            transport.stopReading()
            transport.reactor.callLater(0, self._closeNow)
            return
        super().loseConnection()  # type: ignore[misc]

    def _closeNow(self) -> None:
        transport: Any = self
        if transport.connected:
            transport.connectionLost(Failure(ConnectionDone()))


class FairUNIXServer(_ImmediateWrites, unix.Server):
    """
    A UNIX socket connection that writes at once.
    """


class FairTCPServer(_ImmediateWrites, tcp.Server):
    """
    A TCP connection that builds its two addresses once (every request of
    the connection reads them, and the local one takes a system call),
    joins what is written as a sequence (a response head comes as a few
    dozen pieces) before buffering it, and has C{TCP_NODELAY} from its
    listening socket.
    """

    _host: address.IPv4Address | address.IPv6Address | None = None
    _peer: address.IPv4Address | address.IPv6Address | None = None
    #: Whether C{TCP_NODELAY} is still as the listening socket had it.
    _noDelayInherited = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        # HTTPChannel turns it on for every connection; Linux copies it from
        # the listening socket, where FairTCPPort turned it on once.
        if enabled and self._noDelayInherited and getattr(self.server, "noDelay", False):
            return
        self._noDelayInherited = False
        super().setTcpNoDelay(enabled)

    def getHost(self) -> address.IPv4Address | address.IPv6Address:
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def getPeer(self) -> address.IPv4Address | address.IPv6Address:
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        self.write(b"".join(iovec))


class FairTCPPort(_FewAccepts, tcp.Port):
    """
    A TCP port that accepts few connections per wake-up.

    @ivar noDelay: Whether the listening socket has C{TCP_NODELAY}, and so
        every connection it accepts.
    """

    transport = FairTCPServer
    noDelay = False

    def startListening(self) -> None:
        super().startListening()
        try:
            # The socket is shared with the other workers: the same for all.
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            return
        self.noDelay = True


class FairUNIXPort(_FewAccepts, unix.Port):
    """
    A UNIX socket port that accepts few connections per wake-up, on a socket
    it adopted: it leaves the socket's listen queue and mode as they are.
    """

    transport = FairUNIXServer

    def startListening(self) -> None:
        startAdoptedUNIXPort(self)


def adoptFairPort(
    reactor: Any, fd: int, family: socket.AddressFamily, factory: IProtocolFactory
) -> FairTCPPort | FairUNIXPort:
    """
    Like C{reactor.adoptStreamPort}: listen with C{factory} on a copy of the
    listening socket C{fd}, accepting few connections per wake-up.
    """
    port: FairTCPPort | FairUNIXPort
    if family == socket.AF_UNIX:
        port = adoptListeningPort(FairUNIXPort, reactor, fd, family, factory)
    elif family in (socket.AF_INET, socket.AF_INET6):
        port = adoptListeningPort(FairTCPPort, reactor, fd, family, factory)
    else:
        raise error.UnsupportedAddressFamily(family)
    port.startListening()
    return port
