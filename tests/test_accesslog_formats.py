"""
Access logs a pipeline can read: C{--access-log-format json} lines that
C{json.loads} takes whatever bytes a client sends, header fields in the text
format, the client and scheme as the application sees them, and lines
written only after the responses went out.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from certs import httpsGet, makeCertificate, readAll
from prefork.web.accesslog import AccessLog, checkFormat
from prefork.web.request import WorkerRequest
from server import TIMEOUT, Server, waitUntil
from tools import requires

APP = ("--app", "testapp:application", "--workers", "1", "--max-requests", "0")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")

#: Requests whose head is served: the channel refuses bytes above ASCII in
#: the request line and in Host, but not in other header fields.
HOSTILE = [
    b"GET /caf%C3%A9/%FF?q=%E9&x=%22 HTTP/1.1\r\nHost: example.test\r\n",
    b'GET /"quoted"\\back?a="b"\\ HTTP/1.1\r\nHost: example.test\r\nUser-Agent: a "quoted" \\ agent\r\n',
    b"GET /ctl HTTP/1.1\r\nHost: example.test\r\nUser-Agent: bell\x07tab\tdel\x7f\r\nReferer: \x80\x81\xfe\xff\r\n",
    b'GET /id HTTP/1.1\r\nHost: example.test\r\nX-Request-Id: "}{\\u0000\xc0\xaf\xed\xa0\x80\r\n',
    b"GET /utf8 HTTP/1.0\r\nUser-Agent: caf\xc3\xa9 \xe2\x82\xac\r\n",
]
#: Requests the channel answers with 400 before any application or log.
REFUSED = [
    b"GET /caf\xc3\xa9/\xff HTTP/1.1\r\nHost: example.test\r\n",
    b'GET /host HTTP/1.1\r\nHost: ex"ample\r\n',
    b"PATCH /\xed\xa0\x80 HTTP/1.0\r\n",
]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def send(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        return readAll(sock)


def test_json_lines_parse_for_any_bytes(serve, tmp_path: Path, noInternalErrors) -> None:
    log = tmp_path / "access.log"
    server = serve(*APP, "--access-log", str(log), "--access-log-format", "json")
    for head in REFUSED:
        assert send(server.port, head).startswith(b"HTTP/1.1 400 ")
    answered = [send(server.port, head) for head in HOSTILE]
    assert all(answer.startswith((b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK")) for answer in answered), answered
    # The refusals are logged too.
    waitUntil(lambda: len(lines(log)) == len(HOSTILE) + len(REFUSED), what="a log line for each request")
    everything = list(map(json.loads, lines(log)))
    refused = [record for record in everything if record["status"] == 400]
    assert [record["path"] for record in refused] == ["/café/\\xff", "/host", "/\\xed\\xa0\\x80"]
    records = {record["path"]: record for record in everything if record["status"] != 400}
    pid = int(answered[0].partition(b"\r\n\r\n")[2])
    for record in records.values():
        assert list(record) == [
            "time", "remote_addr", "method", "path", "query", "protocol", "scheme", "host", "status", "bytes_sent",
            "duration_us", "user_agent", "referer", "pid", "generation", "request_id",
        ]
        assert ISO.fullmatch(record["time"]), record
        assert (record["remote_addr"], record["status"]) == ("127.0.0.1", 200)
        assert (record["pid"], record["generation"]) == (pid, 1)
        assert (record["scheme"], record["bytes_sent"]) == ("http", len(str(pid)))
        assert isinstance(record["duration_us"], int) and record["duration_us"] >= 0
    first = records["/caf%C3%A9/%FF"]
    assert (first["method"], first["query"]) == ("GET", "q=%E9&x=%22")
    assert (first["protocol"], first["host"]) == ("HTTP/1.1", "example.test")
    assert first["user_agent"] is None and first["referer"] is None
    quoted = records['/"quoted"\\back']
    assert (quoted["query"], quoted["user_agent"]) == ('a="b"\\', 'a "quoted" \\ agent')
    control = records["/ctl"]
    assert (control["user_agent"], control["referer"]) == ("bell\x07tab\tdel\x7f", "\\x80\\x81\\xfe\\xff")
    assert records["/id"]["request_id"] == '"}{\\u0000\\xc0\\xaf\\xed\\xa0\\x80'
    utf8 = records["/utf8"]
    assert (utf8["user_agent"], utf8["protocol"], utf8["host"]) == ("café €", "HTTP/1.0", None)
    ids = [r["request_id"] for r in records.values()]
    assert len(set(ids)) == len(ids)


def test_request_id_from_the_client_or_made_up(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(*APP, "--workers", "2", "--access-log", str(log), "--access-log-format", "json")
    send(server.port, b"GET /one HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n")
    for _ in range(5):
        send(server.port, b"GET /other HTTP/1.1\r\nHost: x\r\n")
    waitUntil(lambda: len(lines(log)) == 6, what="6 log lines")
    records = [json.loads(line) for line in lines(log)]
    assert [r["request_id"] for r in records if r["path"] == "/one"] == ["abc-123"]
    made = [r["request_id"] for r in records if r["path"] == "/other"]
    assert len(set(made)) == 5 and all(re.fullmatch(r"[0-9a-f]{12}-\d+", i) for i in made)


def test_header_fields_in_the_text_format(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    template = (
        '{method} {path} {status} in="{in:X-Request-Id}" out="{out:content-type}" pid={out:x-pid} none={in:x-none} '
        "{scheme} {request_id} {time_iso}"
    )
    server = serve(*APP, "--access-log", str(log), "--access-log-format", template)
    send(server.port, b'GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id: r"1\\\xff\r\n')
    send(server.port, b"GET /b HTTP/1.1\r\nHost: x\r\n")
    waitUntil(lambda: len(lines(log)) == 2, what="2 log lines")
    first, second = lines(log)
    match = re.fullmatch(
        r'GET /a 200 in="r\\"1\\\\\\xff" out="text/plain" pid=(\d+) none=- http r\\"1\\\\\\xff (\S+)', first
    )
    assert match, first
    assert ISO.fullmatch(match[2])
    assert re.fullmatch(r'GET /b 200 in="-" out="text/plain" pid=\d+ none=- http [0-9a-f]{12}-\d+ \S+', second), second


@requires("openssl")
def test_client_and_scheme_as_the_application_sees_them(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    key, crt = makeCertificate(tmp_path)
    server = serve(
        *APP, "--access-log", str(log), "--access-log-format", "{remote_addr} {scheme} {path}",
        listen=f"ssl:0:privateKey={key}:certKey={crt}:interface=127.0.0.1",
    )
    assert httpsGet(server.port, crt, "/tls")[0] == 200
    waitUntil(lambda: len(lines(log)) == 1, what="a log line")
    assert lines(log) == ["127.0.0.1 https /tls"]


def test_forwarded_client_is_logged(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(*APP, "--access-log", str(log), "--access-log-format", "json")
    send(server.port, b"GET /fwd HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n")
    waitUntil(lambda: len(lines(log)) == 1, what="a log line")
    record = json.loads(lines(log)[0])
    assert (record["remote_addr"], record["scheme"]) == ("192.0.2.7", "https")


def test_proxy_protocol_client_is_logged(serve, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(*APP, "--proxy-protocol", "--access-log", str(log), "--access-log-format", "{remote_addr} {path}")
    send(server.port, b"PROXY TCP4 192.0.2.9 198.51.100.1 4711 443\r\nGET /pp HTTP/1.1\r\nHost: x\r\n")
    waitUntil(lambda: len(lines(log)) == 1, what="a log line")
    assert lines(log) == ["192.0.2.9 /pp"]


@pytest.mark.parametrize(
    "template, message",
    [
        ("{in}", "write a header field as {in:header-name}"),
        ("{out:}", "write a header field as {out:header-name}"),
        ("{in:bad name}", "write a header field as {in:header-name}"),
        ("{status:q}", "{status:q}, which does not format its value"),
        ("{remote_addr:d}", "{remote_addr:d}, which does not format its value"),
        ("{JSON}", "has an unknown field {JSON}"),
    ],
)
def test_bad_formats_are_refused(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        checkFormat(template)
    server = Server(*APP, "--access-log-format", template)
    server.start()
    assert server.wait() != 0
    server.stop()
    output = [line for line in server.output.splitlines() if line != "<EOF>"]
    assert len(output) == 1 and message in output[0], server.output


class Turns:
    """
    A clock that runs, on each turn, the calls scheduled before the turn
    began, as a reactor does: a call scheduled during a turn waits for the
    next.
    """

    def __init__(self) -> None:
        self.calls: list[Scheduled] = []

    def callLater(self, delay: float, function, *args) -> Scheduled:
        call = Scheduled(self, function, args)
        self.calls.append(call)
        return call

    def turn(self) -> None:
        due, self.calls = self.calls, []
        for call in due:
            call.function(*call.args)


class Scheduled:
    def __init__(self, turns: Turns, function, args) -> None:
        self.turns, self.function, self.args = turns, function, args

    def active(self) -> bool:
        return self in self.turns.calls

    def cancel(self) -> None:
        self.turns.calls.remove(self)


def test_lines_are_written_after_the_responses(tmp_path: Path) -> None:
    turns = Turns()
    log = AccessLog(str(tmp_path / "access.log"), "{method} {path} {status}", generation=3, clock=turns)
    requests = []
    for path in (b"/a", b"/b"):
        request = WorkerRequest(SimpleNamespace(secure=False), b"GET", path, b"HTTP/1.1", {}, True, None)  # type: ignore[arg-type]
        request.code = 200
        requests.append(request)
        log.write(request, 0.001)
    # This turn of the loop, and the next (which sends the responses), write
    # nothing; the turn after writes both lines, in one go.
    assert lines(tmp_path / "access.log") == []
    turns.turn()
    assert lines(tmp_path / "access.log") == []
    turns.turn()
    assert lines(tmp_path / "access.log") == ["GET /a 200", "GET /b 200"]
    assert turns.calls == []
    log.write(requests[0], 0.001)
    log.close()
    assert lines(tmp_path / "access.log")[-1] == "GET /a 200"
    assert turns.calls == []
