"""
Which C{--listen} endpoint descriptions the workers can serve.

The master opens each socket and every worker adopts a copy of it, so only
endpoints that are a plain listening socket underneath can be served, and
only if the workers can add back whatever the endpoint puts on top of it:
C{tcp:}, C{tcp6:} and C{unix:} as they are, C{ssl:} and C{tls:} through
L{prefork.tls}.  Every other kind (C{txtorcon:}, C{onion:}, C{le:}, ...) is
refused at start with one line, rather than served as something it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)

from prefork.tls import (
    TLSConfigError,
    TLSSettings,
    TLSUnsupported,
    connectionCreator,
    parseTLSDescription,
    splitDescription,
)

#: The endpoint kinds served as they are.
PLAIN = ("tcp", "tcp6", "unix")
#: Every kind a worker can serve, as the refusal names them.
SERVABLE = "tcp:, tcp6:, unix:, ssl:, tls: or systemd:"


class UnservableEndpoint(ValueError):
    """
    The description cannot be served by the workers; the message says why.
    """


class UnusableCertificate(UnservableEndpoint):
    """
    A TLS endpoint's certificate, key or chain cannot be read or used: a
    problem with files on the machine rather than with what was asked.
    """


@dataclass(frozen=True)
class ListenEndpoint:
    """
    What the master opens for one C{--listen}, and the TLS the workers add.

    @ivar endpoint: Opens the plain listening socket (an
        L{IStreamServerEndpoint}).
    @ivar tls: The TLS settings, or L{None} for plain HTTP.
    """

    endpoint: Any
    tls: TLSSettings | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"


def listenEndpoint(reactor: Any, description: str) -> ListenEndpoint:
    """
    The endpoint to open for C{description}, its TLS certificate checked
    (read, parsed, matched with its key) when it has one.

    @raise UnservableEndpoint: It is malformed, of a kind the workers cannot
        serve, or its certificate cannot be used.
    """
    try:
        kind = splitDescription(description)[0][0].lower()
        parsed = parseTLSDescription(description)
    except TLSConfigError as e:
        raise UnservableEndpoint(f"--listen {description!r}: {e}") from None
    if parsed is not None:
        settings, address = parsed
        try:
            connectionCreator(settings)
        except TLSUnsupported as e:
            raise UnservableEndpoint(f"--listen {description!r}: {e}") from None
        except TLSConfigError as e:
            raise UnusableCertificate(f"--listen {description!r}: {e}") from None
        tcp = TCP6ServerEndpoint if address.ipv6 else TCP4ServerEndpoint
        return ListenEndpoint(tcp(reactor, address.port, address.backlog, address.interface), settings)
    if kind not in PLAIN:
        raise UnservableEndpoint(
            f"--listen {description!r}: the workers cannot serve {kind!r} endpoints (they serve {SERVABLE})"
        )
    try:
        return ListenEndpoint(serverFromString(reactor, description))
    except (ValueError, KeyError, TypeError) as e:
        raise UnservableEndpoint(f"--listen {description!r} is not a server endpoint: {e}") from None
