"""
Property-based tests (hypothesis) of the request parser and of PATH_INFO
decoding: random valid requests reach the application unchanged, random
garbage never reaches it and never takes a worker down; and the same rules
checked on their own, without a server.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefork.web.environ import NotMounted, splitPath
from prefork.web.http import ChunkedDecoder, Rejection, isValidHost, parseTarget
from rawhttp import exchange, oneWorker, servingWorker
from server import Server

TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^`|~"
#: Header value bytes: visible ASCII and obs-text, with inner whitespace.
VALUE_BYTES = [b for b in range(0x21, 0x100) if b != 0x7F]
PCHAR_SAFE = "!$&'()*+,;=:@"
SERVER_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module", params=["in-reactor", "threads"])
def server(request) -> Iterator[tuple[Server, int]]:
    threads = ("--threads", "2") if request.param == "threads" else ()
    with oneWorker("--app", "testapp:validated", "--header-timeout", "2", *threads) as served:
        yield served


methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) | st.text(
    TCHAR, min_size=1, max_size=12
).filter(lambda m: m not in ("HEAD", "CONNECT"))
segments = st.lists(st.binary(max_size=12), max_size=5)
queries = st.text(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%", max_size=40).map(
    lambda q: q.replace("%", "%25")
)
headerNames = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=16).map(lambda n: "x-" + n)
headerValues = st.lists(st.sampled_from(VALUE_BYTES), min_size=1, max_size=30).map(bytes) | st.tuples(
    st.lists(st.sampled_from(VALUE_BYTES), min_size=1, max_size=10).map(bytes),
    st.sampled_from([b" ", b"\t", b"  "]),
    st.lists(st.sampled_from(VALUE_BYTES), min_size=1, max_size=10).map(bytes),
).map(b"".join)
headerSets = st.dictionaries(headerNames, headerValues, max_size=8)
bodies = st.binary(max_size=3000)


def chunked(body: bytes, cuts: list[int]) -> bytes:
    pieces, start = [], 0
    for cut in sorted({c % (len(body) + 1) for c in cuts}) + [len(body)]:
        if cut > start:
            pieces.append(b"%x\r\n%s\r\n" % (cut - start, body[start:cut]))
            start = cut
    return b"".join(pieces) + b"0\r\n\r\n"


@SERVER_SETTINGS
@given(
    method=methods,
    path=segments,
    query=queries,
    headers=headerSets,
    body=bodies,
    useChunked=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    http10=st.booleans(),
)
def test_valid_requests_round_trip(server, method, path, query, headers, body, useChunked, cuts, http10) -> None:
    server, worker = server
    rawPath = b"/roundtrip/" + b"/".join(path)
    target = "/roundtrip/" + "/".join(quote(s, safe=PCHAR_SAFE) for s in path)
    if query:
        target += "?" + query
    head = [f"{method} {target} HTTP/1.{0 if http10 else 1}".encode(), b"Host: example.com", b"Connection: close"]
    head += [name.encode() + b": " + value for name, value in headers.items()]
    if useChunked and not http10:
        head.append(b"Transfer-Encoding: chunked")
        payload = chunked(body, cuts)
    else:
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    responses, reader = exchange(server.port, b"\r\n".join(head) + b"\r\n\r\n" + payload)
    reader.sock.close()
    assert [r.status for r in responses] == [200], responses
    seen = json.loads(responses[0].body)
    assert seen["REQUEST_METHOD"] == method
    assert seen["PATH_INFO"].encode("latin-1") == rawPath
    assert seen["QUERY_STRING"] == query
    assert seen["body"].encode("latin-1") == body
    for name, value in headers.items():
        assert seen["HTTP_" + name.upper().replace("-", "_")].encode("latin-1") == value
    assert seen["pid"] == worker


def invalidTargets() -> st.SearchStrategy[bytes]:
    bad = st.sampled_from([b"\x00", b"\x7f", b"#", b"\x80", b"\xff", b"\x01", b"\t"])
    return st.tuples(st.binary(max_size=20), bad, st.binary(max_size=20)).map(
        lambda t: b"/" + (t[0] + t[1] + t[2]).replace(b"\r\n", b"").replace(b" ", b"")
    )


garbage = st.one_of(
    # Anything at all.
    st.binary(min_size=1, max_size=600),
    # A request whose target breaks the rules.
    st.tuples(methods.map(str.encode), invalidTargets()).map(
        lambda t: t[0] + b" " + t[1] + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    # A request with a header line that is not one.
    st.binary(min_size=1, max_size=80).filter(lambda b: b":" not in b and b"\r\n" not in b and b.strip()).map(
        lambda b: b"GET /sized HTTP/1.1\r\nHost: x\r\n" + b + b"\r\n\r\n"
    ),
    # A request whose body framing is broken.
    st.binary(min_size=1, max_size=40).filter(lambda b: not b.strip(b" \t").isdigit()).map(
        lambda b: b"POST /roundtrip HTTP/1.1\r\nHost: x\r\nContent-Length: " + b.replace(b"\r\n", b"") + b"\r\n\r\n"
    ),
    st.binary(min_size=1, max_size=40).map(
        lambda b: b"POST /roundtrip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz" + b + b"\r\n"
    ),
)


@SERVER_SETTINGS
@given(data=garbage)
def test_garbage_never_reaches_the_app(server, data: bytes) -> None:
    server, worker = server
    responses, reader = exchange(server.port, data + b"\r\n\r\n")
    reader.sock.close()
    assert not [r.status for r in responses if 200 <= r.status < 300], responses
    assert all(r.status >= 400 for r in responses if r.status >= 200)
    assert servingWorker(server.port) == worker


hosts = st.one_of(
    st.text(string.ascii_letters + string.digits + "-._~!$&'()*+,;=", max_size=30),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.lists(st.text("0123456789abcdef", min_size=1, max_size=4), min_size=2, max_size=8).map(
        lambda p: "[" + ":".join(p) + "]"
    ),
)
ports = st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}"))


@given(host=hosts, port=ports)
def test_valid_hosts_are_accepted(host: str, port: str) -> None:
    assert isValidHost((host + port).encode())


@given(host=hosts, bad=st.sampled_from(list(" /?#@\"<>\\^`{|}\x00\x7f\t") + ["\x80", "\xff"]), at=st.integers(0, 30))
def test_invalid_hosts_are_refused(host: str, bad: str, at: int) -> None:
    at %= len(host) + 1
    assert not isValidHost((host[:at] + bad + host[at:]).encode("latin-1"))


@given(host=hosts.filter(bool), port=ports, path=segments, query=queries)
def test_absolute_form_becomes_origin_form(host: str, port: str, path: list[bytes], query: str) -> None:
    origin = ("/" + "/".join(quote(s, safe=PCHAR_SAFE) for s in path)) + (("?" + query) if query else "")
    authority = (host + port).encode()
    for scheme in (b"http", b"HTTP", b"https"):
        assert parseTarget(b"GET", scheme + b"://" + authority + origin.encode()) == (origin.encode(), authority)
        assert parseTarget(b"GET", origin.encode()) == (origin.encode(), None)


@given(target=invalidTargets(), method=st.sampled_from([b"GET", b"POST", b"OPTIONS"]))
def test_invalid_targets_are_refused(target: bytes, method: bytes) -> None:
    with pytest.raises(Rejection):
        parseTarget(method, target)


@given(
    body=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
    extension=st.sampled_from([b"", b";a", b" ;a=b", b"\t; a = \"q s\"", b";x;y=z"]),
    feed=st.integers(1, 50),
)
def test_chunked_bodies_decode(body: bytes, cuts: list[int], extension: bytes, feed: int) -> None:
    encoded = chunked(body, cuts).replace(b"\r\n", extension + b"\r\n", 1) if body else chunked(body, cuts)
    received, finished = [], []
    decoder = ChunkedDecoder(received.append, finished.append)
    for start in range(0, len(encoded), feed):
        decoder.dataReceived(encoded[start:start + feed])
    assert b"".join(received) == body and finished == [b""]


@given(
    prefix=st.lists(st.text(string.ascii_letters, min_size=1, max_size=5), min_size=1, max_size=3),
    rest=st.text(max_size=20),
)
def test_script_name_split(prefix: list[str], rest: str) -> None:
    scriptName = "/" + "/".join(prefix)
    path = scriptName + "/" + rest
    assert splitPath(path, scriptName) == (scriptName, "/" + rest)
    assert splitPath(path, "") == ("", path)
    with pytest.raises(NotMounted):
        splitPath(scriptName + "x" + "/" + rest, scriptName)
