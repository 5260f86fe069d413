"""
C{--resource}: workers serve a C{twisted.web} resource (a Klein app, a
plain resource tree) through Twisted's own C{Site}, with the server's
recycling, draining, access log and reloads.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from certs import httpsGet, makeCertificate
from server import Server, waitUntil
from statusclient import STATUS, probe, status, statusPort
from test_settings import run
from tools import requires

KLEIN = ("--resource", "kleinapp:app.resource")
TREE = ("--resource", "resourceapp:root")


def getMany(server: Server, path: str, count: int, clients: int) -> list[tuple[int, bytes]]:
    """
    C{count} GETs of C{path}, C{clients} at a time, each on a new connection.
    """

    def one(_: int) -> tuple[int, bytes]:
        status, _headers, body = server.get(path)
        return status, body

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(count)))


def test_klein_app(serve, tmp_path: Path, noInternalErrors: None) -> None:
    """
    Routes with path parameters, a form, a Deferred, a coroutine, 404 and a
    handler that raises (500, its traceback logged), each in the access log.
    """
    log = tmp_path / "access.log"
    server = serve(*KLEIN, "--workers", "1", "--access-log", str(log), "--access-log-format", "json")
    status, _, body = server.get("/hello/bob")
    assert (status, body.split()[:2]) == (200, [b"hello", b"bob"])
    connection = server.connection()
    connection.request("POST", "/form", b"word=yes", {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"got yes")
    connection.close()
    assert server.get("/later")[::2] == (200, b"later")
    assert server.get("/wait?ms=10")[2].startswith(b"waited")
    assert server.get("/no/such/route")[0] == 404
    assert server.get("/fail")[0] == 500
    server.waitFor(r"ZeroDivisionError: kleinapp fails on purpose")
    assert "Traceback (most recent call last)" in server.output
    waitUntil(lambda: log.exists() and len(log.read_text().splitlines()) == 6, what="six access log lines")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/hello/bob", 200),
        ("POST", "/form", 200),
        ("GET", "/later", 200),
        ("GET", "/wait", 200),
        ("GET", "/no/such/route", 404),
        ("GET", "/fail", 500),
    ]
    assert lines[0]["bytes_sent"] == len(body) and lines[0]["remote_addr"] == "127.0.0.1"


def test_resource_tree_preloaded_and_streamed(serve, noInternalErrors: None) -> None:
    """
    A resource tree built with putChild, imported once in the template;
    a NOT_DONE_YET response streamed with request.write, and a client that
    goes away in the middle of one costs the worker nothing.
    """
    server = serve(*TREE, "--workers", "1")
    status, _, body = server.get("/hello")
    importer, worker = re.match(rb"plain hello, imported by (\d+), served by (\d+)", body).groups()
    assert status == 200 and importer != worker
    status, headers, body = server.get("/stream?chunks=5")
    assert status == 200 and body == b"".join(b"chunk %d\n" % i for i in range(5))
    assert headers.get("transfer-encoding") == "chunked"

    mark = len(server.lines)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(b"GET /stream?chunks=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"chunk 3\n" not in received:
            received += client.recv(4096)
    # The worker notices, stops writing, and serves on.
    for _ in range(5):
        assert server.get("/hello")[0] == 200
    time.sleep(0.1)
    assert server.internalErrors() == [] and "Traceback" not in "\n".join(server.lines[mark:])


def test_static_files_with_ranges(serve, noInternalErrors: None) -> None:
    """
    A static.File folder: a directory listing, a whole file, a byte range
    and a suffix range, as Twisted's File serves them.
    """
    source = (Path(__file__).parent / "apps" / "resourceapp.py").read_bytes()
    server = serve(*TREE, "--workers", "1")
    status, _, listing = server.get("/files/")
    assert status == 200 and b"resourceapp.py" in listing
    assert server.get("/files/resourceapp.py")[::2] == (200, source)
    for header, expected, contentRange in [
        ("bytes=0-9", source[:10], f"bytes 0-9/{len(source)}"),
        ("bytes=-5", source[-5:], f"bytes {len(source) - 5}-{len(source) - 1}/{len(source)}"),
    ]:
        connection = server.connection()
        connection.request("GET", "/files/resourceapp.py", headers={"Range": header})
        response = connection.getresponse()
        assert (response.status, response.read(), response.getheader("Content-Range")) == (
            206, expected, contentRange
        )
        connection.close()


def test_defer_to_thread_uses_the_worker_reactors_pool(serve, noInternalErrors: None) -> None:
    """
    deferToThread in a resource runs its work in the worker's reactor's
    thread pool, not in the reactor thread.
    """
    server = serve(*TREE, "--workers", "1")
    status, _, body = server.get("/thread")
    name, inReactorThread = body.decode().split()
    assert (status, inReactorThread) == (200, "False")
    assert name.startswith("PoolThread-twisted.internet.reactor"), name


@pytest.mark.parametrize(
    "args, preloaded",
    [(("--resource", "resourceapp:makeRoot"), True), ((*TREE, "--no-preload"), False)],
    ids=["factory", "no-preload"],
)
def test_factory_and_no_preload(serve, args: tuple[str, ...], preloaded: bool) -> None:
    server = serve(*args, "--workers", "1")
    importer, worker = re.match(rb"plain hello, imported by (\d+), served by (\d+)", server.get("/hello")[2]).groups()
    assert (importer != worker) is preloaded


def test_klein_preloaded(serve) -> None:
    """
    Klein takes the reactor as it is imported: in the template it gets a
    stand-in for each worker's own, so the app is still preloaded.
    """
    server = serve(*KLEIN, "--workers", "2")
    importer, worker = re.match(rb"imported by (\d+), served by (\d+)", server.get("/imported")[2]).groups()
    assert importer != worker
    assert server.get("/later")[2] == b"later"
    assert "not preloading" not in server.output


USES_THE_REACTOR = '''
import os

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.static import Data

STARTED = reactor.seconds()
root = Resource()
root.putChild(b"", Data(str(os.getpid()).encode(), "text/plain"))
'''


def test_a_resource_that_uses_the_reactor_as_it_is_imported(serve, tmp_path: Path) -> None:
    (tmp_path / "eager.py").write_text(USES_THE_REACTOR)
    server = serve("--resource", "eager:root", "--pythonpath", str(tmp_path), "--workers", "1", "--spare-workers", "0")
    server.waitFor(r"Importing eager:root uses the reactor: not preloading it; each worker imports it instead")
    assert server.get("/")[2].isdigit()


def test_many_requests_in_flight_in_one_worker(serve) -> None:
    """
    Fifty requests that each wait 200 ms on a Deferred, all at once, to a
    single worker: they wait together, not one after another (10 s).
    """
    server = serve(*KLEIN, "--workers", "1", "--spare-workers", "0", "--max-requests", "0")
    server.get("/wait?ms=1")
    started = time.monotonic()
    answers = getMany(server, "/wait?ms=200", 50, 50)
    elapsed = time.monotonic() - started
    assert all(status == 200 for status, _ in answers)
    assert len({body for _, body in answers}) == 1, "more than one worker answered"
    assert elapsed < 5.0, f"50 requests of 200 ms took {elapsed:.1f} s in one worker"


def test_recycling_loses_no_request_in_flight(serve) -> None:
    """
    Workers retire every 5 requests while others wait on their Deferreds:
    every request is answered.
    """
    server = serve(*KLEIN, "--workers", "2", "--max-requests", "5")
    answers = getMany(server, "/wait?ms=100", 60, 6)
    assert [status for status, _ in answers] == [200] * 60
    assert len({body for _, body in answers}) >= 4
    server.waitFor(r"Worker \d+ exited after 5 requests \(limit\)")
    assert server.internalErrors() == []


def test_reload_loses_no_pending_deferred(serve) -> None:
    """
    HUP while requests wait on long Deferreds: the new generation takes
    over, every pending request of the old one is answered, and the
    readiness probe says ready throughout.
    """
    server = serve(*KLEIN, *STATUS, "--workers", "2")
    port = statusPort(server)
    assert probe(port, "/healthz") == (200, "ok\n")
    with ThreadPoolExecutor(10) as pool:
        pending = [pool.submit(server.get, "/wait?ms=2000") for _ in range(10)]
        waitUntil(lambda: sum(w["in_flight"] for w in status(server)["workers"]) == 10,
                  what="ten requests in flight")
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "Generation 2 serving" not in server.output:
            assert time.monotonic() < deadline, "generation 2 never served"
            answer = probe(port, "/readyz")
            assert answer is not None and answer[0] == 200, answer
            time.sleep(0.05)
        answers = [future.result() for future in pending]
    assert [answer[0] for answer in answers] == [200] * 10
    assert all(answer[2].startswith(b"waited") for answer in answers)
    assert server.internalErrors() == []


def test_exit_guard_holds_a_retiring_worker(serve, tmp_path: Path) -> None:
    """
    A Deferred handed to prefork.exitGuard() fires before its worker exits.
    """
    marker = tmp_path / "marker"
    server = serve(*KLEIN, "--workers", "1", "--max-requests", "1")
    assert server.get(f"/guarded?marker={marker}&seconds=0.5")[::2] == (200, b"guarded")
    pid = int(server.waitFor(r"Worker (\d+) exited after 1 requests \(limit\)").group(1))
    assert marker.read_text() == str(pid)


@requires("openssl")
def test_tls(serve, tmp_path: Path, noInternalErrors: None) -> None:
    key, certificate = makeCertificate(tmp_path)
    log = tmp_path / "access.log"
    listen = f"ssl:0:privateKey={key}:certKey={certificate}:interface=127.0.0.1"
    server = serve(*TREE, "--workers", "1", "--access-log", str(log), "--access-log-format", "{scheme} {status}",
                   listen=listen)
    status, body, name = httpsGet(server.port, certificate, "/client")
    assert (status, json.loads(body), name) == (200, {"host": "127.0.0.1", "secure": True}, "localhost")
    waitUntil(lambda: log.exists() and log.read_text(), what="the access log line")
    assert log.read_text() == "https 200\n"


def test_proxy_protocol_gives_the_client(serve, tmp_path: Path, noInternalErrors: None) -> None:
    log = tmp_path / "access.log"
    server = serve(*TREE, "--workers", "1", "--proxy-protocol", "--access-log", str(log),
                   "--access-log-format", "{remote_addr} {status}")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 443\r\n"
                       b"GET /client HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := client.recv(4096):
            response += chunk
    assert json.loads(response.partition(b"\r\n\r\n")[2]) == {"host": "192.0.2.7", "secure": False}
    waitUntil(lambda: log.exists() and log.read_text() == "192.0.2.7 200\n", what="the access log line")


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [("127.0.0.1", ("203.0.113.5", True, "203.0.113.5 https")), ("10.9.9.9", ("127.0.0.1", False, "127.0.0.1 http"))],
)
def test_a_trusted_proxy_names_the_client_and_scheme(
    serve, tmp_path: Path, allowed: str, expected: tuple[str, bool, str]
) -> None:
    """
    From a peer in --forwarded-allow-ips, X-Forwarded-For and -Proto give
    what request.getClientAddress() and isSecure() return, and what the
    access log names; from any other peer they are only headers.
    """
    log = tmp_path / "access.log"
    server = serve(*TREE, "--workers", "1", "--forwarded-allow-ips", allowed, "--access-log", str(log),
                   "--access-log-format", "{remote_addr} {scheme}")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/client", headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"})
    seen = json.loads(connection.getresponse().read())
    connection.close()
    host, secure, line = expected
    assert seen == {"host": host, "secure": secure}
    waitUntil(lambda: log.exists() and log.read_text() == line + "\n", what="the access log line")


def test_refusals_answered_counted_and_logged(serve, tmp_path: Path) -> None:
    """
    What the server refuses before the resource sees it gets the server's
    own answer, a line in the access log and a count on the status page.
    """
    log = tmp_path / "access.log"
    server = serve(*TREE, *STATUS, "--workers", "1", "--limit-request-line", "100", "--limit-request-body", "10",
                   "--access-log", str(log), "--access-log-format", "{status} {method}")
    requests = [
        b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    ]
    for request in requests:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            client.sendall(request)
            response = b""
            while chunk := client.recv(4096):
                response += chunk
        assert response.split(b" ", 2)[1] in (b"414", b"413", b"400") and b"Connection: close" in response
    expected = {"400": 1, "408": 0, "413": 1, "414": 1, "431": 0, "501": 0}
    waitUntil(lambda: status(server)["refused_by_status"] == expected, what=f"refusals {expected} reported")
    waitUntil(lambda: log.exists() and log.read_text() == "414 -\n413 POST\n400 GET\n", what="the access log")
    assert server.get("/hello")[0] == 200


def test_status_page_counts_resource_requests(serve) -> None:
    server = serve(*TREE, "--workers", "1", "--spare-workers", "0", *STATUS)
    for _ in range(3):
        assert server.get("/hello")[0] == 200
    waitUntil(lambda: status(server)["workers"][0]["served"] == 3, what="three requests counted")
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, "/wait?ms=3000")
        waitUntil(
            lambda: [(w["state"], w["in_flight"], w["last_path"]) for w in status(server)["workers"]]
            == [("busy", 1, "/wait")],
            what="the worker busy with /wait",
        )
        assert slow.result()[2] == b"waited"


def test_graceful_timeout_abandons_and_names_what_is_left(serve) -> None:
    """
    TERM: a request still waiting at --graceful-timeout is abandoned, named
    in the log, and the worker exits.
    """
    server = serve(*TREE, "--workers", "1", "--spare-workers", "0", "--graceful-timeout", "1", *STATUS)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, "/wait?ms=60000")
        waitUntil(lambda: status(server)["workers"][0]["in_flight"] == 1, what="the slow request admitted")
        server.signal(signal.SIGTERM)
        server.waitFor(r"Drain timed out .*abandoning 1 requests: GET /wait$")
        assert server.wait() == 0
        with pytest.raises((OSError, http.client.HTTPException)):
            slow.result()


RESOURCE = '''
from twisted.web.resource import Resource
from twisted.web.static import Data

root = Resource()
root.putChild(b"", Data(open("{version}").read().encode(), "text/plain"))
'''


def test_reload_with_a_broken_resource_keeps_serving(serve, tmp_path: Path) -> None:
    version = tmp_path / "version.txt"
    version.write_text("v1")
    module = tmp_path / "versionedresource.py"
    module.write_text(RESOURCE.format(version=version))
    server = serve("--resource", "versionedresource:root", "--pythonpath", str(tmp_path), "--workers", "2")
    assert server.get("/")[2] == b"v1"
    module.write_text("raise RuntimeError('broken deploy')\n")
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 2 failed, generation 1 keeps serving: .*RuntimeError: broken deploy")
    for _ in range(5):
        assert server.get("/")[2] == b"v1"
    module.write_text(RESOURCE.format(version=version))
    version.write_text("v2")
    server.signal(signal.SIGHUP)
    server.waitFor(r"Generation 3 serving")
    waitUntil(lambda: server.get("/")[2] == b"v2", what="the fixed resource")


@pytest.mark.parametrize(
    "args, status, expected",
    [
        (KLEIN, 0, "OK: would serve kleinapp:app.resource with 10 workers"),
        (("--resource", "resourceapp:makeRoot"), 0, "OK: would serve resourceapp:makeRoot"),
        (
            ("--resource", "kleinapp:app"), 1,
            "--resource 'kleinapp:app' is neither a twisted.web resource nor a callable returning one: it is Klein",
        ),
        (("--resource", "resourceapp:NOT_A_RESOURCE"), 1, "is neither a twisted.web resource nor a callable"),
        (("--resource", "resourceapp:Stream.render_GET"), 1, "--resource 'resourceapp:Stream.render_GET' raised"),
        (("--resource", "nosuchmodule:root"), 1, "cannot import --resource 'nosuchmodule:root'"),
        ((*TREE, "--app", "testapp:application"), 2, "--app and --resource are exclusive"),
        ((*TREE, "--threads", "2"), 2, "--threads does not apply to --resource"),
        (("--resource", "no such"), 2, "--resource 'no such' is not of the form MODULE:NAME"),
    ],
)
def test_check_config(args: tuple[str, ...], status: int, expected: str) -> None:
    result = run("--check-config", *args)
    assert result.returncode == status, result
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1 and expected in output[0], result


def test_every_source_gives_it(tmp_path: Path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text('resource = "resourceapp:root"\n')
    printed = run("--print-config", "--config", str(config)).stdout
    assert f'resource = "resourceapp:root"  # file {config}' in printed
    printed = run("--print-config", env={"PREFORK_RESOURCE": "kleinapp:app.resource"}).stdout
    assert 'resource = "kleinapp:app.resource"  # env PREFORK_RESOURCE' in printed
