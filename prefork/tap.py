"""
The C{twistd prefork} command line: its options and the service it builds.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from twisted.application.service import IService, MultiService
from twisted.python import usage

from prefork import settings
from prefork.check import checkImports
from prefork.config import ServerConfig
from prefork.hooks import HookLoadError, Hooks, loadHooks
from prefork.master import inherited
from prefork.master.endpoints import UnservableEndpoint, UnusableCertificate, backlogAboveCap, listenEndpoint
from prefork.master.masterhooks import MasterHooks
from prefork.master.privileges import UserCheck, switchedUser
from prefork.master.reload import SourceWatcher
from prefork.master.sdnotify import NotifyingObserver, SystemdNotifier, SystemdWatchdog, watchdogInterval
from prefork.master.sockets import CannotListen, ListeningSocket, listen
from prefork.master.supervisor import Master
from prefork.options import DEFAULT_LISTEN, OPTIONS, Kind, Option, ofKind
from prefork.proctitle import AVAILABLE as TITLES
from prefork.proctitle import TitleService, masterTitle
from prefork.status.collector import StatusCollector, currentGeneration
from prefork.status.page import StatusService


def _repeat(option: Option) -> Callable[[Options, str], None]:
    def handler(self: Options, value: str) -> None:
        self[option.name].append(value if option.check is None else option.check(value))

    handler.__doc__ = option.help
    return handler


def _alias(option: Option) -> Callable[[Options, str], None]:
    def handler(self: Options, value: str) -> None:
        self[option.name] = value

    handler.__doc__ = f"Alias for --{option.name} (Twiggy::Prefork's name)."
    return handler


class Options(usage.Options):
    """
    The options of L{prefork.options.OPTIONS}, parsed by L{usage.Options}.
    Each repeatable option and each alias gets an C{opt_} method (below the
    class), which L{usage.Options} finds as it finds a written one.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve a WSGI application from a pool of preforked worker processes. "
        "Each worker serves at most --max-requests requests, then finishes "
        "what it has, waits for its exit guard and is replaced at once."
    )

    declarations = OPTIONS
    optParameters = [[o.name, o.short, o.text, o.help] for o in ofKind(Kind.PARAMETER)]
    optFlags = [[o.name, o.short, o.help] for o in ofKind(Kind.FLAG)]
    compData = usage.Completions(
        optActions={
            o.name: usage.CompleteFiles() if o.complete == "files" else usage.CompleteDirs()
            for o in OPTIONS
            if o.complete
        },
    )

    def __init__(self) -> None:
        super().__init__()
        for option in ofKind(Kind.REPEATABLE):
            self[option.name] = []
        #: Where each option given anywhere got its value (L{settings}).
        self.given: dict[str, settings.Setting] = {}

    def _printConfig(self) -> NoReturn:
        notes = {}
        if not {"port", "listen"} & set(self.given):
            if all(isinstance(e, ListeningSocket) for e in self["endpoints"]):
                notes["listen"] = "the inherited sockets " + ", ".join(self["listen"])
            else:
                notes["listen"] = f"{DEFAULT_LISTEN}, since no superdaemon passed sockets"
        sys.stdout.write(settings.render(settings.OptionTable.of(self.declarations), self.given, notes))
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
            argv = sys.argv[1:] if options is None else options
            arguments, self.given = settings.resolve(self, settings.OptionTable.of(self.declarations), argv, os.environ)
            super().parseOptions(arguments)
        except settings.SettingError as e:
            _usageExit(str(e))
        except usage.UsageError as e:
            message = settings.blame(e, self.given)
            _usageExit(message if message != str(e) else f"{e} (see twistd prefork --help)")

    def postOptions(self) -> None:
        """
        Check each option's value as its declaration says, in the order of
        the declarations, then what depends on several: where to listen,
        --min-requests against --max-requests.
        """
        values = {}
        for option in OPTIONS:
            if option.kind is not Kind.REPEATABLE and not option.commandLineOnly:
                try:
                    values[option.name] = option.value(self[option.name])
                except ValueError as e:
                    raise usage.UsageError(str(e)) from None
        if values["port"] is not None:
            self["listen"].append(f"tcp:{values['port']}")
        self["backlog"] = values["backlog"]
        if self["listen"]:
            self["endpoints"] = [_endpoint(description, self["backlog"]) for description in self["listen"]]
        else:
            self._inherit()
        if values["resource"] is not None:
            _checkResource(self.given)
        maxRequests, minRequests = values["max-requests"], values["min-requests"]
        if minRequests is not None and (maxRequests == 0 or minRequests > maxRequests):
            raise usage.UsageError("--min-requests must not be above --max-requests (nor given with --max-requests 0)")
        self["statusEndpoint"] = values["status"]
        self["config"] = ServerConfig(
            **{option.field: values[option.name] for option in OPTIONS if option.field is not None},
            pythonPath=(os.getcwd(), *self["pythonpath"]),
            listenerTLS=tuple(getattr(endpoint, "tls", None) for endpoint in self["endpoints"]),
        )
        if self["print-config"]:
            self._printConfig()
        if self["check-config"]:
            _checkAndExit(self["config"], self["listen"])


# usage.Options finds an option's handler by its name, opt_<name>.
for _option in OPTIONS:
    if _option.kind is Kind.REPEATABLE:
        setattr(Options, "opt_" + _option.name.replace("-", "_"), _repeat(_option))
    for _name in _option.aliases:
        setattr(Options, "opt_" + _name.replace("-", "_"), _alias(_option))


def _checkResource(given: dict[str, settings.Setting]) -> None:
    """
    What C{--resource} excludes: C{--app}, and an explicit C{--threads} (a
    resource runs in its worker's reactor thread; the default is unused).
    """
    if "app" in given:
        raise usage.UsageError("--app and --resource are exclusive: a server serves a WSGI app or a resource")
    if "threads" in given:
        raise usage.UsageError("--threads does not apply to --resource, which runs in each worker's reactor thread")


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
    served = f"{config.served} with {config.workers} workers on {' '.join(listen)}{hooks}"
    sys.stdout.write(f"twistd prefork: OK: would serve {served}\n")
    raise SystemExit(0)


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
        master.addSignal(signal.SIGUSR2, master.gracefulStop)
    notifier = SystemdNotifier.fromEnvironment()
    if notifier is not None:
        master.addObserver(NotifyingObserver(notifier))
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
        title = TitleService(lambda: masterTitle(config.served, currentGeneration(master), master.workerCount))
        title.setServiceParent(top)
    if config.reload:
        watcher = SourceWatcher(master.reload, options["reload-extra-file"])
        master.watchSources(watcher.watch)
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
