"""
The PROXY protocol: v1 and v2 headers built byte by byte in the test, sent
over raw sockets to the real server, and a real nginx with C{proxy_protocol
on} in front of a UNIX socket; what is not a valid header from a trusted
peer is closed without a response, and the worker lives on.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from certs import clientContext, makeCertificate, readAll
from nginxprocess import mainConfig, recipe, runningNginx
from prefork.web.proxyprotocol import (
    V2_MAX_LENGTH,
    InvalidProxyHeader,
    ProxyHeader,
    parseHeader,
)
from server import TIMEOUT, Server
from superdaemon import freePort
from tools import STREAM_MODULE, requires

APP = ("--app", "testapp:application", "--proxy-protocol")
REQUEST = b"GET /environ HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
PID_REQUEST = b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int, family: int, body: bytes, length: int | None = None) -> bytes:
    """
    A version 2 header: C{command} 0 (LOCAL) or 1 (PROXY), the family and
    protocol byte, and the address block with any TLVs.
    """
    size = len(body) if length is None else length
    return SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", size) + body


def inet(source: str, destination: str, sourcePort: int, destinationPort: int) -> bytes:
    return socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", sourcePort, destinationPort)


def inet6(source: str, destination: str, sourcePort: int, destinationPort: int) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, destination)
        + struct.pack("!HH", sourcePort, destinationPort)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def exchange(port: int, data: bytes, byteByByte: bool = False) -> bytes:
    """
    Send C{data} on a new connection and read until the server closes it.
    A connection the server resets before C{connect()} has returned (it
    refuses an untrusted peer as soon as it accepts it) was closed
    without a response too.
    """
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except ConnectionResetError:
        return b""
    with sock:
        try:
            if byteByByte:
                for i in range(len(data)):
                    sock.send(data[i : i + 1])
            else:
                sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return readAll(sock)


def environOf(answer: bytes) -> dict[str, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), answer
    return json.loads(body)


def addresses(environ: dict[str, str]) -> tuple[str, str, str]:
    return environ["REMOTE_ADDR"], environ["REMOTE_PORT"], environ["SERVER_PORT"]


@pytest.fixture
def server(serve) -> Server:
    return serve(*APP, "--workers", "1", "--max-requests", "0", "--header-timeout", "2")


LOCAL_V2 = v2(0, 0x11, inet("203.0.113.9", "203.0.113.10", 1, 2))


@pytest.mark.parametrize(
    "header, expected",
    [
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\n", ("192.0.2.7", "4711", "443")),
        (b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 8443\r\n", ("2001:db8::7", "65535", "8443")),
        (v2(1, 0x11, inet("192.0.2.8", "198.51.100.2", 5000, 80)), ("192.0.2.8", "5000", "80")),
        (v2(1, 0x21, inet6("2001:db8::8", "2001:db8::2", 6000, 443)), ("2001:db8::8", "6000", "443")),
        # TLVs (an AWS VPC endpoint id, a unique id, padding) are skipped.
        (
            v2(
                1, 0x11,
                inet("192.0.2.9", "198.51.100.3", 7000, 443)
                + tlv(0xEA, b"\x01vpce-0123") + tlv(0x05, b"id-1") + tlv(0x04, bytes(9)),
            ),
            ("192.0.2.9", "7000", "443"),
        ),
    ],
)
def test_header_gives_the_client_address(server: Server, header: bytes, expected: tuple[str, str, str]) -> None:
    assert addresses(environOf(exchange(server.port, header + REQUEST))) == expected
    # However the header is cut into segments.
    assert addresses(environOf(exchange(server.port, header + REQUEST, byteByByte=True))) == expected


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        LOCAL_V2,  # LOCAL: the family and addresses are ignored
        v2(0, 0x00, b""),
        v2(1, 0x00, b""),  # PROXY with UNSPEC
    ],
)
def test_local_and_unknown_keep_the_connection_address(server: Server, header: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(header + REQUEST)
        environ = environOf(readAll(sock))
        assert addresses(environ) == ("127.0.0.1", str(sock.getsockname()[1]), str(server.port))


def test_header_once_per_connection(server: Server) -> None:
    header = b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\n"
    keepAlive = REQUEST.replace(b"Connection: close\r\n", b"")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        # A second "header" is the next request, and a bad one.
        sock.sendall(header + keepAlive + keepAlive + header)
        answer = readAll(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.count(b'"REMOTE_ADDR": "192.0.2.7"') == 2
    assert answer.endswith(b"400 Bad Request\nmalformed request line\n")


BAD_HEADERS = {
    "no header": REQUEST,
    "wrong v2 signature": SIGNATURE[:11] + b"X" + v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2))[12:],
    "wrong v1 signature": b"PROXI TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "lower case": b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 longer than 107 bytes": b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",
    "v1 without CR": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "v1 two spaces": b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 missing port": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "v1 family": b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 IPv6 in TCP4": b"PROXY TCP4 ::1 ::2 1 2\r\n",
    "v1 bad address": b"PROXY TCP4 999.1.2.3 5.6.7.8 1 2\r\n",
    "v1 leading zero octet": b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
    "v1 port above 65535": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "v1 signed port": b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    "v1 port with leading zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
    "v1 control byte": b"PROXY TCP4 1.2.3.4\x00 5.6.7.8 1 2\r\n",
    "v2 version 1": SIGNATURE + b"\x11\x11\x00\x0c" + inet("1.2.3.4", "5.6.7.8", 1, 2),
    "v2 command 2": v2(2, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2)),
    "v2 unknown family": v2(1, 0x41, inet("1.2.3.4", "5.6.7.8", 1, 2)),
    "v2 unknown protocol": v2(1, 0x13, inet("1.2.3.4", "5.6.7.8", 1, 2)),
    "v2 datagram": v2(1, 0x12, inet("1.2.3.4", "5.6.7.8", 1, 2)),
    "v2 length too short for IPv4": v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2)[:10]),
    "v2 length too short for IPv6": v2(1, 0x21, inet("1.2.3.4", "5.6.7.8", 1, 2)),
    "v2 oversized": v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0x04, bytes(V2_MAX_LENGTH))),
    "v2 TLV cut short": v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04\x00"),
    "v2 TLV past the end": v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04\x00\x09abc"),
}


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_bad_header_is_closed_without_response(server: Server, data: bytes, noInternalErrors) -> None:
    good = b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\n"
    pid = exchange(server.port, good + PID_REQUEST).partition(b"\r\n\r\n")[2]
    assert exchange(server.port, data + REQUEST) == b""
    assert exchange(server.port, good + PID_REQUEST).partition(b"\r\n\r\n")[2] == pid


def test_truncated_header_waits_then_meets_the_header_timeout(server: Server) -> None:
    for data in [b"PROXY TCP4 1.2.3.4 5.6", SIGNATURE[:7], v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2))[:20]]:
        started = time.monotonic()
        assert exchange(server.port, data) == b""
        assert 1.0 < time.monotonic() - started < TIMEOUT / 2


def test_untrusted_peer_is_closed_without_response(serve) -> None:
    server = serve(*APP, "--workers", "1", "--forwarded-allow-ips", "192.0.2.1,10.0.0.0/8")
    assert exchange(server.port, b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\n" + REQUEST) == b""
    server.waitFor(
        r"Closed a connection from 127\.0\.0\.1 without a response: 127\.0\.0\.1 is not in --forwarded-allow-ips"
    )


def test_without_the_option_a_header_is_a_bad_request(serve) -> None:
    server = serve("--app", "testapp:application", "--workers", "1")
    response = exchange(server.port, b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\n" + REQUEST)
    assert response.startswith(b"HTTP/1.1 400 ")


@requires("openssl")
def test_header_before_tls(serve, tmp_path: Path, noInternalErrors) -> None:
    key, crt = makeCertificate(tmp_path)
    server = serve(*APP, "--workers", "1", listen=f"ssl:0:privateKey={key}:certKey={crt}:interface=127.0.0.1")
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    raw.sendall(v2(1, 0x11, inet("192.0.2.44", "198.51.100.4", 4444, 443)))
    with clientContext(crt).wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(REQUEST)
        environ = environOf(readAll(sock))
    assert addresses(environ) == ("192.0.2.44", "4444", "443")
    assert environ["wsgi.url_scheme"] == "https"


# The parser itself.


def test_parse_needs_more_bytes_for_any_valid_beginning() -> None:
    for header in [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\n",
        v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + tlv(1, b"h2")),
    ]:
        for cut in range(len(header)):
            assert parseHeader(header[:cut]) is None
        assert parseHeader(header + b"GET") is not None


def test_parse_results() -> None:
    assert parseHeader(b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\nGET") == ProxyHeader(
        44, IPv4Address("TCP", "192.0.2.7", 4711), IPv4Address("TCP", "198.51.100.1", 443)
    )
    assert parseHeader(b"PROXY TCP6 2001:DB8:0::7 ::1 0 1\r\n") == ProxyHeader(
        34, IPv6Address("TCP", "2001:db8::7", 0), IPv6Address("TCP", "::1", 1)
    )
    unix = b"/run/client.sock".ljust(108, b"\0") + b"/run/server.sock".ljust(108, b"\0")
    assert parseHeader(v2(1, 0x31, unix)) == ProxyHeader(
        232, UNIXAddress(b"/run/client.sock"), UNIXAddress(b"/run/server.sock")
    )
    assert parseHeader(LOCAL_V2) == ProxyHeader(28)


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_parse_rejects(data: bytes) -> None:
    with pytest.raises(InvalidProxyHeader):
        parseHeader(data + REQUEST)


# A real nginx in front.

RECIPE = Path(__file__).parent.parent / "contrib" / "nginx" / "prefork-proxy-protocol.conf"


@pytest.fixture
def nginxStream(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """
    nginx's stream proxy on a loopback port, sending the PROXY protocol to
    a UNIX socket; yields the port and the socket's path.
    """
    root, port, socketPath = tmp_path / "nginx", freePort(), str(tmp_path / "app.sock")
    root.mkdir()
    (root / "stream.conf").write_text(recipe(RECIPE, port, socketPath))
    load = f"load_module {STREAM_MODULE};" if Path(STREAM_MODULE).exists() else ""
    (root / "nginx.conf").write_text(mainConfig(root, f"include {root}/stream.conf;", load))
    with runningNginx(root, root / "nginx.conf"):
        yield port, socketPath


@requires("nginx", "nginx-stream")
def test_nginx_proxy_protocol_gives_the_client_address(servers: list[Server], nginxStream: tuple[int, str]) -> None:
    port, socketPath = nginxStream
    server = Server(*APP, "--workers", "2", listen=f"unix:{socketPath}")
    servers.append(server)
    server.start().serving()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(REQUEST)
            environ = environOf(readAll(sock))
            # Without the header, a UNIX socket's peer would be 127.0.0.1,
            # port 0: the port is this client's own.
            assert addresses(environ) == ("127.0.0.1", str(sock.getsockname()[1]), str(port))
