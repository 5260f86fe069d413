"""
The WSGI environ (PEP 3333) of one request: its CGI-style keys built from
what Twisted parsed, the application's mount point below C{--script-name},
and what a trusted proxy says of the client (L{prefork.web.forwarded}).
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

from prefork.web.forwarded import FORWARDING_KEYS, applyForwarded
from prefork.web.proxies import TrustedProxies
from prefork.web.request import WorkerRequest


def native(b: bytes) -> str:
    return b.decode("latin-1")


def _addressParts(address: Any) -> tuple[str, str]:
    """
    The host and port of a peer or local address; a UNIX socket is local.
    """
    host = getattr(address, "host", None)
    if host is None:
        return "127.0.0.1", "0"
    return host, str(address.port)


class NotMounted(Exception):
    """
    The request's path is not below the application's C{SCRIPT_NAME}.
    """


def splitPath(path: str, scriptName: str) -> tuple[str, str]:
    """
    C{SCRIPT_NAME} and C{PATH_INFO} of a decoded request path, for an
    application mounted at C{scriptName} (C{""} for the root).

    @raise NotMounted: The path is not C{scriptName} or below it.
    """
    if not scriptName:
        return "", path
    if path == scriptName or path.startswith(scriptName + "/"):
        return scriptName, path[len(scriptName):]
    raise NotMounted(path)


#: Request header names already turned into environ keys.  Clients choose
#: the names, so the cache is bounded; past the bound, names are converted
#: every time.
_environKeys: dict[bytes, str] = {}
_MAX_ENVIRON_KEYS = 256


def _environKey(name: bytes) -> str:
    """
    The environ key of request header C{name}: C{HTTP_} and the name in upper
    case with C{_} for C{-}, but C{CONTENT_TYPE} and C{CONTENT_LENGTH} bare.
    """
    key = _environKeys.get(name)
    if key is None:
        key = native(name).upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if len(_environKeys) < _MAX_ENVIRON_KEYS:
            _environKeys[name] = key
    return key


class _ConnectionFacts(NamedTuple):
    localHost: str
    #: The peer's address as L{TrustedProxies} takes it: L{None} for a UNIX
    #: socket.
    peerHost: str | None
    #: What every environ of the connection starts from.
    base: dict[str, Any]
    #: The extra keys C{base} holds.
    extra: dict[str, Any]


def _connectionFacts(request: WorkerRequest, extra: dict[str, Any]) -> _ConnectionFacts:
    """
    What the environ says of the connection: the same for every request of a
    keep-alive connection, so worked out once for it.
    """
    connection = request.connection
    facts: _ConnectionFacts | None = connection.facts
    if facts is None or facts.extra is not extra:
        peer = connection.peer
        remoteHost, remotePort = _addressParts(peer)
        localHost, localPort = _addressParts(connection.host)
        secure = connection.secure
        if localPort == "0":
            # A UNIX socket has no port: say what the client would have used.
            localPort = "443" if secure else "80"
        base = {
            "SERVER_PORT": localPort,
            "REMOTE_ADDR": remoteHost,
            "REMOTE_PORT": remotePort,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if secure else "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            **extra,
        }
        facts = _ConnectionFacts(localHost, getattr(peer, "host", None), base, extra)
        connection.facts = facts
    return facts


def _serverName(host: bytes) -> str:
    """
    The host name in a Host field value, without its port.
    """
    if host[:1] == b"[":
        return native(host.split(b"]", 1)[0] + b"]")
    return native(host.split(b":", 1)[0])


def buildEnviron(
    request: WorkerRequest,
    extra: dict[str, Any],
    scriptName: str = "",
    trusted: TrustedProxies | None = None,
) -> dict[str, Any]:
    """
    The WSGI environ of C{request}.

    @param extra: Keys added to every environ (the exit guard, say).
    @param scriptName: Where the application is mounted.
    @param trusted: The peers whose forwarding headers are believed.
    @raise NotMounted: The request is not for the application.
    """
    path, _, query = request.uri.partition(b"?")
    # Most paths have nothing to unquote.
    scriptName, pathInfo = splitPath(native(unquote_to_bytes(path) if b"%" in path else path), scriptName)
    connection = _connectionFacts(request, extra)
    host = request.getHeader(b"host")
    environ = connection.base.copy()
    environ["REQUEST_METHOD"] = request.method.decode("latin-1")
    environ["SCRIPT_NAME"] = scriptName
    environ["PATH_INFO"] = pathInfo
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["SERVER_NAME"] = _serverName(host) if host else connection.localHost
    environ["SERVER_PROTOCOL"] = request.clientproto.decode("latin-1")
    environ["wsgi.input"] = request.content
    forwarding = False
    for name, values in request.requestHeaders.getAllRawHeaders():
        if b"_" in name:
            # X-Forwarded_Proto would pass for X-Forwarded-Proto in the
            # environ, behind a proxy that strips only the latter.
            continue
        key = _environKey(name)
        # Most fields come once: nothing to join.
        value = native(values[0]) if len(values) == 1 else ",".join(native(v) for v in values)
        environ[key] = value
        if key in FORWARDING_KEYS:
            forwarding = True
    if forwarding and trusted is not None and connection.peerHost in trusted:
        applyForwarded(environ, trusted)
        # The access log names the client the application was told of.
        request.preforkClient = environ["REMOTE_ADDR"]
        request.preforkScheme = environ["wsgi.url_scheme"]
    return environ
