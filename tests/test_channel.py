"""
Unit tests of a worker's connection on a fake clock and transport: its
timeouts, and the requests it refuses before any application sees them.
The protocol tests run the same rules against the real server.
"""

from __future__ import annotations

import re

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from prefork.web.channel import WorkerChannel
from prefork.web.http import HTTPDate
from prefork.web.limits import RequestLimits
from prefork.web.site import WorkerSite
from resources import Held

LIMITS = RequestLimits(headerTimeout=10, keepaliveTimeout=5, body=100, requestLine=100, fields=5, fieldSize=50)
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def connected(limits: RequestLimits = LIMITS) -> tuple[WorkerChannel, StringTransport, Clock, WorkerSite]:
    clock = Clock()
    site = WorkerSite(Held(), 0, lambda: None, limits=limits, reactor=clock)
    site.startFactory()
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1234))
    channel.makeConnection(transport)
    return channel, transport, clock, site


def statusLines(transport: StringTransport) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 \d{3}[^\r]*", transport.value())


def test_trickled_head_times_out_from_its_start() -> None:
    channel, transport, clock, _ = connected()
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa":
        channel.dataReceived(bytes([byte]))
        clock.advance(0.2)
    assert clock.seconds() > 5 and not transport.disconnecting
    clock.advance(2)
    assert statusLines(transport) == []
    clock.advance(1.5)
    assert statusLines(transport) == [b"HTTP/1.1 408 Request Timeout"]
    assert transport.disconnecting


def test_silent_connection_closes_quietly() -> None:
    channel, transport, clock, _ = connected()
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting and transport.value() == b""


def test_keepalive_timeout_between_requests() -> None:
    channel, transport, clock, _ = connected()
    clock.advance(8)
    channel.dataReceived(GET)
    assert statusLines(transport) == [b"HTTP/1.1 200 OK"]
    # The header timeout no longer counts; the keep-alive timeout does.
    clock.advance(4)
    assert not transport.disconnecting
    channel.dataReceived(GET)
    clock.advance(4)
    assert not transport.disconnecting and len(statusLines(transport)) == 2
    clock.advance(2)
    assert transport.disconnecting and len(statusLines(transport)) == 2


def test_body_may_pause_but_not_stall() -> None:
    channel, transport, clock, _ = connected()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
    for byte in b"abc":
        clock.advance(9)
        channel.dataReceived(bytes([byte]))
    assert not transport.disconnecting
    clock.advance(11)
    assert statusLines(transport) == [b"HTTP/1.1 408 Request Timeout"]


def test_running_request_has_no_deadline() -> None:
    channel, transport, clock, site = connected()
    channel.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(100)
    assert channel.deadline is None and not transport.disconnecting
    site.resource.held[0].finish()
    assert channel.deadline == clock.seconds() + LIMITS.keepaliveTimeout


def test_refusals() -> None:
    cases = {
        b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n": b"414",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 50 + b"\r\n\r\n": b"431",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: v\r\n" * 5 + b"\r\n": b"431",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n": b"413",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + b"x" * 101: b"413",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n\r\n": b"501",
        b"GET / HTTP/1.1\r\n\r\n": b"400",
        b"GET http://h/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n": b"400",
    }
    for request, code in cases.items():
        channel, transport, _, _ = connected()
        channel.dataReceived(request)
        assert statusLines(transport)[0].split()[1] == code, request
        assert b"Connection: close" in transport.value() and transport.disconnecting


def test_expect_continue_only_for_a_body_that_is_wanted() -> None:
    channel, transport, _, _ = connected()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n")
    assert statusLines(transport) == [b"HTTP/1.1 413 Content Too Large"]
    channel, transport, _, _ = connected()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert statusLines(transport) == [b"HTTP/1.1 100 Continue"]
    channel.dataReceived(b"ok")
    assert statusLines(transport) == [b"HTTP/1.1 100 Continue", b"HTTP/1.1 200 OK"]


class _Leaf(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"path " + request.path


class _Branch(Resource):
    def __init__(self) -> None:
        super().__init__()
        self.putChild(b"leaf", _Leaf())

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()


def servedBy(resource: Resource, head: bytes) -> bytes:
    clock = Clock()
    site = WorkerSite(resource, 0, lambda: None, limits=LIMITS, reactor=clock)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1234))
    channel.makeConnection(transport)
    channel.dataReceived(head)
    return transport.value()


def test_leaf_resource_gets_the_whole_path_with_server_and_date() -> None:
    """
    The one resource a worker serves takes every path, and its responses
    carry Twisted's Server and Date fields.
    """
    response = servedBy(_Leaf(), b"GET /a/b%20c?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\npath /a/b%20c")
    assert b"\r\nServer: TwistedWeb/" in response
    assert re.search(rb"\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n", response)


def test_a_tree_of_resources_is_traversed() -> None:
    response = servedBy(_Branch(), b"GET /leaf/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"path /leaf/x")
    assert servedBy(_Branch(), b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404 ")


def test_date_is_formatted_once_a_second() -> None:
    now = [1_800_000_000.2]
    date = HTTPDate(lambda: now[0])
    first = date()
    assert first == datetimeToString(1_800_000_000)
    now[0] += 0.7
    assert date() is first
    now[0] += 0.2
    assert date() == datetimeToString(1_800_000_001)


def heldWithWhenLost() -> tuple[WorkerChannel, Request, list[Failure]]:
    """
    A connection with a request held in flight, whose C{whenLost} records.
    """
    channel, _, _, site = connected()
    channel.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
    [held] = site.resource.held  # type: ignore[attr-defined]
    reasons: list[Failure] = []
    held.whenLost = reasons.append
    return channel, held, reasons


def test_when_lost_is_told_of_a_loss_before_the_response_ends() -> None:
    channel, _, reasons = heldWithWhenLost()
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(reasons) == 1 and reasons[0].check(ConnectionDone)


def test_when_lost_is_quiet_once_the_response_ended() -> None:
    channel, held, reasons = heldWithWhenLost()
    held.finish()
    channel.connectionLost(Failure(ConnectionDone()))
    assert reasons == []
