"""
The server alone frames a response: the hop-by-hop fields an application
sets (PEP 3333 forbids them) never reach the client, whatever the mode, the
client's HTTP version, the body's form or the transport; each is logged.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import clientContext, makeCertificate
from rawhttp import Reader, Response, exchange
from server import TIMEOUT, Server
from tools import requires

APP = ("--app", "testapp:protocol", "--workers", "1", "--max-requests", "0")
MODES = {"in-reactor": ("--threads", "0"), "threads": ("--threads", "2")}
FIELDS = {
    "Transfer-Encoding": "chunked",
    "Connection": "keep-alive, Upgrade",
    "Keep-Alive": "timeout=5",
    "Upgrade": "h2c",
    "TE": "trailers",
    "Trailer": "X-Sum",
    "Proxy-Connection": "keep-alive",
}


@pytest.fixture(scope="module", params=list(MODES))
def server(request) -> Iterator[Server]:
    served = Server(*APP, *MODES[request.param])
    try:
        served.start()
        served.serving()
        yield served
    finally:
        served.stop()


def request(version: str, field: str, stream: bool) -> bytes:
    target = f"/hop-by-hop?field={field}&value={FIELDS[field].replace(' ', '%20')}"
    target += "&stream=1" if stream else ""
    return f"GET {target} {version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def framedByTheServer(response: Response, version: str, stream: bool) -> None:
    """
    The response carries the body whole, framed one way, by the server.
    """
    assert response.status == 200 and response.body == b"hello" and not response.truncated
    for name in ("keep-alive", "upgrade", "te", "trailer", "proxy-connection"):
        assert response.header(name) is None, (name, response.headers)
    assert response.headers.get("connection") == ["close"]
    if not stream:
        assert response.headers.get("content-length") == ["5"] and response.header("transfer-encoding") is None
    elif version == "HTTP/1.1":
        assert response.headers.get("transfer-encoding") == ["chunked"] and response.header("content-length") is None
    else:
        # HTTP/1.0 has no chunked coding: the close ends the body.
        assert response.header("transfer-encoding") is None and response.header("content-length") is None


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_hop_by_hop_fields_of_the_application_are_dropped(
    server: Server, field: str, version: str, stream: bool
) -> None:
    mark = len(server.lines)
    responses, reader = exchange(server.port, request(version, field, stream))
    reader.sock.close()
    [response] = responses
    framedByTheServer(response, version, stream)
    server.waitFor(rf"hop-by-hop header field '{field}'.*dropped", after=mark)


@requires("openssl")
def test_under_tls_too(serve, tmp_path: Path) -> None:
    key, certificate = makeCertificate(tmp_path)
    listen = f"ssl:0:privateKey={key}:certKey={certificate}:interface=127.0.0.1"
    served = serve(*APP, listen=listen)
    context: ssl.SSLContext = clientContext(certificate)
    with socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(request("HTTP/1.1", "Transfer-Encoding", False))
            response = Reader(sock).response()
    assert response is not None
    framedByTheServer(response, "HTTP/1.1", False)
