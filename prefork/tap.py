"""
The C{twistd prefork} command line: its options and the service it builds.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from prefork import settings
from prefork.check import checkImports
from prefork.child.appload import parseAppSpec
from prefork.config import DEMO_APP, ServerConfig
from prefork.hooks import HookLoadError, Hooks, loadHooks, parseHooksSpec
from prefork.master import inherited
from prefork.master.endpoints import (
    DEFAULT_BACKLOG,
    MAX_BACKLOG,
    UnservableEndpoint,
    UnusableCertificate,
    backlogAboveCap,
    listenEndpoint,
)
from prefork.master.masterhooks import MasterHooks
from prefork.master.privileges import UserCheck, switchedUser
from prefork.master.reload import SourceWatcher
from prefork.master.sdnotify import NotifyingObserver, SystemdNotifier, SystemdWatchdog, watchdogInterval
from prefork.master.sockets import CannotListen, ListeningSocket, listen
from prefork.master.supervisor import Master
from prefork.proctitle import AVAILABLE as TITLES
from prefork.proctitle import TitleService, masterTitle
from prefork.status.collector import StatusCollector, currentGeneration
from prefork.status.page import StatusService
from prefork.web import limits
from prefork.web.accesslog import checkFormat
from prefork.web.proxies import parseForwardedAllowIps

DEFAULT_LISTEN = "tcp:8080"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve a WSGI application from a pool of preforked worker processes. "
        "Each worker serves at most --max-requests requests, then finishes "
        "what it has, waits for its exit guard and is replaced at once."
    )

    optParameters = [
        ["app", "a", DEMO_APP, "The WSGI application, as MODULE:NAME (NAME may be dotted)."],
        ["port", "p", None, "Shorthand for --listen tcp:PORT."],
        ["workers", "w", "10", "Number of worker processes."],
        ["max-requests", None, "100", "Requests a worker serves before it is replaced (0 = never)."],
        ["min-requests", None, None, "When given, each worker's limit is drawn between this and --max-requests."],
        ["threads", None, str(ServerConfig.threads),
         "WSGI threads per worker (0 = run the app in the worker's reactor thread)."],
        ["spare-workers", None, "1", "Workers kept booted but idle, to replace a retiring or dead worker at once."],
        ["graceful-timeout", None, "30", "Seconds a stopping worker may take to finish its requests and exit guards."],
        ["timeout", "t", "30", "Kill a worker whose event loop has been stuck this many seconds (0 = never)."],
        ["access-log", None, None, "Write an access log to this file ('-' for standard output); USR1 reopens it."],
        ["access-log-format", None, None,
         ("The access log's format: json, or a Python format string over the fields in docs/observability.rst and "
          "{in:HEADER} / {out:HEADER} [default: combined].")],
        ["status", None, None,
         ("Serve the status page, status.json and Prometheus /metrics on this endpoint, "
          "e.g. tcp:9191:interface=127.0.0.1.")],
        ["max-rss", None, "0", "Retire a worker once its resident memory passes this many MB (0 = no limit)."],
        ["limit-request-line", None, str(limits.DEFAULT_REQUEST_LINE),
         "Longest request line in bytes; longer gets 414."],
        ["limit-request-fields", None, str(limits.DEFAULT_REQUEST_FIELDS),
         "Most header fields in a request; more gets 431."],
        ["limit-request-field-size", None, str(limits.DEFAULT_REQUEST_FIELD_SIZE),
         "Longest header field in bytes; longer gets 431."],
        ["limit-request-body", None, str(limits.DEFAULT_REQUEST_BODY),
         "Largest request body in bytes; larger gets 413 (0 = no limit)."],
        ["header-timeout", None, f"{limits.DEFAULT_HEADER_TIMEOUT:g}",
         "Seconds a client has to send a request head, and the longest pause while it sends a body."],
        ["keepalive-timeout", None, f"{limits.DEFAULT_KEEPALIVE_TIMEOUT:g}",
         "Seconds an idle keep-alive connection stays open."],
        ["script-name", None, "", "Mount the app below this URL prefix (its SCRIPT_NAME), e.g. /app."],
        ["forwarded-allow-ips", None, "127.0.0.1",
         ("Comma-separated addresses or networks (or *) trusted to send X-Forwarded-For/-Proto/-Host/-Port, "
          "Forwarded and PROXY protocol headers.")],
        ["config", "c", None,
         "Read options from this TOML file; the command line and PREFORK_* variables override it."],
        ["hooks", None, None, "Server hooks: a module, or MODULE:OBJECT, holding gunicorn's hooks (post_fork, ...)."],
        ["max-uss", None, "0",
         "Retire a worker once its unique memory (private pages) passes this many MB (0 = no limit)."],
        ["backlog", None, str(DEFAULT_BACKLOG),
         "Listen queue length of each socket the server opens (capped by net.core.somaxconn; not inherited ones)."],
    ]
    optFlags = [
        ["no-preload", None, "Import the app in each worker after the fork, instead of once in the template."],
        ["display-tracebacks", None, "Send the traceback of an application error to the client with its 500."],
        ["reload", None, "Start a new generation whenever a source file of the application changes (for development)."],
        ["print-config", None,
         "Print the effective configuration as TOML, each value's source in a comment, and exit."],
        ["check-config", None, "Check the configuration, import the app and hooks in a child process, and exit."],
        ["proxy-protocol", None,
         ("Every connection starts with a PROXY protocol header (v1 or v2) from a peer in --forwarded-allow-ips, "
          "which gives the client's address; others are closed.")],
    ]
    #: Twiggy::Prefork's names for options, accepted wherever options are.
    aliases = {"max-workers": "workers", "max-reqs-per-child": "max-requests", "min-reqs-per-child": "min-requests"}
    #: Options given any number of times, each with an C{opt_} method.
    repeatable = ("listen", "pythonpath", "reload-extra-file")
    #: Options that only the command line gives (and C{PREFORK_CONFIG}).
    commandLineOnly = ("config", "print-config", "check-config")
    compData = usage.Completions(
        optActions={"access-log": usage.CompleteFiles(), "pythonpath": usage.CompleteDirs()},
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["pythonpath"] = []
        self["reload-extra-file"] = []
        #: Where each option given anywhere got its value (L{settings}).
        self.given: dict[str, settings.Setting] = {}

    def opt_listen(self, description: str) -> None:
        """
        Listen on this Twisted endpoint, e.g. tcp:8080:interface=127.0.0.1, unix:/run/app.sock or systemd:domain=INET:index=0 (repeatable) [default: the sockets systemd, Server::Starter or einhorn pass, else tcp:8080]
        """  # noqa: E501 - twistd's --help would show a wrapped docstring's indentation
        self["listen"].append(description)

    def opt_pythonpath(self, directory: str) -> None:
        """
        Put this directory in front of sys.path (repeatable; the current directory is always there).
        """
        self["pythonpath"].append(os.path.abspath(directory))

    def opt_reload_extra_file(self, path: str) -> None:
        """
        With --reload, also start a new generation when this file changes (repeatable).
        """
        self["reload-extra-file"].append(os.path.abspath(path))

    def opt_max_workers(self, value: str) -> None:
        """
        Alias for --workers (Twiggy::Prefork's name).
        """
        self["workers"] = value

    def opt_max_reqs_per_child(self, value: str) -> None:
        """
        Alias for --max-requests (Twiggy::Prefork's name).
        """
        self["max-requests"] = value

    def opt_min_reqs_per_child(self, value: str) -> None:
        """
        Alias for --min-requests (Twiggy::Prefork's name).
        """
        self["min-requests"] = value

    def _printConfig(self) -> NoReturn:
        notes = {}
        if not {"port", "listen"} & set(self.given):
            if all(isinstance(e, ListeningSocket) for e in self["endpoints"]):
                notes["listen"] = "the inherited sockets " + ", ".join(self["listen"])
            else:
                notes["listen"] = f"{DEFAULT_LISTEN}, since no superdaemon passed sockets"
        sys.stdout.write(settings.render(settings.OptionTable.of(self), self.given, notes))
        raise SystemExit(0)

    def _inherit(self) -> None:
        """
        With no --listen, serve on the sockets a superdaemon passed, if any.
        """
        try:
            found = inherited.inheritedSockets()
        except inherited.InheritedSocketError as e:
            raise usage.UsageError(str(e)) from None
        if not found and os.environ.get("PORT"):
            # The platforms' convention, when nothing else says where.
            port = os.environ["PORT"]
            if not port.isdigit() or not 0 <= int(port) < 65536:
                raise usage.UsageError(f"PORT must be a port number, not {port!r}")
            self.given["listen"] = settings.Setting("listen", [f"tcp:{port}"], settings.Origin("env", "PORT"))
            self["listen"] = [f"tcp:{port}"]
            self["endpoints"] = [_endpoint(self["listen"][0], self["backlog"])]
            return
        self["listen"] = [listening.describe() for listening in found] or [DEFAULT_LISTEN]
        self["endpoints"] = found or [_endpoint(DEFAULT_LISTEN, self["backlog"])]

    def parseOptions(self, options: Any = None) -> None:
        # twistd answers a usage error with its whole help text; one line
        # that names the problem serves better.
        try:
            arguments, self.given = settings.resolve(self, sys.argv[1:] if options is None else options, os.environ)
            super().parseOptions(arguments)
        except settings.SettingError as e:
            _usageExit(str(e))
        except usage.UsageError as e:
            message = settings.blame(e, self.given)
            _usageExit(message if message != str(e) else f"{e} (see twistd prefork --help)")

    def postOptions(self) -> None:
        try:
            parseAppSpec(self["app"])
        except ValueError as e:
            raise usage.UsageError(f"--app {e}") from None
        if self["port"] is not None:
            self["listen"].append(f"tcp:{_number(self, 'port', 0)}")
        self["backlog"] = _number(self, "backlog", 1, maximum=MAX_BACKLOG)
        if self["listen"]:
            self["endpoints"] = [_endpoint(description, self["backlog"]) for description in self["listen"]]
        else:
            self._inherit()
        maxRequests = _number(self, "max-requests", 0)
        minRequests = None if self["min-requests"] is None else _number(self, "min-requests", 1)
        if minRequests is not None and (maxRequests == 0 or minRequests > maxRequests):
            raise usage.UsageError("--min-requests must not be above --max-requests (nor given with --max-requests 0)")
        self["statusEndpoint"] = None
        if self["status"] is not None:
            from twisted.internet import reactor

            try:
                self["statusEndpoint"] = serverFromString(reactor, self["status"])
            except (ValueError, KeyError, TypeError) as e:
                raise usage.UsageError(f"--status {self['status']!r} is not a server endpoint: {e}") from None
        if self["access-log-format"] is not None:
            try:
                checkFormat(self["access-log-format"])
            except ValueError as e:
                raise usage.UsageError(f"--access-log-format {e}") from None
        self["config"] = ServerConfig(
            app=self["app"],
            workers=_number(self, "workers", 1),
            maxRequests=maxRequests,
            minRequests=minRequests,
            threads=_number(self, "threads", 0),
            spareWorkers=_number(self, "spare-workers", 0),
            gracefulTimeout=_number(self, "graceful-timeout", 0, float),
            timeout=_number(self, "timeout", 0, float),
            accessLog=_accessLog(self["access-log"]),
            accessLogFormat=self["access-log-format"],
            maxRss=_number(self, "max-rss", 0),
            preload=not self["no-preload"],
            pythonPath=(os.getcwd(), *self["pythonpath"]),
            limitRequestLine=_number(self, "limit-request-line", 1),
            limitRequestFields=_number(self, "limit-request-fields", 1),
            limitRequestFieldSize=_number(self, "limit-request-field-size", 1),
            limitRequestBody=_number(self, "limit-request-body", 0),
            headerTimeout=_seconds(self, "header-timeout"),
            keepaliveTimeout=_seconds(self, "keepalive-timeout"),
            scriptName=_scriptName(self["script-name"]),
            forwardedAllowIps=_forwardedAllowIps(self["forwarded-allow-ips"]),
            displayTracebacks=bool(self["display-tracebacks"]),
            hooks=_hooksSpec(self["hooks"]),
            reload=bool(self["reload"]),
            maxUss=_number(self, "max-uss", 0),
            listenerTLS=tuple(getattr(endpoint, "tls", None) for endpoint in self["endpoints"]),
            proxyProtocol=bool(self["proxy-protocol"]),
        )
        if self["print-config"]:
            self._printConfig()
        if self["check-config"]:
            _checkAndExit(self["config"], self["listen"])


def _endpoint(description: str, backlog: int) -> Any:
    """
    The endpoint C{--listen description} names (with its TLS settings), or
    the inherited socket a C{systemd:} description names.
    """
    if description.startswith("systemd:"):
        try:
            return inherited.systemdEndpoint(description)
        except inherited.InheritedSocketError as e:
            raise usage.UsageError(f"--listen {e}") from None
    from twisted.internet import reactor

    try:
        return listenEndpoint(reactor, description, backlog)
    except UnusableCertificate as e:
        # Like any file the server cannot open at start: exit 1.
        sys.stderr.write(f"twistd prefork: {e}\n")
        raise SystemExit(1) from None
    except UnservableEndpoint as e:
        raise usage.UsageError(str(e)) from None


def _accessLog(path: str | None) -> str | None:
    """
    The absolute path of the access log, checked to be writable now rather
    than in every worker (without creating it: --check-config opens
    nothing).
    """
    if path is None or path == "-":
        return path
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise usage.UsageError(f"--access-log {path!r} cannot be opened: it is a directory")
    writable = os.path.dirname(path) if not os.path.exists(path) else path
    if not os.path.isdir(os.path.dirname(path)):
        raise usage.UsageError(f"--access-log {path!r} cannot be opened: no directory {os.path.dirname(path)!r}")
    if not os.access(writable, os.W_OK):
        raise usage.UsageError(f"--access-log {path!r} cannot be opened: permission denied")
    return path


def _hooksSpec(spec: str | None) -> str | None:
    if spec is not None:
        try:
            parseHooksSpec(spec)
        except ValueError as e:
            raise usage.UsageError(f"--hooks {e}") from None
    return spec


class UsageExit(SystemExit):
    """
    Exit 2, as a usage error does, with the message already printed.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2


def _usageExit(message: str) -> NoReturn:
    sys.stderr.write(f"twistd prefork: {message}\n")
    sys.stderr.flush()
    raise UsageExit(f"twistd prefork: {message}")


def _checkAndExit(config: ServerConfig, listen: list[str]) -> NoReturn:
    """
    Import the app and hooks as a template would, say in one line what would
    be served or what is wrong, and exit.
    """
    problem = checkImports(config)
    if problem is not None:
        sys.stderr.write(f"twistd prefork: {problem}\n")
        raise SystemExit(1)
    hooks = f", hooks {config.hooks}" if config.hooks else ""
    served = f"{config.app} with {config.workers} workers on {' '.join(listen)}{hooks}"
    sys.stdout.write(f"twistd prefork: OK: would serve {served}\n")
    raise SystemExit(0)


def _number(options: Options, name: str, minimum: int, kind: type = int, maximum: int | None = None) -> Any:
    value = options[name]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or maximum is not None and number > maximum:
        bounds = f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise usage.UsageError(f"--{name} must be a number {bounds}, not {value!r}")
    return number


def _seconds(options: Options, name: str) -> float:
    value = options[name]
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise usage.UsageError(f"--{name} must be a number of seconds above 0, not {value!r}")
    return seconds


def _scriptName(value: str) -> str:
    if value and not value.startswith("/"):
        raise usage.UsageError(f"--script-name must start with '/', not {value!r}")
    # "/app/" and "/app" mount at the same place; "/" is the root.
    return value.rstrip("/")


def _forwardedAllowIps(value: str) -> tuple[str, ...]:
    try:
        return parseForwardedAllowIps(value)
    except ValueError as e:
        raise usage.UsageError(f"--forwarded-allow-ips {value!r}: {e}") from None


def makeService(options: Options) -> IService:
    """
    The master, holding every listening socket, in a L{MultiService}.
    """
    # Workers run the app from the current directory, as twistd's -y does.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    twistdOptions = getattr(options, "parent", None)
    try:
        sockets = [
            _open(endpoint, description)
            for endpoint, description in zip(options["endpoints"], options["listen"], strict=True)
        ]
    except CannotListen as e:
        raise SystemExit(f"twistd prefork: {e}") from None
    if any(not isinstance(endpoint, ListeningSocket) for endpoint in options["endpoints"]):
        backlogAboveCap(options["backlog"])
    top = MultiService()
    config: ServerConfig = options["config"]
    uid, gid = switchedUser(twistdOptions)
    if uid not in (None, os.getuid()) or gid not in (None, os.getgid()):
        UserCheck(uid, gid, tuple(path for path in [config.accessLog] if path not in (None, "-"))).setServiceParent(top)
    master = Master(config, sockets)
    MasterHooks(_masterHooks(config), master).setServiceParent(top)
    if inherited.underEinhorn():
        # einhorn asks its workers to stop gracefully with USR2.
        master.extraSignals[signal.SIGUSR2] = master.gracefulStop
    notifier = SystemdNotifier.fromEnvironment()
    if notifier is not None:
        master.observers.append(NotifyingObserver(notifier))
    master.setServiceParent(top)
    watchdog = watchdogInterval()
    if notifier is not None and watchdog is not None:
        SystemdWatchdog(notifier, master, watchdog).setServiceParent(top)
    if options["statusEndpoint"] is not None:
        status = StatusService(
            options["statusEndpoint"], options["status"], StatusCollector(master), until=master.whenStopped
        )
        status.setServiceParent(top)
    if TITLES:
        title = TitleService(lambda: masterTitle(config.app, currentGeneration(master), master.workerCount))
        title.setServiceParent(top)
    if config.reload:
        watcher = SourceWatcher(master.reload, options["reload-extra-file"])
        master.sourceFound = watcher.watch
        watcher.setServiceParent(top)
    return top


def _masterHooks(config: ServerConfig) -> Hooks:
    try:
        return loadHooks(config.hooks, config.pythonPath)
    except HookLoadError as e:
        raise SystemExit(f"twistd prefork: {e}") from None


def _open(endpoint: Any, description: str) -> ListeningSocket:
    if isinstance(endpoint, ListeningSocket):
        return endpoint
    listening = listen(endpoint.endpoint, description)
    listening.scheme = endpoint.scheme
    return listening
