"""
The server answers HTTP as a WSGI server must: methods, bodies, streaming,
keep-alive, TCP and UNIX sockets.
"""

from __future__ import annotations

import json
import stat
import subprocess

from server import APPS, UnixHTTPConnection, twistd

APP = ("--app", "testapp:application", "--workers", "2")


def test_get(serve) -> None:
    server = serve(*APP)
    status, headers, body = server.get("/")
    assert status == 200
    assert headers["x-pid"] == body.decode()
    assert int(body) != server.pid


def test_head(serve) -> None:
    server = serve(*APP)
    status, headers, body = server.get("/", method="HEAD")
    assert (status, body) == (200, b"")
    assert "x-pid" in headers


def test_post_body(serve) -> None:
    server = serve(*APP)
    payload = bytes(range(256)) * 1000
    status, _, body = server.get("/echo", method="POST", body=payload)
    assert status == 200
    assert body == payload


def test_streamed_response(serve) -> None:
    server = serve(*APP)
    status, headers, body = server.get("/stream?n=50")
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"".join(b"chunk %d\n" % i for i in range(50))


def test_keep_alive(serve) -> None:
    server = serve(*APP, "--max-requests", "0")
    connection = server.connection()
    pids = set()
    for _ in range(10):
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        pids.add(response.read())
        assert response.getheader("connection") != "close"
    # One connection, one worker: every request reused it.
    assert len(pids) == 1
    connection.close()


def test_environ(serve) -> None:
    server = serve(*APP, "--threads", "2")
    _, _, body = server.get("/environ?a=b%20c")
    environ = json.loads(body)
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.multithread"] is True
    assert environ["QUERY_STRING"] == "a=b%20c"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_CONTENT_LENGTH" not in environ


def test_threaded_mode(serve) -> None:
    server = serve(*APP, "--threads", "4")
    assert server.get("/")[0] == 200
    assert server.get("/echo", method="POST", body=b"x" * 100000)[2] == b"x" * 100000
    assert server.get("/stream?n=20")[2].count(b"chunk") == 20


def test_unix_socket(serve, tmp_path) -> None:
    path = str(tmp_path / "app.sock")
    server = serve(*APP, listen=f"unix:{path}")
    connection = UnixHTTPConnection(path)
    connection.request("GET", "/environ")
    response = connection.getresponse()
    assert response.status == 200
    environ = json.loads(response.read())
    assert environ["SERVER_PORT"] == "80"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    connection.close()
    server.stop()
    # The master removes the socket it bound, and no worker removed it before.
    assert not (tmp_path / "app.sock").exists()


def test_unix_socket_keeps_its_mode(serve, tmp_path) -> None:
    """
    The mode a UNIX socket is made with stays once the workers serve on it.
    """
    path = tmp_path / "app.sock"
    serve(*APP, "--workers", "2", listen=f"unix:{path}:mode=600")
    connection = UnixHTTPConnection(str(path))
    connection.request("GET", "/")
    assert connection.getresponse().status == 200
    connection.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_demo_app(serve) -> None:
    server = serve("--workers", "1")
    status, _, body = server.get("/")
    assert status == 200
    assert b"worker pid" in body and b"generation" in body


def test_help_lists_every_option() -> None:
    result = subprocess.run([twistd(), "prefork", "--help"], capture_output=True, text=True, cwd=APPS, timeout=60)
    assert result.returncode == 0
    for option in ("--app", "--listen", "--port", "--workers", "--max-workers", "--max-requests",
                   "--max-reqs-per-child", "--min-requests", "--min-reqs-per-child", "--threads",
                   "--graceful-timeout", "--access-log", "--no-preload", "--pythonpath"):
        assert option in result.stdout
    assert "[default: 100]" in result.stdout
