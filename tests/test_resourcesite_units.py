"""
L{ResourceSite}'s counting and draining, on Twisted's C{Site}, with
in-memory transports and a fake clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from prefork.web.resourcesite import ResourceChannel, ResourceSite

GET = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"


class Slow(Resource):
    """
    Answers nothing until the test finishes the request.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.pending.append(request)
        return NOT_DONE_YET


class FakeLog:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, int]] = []

    def write(self, request: Any, duration: float) -> None:
        self.written.append((request.uri, request.code))


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def makeSite(limit: int = 0, **kwargs: Any) -> tuple[ResourceSite, Slow, FakeLog]:
    resource, log = Slow(), FakeLog()
    site = ResourceSite(resource, limit, kwargs.pop("atLimit", lambda: None), log, reactor=Clock(), **kwargs)
    return site, resource, log


def connect(site: ResourceSite) -> tuple[ResourceChannel, StringTransport]:
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def lose(channel: ResourceChannel, reason: type[Exception] = ConnectionDone) -> None:
    channel.connectionLost(Failure(reason()))


def test_a_request_counts_from_admission_to_its_end() -> None:
    changed = Calls()
    site, resource, log = makeSite(changed=changed)
    channel, transport = connect(site)
    assert site.channels == {channel}
    channel.dataReceived(GET)
    assert (site.served, site.inFlight, site.lastPath, changed.count) == (1, 1, b"/slow", 1)
    assert site.requestsInFlight() == resource.pending
    resource.pending[0].write(b"done")
    resource.pending[0].finish()
    assert (site.served, site.inFlight, changed.count) == (1, 0, 2)
    assert site.requestsInFlight() == []
    assert log.written == [(b"/slow", 200)]
    assert b"HTTP/1.1 200 OK" in transport.value() and not transport.disconnecting


def test_a_lost_request_ends_without_a_log_line() -> None:
    site, resource, log = makeSite()
    channel, _ = connect(site)
    channel.dataReceived(GET)
    whenEmpty = site.whenEmpty()
    lose(channel, ConnectionLost)
    assert (site.served, site.inFlight, log.written) == (1, 0, [])
    assert site.channels == set() and whenEmpty.called


def test_the_limit_and_the_point_before_it() -> None:
    atLimit, nearing = Calls(), Calls()
    site, resource, _ = makeSite(3, atLimit=atLimit, nearLimit=2, nearingLimit=nearing)
    for expected in [(0, 0), (0, 1), (1, 1)]:
        connect(site)[0].dataReceived(GET)
        assert (atLimit.count, nearing.count) == expected


def test_a_draining_site_closes_each_connection_after_its_response() -> None:
    site, resource, _ = makeSite()
    busy, busyTransport = connect(site)
    idle, idleTransport = connect(site)
    busy.dataReceived(GET)
    site.closing = True
    site.closeIdleConnections()
    assert idleTransport.disconnecting and not busyTransport.disconnecting
    lose(idle)
    whenEmpty = site.whenEmpty()
    resource.pending[0].finish()
    assert b"connection: close" in busyTransport.value().lower() and busyTransport.disconnecting
    assert not whenEmpty.called
    lose(busy)
    assert whenEmpty.called


def test_a_response_begun_before_the_drain_closes_its_connection_when_done() -> None:
    site, resource, _ = makeSite()
    channel, transport = connect(site)
    channel.dataReceived(GET)
    resource.pending[0].write(b"head and some body")
    site.closing = True
    resource.pending[0].finish()
    assert transport.disconnecting


def test_an_idle_connection_times_out_quietly() -> None:
    """
    After the idle timeout the connection closes, without a log line; a
    client that does not let go is aborted later, as Twisted does.
    """
    site, resource, _ = makeSite(timeout=5)
    clock = site.reactor
    channel, transport = connect(site)
    channel.dataReceived(GET)
    clock.advance(10)
    assert not transport.disconnecting, "a request in progress never times out"
    resource.pending[0].finish()
    with capturedLogs() as events:
        clock.advance(4.9)
        assert not transport.disconnecting
        clock.advance(0.1)
    assert transport.disconnecting and events == []
    clock.advance(channel.abortTimeout)
    assert transport.disconnected
    quiet, quietTransport = connect(site)
    clock.advance(5)
    lose(quiet)
    clock.advance(channel.abortTimeout)
    assert not quietTransport.disconnected


def test_abort_connections() -> None:
    site, resource, _ = makeSite()
    channel, transport = connect(site)
    channel.dataReceived(GET)
    site.abortConnections()
    assert transport.disconnecting
