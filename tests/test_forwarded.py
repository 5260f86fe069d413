"""
X-Forwarded-For, RFC 7239 Forwarded, X-Forwarded-Host and -Port: believed
from trusted peers only, the client being the rightmost address that is not
a trusted proxy; spoofing and malformed values change nothing.
"""

from __future__ import annotations

import json

import pytest

from prefork.web.forwarded import applyForwarded, parseForwarded, parseNode
from prefork.web.proxies import TrustedProxies
from rawhttp import exchange
from server import Server

pytestmark = pytest.mark.usefixtures("noInternalErrors")
APP = ("--app", "testapp:validated", "--workers", "1", "--max-requests", "0")
#: What the forwarding headers may change, but the client's port (each
#: connection has its own).
KEYS = ("REMOTE_ADDR", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT")


def seen(server: Server, headers: str) -> dict[str, str]:
    request = f"GET /roundtrip HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n{headers}\r\n".encode()
    responses, reader = exchange(server.port, request, count=1)
    reader.sock.close()
    assert responses[0].status == 200, responses[0].body
    return json.loads(responses[0].body)


def facts(server: Server, headers: str) -> tuple[str, ...]:
    environ = seen(server, headers)
    return tuple(environ.get(key, "") for key in KEYS)


@pytest.fixture
def trustingProxies(serve) -> Server:
    """
    A server that trusts the test's 127.0.0.1 and the proxies of 10/8.
    """
    return serve(*APP, "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")


def untouched(server: Server) -> tuple[str, ...]:
    return facts(server, "")


EVERY_HEADER = (
    "X-Forwarded-For: 192.0.2.7\r\n"
    "Forwarded: for=192.0.2.8;proto=https;host=shop.example\r\n"
    "X-Forwarded-Proto: https\r\n"
    "X-Forwarded-Host: shop.example\r\n"
    "X-Forwarded-Port: 8443\r\n"
)


def test_untrusted_peer_changes_nothing(serve) -> None:
    server = serve(*APP, "--forwarded-allow-ips", "10.0.0.1,192.168.0.0/16")
    before = untouched(server)
    assert before[0] == "127.0.0.1" and before[2] == "example.com"
    environ = seen(server, EVERY_HEADER)
    assert tuple(environ.get(key, "") for key in KEYS) == before
    # The application still sees the headers themselves.
    assert environ["HTTP_X_FORWARDED_FOR"] == "192.0.2.7"


@pytest.mark.parametrize(
    "forwardedFor, client",
    [
        ("192.0.2.7", ("192.0.2.7", "0")),
        ("2001:db8::7", ("2001:db8::7", "0")),
        ("[2001:db8::7]:4711", ("2001:db8::7", "4711")),
        ("192.0.2.7:4711", ("192.0.2.7", "4711")),
        # Forged entries left of the client are not believed...
        ("6.6.6.6, 192.0.2.7, 10.0.0.2", ("192.0.2.7", "0")),
        ("6.6.6.6,192.0.2.7,10.1.2.3,10.0.0.2", ("192.0.2.7", "0")),
        # ...nor is the forger if the proxy reports the client.
        ("127.0.0.1, 192.0.2.7", ("192.0.2.7", "0")),
        # Every hop trusted: the leftmost is the client.
        ("10.0.0.3, 10.0.0.2", ("10.0.0.3", "0")),
    ],
)
def test_client_is_the_rightmost_untrusted_address(
    trustingProxies: Server, forwardedFor: str, client: tuple[str, str]
) -> None:
    environ = seen(trustingProxies, f"X-Forwarded-For: {forwardedFor}\r\n")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == client


@pytest.mark.parametrize(
    "forwardedFor",
    [
        "garbage", "192.0.2.7, garbage", "192.0.2.7, unknown", "192.0.2.7,", "192.0.2.7, 10.0.0.2 10.0.0.3",
        "999.0.0.1", "1.2.3.4:99999", "[::1",
    ],
)
def test_malformed_forwarded_for_changes_nothing(trustingProxies: Server, forwardedFor: str) -> None:
    environ = seen(trustingProxies, f"X-Forwarded-For: {forwardedFor}\r\n")
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["REMOTE_PORT"] != "0"


@pytest.mark.parametrize(
    "forwarded, expected",
    [
        ('for="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", "4711", "http", "example.com")),
        ('for=192.0.2.60;proto=https;host="shop.example:8443"', ("192.0.2.60", "0", "https", "shop.example:8443")),
        ("For=192.0.2.60 ; Proto=HTTPS", ("192.0.2.60", "0", "https", "example.com")),
        ('for=6.6.6.6;proto=http;host=evil.example, for=192.0.2.7;proto=https;host=shop.example, for="10.0.0.2:80"',
         ("192.0.2.7", "0", "https", "shop.example")),
        ("for=192.0.2.7;by=10.0.0.9;proto=https, for=10.0.0.2;proto=http", ("192.0.2.7", "0", "https", "example.com")),
        ('for="\\192.0.2.9"', ("192.0.2.9", "0", "http", "example.com")),
    ],
)
def test_rfc7239_forwarded(trustingProxies: Server, forwarded: str, expected: tuple[str, ...]) -> None:
    environ = seen(trustingProxies, f"Forwarded: {forwarded}\r\n")
    seenAs = (environ["REMOTE_ADDR"], environ["REMOTE_PORT"], environ["wsgi.url_scheme"], environ["HTTP_HOST"])
    assert seenAs == expected


@pytest.mark.parametrize(
    "forwarded",
    [
        "for=192.0.2.7;;proto=https",
        'for="192.0.2.7',
        "for=192.0.2.7;for=192.0.2.8",
        "for=192.0.2.7 proto=https",
        "for=unknown;proto=https",
        "for=_hidden;proto=https",
        "for=2001:db8::1",  # IPv6 must be quoted and bracketed
        'for="[2001:db8::1]:http"',
        "proto=https",
        "for=192.0.2.7, for=garbage;proto=https",
        "for=192.0.2.7;host=shop.example:8443",  # a colon must be quoted
    ],
)
def test_malformed_or_unusable_forwarded_changes_nothing(trustingProxies: Server, forwarded: str) -> None:
    environ = seen(trustingProxies, f"Forwarded: {forwarded}\r\n")
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("127.0.0.1", "http")


def test_forwarded_wins_over_x_forwarded_for(trustingProxies: Server) -> None:
    environ = seen(trustingProxies, "X-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.2\r\n")
    assert environ["REMOTE_ADDR"] == "192.0.2.2"


def test_host_and_port(trustingProxies: Server) -> None:
    environ = seen(
        trustingProxies, "X-Forwarded-Host: shop.example:8443\r\nX-Forwarded-Port: 8443\r\nX-Forwarded-Proto: https\r\n"
    )
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"], environ["SERVER_PORT"], environ["wsgi.url_scheme"]) == (
        "shop.example:8443", "shop.example", "8443", "https",
    )
    # The value the nearest proxy appended is the one believed.
    environ = seen(
        trustingProxies, "X-Forwarded-Host: evil.example, shop.example\r\nX-Forwarded-Proto: http, https\r\n"
    )
    assert (environ["HTTP_HOST"], environ["wsgi.url_scheme"]) == ("shop.example", "https")
    environ = seen(trustingProxies, "X-Forwarded-Host: [2001:db8::1]:8080\r\n")
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"]) == ("[2001:db8::1]:8080", "[2001:db8::1]")


@pytest.mark.parametrize(
    "headers",
    [
        "X-Forwarded-Host: evil host\r\n",
        "X-Forwarded-Host: evil.example/path\r\n",
        "X-Forwarded-Host: evil.example@x\r\n",
        "X-Forwarded-Port: 99999\r\n",
        "X-Forwarded-Port: 0\r\n",
        "X-Forwarded-Port: 443x\r\n",
        "X-Forwarded-Proto: gopher\r\n",
        "X-Forwarded_Host: evil.example\r\n",
    ],
)
def test_malformed_host_port_and_proto_change_nothing(trustingProxies: Server, headers: str) -> None:
    assert facts(trustingProxies, headers) == untouched(trustingProxies)


# The rules themselves.


def test_parse_forwarded() -> None:
    assert parseForwarded('for=192.0.2.43, for="[2001:db8:cafe::17]";proto=https;by=203.0.113.43') == [
        {"for": "192.0.2.43"},
        {"for": "[2001:db8:cafe::17]", "proto": "https", "by": "203.0.113.43"},
    ]
    assert parseForwarded('for="a,b;c\\"d"') == [{"for": 'a,b;c"d'}]
    assert parseForwarded("") is None
    assert parseForwarded("for=1.2.3.4,") is None


@pytest.mark.parametrize(
    "node, parsed",
    [
        ("192.0.2.43", ("192.0.2.43", None)),
        ("192.0.2.43:47011", ("192.0.2.43", "47011")),
        ("[2001:db8:cafe::17]", ("2001:db8:cafe::17", None)),
        ("[2001:DB8:cafe::17]:4711", ("2001:db8:cafe::17", "4711")),
        ("[192.0.2.43]", None),
        ("unknown", None),
        ("_SEVKISEK", None),
        ("192.0.2.43:_port", None),
        ("[2001:db8::1]x", None),
    ],
)
def test_parse_node(node: str, parsed: tuple[str, str | None] | None) -> None:
    assert parseNode(node) == parsed


def test_apply_only_what_is_given() -> None:
    environ = {"REMOTE_ADDR": "10.0.0.2", "REMOTE_PORT": "5000", "HTTP_X_FORWARDED_PORT": "443"}
    applyForwarded(environ, TrustedProxies(["10.0.0.0/8"]))
    assert environ == {
        "REMOTE_ADDR": "10.0.0.2", "REMOTE_PORT": "5000", "HTTP_X_FORWARDED_PORT": "443", "SERVER_PORT": "443",
    }
