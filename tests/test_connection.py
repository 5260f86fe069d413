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

from prefork.web.connection import CLOSE_TIMEOUT, PIPELINE_BUFFER, HTTPConnection
from prefork.web.http import HTTPDate
from prefork.web.limits import RequestLimits
from prefork.web.request import WorkerRequest
from prefork.web.site import WorkerSite
from resources import Held

LIMITS = RequestLimits(headerTimeout=10, keepaliveTimeout=5, body=100, requestLine=100, fields=5, fieldSize=50)
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def connected(limits: RequestLimits = LIMITS) -> tuple[HTTPConnection, StringTransport, Clock, WorkerSite]:
    clock = Clock()
    site = WorkerSite(Held(), 0, lambda: None, limits=limits, reactor=clock)  # type: ignore[arg-type]
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
        channel, transport, _, site = connected()
        channel.dataReceived(request)
        assert statusLines(transport)[0].split()[1] == code, request
        assert b"Connection: close" in transport.value() and transport.disconnecting
        assert site.refusals == {int(code): 1}


def test_refusals_are_counted_and_logged() -> None:
    channel, transport, _, site = connected()
    logged: list[WorkerRequest] = []
    site.accessLog = _Recording(logged)  # type: ignore[assignment]
    channel.dataReceived(b"GET /x?y HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 50 + b"\r\n\r\n")
    assert site.refusals == {431: 1}
    [request] = logged
    assert (request.method, request.uri, request.clientproto, request.code) == (b"GET", b"/x?y", b"HTTP/1.1", 431)
    assert request.sentLength == len(transport.value().partition(b"\r\n\r\n")[2])
    channel, _, _, site = connected()
    site.accessLog = _Recording(logged)  # type: ignore[assignment]
    channel.dataReceived(b"\x16\x03\x01 garbage\r\n\r\n")
    assert site.refusals == {400: 1} and logged[-1].code == 400 and logged[-1].uri == b"\x16\x03\x01 garbage"


class _Recording:
    def __init__(self, logged: list[WorkerRequest]) -> None:
        self.logged = logged

    def write(self, request: WorkerRequest, duration: float) -> None:
        self.logged.append(request)


def test_a_closed_connection_is_cut_when_the_peer_keeps_it() -> None:
    """
    A transport that does not go when asked (a TLS peer that never
    answers close_notify) is aborted CLOSE_TIMEOUT later.
    """
    channel, transport, clock, site = connected()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert transport.disconnecting and not transport.disconnected
    clock.advance(CLOSE_TIMEOUT + 1)
    assert transport.disconnected


def test_pipelined_requests_wait_and_stop_the_reading() -> None:
    channel, transport, clock, site = connected()
    channel.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
    assert transport.producerState == "producing"
    channel.dataReceived(b"x" * PIPELINE_BUFFER)
    assert transport.producerState == "paused"
    site.resource.held[0].finish()  # type: ignore[attr-defined]
    assert transport.producerState == "producing"
    assert statusLines(transport) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK", b"HTTP/1.1 414 URI Too Long"]


def test_expect_continue_only_for_a_body_that_is_wanted() -> None:
    channel, transport, _, _ = connected()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n")
    assert statusLines(transport) == [b"HTTP/1.1 413 Content Too Large"]
    channel, transport, _, _ = connected()
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert statusLines(transport) == [b"HTTP/1.1 100 Continue"]
    channel.dataReceived(b"ok")
    assert statusLines(transport) == [b"HTTP/1.1 100 Continue", b"HTTP/1.1 200 OK"]


def test_date_is_formatted_once_a_second() -> None:
    now = [1_800_000_000.2]
    date = HTTPDate(lambda: now[0])
    first = date()
    assert first == datetimeToString(1_800_000_000)
    now[0] += 0.7
    assert date() is first
    now[0] += 0.2
    assert date() == datetimeToString(1_800_000_001)


def heldWithWhenLost() -> tuple[HTTPConnection, WorkerRequest, list[Failure]]:
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
