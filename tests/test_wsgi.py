"""
PEP 3333 as the application sees it: the environ passes wsgiref's
validator, mounting below --script-name, X-Forwarded-Proto from trusted
peers only, wsgi.file_wrapper, close() in every case, and errors that never
leak a traceback unless asked to.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from rawhttp import Reader, connect, exchange
from server import Server, UnixHTTPConnection, waitUntil

pytestmark = pytest.mark.usefixtures("noInternalErrors")
APP = ("--app", "testapp:validated", "--workers", "1", "--max-requests", "0")
MODES = {"in-reactor": (), "threads": ("--threads", "2")}


@pytest.fixture(params=list(MODES))
def mode(request) -> tuple[str, ...]:
    return MODES[request.param]


def get(server: Server, target: str, headers: str = "") -> tuple[int, bytes]:
    request = f"GET {target} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n{headers}\r\n".encode()
    responses, reader = exchange(server.port, request, count=1)
    reader.sock.close()
    return responses[0].status, responses[0].body


def environ(server: Server, target: str = "/roundtrip", headers: str = "") -> dict[str, str]:
    status, body = get(server, target, headers)
    assert status == 200, body
    return json.loads(body)


def validatorComplaints(server: Server) -> list[str]:
    return [line for line in server.lines if re.search(r"AssertionError|WSGIWarning|without being closed", line)]


def test_every_request_passes_the_validator(serve, mode) -> None:
    server = serve(*APP, *mode)
    requests = [
        b"GET /roundtrip/a%20b?c=d HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /roundtrip HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /roundtrip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HEAD /roundtrip HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /stream?n=3 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS /roundtrip HTTP/1.0\r\n\r\n",
    ]
    for request in requests:
        responses, reader = exchange(server.port, request, count=1, head=request.startswith(b"HEAD"))
        reader.sock.close()
        assert responses[0].status == 200
    body = environ(server)
    assert body["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert all(isinstance(v, str) for k, v in body.items() if "." not in k and k not in ("pid",))
    assert validatorComplaints(server) == []


def test_the_validator_is_watching(serve) -> None:
    # The check above can fail: an application that breaks PEP 3333 under
    # the validator is reported in the log.
    server = serve("--app", "testapp:brokenUnderValidator", "--workers", "1")
    assert get(server, "/")[0] == 500
    server.waitFor("AssertionError")


@pytest.mark.parametrize("option", ["/app", "/app/"])
def test_script_name(serve, option: str) -> None:
    server = serve(*APP, "--script-name", option)
    seen = environ(server, "/app/roundtrip/x%2Fy")
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/roundtrip/x/y")
    seen = environ(server, "/app?roundtrip")
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "")
    for outside in ("/", "/apple/roundtrip", "/roundtrip"):
        assert get(server, outside)[0] == 404
    assert validatorComplaints(server) == []


def test_forwarded_proto_from_untrusted_peer_is_ignored(serve) -> None:
    server = serve(*APP, "--forwarded-allow-ips", "10.0.0.1, 192.168.0.0/16")
    seen = environ(server, headers="X-Forwarded-Proto: https\r\n")
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_X_FORWARDED_PROTO"] == "https"


def test_forwarded_proto_from_trusted_network(serve) -> None:
    server = serve(*APP, "--forwarded-allow-ips", "10.0.0.1,127.0.0.0/8")
    assert environ(server, headers="X-Forwarded-Proto: https\r\n")["wsgi.url_scheme"] == "https"
    assert environ(server)["wsgi.url_scheme"] == "http"


def test_forwarded_proto_from_anyone(serve) -> None:
    server = serve(*APP, "--forwarded-allow-ips", "*")
    assert environ(server, headers="X-Forwarded-Proto: HTTPS\r\n")["wsgi.url_scheme"] == "https"


def test_forwarded_proto_over_unix_socket(serve, tmp_path: Path) -> None:
    # Only local processes reach a UNIX socket: like gunicorn, trust it.
    path = str(tmp_path / "s")
    serve(*APP, "--forwarded-allow-ips", "10.0.0.1", listen=f"unix:{path}")
    connection = UnixHTTPConnection(path)
    connection.request("GET", "/roundtrip", headers={"X-Forwarded-Proto": "https"})
    assert json.loads(connection.getresponse().read())["wsgi.url_scheme"] == "https"
    connection.close()


def workerPeakMemory(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def test_file_wrapper_streams(serve, mode, tmp_path: Path) -> None:
    size = 96 * 1024 * 1024
    data = tmp_path / "big"
    with data.open("wb") as f:
        for i in range(size // 65536):
            f.write(bytes([i % 251]) * 65536)
    server = serve(*APP, *mode)
    connection = server.connection()
    connection.request("GET", "/sized")
    worker = int(connection.getresponse().read())
    before = workerPeakMemory(worker)
    connection.request("GET", f"/file?path={data}")
    response = connection.getresponse()
    assert response.status == 200
    assert int(response.getheader("content-length")) == size
    digest, received = hashlib.sha256(), 0
    while chunk := response.read(1 << 20):
        digest.update(chunk)
        received += len(chunk)
    connection.close()
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(data.read_bytes()).hexdigest()
    # The file went out a block at a time: the worker's peak memory grew
    # by a fraction of its size.
    assert workerPeakMemory(worker) - before < size // 3


def test_error_traceback_is_logged_not_sent(serve) -> None:
    server = serve(*APP)
    status, body = get(server, "/raise")
    assert status == 500 and b"Traceback" not in body and b"failed before" not in body
    server.waitFor(r"RuntimeError: failed before start_response")
    server.waitFor(r"WSGI application error in GET /raise")


def test_display_tracebacks(serve, mode) -> None:
    server = serve(*APP, *mode, "--display-tracebacks")
    status, body = get(server, "/raise")
    assert status == 500
    assert b"Traceback" in body and b"RuntimeError: failed before start_response" in body


def test_bad_response_header_is_logged(serve) -> None:
    server = serve(*APP)
    assert get(server, "/header?kind=crlf")[0] == 500
    server.waitFor(r"invalid WSGI header \('X-Split'")


def test_close_called_after_success(serve, mode, tmp_path: Path) -> None:
    server = serve(*APP, *mode)
    marker = tmp_path / "closed"
    assert get(server, f"/closing?marker={marker}") == (200, b"ab")
    waitUntil(marker.exists, what="close() after success")


def test_close_called_when_iteration_raises(serve, mode, tmp_path: Path) -> None:
    server = serve(*APP, *mode)
    marker = tmp_path / "closed"
    request = f"GET /closing-raise?marker={marker} HTTP/1.1\r\nHost: x\r\n\r\n"
    responses, reader = exchange(server.port, request.encode())
    reader.sock.close()
    # Cut short: no complete response.
    assert not responses or responses[-1].truncated
    waitUntil(marker.exists, what="close() after an error")
    server.waitFor("RuntimeError: failed mid-body")


def test_close_called_when_client_disconnects(serve, mode, tmp_path: Path) -> None:
    server = serve(*APP, *mode)
    marker = tmp_path / "closed"
    sock = connect(server.port)
    sock.sendall(f"GET /forever?marker={marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    reader = Reader(sock)
    reader.line()
    reader.exactly(4096)
    sock.close()
    waitUntil(marker.exists, what="close() after the client went away")
    # And the worker goes on serving.
    assert get(server, "/sized")[0] == 200
