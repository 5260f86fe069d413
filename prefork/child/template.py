"""
The template process ("zygote") of one generation.

The master starts it with C{python -m prefork.child.template gen N app=...}
(words for C{ps} alone) and sends it its configuration as the first line on
its standard input.  It imports the application once (unless told not to),
then forks a worker each time the master asks, reaps the workers and reports
every birth and death on the status pipe.  It never runs a reactor or a
thread, so that its forks are clean; a fork of it costs a few milliseconds
where a fresh Python that imports twisted.web costs a hundred times that.

Its standard input carries the master's commands (L{prefork.messages}); when
it closes, the master is gone, and the template stops its workers and exits.
"""

from __future__ import annotations

import gc

# Python's advice for processes that fork without exec: no garbage
# collection while the template imports (collections leave freed holes in
# pages that workers then share and dirty), everything frozen before the
# first fork, collection back on in each worker.
gc.disable()

import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

from prefork.child import latereactor
from prefork.child.appload import AppLoadError, loadServed
from prefork.child.boot import reportLoadError, reportSources, serve
from prefork.child.warmup import warmRequestPath
from prefork.child.worker import Listener
from prefork.config import ServerConfig
from prefork.hooks import NO_HOOKS, HookLoadError, Hooks, ServerInfo, WorkerInfo, loadHooks
from prefork.lineframing import LineFramer
from prefork.messages import (
    ACTIVATE_SIGNAL,
    EXIT_BOOT_FAILED,
    FIRST_LISTEN_FD,
    Command,
    Event,
    Message,
    TemplateSetup,
    send,
)
from prefork.proctitle import setTitle, templateTitle
from prefork.twistedinternals import reserveSpareDescriptor

if TYPE_CHECKING:
    from prefork.child.appload import Served

#: Names the descriptor a template that starts over as a new Python reads
#: its setup from, in place of its standard input.
SETUP_FD_VARIABLE = "PREFORK_TEMPLATE_SETUP_FD"


class Template:
    """
    Forks and reaps the workers of one generation.
    """

    def __init__(
        self,
        config: ServerConfig,
        generation: int,
        application: Served | None,
        listeners: list[Listener],
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self.config = config
        self.generation = generation
        self.application = application
        self.listeners = listeners
        self.hooks = hooks
        self.server = ServerInfo(os.getppid(), generation, config, config.workers)
        self.workers: set[int] = set()
        self.stopping = False
        self._selector = selectors.DefaultSelector()
        self._wakeRead, self._wakeWrite = os.pipe()
        self._commands = LineFramer()

    def run(self) -> NoReturn:
        os.set_blocking(self._wakeRead, False)
        os.set_blocking(self._wakeWrite, False)
        signal.set_wakeup_fd(self._wakeWrite)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self._selector.register(0, selectors.EVENT_READ)
        self._selector.register(self._wakeRead, selectors.EVENT_READ)
        while not (self.stopping and not self.workers):
            for key, _ in self._selector.select():
                if key.fd == 0:
                    self._readCommands()
                else:
                    self._drainWakeups()
            self._reap()
        sys.exit(0)

    def _readCommands(self) -> None:
        data = os.read(0, 4096)
        if not data:
            self._masterGone()
            return
        for line in self._commands.feed(data):
            if not line.whole:
                # No command is that long: not the master's.
                continue
            name, _, argument = line.data.decode("ascii").strip().partition(" ")
            command = Command(name)
            if command in (Command.SPAWN, Command.SPAWN_SPARE) and not self.stopping:
                self._spawn(spare=command is Command.SPAWN_SPARE)
            elif command is Command.STOP:
                self._stop(int(argument))

    def _stop(self, signum: int) -> None:
        self.stopping = True
        # While any process holds a listening socket, the kernel completes
        # connections on it that nobody will accept; after a stop they must
        # be refused instead.
        for fd, _ in self.listeners:
            try:
                os.close(fd)
            except OSError:
                pass
        self.listeners = []
        for pid in self.workers:
            os.kill(pid, signum)

    def _masterGone(self) -> None:
        self._selector.unregister(0)
        self._stop(signal.SIGTERM)

    def _drainWakeups(self) -> None:
        try:
            while os.read(self._wakeRead, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while self.workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            self.workers.discard(pid)
            send(Message(Event.EXITED, pid, (str(status),)))

    def _spawn(self, spare: bool) -> None:
        preForkFailed = False
        try:
            self.hooks.call("pre_fork", self.server, WorkerInfo(None, self.generation, self.config))
        except BaseException:
            # The worker is forked all the same, to fail at boot: the
            # master's backoff and crash-loop halt apply to it.
            traceback.print_exc()
            preForkFailed = True
        pid = os.fork()
        if pid == 0:
            if preForkFailed:
                os._exit(EXIT_BOOT_FAILED)
            self._becomeWorker(spare)
        self.workers.add(pid)
        send(Message(Event.BORN, pid, ("spare",) if spare else ()))

    def _becomeWorker(self, spare: bool) -> NoReturn:
        status = 1
        try:
            gc.enable()
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
                signal.signal(signum, signal.SIG_DFL)
            self._selector.close()
            os.close(self._wakeRead)
            os.close(self._wakeWrite)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            status = serve(
                self.config, self.generation, self.application, self.listeners, spare, self.hooks, self.server
            )
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)


def _listeners(count: int) -> list[Listener]:
    """
    The listening sockets the master put at descriptors from
    L{FIRST_LISTEN_FD}, with their address families.
    """
    found = []
    for fd in range(FIRST_LISTEN_FD, FIRST_LISTEN_FD + count):
        probe = socket.socket(fileno=os.dup(fd))
        found.append((fd, probe.family))
        probe.close()
    return found


def _preloadIsUnsafe() -> bool:
    """
    Whether importing the application left something a fork cannot share: a
    reactor (one epoll instance for every worker) or threads.
    """
    reactor = "twisted.internet.reactor" in sys.modules and latereactor.lent() is None
    return reactor or threading.active_count() > 1


def _preload(setup: TemplateSetup) -> Served:
    config = setup.config
    # A resource's module may take the reactor as it is imported (Klein's
    # does): it gets a stand-in for the one each worker installs.
    late = latereactor.lend() if config.resource is not None else None
    try:
        application = loadServed(config)
    except AppLoadError as e:
        if late is None or not late.used:
            reportLoadError(e)
            sys.exit(EXIT_BOOT_FAILED)
        application = None
    if application is None or (late is not None and late.used) or _preloadIsUnsafe():
        what = "uses the reactor" if late is not None and late.used else "installs a reactor or starts threads"
        sys.stderr.write(f"Importing {config.served} {what}: not preloading it; each worker imports it instead.\n")
        sys.stderr.flush()
        _startOver(replace(setup, config=config.withoutPreload()))
    return application


def _startOver(setup: TemplateSetup) -> NoReturn:
    """
    Become a new Python with C{setup}: the master's commands still wait on
    standard input, so the setup goes in an inherited in-memory file that
    L{SETUP_FD_VARIABLE} names.
    """
    fd = os.memfd_create("prefork-template-setup", 0)
    os.write(fd, setup.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    os.execve(sys.executable, setup.commandLine(sys.executable), {**os.environ, SETUP_FD_VARIABLE: str(fd)})


def _prepareWorkers() -> None:
    """
    Do here, once, what every worker would otherwise do as it boots.
    """
    # Twisted's ports keep a spare descriptor open to recover from EMFILE;
    # opening it is half of a worker's boot time.  Forked, it is inherited.
    reserveSpareDescriptor()
    # What every worker's first request builds once, built once for all.
    warmRequestPath()
    # What the workers inherit would otherwise have its pages copied the
    # first time a worker's garbage collector touches it.
    gc.freeze()


def setupFromMaster() -> TemplateSetup:
    """
    The setup the master sent on standard input, or the one a template that
    started over left behind.
    """
    inherited = os.environ.pop(SETUP_FD_VARIABLE, None)
    fd = 0 if inherited is None else int(inherited)
    try:
        return TemplateSetup.read(fd)
    except ValueError as e:
        sys.exit(f"prefork.child.template: no configuration from the master ({e}); only the master starts templates")
    finally:
        if fd:
            os.close(fd)


def main(setup: TemplateSetup) -> NoReturn:
    """
    Be the template of C{setup.generation}.
    """
    config = setup.config
    # The master decides what a terminal's Ctrl-C or hang-up means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Twisted's fork resets every signal Python ignores to its default: a
    # write to a pipe or socket whose reader is gone (the master's, once it
    # is killed; a client's) must fail with EPIPE, as in any Python
    # program, not kill the process.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # USR1 asks workers to reopen their logs; until a new worker's reactor
    # handles it, it must not kill the worker (nor this process).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    setTitle(templateTitle(config.served, setup.generation))
    # Until a worker is ready to be woken, waking it must not kill it.
    signal.signal(ACTIVATE_SIGNAL, signal.SIG_IGN)
    listeners = _listeners(setup.sockets)
    if config.reload:
        # Python takes a cached module for current when the source's size
        # and modification second match: an edit within a second of the
        # last would be missed.  Caching nothing, there is nothing stale.
        sys.dont_write_bytecode = True
    hooks = _loadHooks(config)
    application = _preload(setup) if config.preload else None
    if config.reload:
        reportSources()
    _prepareWorkers()
    Template(config, setup.generation, application, listeners, hooks).run()


def _loadHooks(config: ServerConfig) -> Hooks:
    try:
        return loadHooks(config.hooks, config.pythonPath)
    except HookLoadError as e:
        reportLoadError(e)
        sys.exit(EXIT_BOOT_FAILED)


def runForked(setup: TemplateSetup) -> NoReturn:
    """
    Be the template in a child forked from the master (see
    L{prefork.master.forkedtemplate}), and leave by C{_exit}: the master's exit
    handlers and buffers are not the child's to run.
    """
    status: int | str | None = 1
    try:
        main(setup)
    except SystemExit as e:
        status = e.code
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    if isinstance(status, str):
        sys.stderr.write(status + "\n")
        sys.stderr.flush()
    os._exit(status if isinstance(status, int) else 0 if status is None else 1)


if __name__ == "__main__":
    main(setupFromMaster())
