"""
Every option of C{twistd prefork}, declared once.

Each L{Option} holds an option's name, kind, default, help text, short
name, Twiggy::Prefork aliases, environment variables, check, the
L{prefork.config.ServerConfig} field it fills and how the documentation
writes it.  From L{OPTIONS} come the command line L{prefork.tap.Options}
parses, the defaults of L{prefork.config.ServerConfig}, the sources and the
C{--print-config} output of L{prefork.settings}, and the tests that keep
README.rst's option tables true (tests/test_docs.py).

L{prefork.config} imports this module in every process of the server, so
it imports nothing but constants at the top: each check imports what it
needs when it runs, which is in the master, as it reads its options (and
L{prefork.hooks} imports L{prefork.config} in turn).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from prefork.web import limits

DEMO_APP = "prefork.demo:application"

#: Where the server listens when no source and no superdaemon says.
DEFAULT_LISTEN = "tcp:8080"

#: Turns an option's text into its value, or raises L{ValueError} with what
#: follows C{--name} in the one line the user reads.
Check = Callable[[str], Any]


class Kind(Enum):
    """
    How an option is given.
    """

    #: Takes a value; the last one given wins.
    PARAMETER = "parameter"
    #: Takes no value; given means yes.
    FLAG = "flag"
    #: Takes a value, any number of times; every value counts.
    REPEATABLE = "repeatable"


@dataclass(frozen=True)
class Option:
    """
    One option of C{twistd prefork}.

    @ivar name: The long name, C{--name} on the command line and C{name} in
        a C{--config} file.
    @ivar kind: How it is given.
    @ivar help: What C{--help} says of it.
    @ivar default: Its value when no source gives it, as
        L{prefork.config.ServerConfig} holds it (a parameter's C{--help} and
        C{--print-config} show it as text, see L{text}); L{None} when unset.
    @ivar check: Turns a given text into the value (for a repeatable option,
        each value as it is given); L{None} keeps the text.
    @ivar short: The one-letter name, if any.
    @ivar aliases: Twiggy::Prefork's names for it, accepted in every source.
    @ivar environment: Environment variables besides C{PREFORK_<NAME>} that
        give it, below C{PREFORK_<NAME>} in precedence (the platforms' own).
    @ivar field: The L{prefork.config.ServerConfig} field it sets, if any.
    @ivar inverted: A flag that sets its field to false (C{--no-preload}).
    @ivar metavar: What README.rst's option table writes after C{--name}.
    @ivar doc: The default as README.rst's option table writes it, when that
        is not L{text} (C{"demo app"}, C{"off"}).
    @ivar commandLineOnly: Only the command line gives it (a file never,
        the environment only C{PREFORK_CONFIG}).
    @ivar complete: Shell completion: C{"files"} or C{"dirs"}.
    """

    name: str
    kind: Kind
    help: str
    default: Any = None
    check: Check | None = None
    short: str | None = None
    aliases: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    field: str | None = None
    inverted: bool = False
    metavar: str = ""
    doc: str | None = None
    commandLineOnly: bool = False
    complete: str | None = None

    @property
    def variable(self) -> str:
        """
        The environment variable that gives it: C{PREFORK_MAX_REQUESTS}.
        """
        return "PREFORK_" + self.name.upper().replace("-", "_")

    @property
    def text(self) -> str | None:
        """
        A parameter's default as the command line would give it; L{None}
        for none, and for flags and repeatable options.
        """
        if self.kind is not Kind.PARAMETER or self.default is None:
            return None
        if isinstance(self.default, float):
            return f"{self.default:g}"
        if isinstance(self.default, tuple):
            return ",".join(self.default)
        return str(self.default)

    @property
    def documentedDefault(self) -> str:
        """
        The default as README.rst's option table writes it (empty: none).
        """
        return self.doc if self.doc is not None else self.text or ""

    @property
    def configDefault(self) -> Any:
        """
        What its L{field} holds when no source gives it.
        """
        return self.inverted if self.kind is Kind.FLAG else self.default

    def value(self, given: Any) -> Any:
        """
        The value of a parameter or flag as the parser left it: checked,
        and for a flag true or false.  (A repeatable option's values are
        checked one by one as they are given.)

        @raise ValueError: The one line that tells what is wrong.
        """
        if self.kind is Kind.FLAG:
            return bool(given) != self.inverted
        if self.kind is Kind.REPEATABLE or given is None or self.check is None:
            return given
        try:
            return self.check(given)
        except ValueError as e:
            raise ValueError(f"--{self.name} {e}") from None


@dataclass(frozen=True)
class Number:
    """
    A check: a number of at least C{minimum} (and at most C{maximum}).
    """

    minimum: int
    kind: type = int
    maximum: int | None = None

    def __call__(self, value: str) -> Any:
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            number = None
        if number is None or number < self.minimum or self.maximum is not None and number > self.maximum:
            bounds = f"of at least {self.minimum}" if self.maximum is None else f"from {self.minimum} to {self.maximum}"
            raise ValueError(f"must be a number {bounds}, not {value!r}")
        return number


def seconds(value: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise ValueError(f"must be a number of seconds above 0, not {value!r}")
    return number


def _backlog(value: str) -> int:
    from prefork.master.endpoints import MAX_BACKLOG

    backlog: int = Number(1, maximum=MAX_BACKLOG)(value)
    return backlog


def _app(value: str) -> str:
    """
    C{--app} or C{--resource}: C{MODULE:NAME}.
    """
    from prefork.child.appload import parseAppSpec

    parseAppSpec(value)
    return value


def _status(value: str) -> Any:
    """
    The status page's endpoint.
    """
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    try:
        return serverFromString(reactor, value)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{value!r} is not a server endpoint: {e}") from None


def _accessLogFormat(value: str) -> str:
    from prefork.web.accesslog import checkFormat

    checkFormat(value)
    return value


def _accessLog(path: str) -> str:
    """
    The absolute path of the access log, checked to be writable now rather
    than in every worker (without creating it: --check-config opens
    nothing).
    """
    if path == "-":
        return path
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path!r} cannot be opened: it is a directory")
    writable = os.path.dirname(path) if not os.path.exists(path) else path
    if not os.path.isdir(os.path.dirname(path)):
        raise ValueError(f"{path!r} cannot be opened: no directory {os.path.dirname(path)!r}")
    if not os.access(writable, os.W_OK):
        raise ValueError(f"{path!r} cannot be opened: permission denied")
    return path


def _hooks(spec: str) -> str:
    from prefork.hooks import parseHooksSpec

    parseHooksSpec(spec)
    return spec


def _scriptName(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError(f"must start with '/', not {value!r}")
    # "/app/" and "/app" mount at the same place; "/" is the root.
    return value.rstrip("/")


def _forwardedAllowIps(value: str) -> tuple[str, ...]:
    from prefork.web.proxies import parseForwardedAllowIps

    try:
        return parseForwardedAllowIps(value)
    except ValueError as e:
        raise ValueError(f"{value!r}: {e}") from None


P, F, R = Kind.PARAMETER, Kind.FLAG, Kind.REPEATABLE

#: Every option, in the order C{--print-config} writes them: parameters,
#: then repeatable options, then flags.
#: The listen queue's length when neither --backlog nor an endpoint says:
#: gunicorn's.  Twisted's own default, 50, overflows under a burst of
#: connections that the workers would have served a moment later.
DEFAULT_BACKLOG = 2048

OPTIONS: tuple[Option, ...] = (
    Option("app", P, "The WSGI application, as MODULE:NAME (NAME may be dotted).",
           DEMO_APP, _app, short="a", field="app", metavar="MODULE:NAME", doc="demo app"),
    Option("resource", P,
           ("Serve this twisted.web resource through Twisted's Site instead of a WSGI app: MODULE:NAME, "
            "an IResource or a callable returning one (a Klein app's .resource)."),
           None, _app, field="resource", metavar="MODULE:NAME"),
    Option("port", P, "Shorthand for --listen tcp:PORT.", check=Number(0), short="p", metavar="N"),
    Option("workers", P, "Number of worker processes.", 10, Number(1), short="w", aliases=("max-workers",),
           environment=("WEB_CONCURRENCY",), field="workers", metavar="N"),
    Option("max-requests", P, "Requests a worker serves before it is replaced (0 = never).", 100, Number(0),
           aliases=("max-reqs-per-child",), field="maxRequests", metavar="N"),
    Option("min-requests", P, "When given, each worker's limit is drawn between this and --max-requests.",
           None, Number(1), aliases=("min-reqs-per-child",), field="minRequests", metavar="N"),
    # A pool by default: an application that waits on I/O serves more
    # requests, and a slow request does not hold up the worker's other
    # connections (docs/performance.rst has the numbers).
    Option("threads", P, "WSGI threads per worker (0 = run the app in the worker's reactor thread).",
           4, Number(0), field="threads", metavar="N"),
    Option("spare-workers", P, "Workers kept booted but idle, to replace a retiring or dead worker at once.",
           1, Number(0), field="spareWorkers", metavar="N"),
    Option("graceful-timeout", P, "Seconds a stopping worker may take to finish its requests and exit guards.",
           30.0, Number(0, float), field="gracefulTimeout", metavar="S"),
    Option("timeout", P, "Kill a worker whose event loop has been stuck this many seconds (0 = never).",
           30.0, Number(0, float), short="t", field="timeout", metavar="S"),
    Option("access-log", P, "Write an access log to this file ('-' for standard output); USR1 reopens it.",
           None, _accessLog, field="accessLog", metavar="PATH", complete="files"),
    Option("access-log-format", P,
           ("The access log's format: json, or a Python format string over the fields in docs/observability.rst "
            "and {in:HEADER} / {out:HEADER} [default: combined]."),
           None, _accessLogFormat, field="accessLogFormat", metavar="F", doc="combined"),
    Option("status", P,
           ("Serve the status page, status.json and Prometheus /metrics on this endpoint, "
            "e.g. tcp:9191:interface=127.0.0.1."),
           None, _status, metavar="ENDPOINT", doc="off"),
    Option("max-rss", P, "Retire a worker once its resident memory passes this many MB (0 = no limit).",
           0, Number(0), field="maxRss", metavar="MB"),
    Option("limit-request-line", P, "Longest request line in bytes; longer gets 414.",
           limits.DEFAULT_REQUEST_LINE, Number(1), field="limitRequestLine", metavar="N"),
    Option("limit-request-fields", P, "Most header fields in a request; more gets 431.",
           limits.DEFAULT_REQUEST_FIELDS, Number(1), field="limitRequestFields", metavar="N"),
    Option("limit-request-field-size", P, "Longest header field in bytes; longer gets 431.",
           limits.DEFAULT_REQUEST_FIELD_SIZE, Number(1), field="limitRequestFieldSize", metavar="N"),
    Option("limit-request-body", P, "Largest request body in bytes; larger gets 413 (0 = no limit).",
           limits.DEFAULT_REQUEST_BODY, Number(0), field="limitRequestBody", metavar="N"),
    Option("header-timeout", P,
           "Seconds a client has to send a request head, and the longest pause while it sends a body.",
           limits.DEFAULT_HEADER_TIMEOUT, seconds, field="headerTimeout", metavar="S"),
    Option("keepalive-timeout", P, "Seconds an idle keep-alive connection stays open.",
           limits.DEFAULT_KEEPALIVE_TIMEOUT, seconds, field="keepaliveTimeout", metavar="S"),
    Option("script-name", P, "Mount the app below this URL prefix (its SCRIPT_NAME), e.g. /app.",
           "", _scriptName, field="scriptName", metavar="PREFIX"),
    Option("forwarded-allow-ips", P,
           ("Comma-separated addresses or networks (or *) trusted to send X-Forwarded-For/-Proto/-Host/-Port, "
            "Forwarded and PROXY protocol headers."),
           ("127.0.0.1",), _forwardedAllowIps, field="forwardedAllowIps", metavar="LIST"),
    Option("config", P, "Read options from this TOML file; the command line and PREFORK_* variables override it.",
           short="c", metavar="FILE", commandLineOnly=True),
    Option("hooks", P, "Server hooks: a module, or MODULE:OBJECT, holding gunicorn's hooks (post_fork, ...).",
           None, _hooks, field="hooks", metavar="MODULE[:OBJ]"),
    Option("max-uss", P, "Retire a worker once its unique memory (private pages) passes this many MB (0 = no limit).",
           0, Number(0), field="maxUss", metavar="MB"),
    Option("backlog", P,
           "Listen queue length of each socket the server opens (capped by net.core.somaxconn; not inherited ones).",
           DEFAULT_BACKLOG, _backlog, metavar="N"),
    Option("listen", R,
           ("Listen on this Twisted endpoint, e.g. tcp:8080:interface=127.0.0.1, unix:/run/app.sock or "
            "systemd:domain=INET:index=0 (repeatable) [default: the sockets systemd, Server::Starter or einhorn "
            "pass, else tcp:8080]"),
           metavar="ENDPOINT", doc=DEFAULT_LISTEN),
    Option("pythonpath", R,
           "Put this directory in front of sys.path (repeatable; the current directory is always there).",
           check=os.path.abspath, metavar="DIR", complete="dirs"),
    Option("reload-extra-file", R, "With --reload, also start a new generation when this file changes (repeatable).",
           check=os.path.abspath, metavar="P"),
    Option("no-preload", F, "Import the app in each worker after the fork, instead of once in the template.",
           field="preload", inverted=True),
    Option("display-tracebacks", F, "Send the traceback of an application error to the client with its 500.",
           field="displayTracebacks"),
    Option("reload", F, "Start a new generation whenever a source file of the application changes (for development).",
           field="reload"),
    Option("print-config", F, "Print the effective configuration as TOML, each value's source in a comment, and exit.",
           commandLineOnly=True),
    Option("check-config", F, "Check the configuration, import the app and hooks in a child process, and exit.",
           commandLineOnly=True),
    Option("proxy-protocol", F,
           ("Every connection starts with a PROXY protocol header (v1 or v2) from a peer in --forwarded-allow-ips, "
            "which gives the client's address; others are closed."),
           field="proxyProtocol"),
)

#: Each option by its name.
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def ofKind(kind: Kind, options: Iterable[Option] = OPTIONS) -> list[Option]:
    return [option for option in options if option.kind is kind]


def declared(field: str) -> Any:
    """
    The default of the L{prefork.config.ServerConfig} field C{field}, as
    the option that sets it declares it.
    """
    (option,) = (option for option in OPTIONS if option.field == field)
    return option.configDefault
