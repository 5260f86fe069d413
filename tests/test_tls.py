"""
TLS served by the workers: C{ssl:} and C{tls:} endpoints with certificates
made by the test, checked by curl and Python's ssl client; what cannot be
served is refused at start; a reload serves renewed certificates.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from certs import (
    clientContext,
    httpsConnection,
    httpsGet,
    makeCertificate,
    peerName,
    readAll,
)
from server import APPS, TIMEOUT, twistd, waitUntil
from statusclient import fetch, status
from tools import requires

APP = ("--app", "testapp:application")

#: Every test here makes its certificates with the openssl command.
pytestmark = requires("openssl")


def tlsEndpointKnown() -> bool:
    """
    Whether the installed Twisted has the C{tls:} endpoint (newer releases
    do; on older ones the server refuses it at start, naming it).
    """
    from twisted.internet.interfaces import IStreamServerEndpointStringParser
    from twisted.plugin import getPlugins

    return any(parser.prefix == "tls" for parser in getPlugins(IStreamServerEndpointStringParser))


UNKNOWN_TLS = "tls: is not known to this Twisted"


def sslListen(key: Path, certificate: Path) -> str:
    return f"ssl:0:privateKey={key}:certKey={certificate}:interface=127.0.0.1"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return makeCertificate(tmp_path)


@requires("curl")
def test_ssl_endpoint_is_served_with_tls(serve, certificate, noInternalErrors) -> None:
    key, crt = certificate
    server = serve(*APP, "--workers", "2", listen=sslListen(key, crt))
    assert f"Listening on https://127.0.0.1:{server.port}/" in server.output
    curl = subprocess.run(
        ["curl", "-sS", "--cacert", str(crt), f"https://localhost:{server.port}/environ"],
        capture_output=True, timeout=TIMEOUT, check=True,
    )
    environ = json.loads(curl.stdout)
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PORT"] == str(server.port)
    status, body, name = httpsGet(server.port, crt, "/")
    assert (status, name) == (200, "localhost")
    assert body.isdigit()


@requires("curl")
def test_plain_http_on_a_tls_port_gets_no_response(serve, certificate, noInternalErrors) -> None:
    key, crt = certificate
    server = serve(*APP, "--workers", "1", listen=sslListen(key, crt))
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = readAll(sock)
    assert b"HTTP/" not in answer and b"200" not in answer
    curl = subprocess.run(
        ["curl", "-sS", f"http://127.0.0.1:{server.port}/"], capture_output=True, timeout=TIMEOUT, check=False
    )
    assert curl.returncode != 0 and curl.stdout == b""
    assert httpsGet(server.port, crt)[0] == 200


def test_hostile_bytes_do_not_take_down_a_worker(serve, certificate, noInternalErrors) -> None:
    key, crt = certificate
    server = serve(*APP, "--workers", "1", "--max-requests", "0", listen=sslListen(key, crt))
    pid = httpsGet(server.port, crt)[1]
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)
    for payload in [
        bytes(range(256)) * 8,  # not TLS at all
        b"\x16\x03\x01\x00\x05hello" + bytes(64),  # a record that is no handshake
        hello,  # a ClientHello cut short, then a close
        b"\x16\x03\x01\xff\xff" + b"\x01" * 70000,  # an oversized record
        b"\x15\x03\x03\x00\x02\x02\x28",  # an alert first
    ]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            try:
                sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert b"HTTP/" not in readAll(sock)
    # A client that completes the handshake and leaves mid-request.
    context = clientContext(crt)
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname="localhost") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: local")
    assert httpsGet(server.port, crt)[1] == pid


def test_stalled_handshake_meets_the_header_timeout(serve, certificate, noInternalErrors) -> None:
    key, crt = certificate
    server = serve(*APP, "--workers", "1", "--header-timeout", "1", listen=sslListen(key, crt))
    for payload in [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            started = time.monotonic()
            sock.sendall(payload)
            assert readAll(sock) == b""
            assert 0.5 < time.monotonic() - started < TIMEOUT / 2
    assert httpsGet(server.port, crt)[0] == 200


def test_limits_and_keepalive_under_tls(serve, certificate, noInternalErrors) -> None:
    key, crt = certificate
    server = serve(
        *APP, "--workers", "1", "--max-requests", "3", "--limit-request-line", "100", listen=sslListen(key, crt)
    )
    connection = httpsConnection(server.port, crt)
    pids, closes = [], []
    for _ in range(3):
        connection.request("GET", "/")
        response = connection.getresponse()
        pids.append(response.read())
        closes.append(response.getheader("connection"))
    # One TLS connection carried the worker's three requests; the last one
    # closed it, since the worker retires.
    assert len(set(pids)) == 1 and closes == [None, None, "close"]
    connection.close()
    connection = httpsConnection(server.port, crt)
    connection.request("GET", "/" + "x" * 200)
    assert connection.getresponse().status == 414
    connection.close()


def test_tls_directory_endpoint(serve, tmp_path: Path, noInternalErrors) -> None:
    key, crt = makeCertificate(tmp_path, "site")
    pems = tmp_path / "pems"
    pems.mkdir()
    (pems / "localhost.pem").write_bytes(key.read_bytes() + crt.read_bytes())
    listen = f"tls:{pems}:port=0:interface=127.0.0.1"
    if not tlsEndpointKnown():
        result = run("--listen", listen)
        assert result.returncode == 2 and UNKNOWN_TLS in result.stderr and len(result.stderr.splitlines()) == 1
        return
    server = serve(*APP, "--workers", "1", listen=listen)
    assert f"Listening on https://127.0.0.1:{server.port}/" in server.output
    status, _, name = httpsGet(server.port, crt, "/")
    assert (status, name) == (200, "localhost")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [twistd(), "-n", "--pidfile=", "prefork", *args],
        capture_output=True, text=True, cwd=APPS, timeout=TIMEOUT, check=False,
    )


@pytest.mark.parametrize(
    "listen, named",
    [
        (
            "ssl:0:privateKey={dir}/missing.key:certKey={crt}",
            "cannot read the private key {dir}/missing.key: No such file",
        ),
        ("ssl:0:privateKey={dir}:certKey={crt}", "cannot read the private key {dir}: Is a directory"),
        ("ssl:0:privateKey={key}:certKey={other}", "does not match the certificate"),
        ("ssl:0:privateKey={crt}:certKey={crt}", "holds no PEM private key"),
        ("ssl:0:privateKey={encrypted}:certKey={crt}", "{encrypted} holds an encrypted private key"),
        ("ssl:0:privateKey={key}:certKey={key}", "holds no PEM certificate"),
        ("ssl:0:privateKey={key}:certKey={crt}:extraCertChain={key}", "holds no PEM certificate for extraCertChain"),
        ("ssl:0:privateKey={key}:certKey={crt}:sslmethod=NOPE", "sslmethod 'NOPE'"),
        ("ssl:0:privateKey={key}:certKey={crt}:verify=yes", "takes the options"),
        ("tls:{dir}/empty:port=0", "holds no certificate with its private key"),
        ("tls:{dir}/locked:port=0", "{dir}/locked/site.pem holds an encrypted private key"),
        ("txtorcon:80", "the workers cannot serve 'txtorcon' endpoints"),
        ("onion:80", "the workers cannot serve 'onion' endpoints"),
        ("stdio:", "the workers cannot serve 'stdio' endpoints"),
    ],
)
def test_what_cannot_be_served_is_refused(tmp_path: Path, listen: str, named: str) -> None:
    key, crt = makeCertificate(tmp_path)
    _, other = makeCertificate(tmp_path, "other")
    (tmp_path / "empty").mkdir()
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True, capture_output=True, timeout=TIMEOUT,
    )
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "site.pem").write_bytes(encrypted.read_bytes() + crt.read_bytes())
    values = {"dir": tmp_path, "key": key, "crt": crt, "other": other, "encrypted": encrypted}
    result = run("--listen", listen.format(**values))
    if listen.startswith("tls:") and not tlsEndpointKnown() and UNKNOWN_TLS in result.stderr:
        named = UNKNOWN_TLS
    # What was asked cannot be served: a usage error (2).  The files it
    # names cannot be used: like any file the server cannot open (1).
    asked = "takes the options" in named or "cannot serve" in named or named == UNKNOWN_TLS
    assert result.returncode == (2 if asked else 1), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named.format(**values) in lines[0], result.stderr
    assert lines[0].startswith("twistd prefork: --listen ")
    assert result.stdout == ""


class NewTLSConnections:
    """
    A client that sends GETs, each on a new TLS connection, from a thread,
    until stopped (or for two minutes at most).
    """

    def __init__(self, port: int, certificate: Path) -> None:
        self.port, self.certificate = port, certificate
        self.names: list[str] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 2 * TIMEOUT
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status, _, name = httpsGet(self.port, self.certificate)
                assert status == 200
                self.names.append(name)
            except Exception as e:  # every failure is counted
                self.failures.append(e)

    def __enter__(self) -> NewTLSConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


def test_reload_serves_renewed_certificate_without_dropping_a_connection(
    serve, tmp_path: Path, noInternalErrors
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    key, crt = live / "server.key", live / "server.crt"
    for name, commonName in [("old", "localhost"), ("new", "renewed")]:
        makeCertificate(tmp_path, name, commonName)
    shutil.copy(tmp_path / "old.key", key)
    shutil.copy(tmp_path / "old.crt", crt)
    both = tmp_path / "both.crt"
    both.write_bytes((tmp_path / "old.crt").read_bytes() + (tmp_path / "new.crt").read_bytes())
    server = serve(*APP, "--workers", "2", "--threads", "2", listen=sslListen(key, crt))
    # A request in flight over the old certificate's connection when the
    # reload starts.
    slow = httpsConnection(server.port, both)
    slow.request("GET", "/sleep?seconds=2")
    waitUntil(lambda: "sleeping in" in server.output, what="the slow request to start")
    assert peerName(slow.sock) == "localhost"
    with NewTLSConnections(server.port, both) as load:
        waitUntil(lambda: len(load.names) >= 5 or load.failures, what="answers before the reload")
        shutil.copy(tmp_path / "new.key", key)
        shutil.copy(tmp_path / "new.crt", crt)
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        server.waitFor("Generation 2 serving", after=mark)
        server.waitFor("Generation 1 has ended", after=mark)
        count = len(load.names)
        waitUntil(lambda: len(load.names) >= count + 5 or load.failures, what="answers after the reload")
    response = slow.getresponse()
    assert response.status == 200 and response.read().isdigit()
    slow.close()
    assert load.failures == []
    assert load.names[0] == "localhost" and load.names[-1] == "renewed"
    assert httpsGet(server.port, both)[2] == "renewed"


def test_reload_with_a_broken_certificate_keeps_serving(serve, tmp_path: Path) -> None:
    key, crt = makeCertificate(tmp_path)
    server = serve(*APP, "--workers", "1", listen=sslListen(key, crt))
    key.write_text("not a key\n")
    mark = len(server.lines)
    server.signal(signal.SIGHUP)
    server.waitFor(
        rf"Generation 2 failed, generation 1 keeps serving: cannot serve TLS: {key} holds no PEM private key",
        after=mark,
    )
    assert httpsGet(server.port, crt)[0] == 200


def test_python_ssl_client_negotiates_http11(serve, certificate) -> None:
    key, crt = certificate
    server = serve(*APP, "--workers", "1", listen=sslListen(key, crt))
    context = clientContext(crt)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert readAll(sock).startswith(b"HTTP/1.1 200 OK\r\n")


def test_status_page_says_https(serve, certificate) -> None:
    key, crt = certificate
    server = serve(*APP, "--workers", "1", "--status", "tcp:0:interface=127.0.0.1", listen=sslListen(key, crt))
    url = f"https://127.0.0.1:{server.port}/"
    assert status(server)["listening"] == [url]
    code, _, page = fetch(server, "/")
    assert code == 200 and url.encode() in page


class SilentTLSClient:
    """
    A TLS client that never answers the server's close_notify, nor closes
    its side of the TCP connection: the connection goes only if the server
    cuts it.
    """

    def __init__(self, port: int, certificate: Path) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = clientContext(certificate).wrap_bio(self._in, self._out, server_hostname="localhost")
        self._until(self.tls.do_handshake)

    def _until(self, operation: Callable[[], object]) -> object:
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                assert data, "the server closed during the exchange"
                self._in.write(data)
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        if data := self._out.read():
            self.sock.sendall(data)

    def request(self, data: bytes) -> bytes:
        """
        Send C{data}, and the first bytes of the response.
        """
        self.tls.write(data)
        self._flush()
        return self._until(lambda: self.tls.read(65536))  # type: ignore[return-value]

    def secondsUntilClosed(self) -> float:
        """
        How long until the TCP connection ends, reading (and ignoring) what
        the server sends: a close_notify stays unanswered.
        """
        started = time.monotonic()
        self.sock.settimeout(TIMEOUT)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return time.monotonic() - started

    def close(self) -> None:
        self.sock.close()


def test_a_closed_tls_connection_is_gone_whatever_the_client_does(serve, certificate) -> None:
    """
    Whenever the server closes a TLS connection (its timeouts, a response
    that ends the connection, a refusal, a drain), the TCP connection ends
    within a few seconds even when the client never answers close_notify.
    """
    key, crt = certificate
    server = serve(
        *APP, "--workers", "1", "--header-timeout", "1", "--keepalive-timeout", "1",
        "--limit-request-field-size", "100", listen=sslListen(key, crt),
    )
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    actions: dict[str, Callable[[SilentTLSClient], object]] = {
        "header timeout": lambda client: None,
        "keep-alive timeout": lambda client: client.request(get),
        "connection close": lambda client: client.request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        "refusal": lambda client: client.request(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 200 + b"\r\n\r\n"),
    }
    for name, action in actions.items():
        client = SilentTLSClient(server.port, crt)
        try:
            action(client)
            assert client.secondsUntilClosed() < 8, name
        finally:
            client.close()
    # A drain: TERM, with a connection kept idle by a client that will not
    # close it; the worker cannot exit before the connection is gone.
    client = SilentTLSClient(server.port, crt)
    try:
        client.request(b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.signal(signal.SIGTERM)
        assert client.secondsUntilClosed() < 8
    finally:
        client.close()
