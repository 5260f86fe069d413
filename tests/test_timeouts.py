"""
--header-timeout and --keepalive-timeout, and the promise they serve: many
idle or slow connections never stop a worker serving other clients.
"""

from __future__ import annotations

import socket
import time

import pytest

from rawhttp import Reader, connect, exchange

pytestmark = pytest.mark.usefixtures("noInternalErrors")
APP = ("--app", "testapp:validated", "--workers", "1", "--max-requests", "0")


def test_slowloris_is_cut_off(serve) -> None:
    server = serve(*APP, "--header-timeout", "1")
    sock = connect(server.port)
    reader = Reader(sock)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    # Trickle a header a byte at a time, far slower than any client; each
    # byte would reset an idle timeout, but not the header timeout.
    with pytest.raises(OSError):
        for byte in b"X-Slow: " + b"a" * 200:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
            if time.monotonic() - started > 15:
                break
    assert time.monotonic() - started < 15
    response = reader.response()
    assert response is None or response.status == 408


def test_header_timeout_answers_408(serve) -> None:
    server = serve(*APP, "--header-timeout", "1")
    responses, reader = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert [r.status for r in responses] == [408]
    assert reader.closed(10)


def test_idle_keepalive_connection_is_closed(serve) -> None:
    server = serve(*APP, "--keepalive-timeout", "1")
    responses, reader = exchange(server.port, b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n", count=1)
    assert responses[0].status == 200
    # Closed quietly, with no 408 a client reusing the connection could
    # take for the answer to its next request.
    assert reader.closed(10)


def test_keepalive_connection_outlives_a_short_pause(serve) -> None:
    server = serve(*APP, "--keepalive-timeout", "30", "--header-timeout", "1")
    responses, reader = exchange(server.port, b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n", count=1)
    # Longer than the header timeout: between requests, only the keep-alive
    # timeout counts.
    assert not reader.closed(2.5)
    reader.sock.sendall(b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reader.response().status == 200
    reader.sock.close()


@pytest.mark.parametrize("mode", [(), ("--threads", "1")], ids=["in-reactor", "one-thread"])
def test_idle_and_slow_clients_do_not_hold_the_worker(serve, mode) -> None:
    server = serve(*APP, *mode, "--header-timeout", "60", "--keepalive-timeout", "60")
    held: list[socket.socket] = []
    try:
        for _ in range(100):
            # Connected, never a byte.
            held.append(connect(server.port))
        for _ in range(50):
            # Half a request head.
            sock = connect(server.port)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(sock)
        for _ in range(50):
            # A head, and a body that never comes.
            sock = connect(server.port)
            sock.sendall(b"POST /roundtrip HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsome")
            held.append(sock)
        for _ in range(50):
            # Idle after one request.
            sock = connect(server.port)
            sock.sendall(b"GET /sized HTTP/1.1\r\nHost: x\r\n\r\n")
            assert Reader(sock).response().status == 200
            held.append(sock)
        # Long before any of them times out, a new client is served, again
        # and again, by the one worker.
        for _ in range(20):
            started = time.monotonic()
            responses, reader = exchange(
                server.port, b"POST /roundtrip HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok", count=1
            )
            reader.sock.close()
            assert responses[0].status == 200 and b'"body": "ok"' in responses[0].body
            assert time.monotonic() - started < 30
    finally:
        for sock in held:
            sock.close()
