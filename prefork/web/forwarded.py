"""
The client as trusted proxies describe it: C{X-Forwarded-For} or RFC 7239's
C{Forwarded}, and C{X-Forwarded-Proto}, C{-Host} and C{-Port}.

Anybody can send these headers; they are believed only from a peer in
C{--forwarded-allow-ips} (L{prefork.web.proxies}), and the environ is built
without them otherwise.  Each proxy appends the address it received the
request from, so the list reads client first, nearest proxy last, and only
its right end is vouched for: the client is the rightmost address that is
not itself a trusted proxy.  Whatever is left of it may be forged, and an
entry that is not an address stops the walk (the connection's own address
stays), rather than letting anything further left through.

With a C{Forwarded} header, the client's element gives the address, and its
C{proto} and C{host} (if any) the scheme and the host; without one,
C{X-Forwarded-For} gives the address, and the last value of each
C{X-Forwarded-Proto}, C{-Host}, C{-Port} (the one the nearest proxy set)
the scheme, C{HTTP_HOST} and C{SERVER_PORT}.  Malformed values are
ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from prefork.web.proxies import TrustedProxies

#: The header fields read here, by their environ keys.
FORWARDING_FIELDS = {
    b"forwarded": "HTTP_FORWARDED",
    b"x-forwarded-for": "HTTP_X_FORWARDED_FOR",
    b"x-forwarded-proto": "HTTP_X_FORWARDED_PROTO",
    b"x-forwarded-host": "HTTP_X_FORWARDED_HOST",
    b"x-forwarded-port": "HTTP_X_FORWARDED_PORT",
}
#: Their environ keys: only a request with one of them from a trusted peer
#: costs any work.
FORWARDING_KEYS = frozenset(FORWARDING_FIELDS.values())

#: A node of a forwarding chain: an address, and its port if it has one.
Node = tuple[str, str | None]

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*')
_QUOTED = re.compile(r"\\(.)")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?")
_PORT = re.compile(r"\d{1,5}")


def applyForwarded(environ: dict[str, Any], trusted: TrustedProxies) -> None:
    """
    Set C{REMOTE_ADDR}, C{REMOTE_PORT}, C{wsgi.url_scheme}, C{HTTP_HOST},
    C{SERVER_NAME} and C{SERVER_PORT} from the forwarding headers in
    C{environ}, which came from a trusted peer.
    """
    proto = _last(environ.get("HTTP_X_FORWARDED_PROTO"))
    host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded is not None:
        element = clientElement(parseForwarded(forwarded), trusted)
        if element is not None:
            _setClient(environ, parseNode(element["for"]))
            proto = element.get("proto", proto)
            host = element.get("host", host)
    else:
        forwardedFor = environ.get("HTTP_X_FORWARDED_FOR")
        if forwardedFor is not None:
            _setClient(environ, _clientNode([_xffNode(entry) for entry in forwardedFor.split(",")], trusted))
    if proto is not None and proto.lower() in ("http", "https"):
        environ["wsgi.url_scheme"] = proto.lower()
    valid = None if host is None else _HOST.fullmatch(host)
    if host is not None and valid is not None:
        environ["HTTP_HOST"] = host
        environ["SERVER_NAME"] = host[: valid.start(1) - 1] if valid.group(1) else host
    port = _last(environ.get("HTTP_X_FORWARDED_PORT"))
    if port is not None and _validPort(port):
        environ["SERVER_PORT"] = str(int(port))


def _last(value: str | None) -> str | None:
    if value is None:
        return None
    return value.rsplit(",", 1)[-1].strip() or None


def _validPort(text: str) -> bool:
    return _PORT.fullmatch(text) is not None and 0 < int(text) < 65536


def _setClient(environ: dict[str, Any], client: Node | None) -> None:
    if client is not None:
        # A proxy's port says nothing of the client's: unknown is 0.
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], client[1] or "0"


def clientIndex(chain: Sequence[Node | None], trusted: TrustedProxies) -> int | None:
    """
    Which entry of a chain of addresses (client first, nearest proxy last;
    L{None} for an entry that is no address) is the client: the rightmost
    that is not trusted, or the leftmost if all are; L{None} when an entry
    that is no address comes first.
    """
    for index in range(len(chain) - 1, -1, -1):
        node = chain[index]
        if node is None:
            return None
        if node[0] not in trusted:
            return index
    return 0 if chain else None


def _clientNode(chain: Sequence[Node | None], trusted: TrustedProxies) -> Node | None:
    index = clientIndex(chain, trusted)
    return None if index is None else chain[index]


def clientElement(elements: list[dict[str, str]] | None, trusted: TrustedProxies) -> dict[str, str] | None:
    """
    The C{Forwarded} element that describes the client, by the rule of
    L{clientIndex} over the elements' C{for} parameters.
    """
    if not elements:
        return None
    index = clientIndex([parseNode(element["for"]) if "for" in element else None for element in elements], trusted)
    return None if index is None else elements[index]


def parseForwarded(value: str) -> list[dict[str, str]] | None:
    """
    The elements of a C{Forwarded} header (RFC 7239, section 4), each a
    mapping of lower-case parameter names to values; L{None} if it is
    malformed anywhere.
    """
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    position = 0
    while True:
        match = _PAIR.match(value, position)
        if match is None:
            return None
        name, raw = match.group(1).lower(), match.group(2)
        if name in current:
            return None
        current[name] = _QUOTED.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
        position = match.end()
        if position == len(value):
            elements.append(current)
            return elements
        separator = value[position]
        if separator == ",":
            elements.append(current)
            current = {}
        elif separator != ";":
            return None
        position += 1


def parseNode(node: str) -> Node | None:
    """
    The address and port of a C{Forwarded} node: C{192.0.2.7},
    C{192.0.2.7:4711}, C{[2001:db8::7]} or C{[2001:db8::7]:4711};
    L{None} for C{unknown}, an obfuscated name, or anything else.
    """
    if node.startswith("["):
        address, bracket, rest = node[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _validPort(rest[1:]))):
            return None
        return _address(address, 6, rest[1:] or None)
    address, colon, port = node.partition(":")
    if colon and not _validPort(port):
        return None
    return _address(address, 4, port or None)


def _xffNode(entry: str) -> Node | None:
    """
    An C{X-Forwarded-For} entry: an address, bare IPv6 included, with a
    port after it in the forms some proxies add.
    """
    entry = entry.strip()
    if entry.count(":") > 1 and not entry.startswith("["):
        return _address(entry, 6, None)
    return parseNode(entry)


def _address(text: str, version: int, port: str | None) -> Node | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version != version:
        return None
    return str(address), None if port is None else str(int(port))
