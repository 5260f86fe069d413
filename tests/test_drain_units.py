"""
Unit tests of a worker's drain (L{prefork.child.worker.Worker.drain} and its
site), in-process on a fake clock: it stops accepting, closes idle
keep-alive connections, answers what it accepted with C{Connection: close},
waits for the exit guard, then stops its reactor; never for longer than its
timeout.  The lifecycle tests run the same with real processes.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from prefork.child import heartbeat, worker
from prefork.child.worker import IDLE_GRACE, QUICK_STOP_TIMEOUT, Worker
from prefork.config import ServerConfig
from prefork.messages import Event, ExitReason, Message
from prefork.web.connection import HTTPConnection
from resources import Held
from server import TIMEOUT

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HELD = b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n"


class FakeReactor(Clock):
    """
    What a worker asks of its reactor, on a clock the test turns.
    """

    running = True

    def __init__(self) -> None:
        super().__init__()
        self.triggers: list[tuple[str, str, Callable[..., Any]]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        f(*args)

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[..., Any]) -> None:
        self.triggers.append((phase, event, f))

    def callWhenRunning(self, f: Callable[..., Any]) -> None:
        pass

    def stop(self) -> None:
        assert self.running, "stopped twice"
        self.running = False


class FakePort:
    """
    A listening port: what the worker did to it, in order.
    """

    def __init__(self) -> None:
        self.events: list[str] = []
        self.acceptsPerWakeup = 1

        class Socket:
            def close(inner) -> None:
                self.events.append("close")

        self.socket = Socket()

    def stopReading(self) -> None:
        self.events.append("stopReading")

    def startReading(self) -> None:
        self.events.append("startReading")

    def doRead(self) -> None:
        self.events.append(f"doRead {self.acceptsPerWakeup}")


class PeekableSocket:
    """
    A connection's socket as C{isIdle} peeks at it: nothing waiting, unless
    the test puts a request there.
    """

    pending = b""

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.pending:
            raise BlockingIOError()
        return self.pending[:size]


class Transport(StringTransport):
    def __init__(self) -> None:
        super().__init__(IPv4Address("TCP", "127.0.0.1", 8080), IPv4Address("TCP", "127.0.0.1", 1234))
        self.socket = PeekableSocket()


class Running:
    """
    A started worker, its reactor and port, and what it told the master.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **config: Any) -> None:
        self.sent: list[Message] = []

        def record(message: Message, fd: int = 3) -> bool:
            self.sent.append(message)
            return True

        monkeypatch.setattr(worker, "send", record)
        monkeypatch.setattr(heartbeat, "send", record)
        self.port = FakePort()
        monkeypatch.setattr(worker, "adoptFairPort", lambda reactor, fd, family, site: self.port)
        self.reactor = FakeReactor()
        settings = {"threads": 0, "maxRequests": 0, "gracefulTimeout": 30.0, **config}

        def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            return []

        listener = os.open(os.devnull, os.O_RDONLY)
        self.worker = Worker(self.reactor, ServerConfig(**settings), 1, application, [(listener, socket.AF_INET)])
        self.worker.site.resource = Held()
        self.worker.start()

    @property
    def site(self) -> Any:
        return self.worker.site

    def connect(self, *requests: bytes) -> Connection:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        transport = Transport()
        channel.makeConnection(transport)
        for request in requests:
            channel.dataReceived(request)
        return Connection(channel, transport)

    def closesComplete(self) -> None:
        """
        Let every connection the worker closed report its end, as the
        reactor does once the transport has written what it had.
        """
        for channel in list(self.site.channels):
            if channel.transport.disconnecting:
                channel.connectionLost(Failure(ConnectionDone()))

    def events(self) -> list[Event]:
        return [message.event for message in self.sent if message.event is not Event.BEAT]


class Connection:
    def __init__(self, channel: HTTPConnection, transport: Transport) -> None:
        self.channel = channel
        self.transport = transport

    @property
    def closing(self) -> bool:
        return self.transport.disconnecting

    def statuses(self) -> list[str]:
        return re.findall(r"HTTP/1\.1 (\d{3})", self.transport.value().decode("latin-1"))

    def closesAfterResponse(self) -> bool:
        return b"Connection: close" in self.transport.value()


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Running]]:
    """
    Start workers; stop their heartbeats when the test ends (a running
    worker's reactor does it as it stops).
    """
    before = set(threading.enumerate())
    started: list[Running] = []

    def start(**config: Any) -> Running:
        started.append(Running(monkeypatch, **config))
        return started[-1]

    yield start
    for w in started:
        w.worker.heartbeat.stop()
    for thread in set(threading.enumerate()) - before:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), thread


def test_drain_in_order(running: Callable[..., Running]) -> None:
    """
    TERM: stop accepting (taking the connections the kernel already
    completed), close idle keep-alive connections after a grace, answer
    every request admitted with Connection: close, wait for the exit guard,
    exit.
    """
    w = running()
    idle = w.connect(GET)
    busy = w.connect(HELD)
    new = w.connect()  # connected, its request not sent yet
    w.worker.guard.begin()
    w.worker.drain(ExitReason.STOP)
    assert w.port.events == ["stopReading", f"doRead {2**16}", "close"]
    assert w.sent[-1] == Message(Event.DRAINING, w.worker.pid, ("2", "stop"))
    assert w.site.closing
    # Idle keep-alive connections get a grace: a client's next request may
    # be on its way, and is answered (with Connection: close).
    assert not idle.closing
    w.reactor.advance(IDLE_GRACE / 2)
    new.channel.dataReceived(GET)
    assert new.statuses() == ["200"] and new.closesAfterResponse() and new.closing
    w.reactor.advance(IDLE_GRACE / 2)
    assert idle.closing and not idle.closesAfterResponse()
    assert not busy.closing
    # The request in flight is answered, and its connection closed after.
    w.site.resource.held[0].finish()
    assert busy.statuses() == ["200"] and busy.closesAfterResponse() and busy.closing
    w.closesComplete()
    assert w.site.channels == set()
    # No connection left; the exit guard still holds the worker.
    assert w.reactor.running
    w.worker.guard.end()
    assert not w.reactor.running
    # Nothing is left to fire: the deadline went with the drain.
    assert w.reactor.getDelayedCalls() == []
    assert w.events() == [Event.DRAINING]


def test_response_begun_before_the_drain_closes_after(running: Callable[..., Running]) -> None:
    """
    A response whose head went out before the drain cannot announce the
    close; its connection closes once it is complete.
    """
    w = running()
    busy = w.connect(HELD)
    [request] = w.site.resource.held
    request.write(b"begun")
    w.worker.drain(ExitReason.STOP)
    w.reactor.advance(IDLE_GRACE)
    assert not busy.closing
    request.finish()
    assert busy.statuses() == ["200"] and not busy.closesAfterResponse() and busy.closing
    w.closesComplete()
    assert not w.reactor.running


def test_idle_connection_with_a_request_waiting_is_answered(running: Callable[..., Running]) -> None:
    """
    A keep-alive connection whose next request is already in the kernel is
    not idle: it is read and answered, not closed under it.
    """
    w = running()
    waiting = w.connect(GET)
    waiting.transport.socket.pending = GET
    w.worker.drain(ExitReason.QUICK, QUICK_STOP_TIMEOUT)
    assert not waiting.closing
    waiting.transport.socket.pending = b""
    waiting.channel.dataReceived(GET)
    assert waiting.statuses() == ["200", "200"] and waiting.closesAfterResponse() and waiting.closing


def test_reaching_the_limit_drains(running: Callable[..., Running]) -> None:
    """
    The request that reaches the limit closes its connection, and the
    worker leaves the connections waiting to be accepted to the others.
    """
    w = running(maxRequests=2)
    first = w.connect(GET)
    assert w.port.events == [] and not first.closesAfterResponse()
    first.channel.dataReceived(GET)
    assert first.statuses() == ["200", "200"] and first.closesAfterResponse()
    assert w.port.events == ["stopReading", "close"]
    assert w.sent[-1] == Message(Event.DRAINING, w.worker.pid, ("2", "limit"))
    w.closesComplete()
    assert not w.reactor.running


def test_graceful_timeout_cuts_what_is_left(running: Callable[..., Running]) -> None:
    w = running(gracefulTimeout=10.0)
    busy = w.connect(HELD)
    w.worker.guard.begin()
    w.worker.drain(ExitReason.STOP)
    w.reactor.advance(9.9)
    assert w.reactor.running and not busy.transport.disconnected
    w.reactor.advance(0.1)
    assert busy.transport.disconnected  # aborted
    assert not w.reactor.running


def test_quick_stop_shortens_a_graceful_drain(running: Callable[..., Running]) -> None:
    """
    INT or QUIT during a graceful drain: idle connections close at once,
    and the worker waits QUICK_STOP_TIMEOUT at most from then on.
    """
    w = running()
    idle = w.connect(GET)
    w.connect(HELD)
    w.worker.drain(ExitReason.STOP)
    w.reactor.advance(0.1)
    assert not idle.closing
    w.worker.drain(ExitReason.QUICK, QUICK_STOP_TIMEOUT)
    assert idle.closing
    w.reactor.advance(QUICK_STOP_TIMEOUT)
    assert not w.reactor.running
    # Draining was reported once, and the port closed once.
    assert w.events() == [Event.DRAINING]
    assert w.port.events.count("close") == 1


def test_a_longer_timeout_does_not_extend_a_drain(running: Callable[..., Running]) -> None:
    w = running(gracefulTimeout=10.0)
    w.connect(HELD)
    w.worker.drain(ExitReason.QUICK, QUICK_STOP_TIMEOUT)
    w.worker.drain(ExitReason.STOP)
    w.reactor.advance(QUICK_STOP_TIMEOUT)
    assert not w.reactor.running


def test_shutdown_stops_accepting_first(running: Callable[..., Running]) -> None:
    """
    However the reactor comes to stop, the port stops accepting before it.
    """
    w = running()
    [(phase, event, stopAccepting)] = w.reactor.triggers
    assert (phase, event) == ("before", "shutdown")
    stopAccepting()
    assert w.port.events == ["stopReading", "close"]
