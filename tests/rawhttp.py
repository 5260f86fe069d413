"""
A client that speaks HTTP/1.1 as raw bytes, for the protocol tests: it
sends exactly what a test gives it and reads back every response, interim
ones included, without the smoothing http.client does.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from server import TIMEOUT, Server


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    #: The connection ended before the body was complete.
    truncated: bool = False

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None


class Truncated(Exception):
    pass


class Reader:
    """
    Responses read one after another from one connection.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.eof = False
        #: The server reset the connection rather than closing it.
        self.reset = False

    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
            self.reset = True
        if not data:
            self.eof = True
            raise Truncated()
        self.buffer += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def rest(self) -> bytes:
        try:
            while True:
                self._fill()
        except Truncated:
            pass
        data, self.buffer = self.buffer, b""
        return data

    def response(self, head: bool = False) -> Response | None:
        """
        The next response, or L{None} if the connection ended first.
        """
        try:
            statusLine = self.line()
        except Truncated:
            return None
        parts = statusLine.split(b" ", 2)
        assert parts[0] in (b"HTTP/1.1", b"HTTP/1.0"), statusLine
        response = Response(int(parts[1]))
        try:
            while True:
                line = self.line()
                if not line:
                    break
                name, _, value = line.partition(b":")
                response.headers.setdefault(name.decode().lower(), []).append(value.strip().decode("latin-1"))
            if head or response.status < 200 or response.status in (204, 304):
                return response
            if response.header("transfer-encoding") == "chunked":
                response.body = self._chunked()
            elif response.header("content-length") is not None:
                response.body = self.exactly(int(response.header("content-length")))
            else:
                response.body = self.rest()
                # A reset, unlike a close, does not end a body.
                response.truncated = self.reset
        except Truncated:
            response.truncated = True
        return response

    def _chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self.line().split(b";")[0], 16)
            if size == 0:
                while self.line():
                    pass
                return body
            body += self.exactly(size)
            assert self.exactly(2) == b"\r\n"

    def closed(self, timeout: float) -> bool:
        """
        Whether the server closes the connection within C{timeout}
        seconds, with nothing more sent.
        """
        self.sock.settimeout(timeout)
        try:
            return self.rest() == b"" and self.eof
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def exchange(
    port: int, data: bytes, count: int | None = None, halfClose: bool = False, head: bool = False
) -> tuple[list[Response], Reader]:
    """
    Send C{data} on a new connection and read C{count} responses (every
    response until the connection ends, if L{None}); interim 1xx responses
    count too.
    """
    sock = connect(port)
    sock.sendall(data)
    if halfClose:
        sock.shutdown(socket.SHUT_WR)
    reader = Reader(sock)
    responses: list[Response] = []
    while count is None or len(responses) < count:
        response = reader.response(head)
        if response is None:
            break
        responses.append(response)
        if response.truncated:
            break
    return responses, reader


def servingWorker(port: int) -> int:
    """
    Send a plain request on a new connection; return the pid of the worker
    that answered it.
    """
    responses, reader = exchange(port, b"GET /sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reader.sock.close()
    assert [r.status for r in responses] == [200], responses
    return int(responses[0].body)


@contextmanager
def oneWorker(*args: str) -> Iterator[tuple[Server, int]]:
    """
    A server of one worker that never retires, serving as C{args} say, and
    that worker's pid; it must log no internal error.
    """
    server = Server("--workers", "1", "--max-requests", "0", *args).start()
    try:
        server.serving()
        yield server, servingWorker(server.port)
    finally:
        server.stop()
    assert server.internalErrors() == []
