"""
Tests for L{prefork.child.accept}: the fair ports' own accept loop, on real
listening sockets (TCP over IPv4 and IPv6, and UNIX), driven by calling
C{doRead} as the reactor would when the socket is readable.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import address
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.logger import LogEvent, globalLogPublisher
from zope.interface import implementer

from prefork.child.accept import EVENTS_PER_ACCEPT, FairTCPPort, FairTCPServer, adoptFairPort
from tools import requires


class Recorded(Protocol):
    def connectionMade(self) -> None:
        self.factory.made.append(self)  # type: ignore[attr-defined]


class Recording(Factory):
    protocol = Recorded

    def __init__(self) -> None:
        self.made: list[Recorded] = []
        self.addresses: list[Any] = []

    def buildProtocol(self, addr: Any) -> Protocol | None:
        self.addresses.append(addr)
        return super().buildProtocol(addr)


def listening(family: socket.AddressFamily, where: Path) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        sock.bind(str(where / "s"))
    else:
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.listen(16)
    # As the master's listening sockets are.
    sock.setblocking(False)
    return sock


#: The families of listening socket the tests are run on: IPv6 only where
#: the machine has it (and under PREFORK_TESTS_REQUIRE_ALL, everywhere).
FAMILIES = [
    pytest.param(socket.AF_INET, id="ipv4"),
    pytest.param(socket.AF_INET6, id="ipv6", marks=requires("ipv6")),
    pytest.param(socket.AF_UNIX, id="unix"),
]


@pytest.fixture(params=FAMILIES)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Recording, list[socket.socket]]]:
    family = request.param
    sock = listening(family, tmp_path)
    factory = Recording()
    port = adoptFairPort(MemoryReactor(), sock.fileno(), family, factory)
    clients: list[socket.socket] = []
    yield port, factory, clients
    for client in clients:
        client.close()
    for made in factory.made:
        made.transport.socket.close()  # type: ignore[union-attr]
    port.socket.close()
    sock.close()


def connect(port: Any, clients: list[socket.socket], count: int) -> None:
    where = port.getHost()
    for _ in range(count):
        if isinstance(where, address.UNIXAddress):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(where.name)
        else:
            client = socket.create_connection((where.host, where.port), timeout=30)
        clients.append(client)


def test_accepts_one_connection_per_wakeup(served: tuple[Any, Recording, list[socket.socket]]) -> None:
    port, factory, clients = served
    connect(port, clients, 3)
    port.doRead()
    assert len(factory.made) == 1
    port.doRead()
    port.doRead()
    assert len(factory.made) == 3
    # Nothing left: a wake-up with nothing to accept does nothing.
    port.doRead()
    assert len(factory.made) == 3
    assert [p.transport.sessionno for p in factory.made] == [0, 1, 2]  # type: ignore[union-attr]


def test_takes_all_pending_when_asked(served: tuple[Any, Recording, list[socket.socket]]) -> None:
    port, factory, clients = served
    connect(port, clients, 4)
    port.acceptsPerWakeup = 2**16
    port.doRead()
    assert len(factory.made) == 4


def test_a_busy_worker_takes_more_per_wakeup(served: tuple[Any, Recording, list[socket.socket]]) -> None:
    """
    A turn of the loop that serves many connections accepts one more for
    every EVENTS_PER_ACCEPT of them, so that waiting connections keep up.
    """
    port, factory, clients = served
    connect(port, clients, 6)
    port.reactor.eventsThisTurn = 4 * EVENTS_PER_ACCEPT
    port.doRead()
    assert len(factory.made) == 4
    port.reactor.eventsThisTurn = 1000 * EVENTS_PER_ACCEPT
    port.doRead()
    assert len(factory.made) == 6


def test_gives_the_peer_address(served: tuple[Any, Recording, list[socket.socket]]) -> None:
    port, factory, clients = served
    connect(port, clients, 1)
    port.doRead()
    [peer] = factory.addresses
    if isinstance(peer, address.UNIXAddress):
        # The client's socket has no name.
        assert not peer.name
        return
    transport = factory.made[0].transport
    assert transport is not None
    assert transport.getPeer() == peer
    assert (peer.host, peer.port) == clients[0].getsockname()[:2]
    assert type(peer) is (address.IPv6Address if ":" in peer.host else address.IPv4Address)


def test_a_refused_connection_is_closed(served: tuple[Any, Recording, list[socket.socket]]) -> None:
    port, factory, clients = served
    factory.buildProtocol = lambda addr: None  # type: ignore[method-assign]
    connect(port, clients, 1)
    port.doRead()
    clients[0].settimeout(30)
    assert clients[0].recv(1) == b""


def test_a_failing_factory_is_logged_and_the_port_goes_on(served: tuple[Any, Recording, list[socket.socket]]) -> None:
    port, factory, clients = served
    failures: list[LogEvent] = []
    globalLogPublisher.addObserver(failures.append)
    calls = []

    def failOnce(addr: Any) -> Protocol | None:
        calls.append(addr)
        if len(calls) == 1:
            raise RuntimeError("buildProtocol fails")
        return Recording.buildProtocol(factory, addr)

    factory.buildProtocol = failOnce  # type: ignore[method-assign]
    try:
        connect(port, clients, 2)
        port.doRead()
        port.doRead()
    finally:
        globalLogPublisher.removeObserver(failures.append)
    logged = [e for e in failures if e.get("log_failure") is not None]
    assert [e["log_format"] for e in logged] == ["Accepting a connection failed"]
    assert logged[0]["log_failure"].check(RuntimeError)
    assert len(factory.made) == 1


@pytest.fixture
def tcpConnection(tmp_path: Path) -> Iterator[tuple[FairTCPPort, FairTCPServer, socket.socket]]:
    """
    A fair TCP port, one connection it accepted, and the client's socket.
    """
    sock = listening(socket.AF_INET, tmp_path)
    factory = Recording()
    port = adoptFairPort(MemoryReactorClock(), sock.fileno(), socket.AF_INET, factory)
    assert isinstance(port, FairTCPPort)
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=30)
    port.doRead()
    transport = factory.made[0].transport
    assert isinstance(transport, FairTCPServer)
    yield port, transport, client
    client.close()
    if transport.connected:
        transport.socket.close()
    port.socket.close()
    sock.close()


def test_tcp_connection_builds_its_addresses_once(
    tcpConnection: tuple[FairTCPPort, FairTCPServer, socket.socket],
) -> None:
    port, transport, client = tcpConnection
    first = transport.getHost()
    assert (first.host, first.port) == ("127.0.0.1", port.getHost().port)
    assert transport.getHost() is first
    peer = transport.getPeer()
    assert (peer.host, peer.port) == client.getsockname()
    assert transport.getPeer() is peer


def test_tcp_connection_writes_a_sequence_whole(
    tcpConnection: tuple[FairTCPPort, FairTCPServer, socket.socket],
) -> None:
    _, transport, client = tcpConnection
    transport.writeSequence([b"HTTP/1.1 ", b"200 OK", b"\r\n"])
    transport.write(b"!")
    with pytest.raises(TypeError):
        transport.writeSequence([b"a", "not bytes"])  # type: ignore[list-item]
    transport.doWrite()
    received = b""
    while len(received) < 18:
        received += client.recv(100)
    assert received == b"HTTP/1.1 200 OK\r\n!"


def test_tcp_connections_have_nodelay_from_the_listening_socket(
    tcpConnection: tuple[FairTCPPort, FairTCPServer, socket.socket],
) -> None:
    port, transport, _ = tcpConnection
    assert port.noDelay
    assert transport.getTcpNoDelay()
    transport.setTcpNoDelay(False)
    assert not transport.getTcpNoDelay()
    transport.setTcpNoDelay(True)
    assert transport.getTcpNoDelay()


def test_tcp_connection_writes_at_once(tcpConnection: tuple[FairTCPPort, FairTCPServer, socket.socket]) -> None:
    """
    With nothing buffered, a write goes to the socket at once, without the
    transport waiting to be writable; what follows a partial send waits its
    turn in the buffer, in order.
    """
    _, transport, client = tcpConnection
    transport.write(b"at once")
    assert client.recv(100) == b"at once"
    assert not transport.dataBuffer and transport not in transport.reactor.getWriters()


def test_tcp_connection_feeds_a_pull_producer_through_its_buffer(
    tcpConnection: tuple[FairTCPPort, FairTCPServer, socket.socket],
) -> None:
    """
    A pull producer is asked for more each time the buffer drains: its
    writes go through the buffer, or nothing would ask again.
    """
    _, transport, client = tcpConnection
    asked: list[int] = []

    @implementer(IPullProducer)
    class Producer:
        def resumeProducing(self) -> None:
            asked.append(1)
            transport.write(b"chunk")

        def stopProducing(self) -> None:
            pass

    transport.registerProducer(Producer(), False)
    assert asked == [1] and transport in transport.reactor.getWriters()
    transport.doWrite()
    assert asked == [1, 1] and client.recv(100) == b"chunk"


def test_a_cut_tcp_connection_writes_nothing(tcpConnection: tuple[FairTCPPort, FairTCPServer, socket.socket]) -> None:
    _, transport, client = tcpConnection
    transport.abortConnection()
    transport.write(b"after the cut")
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(100)


@pytest.mark.parametrize("atOnce", [True, False], ids=["at once", "next turn"])
def test_tcp_connection_closes_with_nothing_to_write(
    tcpConnection: tuple[FairTCPPort, FairTCPServer, socket.socket], atOnce: bool
) -> None:
    """
    A close with nothing buffered needs no wait for writability: at once
    for a protocol that says it can be told before loseConnection returns,
    on the loop's next turn for any other (TLS ending its session).
    """
    port, transport, client = tcpConnection
    protocol = transport.protocol
    protocol.closesAtOnce = atOnce  # type: ignore[attr-defined]
    lost: list[Any] = []
    protocol.connectionLost = lost.append  # type: ignore[method-assign]
    transport.write(b"bye")
    transport.loseConnection()
    assert len(lost) == (1 if atOnce else 0) and transport not in port.reactor.getWriters()
    port.reactor.advance(0)
    assert len(lost) == 1
    assert client.recv(100) == b"bye" and client.recv(100) == b""
