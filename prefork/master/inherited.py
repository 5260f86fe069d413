"""
Listening sockets inherited from a superdaemon: systemd's socket activation,
Server::Starter's C{start_server} and einhorn.

Each protocol names descriptors in the environment; L{inheritedSockets} finds
the first protocol that hands this process any, and wraps every descriptor as
a L{ListeningSocket} that the server never unlinks: the superdaemon owns the
socket and keeps it open for the next server it starts.

One trap: C{twisted.internet.endpoints}, which twistd imports long before any
plugin runs, reads systemd's C{LISTEN_PID} and C{LISTEN_FDS} at import and
deletes them from C{os.environ}.  The environment this process was started
with is still in C{/proc/self/environ}, so that is read when they are gone.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from prefork.master.sockets import ListeningSocket

#: systemd hands its sockets over from this descriptor on (sd_listen_fds(3)).
SYSTEMD_FIRST_FD = 3

#: Server::Starter's keys: C{port}, C{host:port}, C{[v6]:port} or a path.
_STARTER_KEY = re.compile(r"^(\d+|[^:\[\]/]+:\d+|\[[0-9A-Fa-f:.]+\]:\d+|/.*)$")

#: The systemd families a C{systemd:domain=...} endpoint string names.
_DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


class InheritedSocketError(Exception):
    """
    The environment names inherited sockets, but wrongly; the message says
    which variable and why.
    """


def startEnvironment(path: str = "/proc/self/environ") -> dict[str, str]:
    """
    The environment this process was started with, before anything in it
    deleted variables from C{os.environ}.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return {}
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {key.decode("utf-8", "replace"): value.decode("utf-8", "replace") for key, value in pairs}


def systemdEnvironment(environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """
    The environment to read systemd's variables from: C{environ}, or, when
    Twisted has already taken C{LISTEN_FDS} out of C{os.environ}, the
    environment the process started with.
    """
    if environ is not None:
        return environ
    if "LISTEN_FDS" in os.environ:
        return os.environ
    return startEnvironment()


def adopt(fd: int, origin: str) -> ListeningSocket:
    """
    Wrap the inherited descriptor C{fd} as a L{ListeningSocket}, reading its
    family from the socket itself.

    @raise InheritedSocketError: C{fd} is not a listening stream socket.
    """
    try:
        skt = socket.socket(fileno=fd)
    except OSError as e:
        raise InheritedSocketError(f"{origin}: descriptor {fd} is not a socket ({e.strerror})") from e
    if skt.type != socket.SOCK_STREAM or not skt.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        skt.detach()
        raise InheritedSocketError(f"{origin}: descriptor {fd} is not a listening stream socket")
    # Workers adopt it through Twisted, which needs it non-blocking.
    skt.setblocking(False)
    return ListeningSocket(skt, unlinkPath=None, origin=origin)


def _integer(text: str, variable: str, what: str = "a file descriptor") -> int:
    if not text.strip().isdigit():
        raise InheritedSocketError(f"{variable}: {text!r} is not {what}")
    return int(text)


def systemdDescriptors(environ: Mapping[str, str] | None = None) -> list[tuple[int, str]]:
    """
    The descriptors systemd passed to this very process, with their names
    (C{""} when unnamed), as sd_listen_fds_with_names(3) reads them.
    """
    environ = systemdEnvironment(environ)
    if environ.get("LISTEN_PID") != str(os.getpid()) or "LISTEN_FDS" not in environ:
        return []
    count = _integer(environ["LISTEN_FDS"], "LISTEN_FDS", "a number")
    names = environ.get("LISTEN_FDNAMES", "").split(":") if environ.get("LISTEN_FDNAMES") else []
    names += [""] * (count - len(names))
    return [(SYSTEMD_FIRST_FD + i, names[i]) for i in range(count)]


def fromSystemd(environ: Mapping[str, str] | None = None) -> list[ListeningSocket]:
    return [adopt(fd, _systemdOrigin(fd, name)) for fd, name in systemdDescriptors(environ)]


def _systemdOrigin(fd: int, name: str) -> str:
    return f"systemd fd {fd} {name!r}" if name else f"systemd fd {fd}"


def fromServerStarter(environ: Mapping[str, str] | None = None) -> list[ListeningSocket]:
    """
    The sockets in C{SERVER_STARTER_PORT}: C{;}-separated C{key=fd}.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("SERVER_STARTER_PORT", "")
    found = []
    for entry in filter(None, value.split(";")):
        key, equals, fd = entry.rpartition("=")
        if not equals or not _STARTER_KEY.match(key):
            raise InheritedSocketError(
                f"SERVER_STARTER_PORT: {entry!r} is not PORT=FD, HOST:PORT=FD, [V6]:PORT=FD or PATH=FD"
            )
        found.append(adopt(_integer(fd, "SERVER_STARTER_PORT"), f"Server::Starter {key}"))
    return found


def fromEinhorn(environ: Mapping[str, str] | None = None) -> list[ListeningSocket]:
    """
    The sockets einhorn bound: C{EINHORN_FD_COUNT} with C{EINHORN_FD_0} on,
    or the older, space-separated C{EINHORN_FDS}.
    """
    environ = os.environ if environ is None else environ
    if "EINHORN_FD_COUNT" in environ:
        count = _integer(environ["EINHORN_FD_COUNT"], "EINHORN_FD_COUNT", "a number")
        variables = [f"EINHORN_FD_{i}" for i in range(count)]
        for variable in variables:
            if variable not in environ:
                raise InheritedSocketError(f"EINHORN_FD_COUNT is {count} but {variable} is not set")
        pairs = [(variable, environ[variable]) for variable in variables]
    else:
        pairs = [("EINHORN_FDS", fd) for fd in environ.get("EINHORN_FDS", "").split()]
    return [adopt(_integer(fd, variable), f"einhorn fd {fd.strip()}") for variable, fd in pairs]


def underEinhorn(environ: Mapping[str, str] | None = None) -> bool:
    """
    Whether einhorn started this process, and so stops it with C{USR2}.
    """
    environ = os.environ if environ is None else environ
    return "EINHORN_FD_COUNT" in environ or "EINHORN_FDS" in environ


#: The protocols, in the order they are tried.
PROTOCOLS: list[Callable[[], list[ListeningSocket]]] = [fromSystemd, fromServerStarter, fromEinhorn]


def inheritedSockets() -> list[ListeningSocket]:
    """
    The sockets of the first protocol that handed this process any.

    @raise InheritedSocketError: The environment names sockets wrongly.
    """
    for protocol in PROTOCOLS:
        found = protocol()
        if found:
            return found
    return []


def systemdEndpoint(description: str, environ: Mapping[str, str] | None = None) -> ListeningSocket:
    """
    The socket a Twisted C{systemd:domain=INET:index=0} (or C{name=web})
    endpoint string names.  Twisted's own parser cannot be used: it finds
    nothing when systemd passed no names, and its UNIX ports would unlink
    systemd's socket.

    @raise InheritedSocketError: The string is malformed or names no socket.
    """
    arguments = dict(part.partition("=")[::2] for part in description.split(":")[1:])
    unknown = set(arguments) - {"domain", "index", "name"}
    if unknown or arguments.get("domain") not in _DOMAINS or ("index" in arguments) == ("name" in arguments):
        raise InheritedSocketError("a systemd endpoint is systemd:domain=INET|INET6|UNIX:index=N (or :name=NAME)")
    passed = systemdDescriptors(environ)
    if "name" in arguments:
        matches = [(fd, name) for fd, name in passed if name == arguments["name"]]
    else:
        index = _integer(arguments["index"], description, "an index")
        matches = passed[index:index + 1]
    if not matches:
        raise InheritedSocketError(f"systemd passed no socket for {description} (it passed {len(passed)})")
    fd, name = matches[0]
    listening = adopt(fd, _systemdOrigin(fd, name))
    if listening.family != _DOMAINS[arguments["domain"]]:
        listening.socket.detach()
        raise InheritedSocketError(f"{description}: the socket systemd passed is {listening.family.name}")
    return listening
