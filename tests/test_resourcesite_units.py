"""
L{ResourceSite}'s counting and draining, on Twisted's C{Site}, with
in-memory transports and a fake clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from prefork.web.connection import CLOSE_TIMEOUT
from prefork.web.limits import DEFAULT_LIMITS, RequestLimits
from prefork.web.proxies import TrustedProxies
from prefork.web.resourcechannel import TWISTED_REFUSAL
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
    site.doStart()
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
    After the idle timeout (and at most one sweep) the connection closes,
    without a log line; a client that does not let go is aborted later.
    """
    site, resource, _ = makeSite(limits=RequestLimits(keepaliveTimeout=5))
    clock = site.reactor
    step = site.sweep.interval
    channel, transport = connect(site)
    channel.dataReceived(GET)
    clock.advance(60)
    assert not transport.disconnecting, "a request in progress never times out"
    resource.pending[0].finish()
    with capturedLogs() as events:
        clock.advance(5 - step)
        assert not transport.disconnecting
        clock.advance(2 * step)
    assert transport.disconnecting and events == []
    clock.advance(CLOSE_TIMEOUT + step)
    assert transport.disconnected
    quiet, quietTransport = connect(site)
    clock.advance(DEFAULT_LIMITS.headerTimeout + step)
    assert quietTransport.disconnecting and not quietTransport.value(), "a new connection's silence is no request"
    lose(quiet)
    clock.advance(CLOSE_TIMEOUT + step)
    assert not quietTransport.disconnected


def test_abort_connections() -> None:
    site, resource, _ = makeSite()
    channel, transport = connect(site)
    channel.dataReceived(GET)
    site.abortConnections()
    assert transport.disconnecting


class Echo(Resource):
    """
    Says what Twisted's request holds: method, URI, Host, client, scheme
    and body.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        client = request.getClientAddress()
        return b" ".join(
            [
                request.method,
                request.uri,
                request.getHeader(b"host") or b"-",
                getattr(client, "host", "-").encode(),
                b"https" if request.isSecure() else b"http",
                request.getRequestHostname(),
                b"%d" % request.getHost().port,
                request.content.read(),
            ]
        )


def served(data: bytes, **kwargs: Any) -> tuple[ResourceSite, StringTransport, FakeLog]:
    log = FakeLog()
    site = ResourceSite(Echo(), 0, lambda: None, log, reactor=Clock(), **kwargs)
    site.doStart()
    channel = site.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 4321))
    channel.makeConnection(transport)
    channel.dataReceived(data)
    return site, transport, log


LIMITS = RequestLimits(requestLine=100, fields=3, fieldSize=50, body=10, headerTimeout=2, keepaliveTimeout=30)


@pytest.mark.parametrize(
    ("data", "status", "logged"),
    [
        (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, b"GET /" + b"a" * 95),
        (b"GET /" + b"a" * 200, 414, b"GET /" + b"a" * 95),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 60 + b"\r\n\r\n", 431, b"/"),
        (b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 4 + b"\r\n", 431, b"/"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", 413, b"/"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n6\r\n123456\r\n", 413, b"/"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, b"/"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, b"/"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, b"/"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", 400, b"/"),
        (b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 405, b"x:443"),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, b""),
    ],
)
def test_the_wsgi_paths_checks_and_limits(data: bytes, status: int, logged: bytes) -> None:
    """
    A request the WSGI path refuses is refused with the same status before
    the resource sees it, counted and logged, and its connection closed.
    """
    site, transport, log = served(data, limits=LIMITS)
    assert transport.value().startswith(b"HTTP/1.1 %d " % status), transport.value()
    assert transport.disconnecting
    assert site.refusals == {status: 1} and site.served == 0
    assert log.written == [(logged, status)]


def test_what_twisted_refuses_itself_is_counted() -> None:
    """
    Twisted refuses a request it cannot read by writing its bare 400 and
    closing the connection: a close in the middle of a request is counted
    and logged as that refusal.
    """
    site, transport, log = served(b"GET /half HTTP/1.1\r\nHost: x\r\n", limits=LIMITS)
    channel = site.channels.copy().pop()
    transport.write(TWISTED_REFUSAL)
    channel.loseConnection()
    assert site.refusals == {400: 1} and log.written == [(b"/half", 400)]


def test_the_head_timeout_bounds_a_trickling_head() -> None:
    """
    The whole head must be in within the header timeout of its first byte,
    however its lines trickle in.
    """
    site, transport, log = served(b"G", limits=LIMITS)
    channel, clock = site.channels.copy().pop(), site.reactor
    for delay, piece in [(1.8, b"ET / HTTP/1.1\r\n"), (0.1, b"Host: x\r\n"), (0.05, b"X: 1\r\n")]:
        clock.advance(delay)
        channel.dataReceived(piece)
        assert not transport.value()
    clock.advance(0.05 + site.sweep.interval)
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert site.refusals == {408: 1} and log.written == [(b"/", 408)]


def test_twisted_is_handed_the_head_as_checked() -> None:
    """
    An absolute-form target's authority becomes the Host, folded lines are
    unfolded, and what Twisted serves is what the checks read.
    """
    _, transport, _ = served(b"GET http://a.example:81/p?q HTTP/1.1\r\nHost: b.example\r\n\r\n")
    assert transport.value().endswith(b"GET /p?q a.example:81 10.0.0.1 http a.example 12345 ")


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        (["10.0.0.1"], b"GET / front.example 203.0.113.9 https front.example 443 "),
        (["127.0.0.1"], b"GET / inner 10.0.0.1 http inner 12345 "),
    ],
)
def test_a_trusted_proxy_gives_client_scheme_and_host(trusted: list[str], expected: bytes) -> None:
    forwarded = (
        b"GET / HTTP/1.1\r\nHost: inner\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: front.example\r\nX-Forwarded-Port: 443\r\n\r\n"
    )
    site, transport, log = served(forwarded, trusted=TrustedProxies(trusted))
    assert transport.value().endswith(expected), transport.value()
