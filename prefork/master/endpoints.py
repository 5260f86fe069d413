"""
Which C{--listen} endpoint descriptions the workers can serve.

The master opens each socket and every worker adopts a copy of it, so only
endpoints that are a plain listening socket underneath can be served, and
only if the workers can add back whatever the endpoint puts on top of it:
C{tcp:}, C{tcp6:} and C{unix:} as they are, C{ssl:} and C{tls:} through
L{prefork.tls}.  Every other kind (C{txtorcon:}, C{onion:}, C{le:}, ...) is
refused at start with one line, rather than served as something it is not.

Each socket's listen queue (its backlog) is C{--backlog} long, unless the
description gives its own C{backlog}; the kernel caps both at
C{net.core.somaxconn}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.logger import Logger

from prefork.options import DEFAULT_BACKLOG
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

#: The most C{listen(2)} takes.
MAX_BACKLOG = 2**31 - 1
#: Where Linux keeps its cap on every listen queue.
SOMAXCONN = "/proc/sys/net/core/somaxconn"
#: Where the plain kinds take a positional backlog, counting the kind: the
#: signatures of Twisted's parsers (C{tcp:PORT:INTERFACE:BACKLOG},
#: C{tcp6:PORT:BACKLOG}, C{unix:PATH:MODE:BACKLOG}).
_BACKLOG_POSITION = {"tcp": 3, "tcp6": 2, "unix": 3}

_log = Logger()


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


def kernelBacklogCap(path: str = SOMAXCONN) -> int | None:
    """
    The kernel's cap on every listen queue (C{net.core.somaxconn}), or
    L{None} where it cannot be read.
    """
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def backlogAboveCap(backlog: int, path: str = SOMAXCONN) -> bool:
    """
    Whether the kernel caps C{backlog}; if so, log that it does.
    """
    cap = kernelBacklogCap(path)
    if cap is None or backlog <= cap:
        return False
    _log.info(
        "--backlog {backlog} is above net.core.somaxconn: the kernel makes each listen queue {cap} long",
        backlog=backlog, cap=cap,
    )
    return True


def listenEndpoint(reactor: Any, description: str, backlog: int = DEFAULT_BACKLOG) -> ListenEndpoint:
    """
    The endpoint to open for C{description}, its TLS certificate checked
    (read, parsed, matched with its key) when it has one.

    @param backlog: The listen queue's length, unless C{description} gives
        its own.

    @raise UnservableEndpoint: It is malformed, of a kind the workers cannot
        serve, or its certificate cannot be used.
    """
    try:
        args, kwargs = splitDescription(description)
        kind = args[0].lower()
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
        queue = backlog if address.backlog is None else address.backlog
        return ListenEndpoint(tcp(reactor, address.port, queue, address.interface), settings)
    if kind not in PLAIN:
        raise UnservableEndpoint(
            f"--listen {description!r}: the workers cannot serve {kind!r} endpoints (they serve {SERVABLE})"
        )
    queued = description
    if "backlog" not in kwargs and len(args) <= _BACKLOG_POSITION[kind]:
        queued += f":backlog={backlog}"
    try:
        return ListenEndpoint(serverFromString(reactor, queued))
    except (ValueError, KeyError, TypeError) as e:
        raise UnservableEndpoint(f"--listen {description!r} is not a server endpoint: {e}") from None
