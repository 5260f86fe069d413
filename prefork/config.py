"""
The settings a generation runs with, shared by the master, the template and
the workers.

The master builds one L{ServerConfig} from the command line and hands it to
each template process as JSON over the template's command pipe (see
L{prefork.messages.TemplateSetup}), so that every process of the server
reads the very same values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from prefork.options import DEMO_APP, declared
from prefork.tls import TLSSettings
from prefork.web import limits

__all__ = ["DEMO_APP", "ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """
    Everything a template and its workers need to know.

    A field an option sets takes its default from the option's declaration
    (L{prefork.options.OPTIONS}).

    @ivar app: The WSGI application, C{"module:attribute"}.
    @ivar resource: When not L{None}, what is served instead of C{app}: a
        C{twisted.web} resource, C{"module:attribute"} (C{--resource}).
    @ivar workers: How many workers each generation keeps serving.
    @ivar maxRequests: The most requests a worker serves before it retires;
        0 means never.
    @ivar minRequests: When not L{None}, each worker draws its own limit
        uniformly from C{[minRequests, maxRequests]}.
    @ivar threads: The size of each worker's WSGI thread pool; 0 runs the
        application in the worker's reactor thread.
    @ivar spareWorkers: Workers each generation keeps booted but not
        accepting, to take the place of one that retires or dies at once.
    @ivar gracefulTimeout: The longest a draining worker may take, in seconds.
    @ivar timeout: A worker not heard from for this many seconds is killed;
        0 turns the watchdog off.
    @ivar accessLog: Where workers write the access log (C{"-"} for standard
        output), or L{None}.
    @ivar accessLogFormat: The access log's format (see L{prefork.web.accesslog});
        L{None} for the combined log format.
    @ivar maxRss: A worker whose resident memory passes this many megabytes
        retires; 0 means no limit.
    @ivar preload: Import the application once in the template, not in each
        worker.
    @ivar pythonPath: Directories put in front of C{sys.path} before the
        application is imported.
    @ivar limitRequestLine: The longest request line, in bytes (414 above).
    @ivar limitRequestFields: The most header fields in a request (431 above).
    @ivar limitRequestFieldSize: The longest header field, in bytes (431
        above).
    @ivar limitRequestBody: The largest request body, in bytes (413 above);
        0 means no limit.
    @ivar headerTimeout: Seconds a client has to send a request head.
    @ivar keepaliveTimeout: Seconds an idle keep-alive connection stays open.
    @ivar scriptName: The URL prefix the application is mounted below
        (C{SCRIPT_NAME}), C{""} for the root.
    @ivar forwardedAllowIps: Peers trusted to say who the client is and
        how it reached them (C{X-Forwarded-For}, C{-Proto}, C{-Host} and
        C{-Port}, RFC 7239 C{Forwarded}, and with L{proxyProtocol} the
        PROXY header): addresses, networks, or C{"*"}.  A UNIX socket's
        peer is trusted whatever this says.
    @ivar displayTracebacks: Send an application's traceback to the client
        with its 500 response.
    @ivar hooks: The server hooks, C{"module"} or C{"module:object"} (see
        L{prefork.hooks}), or L{None}.
    @ivar reload: Templates and workers report the application's source
        files, which the master watches (C{--reload}).
    @ivar maxUss: A worker whose unique memory (its private pages, see
        L{prefork.memory}) passes this many megabytes retires; 0 means no
        limit.
    @ivar listenerTLS: For each listening socket, in the order the workers
        receive them, the TLS they serve it with (L{None}: plain HTTP).
    @ivar proxyProtocol: Every connection starts with a PROXY protocol
        header (v1 or v2), from a peer in C{forwardedAllowIps}.
    """

    app: str = declared("app")
    resource: str | None = declared("resource")
    workers: int = declared("workers")
    maxRequests: int = declared("maxRequests")
    minRequests: int | None = declared("minRequests")
    threads: int = declared("threads")
    spareWorkers: int = declared("spareWorkers")
    gracefulTimeout: float = declared("gracefulTimeout")
    timeout: float = declared("timeout")
    accessLog: str | None = declared("accessLog")
    accessLogFormat: str | None = declared("accessLogFormat")
    maxRss: int = declared("maxRss")
    preload: bool = declared("preload")
    pythonPath: tuple[str, ...] = field(default_factory=tuple)
    limitRequestLine: int = declared("limitRequestLine")
    limitRequestFields: int = declared("limitRequestFields")
    limitRequestFieldSize: int = declared("limitRequestFieldSize")
    limitRequestBody: int = declared("limitRequestBody")
    headerTimeout: float = declared("headerTimeout")
    keepaliveTimeout: float = declared("keepaliveTimeout")
    scriptName: str = declared("scriptName")
    forwardedAllowIps: tuple[str, ...] = declared("forwardedAllowIps")
    displayTracebacks: bool = declared("displayTracebacks")
    hooks: str | None = declared("hooks")
    reload: bool = declared("reload")
    maxUss: int = declared("maxUss")
    listenerTLS: tuple[TLSSettings | None, ...] = ()
    proxyProtocol: bool = declared("proxyProtocol")

    def toJSON(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def fromJSON(cls, text: str) -> ServerConfig:
        values = json.loads(text)
        values["pythonPath"] = tuple(values["pythonPath"])
        values["forwardedAllowIps"] = tuple(values["forwardedAllowIps"])
        values["listenerTLS"] = tuple(
            None if tls is None else TLSSettings.fromDict(tls) for tls in values["listenerTLS"]
        )
        return cls(**values)

    @property
    def served(self) -> str:
        """
        What the workers serve, as C{--app} or C{--resource} names it.
        """
        return self.app if self.resource is None else self.resource

    def withoutPreload(self) -> ServerConfig:
        return replace(self, preload=False)

    def requestLimits(self) -> limits.RequestLimits:
        return limits.RequestLimits(
            requestLine=self.limitRequestLine,
            fields=self.limitRequestFields,
            fieldSize=self.limitRequestFieldSize,
            body=self.limitRequestBody,
            headerTimeout=self.headerTimeout,
            keepaliveTimeout=self.keepaliveTimeout,
        )
