"""
The access log: one well-formed line per request from every worker, in one
file, reopened on USR1.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import threading
from pathlib import Path

import pytest

from rawhttp import exchange
from server import TIMEOUT, Server, waitUntil

APP = ("--app", "testapp:application")

COMBINED = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
    r'"GET /(?P<path>[^ ?]*)\?i=(?P<i>\d+) HTTP/1\.1" 200 (?P<bytes>\d+) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


def concurrently(server: Server, count: int, headers: dict[str, str] | None = None) -> list[int]:
    """
    Send C{count} requests at once, each on its own connection; return the
    pids that answered.
    """
    pids: list[int] = []
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        connection.connect()
        barrier.wait()
        connection.request("GET", f"/logged?i={i}", headers=headers or {})
        response = connection.getresponse()
        assert response.status == 200
        pids.append(int(response.read()))
        connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(pids) == count
    return pids


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_concurrent_requests_give_one_line_each(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(*APP, "--workers", "3", "--threads", "4", "--access-log", str(log))
    headers = {"User-Agent": 'tester "quoted" \\ agent', "Referer": "http://example.test/from"}
    pids = concurrently(server, 40, headers)
    waitUntil(lambda: len(lines(log)) >= 40, what="40 log lines")
    written = lines(log)
    assert len(written) == 40
    matches = [COMBINED.match(line) for line in written]
    assert all(matches), [line for line, m in zip(written, matches, strict=True) if not m]
    assert sorted(int(m["i"]) for m in matches) == list(range(40))
    for m in matches:
        assert m["path"] == "logged"
        assert m["referer"] == "http://example.test/from"
        assert m["agent"] == 'tester \\"quoted\\" \\\\ agent'
        assert int(m["bytes"]) in {len(str(pid)) for pid in pids}
    # (Which workers answered is up to the kernel: one may accept them all.)


def test_custom_format(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    template = "{method} {path} q={query} {status} {bytes} {request_time_us}us pid={pid} {protocol}"
    server = serve(*APP, "--workers", "1", "--access-log", str(log), "--access-log-format", template)
    _, headers, _ = server.get("/sleep?seconds=0.2")
    server.get("/nothing/here", method="HEAD")
    waitUntil(lambda: len(lines(log)) == 2, what="2 log lines")
    first, second = lines(log)
    match = re.fullmatch(r"GET /sleep q=seconds=0\.2 200 (\d+) (\d+)us pid=(\d+) HTTP/1\.1", first)
    assert match, first
    assert 200_000 <= int(match[2]) < 20_000_000
    assert int(match[3]) == int(headers["x-pid"])
    assert re.fullmatch(r"HEAD /nothing/here q= 200 - \d+us pid=\d+ HTTP/1\.1", second), second


def test_usr1_reopens_after_move(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(*APP, "--workers", "2", "--threads", "2", "--access-log", str(log))
    concurrently(server, 6)
    waitUntil(lambda: len(lines(log)) == 6, what="6 log lines")
    rotated = tmp_path / "access.log.1"
    log.rename(rotated)
    mark = len(server.lines)
    server.signal(signal.SIGUSR1)
    # Both workers say so once they have reopened the file.
    first = server.waitFor(r"\[worker (\d+)\] Reopened the access log", after=mark).group(1)
    server.waitFor(rf"\[worker (?!{first}\])\d+\] Reopened the access log", after=mark)
    concurrently(server, 8)
    waitUntil(lambda: len(lines(log)) == 8, what="8 lines in the new file")
    assert len(lines(rotated)) == 6
    assert server.process.poll() is None


def test_bad_access_log_options() -> None:
    for args, message in [
        (("--access-log-format", "{method} {nonsense}"), "--access-log-format has an unknown field {nonsense}"),
        (("--access-log-format", "{method"), "--access-log-format is not a valid format"),
        (
            ("--access-log", "/nonexistent/dir/access.log"),
            "--access-log '/nonexistent/dir/access.log' cannot be opened",
        ),
    ]:
        server = Server(*APP, *args)
        server.start()
        assert server.wait() != 0
        server.stop()
        assert message in server.output, server.output
        assert len([line for line in server.output.splitlines() if line != "<EOF>"]) == 1, server.output


@pytest.mark.parametrize("logged", [False, True], ids=["without", "to stdout"])
def test_without_access_log_nothing_is_written(serve, logged: bool) -> None:
    server = serve(*APP, "--workers", "1", *(("--access-log", "-") if logged else ()))
    assert server.get("/")[0] == 200
    # Once the server has exited and its output has ended, everything any
    # of its processes wrote is in: a line logged for the request would be.
    assert server.stop() == 0
    server.waitFor("<EOF>")
    assert "Generation 1 has ended" in server.output
    assert ('"GET / HTTP/1.1"' in server.output) == logged


@pytest.mark.parametrize("form", ["combined", "json"])
def test_refusals_are_logged(serve, tmp_path: Path, form: str) -> None:
    """
    A request the server refuses itself is logged like any other, with what
    could be read of its request line; JSON stays valid whatever the bytes.
    """
    log = tmp_path / "access.log"
    options = ("--access-log-format", "json") if form == "json" else ()
    server = serve(*APP, "--workers", "1", "--limit-request-field-size", "100", "--access-log", str(log), *options)
    refused = {
        b"GET /long?q HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 200 + b"\r\n\r\n": 431,
        b"GET /a\"b\xff HTTP/1.1\r\n\r\n": 400,
        b"\x16\x03\x01\x00\xa5\x01\x00\r\n\r\n": 400,
    }
    for data, code in refused.items():
        responses, reader = exchange(server.port, data)
        reader.sock.close()
        assert [r.status for r in responses] == [code]
    waitUntil(lambda: len(lines(log)) == len(refused), what="a line for each refusal")
    written = lines(log)
    if form == "json":
        entries = [json.loads(line) for line in written]
        assert [(e["method"], e["path"], e["status"]) for e in entries[:2]] == [
            ("GET", "/long", 431), ("GET", '/a"b\\xff', 400)]
        assert entries[2]["status"] == 400 and "\x16" in entries[2]["path"]
    else:
        assert '"GET /long?q HTTP/1.1" 431 ' in written[0]
        assert '"GET /a\\"b\\xff HTTP/1.1" 400 ' in written[1]
        assert '"- \\x16\\x03\\x01\\x00\\xa5\\x01\\x00 -" 400 ' in written[2]
