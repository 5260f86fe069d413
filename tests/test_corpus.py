"""
The raw-request corpus: every file in tests/http/ is a request as bytes,
written from the RFCs, headed by the outcome it must get.  Each is sent to
the real server over a socket, and after each the worker must still serve.

A file starts with C{# } lines (the rest is the request, byte for byte):

  - C{expect: STATUS ...} the statuses of the responses, in order, interim
    1xx included; C{truncated} after a status means that response's body
    was cut off (or the connection was cut before it began); or
    C{expect: closed}, no response at all;
  - C{then: open|closed} whether the connection stays open after them
    (default: closed after an error, open after a success);
  - C{contains: TEXT} / C{lacks: TEXT} in the last response;
  - C{half-close: yes} to shut the client's sending side after the bytes.

Any other C{#} line is a comment (the RFC section, usually).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rawhttp import Response, exchange, oneWorker, servingWorker
from server import Server

CORPUS = Path(__file__).parent / "http"
#: The limits the corpus is written against.
LIMITS = (
    "--limit-request-line", "1024", "--limit-request-fields", "20", "--limit-request-field-size", "512",
    "--limit-request-body", "1000", "--header-timeout", "2", "--keepalive-timeout", "30",
)
#: The server of WSGI applications, in the reactor thread and in a pool of
#: threads.
WSGI = {
    "in-reactor": ("--app", "testapp:validated"),
    "threads": ("--app", "testapp:validated", "--threads", "2"),
}
#: The server of a Twisted resource, which Twisted's own HTTP layer serves.
RESOURCE = ("--resource", "corpusresource:root")
#: Longer than the server takes to close after an error, shorter than its
#: keep-alive timeout.
CLOSE_WAIT = 15.0


@dataclass
class Case:
    name: str
    request: bytes
    statuses: list[str] = field(default_factory=list)
    then: str | None = None
    contains: list[str] = field(default_factory=list)
    lacks: list[str] = field(default_factory=list)
    halfClose: bool = False

    @classmethod
    def load(cls, path: Path) -> Case:
        case = cls(path.stem, b"")
        data = path.read_bytes()
        while data.startswith(b"# "):
            line, _, data = data.partition(b"\n")
            key, _, value = line[2:].decode().partition(": ")
            if key == "expect":
                case.statuses = value.split()
            elif key == "then":
                case.then = value
            elif key == "contains":
                case.contains.append(value)
            elif key == "lacks":
                case.lacks.append(value)
            elif key == "half-close":
                case.halfClose = value == "yes"
        case.request = data
        assert case.statuses, f"{path} has no expect: line"
        return case

    @property
    def expectedStatuses(self) -> list[str]:
        return [] if self.statuses == ["closed"] else self.statuses

    @property
    def staysOpen(self) -> bool:
        if self.then is not None:
            return self.then == "open"
        last = self.expectedStatuses[-1:] or ["closed"]
        return last[0].isdigit() and int(last[0]) < 400


def outcome(responses: list[Response]) -> list[str]:
    seen = []
    for response in responses:
        seen.append(str(response.status))
        if response.truncated:
            seen.append("truncated")
    return seen


CASES = sorted(CORPUS.glob("*.http"))
#: The cases that apply to any server: not what a WSGI application does
#: wrong (C{wsgi-*}).
ANY_SERVER = [path for path in CASES if not path.stem.startswith("wsgi-")]


@pytest.fixture(scope="module", params=sorted(WSGI))
def wsgiServer(request) -> Iterator[tuple[Server, int]]:
    with oneWorker(*WSGI[request.param], *LIMITS) as served:
        yield served


@pytest.fixture(scope="module")
def resourceServer() -> Iterator[tuple[Server, int]]:
    with oneWorker(*RESOURCE, *LIMITS) as served:
        yield served


def test_corpus_is_there() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_corpus(wsgiServer: tuple[Server, int], path: Path) -> None:
    check(*wsgiServer, path)


@pytest.mark.parametrize("path", ANY_SERVER, ids=[p.stem for p in ANY_SERVER])
def test_corpus_on_a_resource(resourceServer: tuple[Server, int], path: Path) -> None:
    """
    A resource's requests pass the same checks, limits and timeouts.
    """
    check(*resourceServer, path)


def check(server: Server, worker: int, path: Path) -> None:
    case = Case.load(path)
    expected = case.expectedStatuses
    count = len([s for s in expected if s != "truncated"])
    responses, reader = exchange(server.port, case.request, count=count or None, halfClose=case.halfClose)
    try:
        seen = outcome(responses)
        if expected[-1:] == ["truncated"] and not responses:
            # Cut before any of the response left the server: as good.
            seen = expected
        assert seen == expected, [(r.status, r.body[:200]) for r in responses]
        if responses:
            body = responses[-1].body.decode("latin-1")
            for text in case.contains:
                assert text in body or text in str(responses[-1].headers), (text, body)
            for text in case.lacks:
                assert text not in body and text not in str(responses[-1].headers), (text, body)
        if "truncated" in expected:
            pass
        elif case.staysOpen:
            reader.sock.sendall(b"GET / HTTP/1.1\r\nHost: again\r\n\r\n")
            again = reader.response()
            assert again is not None and again.status == 200
        else:
            assert reader.closed(CLOSE_WAIT), "the server kept the connection open"
    finally:
        reader.sock.close()
    # The same worker still serves: nothing the client sent took it down.
    assert servingWorker(server.port) == worker
