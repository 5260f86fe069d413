"""
Unit tests of a request's exchange with the WSGI application
(L{prefork.web.exchange}), in-process: the rules of C{start_response}, a bad
status or header answered with 500, a body that breaks its
C{Content-Length}, C{close()} on every path, and how the reactor-thread
runner pulls a streamed body.

Most run a request through a worker's site over a L{StringTransport}, for
both runners: in the reactor thread, and in a thread pool whose work runs
when the test says so.  The pull tests drive the exchange from a
L{DummyRequest} that plays the connection.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from prefork.web.connection import HTTPConnection
from prefork.web.site import WorkerSite
from prefork.web.wsgi import WorkerWSGIResource
from rawhttp import Reader, Response

TEXT = [("Content-Type", "text/plain")]
ERROR_BODY = b"Internal Server Error\n"


class ImmediateReactor(Clock):
    """
    A clock whose C{callFromThread} runs the call at once, as if the
    reactor thread were always free.
    """

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class QueuedPool:
    """
    A thread pool whose work runs when the test calls L{run}, after the
    request has been handed over, as a pool thread would pick it up.
    """

    def __init__(self) -> None:
        self.work: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def callInThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.work.append((f, args))

    def run(self) -> None:
        while self.work:
            f, args = self.work.pop(0)
            f(*args)


class FakeSocket:
    """
    What the exchange and the channel ask of a connection's socket.
    """

    def __init__(self) -> None:
        self.options: list[tuple[int, int, bytes]] = []

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        self.options.append((level, option, value))

    def recv(self, size: int, flags: int = 0) -> bytes:
        raise BlockingIOError()


class SocketTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__(IPv4Address("TCP", "127.0.0.1", 8080), IPv4Address("TCP", "127.0.0.1", 1234))
        self.socket = FakeSocket()

    @property
    def reset(self) -> bool:
        """
        Whether the connection was cut with a reset (SO_LINGER 0, abort).
        """
        return self.disconnected and (socket.SOL_SOCKET, socket.SO_LINGER) in [o[:2] for o in self.socket.options]


class FakeSocketFile:
    """
    The bytes a transport got, read by L{rawhttp.Reader} as from a socket.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        data, self.data = self.data[:size], self.data[size:]
        return data


@dataclass
class Connection:
    channel: HTTPConnection
    transport: SocketTransport
    pool: QueuedPool | None

    def get(self, path: str = "/") -> list[Response]:
        """
        Send a GET, let the application run, and return every response
        this connection has carried so far.
        """
        self.channel.dataReceived(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        if self.pool is not None:
            self.pool.run()
        else:
            self.pull()
        reader = Reader(FakeSocketFile(self.transport.value()))  # type: ignore[arg-type]
        responses = []
        while (response := reader.response()) is not None:
            responses.append(response)
            if response.truncated:
                break
        return responses

    def pull(self) -> None:
        """
        Ask each request's pull producer for its body until it is done, as
        the reactor's cooperator does for a connection that can take more.
        """
        for _ in range(1000):
            if self.transport.producer is None:
                break
            self.transport.producer.resumeProducing()
        assert self.transport.producer is None, "the body never ended"

    def lose(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


def connect(application: Callable[..., Any], threaded: bool) -> Connection:
    reactor = ImmediateReactor()
    pool = QueuedPool() if threaded else None
    resource = WorkerWSGIResource(reactor, pool, application, {})  # type: ignore[arg-type]
    site = WorkerSite(resource, 0, lambda: None, reactor=reactor)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = SocketTransport()
    channel.makeConnection(transport)
    return Connection(channel, transport, pool)


runners = pytest.mark.parametrize("threaded", [False, True], ids=["reactor", "threads"])


class Body:
    """
    A streamed body that counts how it is pulled and closed; an exception
    among its chunks is raised when its turn comes.
    """

    def __init__(self, *chunks: bytes | BaseException) -> None:
        self.chunks = list(chunks)
        self.pulled = 0
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self.chunks:
            raise StopIteration
        self.pulled += 1
        chunk = self.chunks.pop(0)
        if isinstance(chunk, BaseException):
            raise chunk
        return chunk

    def close(self) -> None:
        self.closed += 1


class ClosingList(list):
    """
    A body given whole, with a C{close()}.
    """

    closed = 0

    def close(self) -> None:
        self.closed += 1


def answering(status: Any, headers: Any) -> Callable[..., Any]:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", TEXT)
            return [b"fine"]
        start_response(status, headers)
        return [b"should never be sent"]

    return application


def assertRefusedThenServes(connection: Connection, path: str = "/") -> None:
    """
    The request at C{path} got a plain 500, and the connection serves on.
    """
    [refused] = connection.get(path)
    assert (refused.status, refused.body) == (500, ERROR_BODY)
    assert not connection.transport.disconnecting
    assert [r.status for r in connection.get("/ok")] == [500, 200]


@runners
@pytest.mark.parametrize(
    "status", ["200", "OK", "2000 OK", "200 OK\r\nSet-Cookie: evil=1", "200 OK\n", b"200 OK", 200, None],
)
def test_bad_status_is_refused_with_500(threaded: bool, status: Any) -> None:
    assertRefusedThenServes(connect(answering(status, TEXT), threaded))


@runners
@pytest.mark.parametrize(
    "header",
    [
        ("X Bad", "1"), ("X-Bad:", "1"), ("", "1"), ("X", "a\r\nSet-Cookie: evil=1"), ("X", "a\nb"), ("X", "a\0"),
        (b"X", b"1"), ("X", 1), ("X", "1", "2"), ["X", "1"], ("Content-Length", "ten"), ("Content-Length", "-1"),
    ],
)
def test_bad_header_is_refused_with_500(threaded: bool, header: Any) -> None:
    assertRefusedThenServes(connect(answering("200 OK", [*TEXT, header]), threaded))


def startsTwice(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    if environ["PATH_INFO"] == "/ok":
        start_response("200 OK", TEXT)
        return [b"fine"]
    start_response("200 OK", TEXT)
    start_response("404 Not Found", TEXT)
    return [b"should never be sent"]


@runners
def test_start_response_twice_without_exc_info(threaded: bool) -> None:
    assertRefusedThenServes(connect(startsTwice, threaded))


@runners
def test_no_start_response(threaded: bool) -> None:
    def silent(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", TEXT)
            return [b"fine"]
        return [b"should never be sent"]

    assertRefusedThenServes(connect(silent, threaded))


@runners
def test_exc_info_replaces_headers_not_yet_sent(threaded: bool) -> None:
    def recovers(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [*TEXT, ("X-First", "1")])
        try:
            raise ValueError("failed after start_response")
        except ValueError:
            start_response("503 Service Unavailable", TEXT, sys.exc_info())
        return [b"sorry"]

    [response] = connect(recovers, threaded).get()
    assert (response.status, response.body) == (503, b"sorry")
    assert response.header("x-first") is None


@runners
def test_exc_info_after_headers_were_sent_cuts_the_connection(threaded: bool) -> None:
    body = Body()

    def tooLate(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        write = start_response("200 OK", TEXT)
        write(b"partial")
        try:
            raise ValueError("failed mid-body")
        except ValueError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return body

    connection = connect(tooLate, threaded)
    [response] = connection.get()
    assert response.status == 200 and response.truncated
    assert connection.transport.reset


@runners
def test_write_callable_then_returned_body(threaded: bool) -> None:
    def writer(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", TEXT)
        write(b"written, ")
        write(b"then ")
        return [b"returned"]

    [response] = connect(writer, threaded).get()
    assert (response.status, response.body) == (200, b"written, then returned")


@runners
def test_body_longer_than_content_length_is_cut(threaded: bool) -> None:
    def long(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [*TEXT, ("Content-Length", "5")])
        return Body(b"123", b"4567", b"890")

    connection = connect(long, threaded)
    [response] = connection.get()
    assert (response.status, response.body) == (200, b"12345")
    # Nothing more was sent that the client would read as the next response.
    assert connection.transport.value().endswith(b"\r\n\r\n12345")
    assert not connection.transport.disconnecting


@runners
@pytest.mark.parametrize("whole", [True, False], ids=["list", "stream"])
def test_body_shorter_than_content_length_resets(threaded: bool, whole: bool) -> None:
    def short(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [*TEXT, ("Content-Length", "10")])
        return [b"12345"] if whole else Body(b"123", b"45")

    connection = connect(short, threaded)
    [response] = connection.get()
    assert response.status == 200 and response.truncated
    assert connection.transport.value().endswith(b"\r\n\r\n12345")
    # Reset, not closed: a close would end an HTTP/1.0 body as if whole.
    assert connection.transport.reset


@runners
@pytest.mark.parametrize(
    "makeBody, status, reset",
    [
        (lambda: ClosingList([b"a", b"b"]), 200, False),
        (lambda: Body(b"a", b"b"), 200, False),
        (lambda: Body(RuntimeError("failed before the first chunk")), 500, False),
        (lambda: Body(b"a", RuntimeError("failed mid-body")), 200, True),
    ],
    ids=["list", "stream", "error-first", "error-midway"],
)
def test_close_is_called_once(threaded: bool, makeBody: Callable[[], Any], status: int, reset: bool) -> None:
    body = makeBody()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", TEXT)
        return body

    connection = connect(application, threaded)
    [response] = connection.get()
    assert response.status == status
    assert body.closed == 1
    # An error once the body has begun can only cut the connection.
    assert connection.transport.reset == reset == response.truncated


def test_close_is_called_when_the_client_leaves_a_threaded_stream() -> None:
    body = Body(b"first", b"second", b"third")
    connection = connect(lambda environ, start_response: (start_response("200 OK", TEXT), body)[1], True)
    connection.channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    [(run, args)] = connection.pool.work  # type: ignore[union-attr]
    connection.pool.work.clear()  # type: ignore[union-attr]
    # The client goes away before the application's thread runs.
    connection.lose()
    run(*args)
    assert body.closed == 1 and body.pulled <= 1
    assert b"second" not in connection.transport.value()


# The reactor-thread runner, pulled by the test as the transport would.


def pulling(body: Body) -> tuple[Connection, Body]:
    connection = connect(lambda environ, start_response: (start_response("200 OK", TEXT), body)[1], False)
    connection.channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    connection.transport.clear()
    return connection, body


def chunks(connection: Connection) -> list[bytes]:
    """
    The body chunks sent so far, without their chunked framing.
    """
    data = connection.transport.value().partition(b"\r\n\r\n")[2]
    return [line for line in data.split(b"\r\n")[1::2] if line]


def test_streamed_body_is_pulled_one_chunk_per_request_for_more() -> None:
    connection, body = pulling(Body(b"a", b"", b"b", b"c"))
    transport = connection.transport
    # Registered as a pull producer; nothing is read until the transport
    # asks, so a slow client slows the application.
    assert transport.streaming is False and body.pulled == 0
    transport.producer.resumeProducing()
    assert chunks(connection) == [b"a"] and body.pulled == 1
    # An empty chunk is skipped: each pull sends something.
    transport.producer.resumeProducing()
    assert chunks(connection) == [b"a", b"b"] and body.pulled == 3
    transport.producer.resumeProducing()
    assert chunks(connection) == [b"a", b"b", b"c"]
    assert body.closed == 0
    transport.producer.resumeProducing()
    assert transport.producer is None and body.closed == 1
    assert transport.value().endswith(b"0\r\n\r\n")


def test_pulled_stream_stops_when_the_client_leaves() -> None:
    connection, body = pulling(Body(b"a", b"b", b"c"))
    producer = connection.transport.producer
    producer.resumeProducing()
    connection.lose()
    assert body.closed == 1
    # The connection may still ask once more as it winds down: nothing is
    # pulled, nothing written.
    producer.resumeProducing()
    producer.stopProducing()
    assert body.pulled == 1 and chunks(connection) == [b"a"] and body.closed == 1


def test_pulled_stream_error_before_anything_was_sent_is_a_500() -> None:
    connection = connect(lambda environ, start_response: (start_response("200 OK", TEXT), body)[1], False)
    body = Body(RuntimeError("failed at once"))
    [response] = connection.get()
    assert connection.transport.producer is None
    assert (response.status, response.body) == (500, ERROR_BODY)
    assert body.closed == 1


def test_pulled_stream_error_midway_resets() -> None:
    connection, body = pulling(Body(b"a", RuntimeError("failed mid-body")))
    connection.transport.producer.resumeProducing()
    connection.transport.producer.resumeProducing()
    assert connection.transport.producer is None and chunks(connection) == [b"a"]
    assert connection.transport.reset
    assert body.closed == 1


@runners
def test_hop_by_hop_fields_of_the_application_are_dropped(threaded: bool) -> None:
    fields = [
        ("Transfer-Encoding", "chunked"), ("Connection", "keep-alive, Upgrade"), ("Keep-Alive", "timeout=5"),
        ("Upgrade", "h2c"), ("TE", "trailers"), ("Trailer", "X-Sum"), ("Proxy-Connection", "close"),
    ]
    body = b"hello"
    connection = connect(lambda environ, start_response: (start_response("200 OK", TEXT + fields), [body])[1], threaded)
    [response] = connection.get()
    assert response.status == 200 and response.body == body
    names = set(response.headers)
    assert names.isdisjoint({"transfer-encoding", "keep-alive", "upgrade", "te", "trailer", "proxy-connection"})
    assert response.header("content-length") == "5" and response.header("connection") is None
