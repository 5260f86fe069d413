"""
C{Expect: 100-continue} (RFC 9110 section 10.1.1): the client waits for the
go-ahead before it sends its body.  With a thread pool the server sends it
when the application reads the body, and an application that answers
without reading spares the client sending it; in the reactor thread, the
server reads the body for the application and sends the 100 at once.
"""

from __future__ import annotations

import socket

import pytest

from rawhttp import Reader, connect, exchange

pytestmark = pytest.mark.usefixtures("noInternalErrors")
APP = ("--app", "testapp:validated", "--workers", "1", "--max-requests", "0")
MODES = {"in-reactor": (), "threads": ("--threads", "1")}
HEAD = b"POST /roundtrip HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"


@pytest.mark.parametrize("mode", list(MODES))
def test_body_sent_after_100(serve, mode: str) -> None:
    server = serve(*APP, *MODES[mode])
    sock = connect(server.port)
    reader = Reader(sock)
    sock.sendall(HEAD + b"Content-Length: 5\r\n\r\n")
    assert reader.response().status == 100
    sock.sendall(b"hello")
    response = reader.response()
    assert response.status == 200 and b'"body": "hello"' in response.body
    # The connection goes on.
    sock.sendall(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    assert reader.response().status == 100
    sock.sendall(b"3\r\nabc\r\n0\r\n\r\nGET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
    response = reader.response()
    assert response.status == 200 and b'"body": "abc"' in response.body
    assert reader.response().status == 200
    sock.close()


def test_no_100_when_the_app_does_not_read(serve) -> None:
    server = serve(*APP, *MODES["threads"])
    sock = connect(server.port)
    reader = Reader(sock)
    sock.sendall(b"POST /sized HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
    response = reader.response()
    # The final answer, with no 100 before it; the body never sent, the
    # connection cannot go on.
    assert response.status == 200
    assert response.header("connection") == "close"
    assert reader.closed(30)


def test_body_that_never_comes_frees_the_thread(serve) -> None:
    server = serve(*APP, *MODES["threads"], "--header-timeout", "1")
    sock = connect(server.port)
    reader = Reader(sock)
    sock.sendall(HEAD + b"Content-Length: 5\r\n\r\n")
    assert reader.response().status == 100
    sock.sendall(b"he")
    # Cut off after the header timeout, and the one thread serves again.
    assert reader.response() is None
    server.waitFor("ClientDisconnected")
    responses, other = exchange(server.port, b"GET /sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [r.status for r in responses] == [200]


def test_client_leaving_mid_body_frees_the_thread(serve) -> None:
    server = serve(*APP, *MODES["threads"])
    sock = connect(server.port)
    reader = Reader(sock)
    sock.sendall(HEAD + b"Content-Length: 5\r\n\r\n")
    assert reader.response().status == 100
    sock.sendall(b"he")
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    server.waitFor("ClientDisconnected")
    responses, other = exchange(server.port, b"GET /sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [r.status for r in responses] == [200]
