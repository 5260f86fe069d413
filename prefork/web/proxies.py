"""
Which peers are trusted to say how the client reached them.

Behind a TLS-terminating proxy every request arrives over plain HTTP from
the proxy; the proxy says C{X-Forwarded-Proto: https}, and who the client
is (L{prefork.web.forwarded}, L{prefork.web.proxyprotocol}).  Anybody can
send those headers, so they are believed only from the peers
C{--forwarded-allow-ips} names (by default 127.0.0.1, as gunicorn), and from
UNIX sockets, which only local processes can reach.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """
    A set of addresses and networks, or every peer (C{"*"}).

    @raise ValueError: An entry is neither an address, a network, nor C{*}.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self._addresses: set[str] = set()
        self._networks: list[_Network] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
            elif "/" in entry:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            else:
                self._addresses.add(str(ipaddress.ip_address(entry)))

    def __contains__(self, host: str | None) -> bool:
        """
        Whether the peer at C{host} is trusted; L{None} is a UNIX socket.
        """
        if self.everyone or host is None or host in self._addresses:
            return True
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def parseForwardedAllowIps(value: str) -> tuple[str, ...]:
    """
    The entries of a comma-separated C{--forwarded-allow-ips} value.

    @raise ValueError: One is not an address, a network, nor C{*}.
    """
    entries = tuple(entry.strip() for entry in value.split(",") if entry.strip())
    TrustedProxies(entries)
    return entries
