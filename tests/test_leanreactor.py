"""
Tests for L{prefork.twistedinternals.LeanEPollReactor}, the reactor a
worker runs: real sockets on a reactor of its own, run in this process.
"""

from __future__ import annotations

import socket
import threading

from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from prefork.twistedinternals import LeanEPollReactor


class Echo(Protocol):
    """
    Answers what it receives, then closes; after its connection is lost,
    stops the reactor once C{factory.toServe} connections are done.
    """

    factory: EchoFactory

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data.upper())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.done += 1
        if self.factory.done == self.factory.toServe:
            self.factory.reactor.stop()
        if self.factory.raiseOnLoss:
            raise RuntimeError("connectionLost fails")


class EchoFactory(Factory):
    protocol = Echo

    def __init__(self, reactor: LeanEPollReactor, toServe: int, raiseOnLoss: bool = False) -> None:
        self.reactor = reactor
        self.toServe = toServe
        self.done = 0
        self.raiseOnLoss = raiseOnLoss


def talk(port: int, count: int, answers: list[bytes]) -> None:
    for i in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"hello %d" % i)
            answer = b""
            while chunk := client.recv(100):
                answer += chunk
            answers.append(answer)


def serve(count: int, raiseOnLoss: bool = False) -> tuple[list[bytes], EchoFactory]:
    reactor = LeanEPollReactor()
    factory = EchoFactory(reactor, count, raiseOnLoss)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    answers: list[bytes] = []
    client = threading.Thread(target=talk, args=(port.getHost().port, count, answers))
    reactor.callWhenRunning(client.start)
    # A safety net: a test that hangs fails instead.
    reactor.callLater(60, reactor.stop)
    reactor.run(installSignalHandlers=False)
    client.join(30)
    return answers, factory


def test_serves_connections() -> None:
    """
    The reactor dispatches accepts, reads, writes and closes as Twisted's
    own does.
    """
    answers, factory = serve(3)
    assert answers == [b"HELLO 0", b"HELLO 1", b"HELLO 2"]
    assert factory.done == 3


def test_a_failing_handler_is_logged_and_the_loop_goes_on() -> None:
    """
    An exception raised while an event is handled (here by connectionLost,
    which the dispatch itself does not catch) is logged, and the reactor
    serves the next connections.
    """
    failures: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_failure") is not None:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        answers, factory = serve(2, raiseOnLoss=True)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert answers == [b"HELLO 0", b"HELLO 1"]
    assert [e["log_format"] for e in failures] == ["Unhandled error handling an event of {selectable}"] * 2
    assert all(e["log_failure"].check(RuntimeError) for e in failures)

