"""
A worker's boot: what the template's fork runs, from installing the reactor
and the hooks' C{post_fork} through loading the application and building
its TLS, to serving in a L{Worker} and the exit status once it is done.

Each step that fails tells the master why in one line, and the worker exits
as one that could not boot.

Once its reactor begins to shut down, a worker is out of the process by its
drain's deadline and L{EXIT_GRACE} more, whatever holds it there: threads of
the application, a hook, the reactor's own shutdown.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.main import installReactor
from twisted.logger import Logger

from prefork.child import latereactor
from prefork.child.appload import AppLoadError, loadServed, ownSources
from prefork.child.childlog import logToStderr
from prefork.child.worker import EXIT_GRACE, Listener, Worker, WorkerView
from prefork.config import ServerConfig
from prefork.hooks import NO_HOOKS, Hooks, IServer, ServerInfo
from prefork.importing import LoadError
from prefork.messages import EXIT_BOOT_FAILED, EXIT_DONE, Event, Message, send
from prefork.tls import TLSConfigError, connectionCreator
from prefork.twistedinternals import LeanEPollReactor

if TYPE_CHECKING:
    from prefork.child.appload import Served

_log = Logger()


def loadAppOrReport(config: ServerConfig) -> Served | None:
    """
    Import the application (or the resource); if it cannot be, tell the
    master why in one line, and print the traceback (if the module raised)
    to the log.
    """
    try:
        return loadServed(config)
    except AppLoadError as e:
        reportLoadError(e)
        return None


def reportLoadError(error: LoadError) -> None:
    """
    Tell the master in one line why what an option names cannot be loaded,
    and print the traceback (if its module raised) to the log.
    """
    if error.details:
        sys.stderr.write(error.details)
    send(Message(Event.FATAL, os.getpid(), (str(error),)))


def reportSources() -> None:
    """
    Tell the master which files to watch for C{--reload}.
    """
    for path in ownSources():
        send(Message(Event.SOURCE, os.getpid(), (path,)))


def connectionCreatorsOrReport(config: ServerConfig) -> list[Any] | None:
    """
    Build the TLS of every TLS listener from its files, read now; if one
    cannot be built (its files changed since the master checked them), tell
    the master why in one line.
    """
    try:
        return [None if tls is None else connectionCreator(tls) for tls in config.listenerTLS]
    except TLSConfigError as e:
        send(Message(Event.FATAL, os.getpid(), (f"cannot serve TLS: {e}",)))
        return None


def serve(
    config: ServerConfig,
    generation: int,
    application: Served | None,
    listeners: Sequence[Listener],
    spare: bool = False,
    hooks: Hooks = NO_HOOKS,
    server: IServer | None = None,
) -> int:
    """
    Be a worker: install a reactor, serve until done, and return the exit
    status.  Called in the child right after the template forks it.

    @param application: The preloaded application, or L{None} to import it.
    @param spare: Boot, but accept nothing until L{ACTIVATE_SIGNAL}.
    @param server: The server as the hooks see it.
    """
    if server is None:
        server = ServerInfo(os.getppid(), generation, config, config.workers)
    view = WorkerView(config, generation)
    if "worker_abort" in hooks:
        _callOnAbort(hooks, view)
    # A worker that stops sending heartbeats is sent SIGABRT before it is
    # killed: this prints where every thread was stuck.
    faulthandler.enable(all_threads=True)
    # Imported in the template, installed here: importing a reactor's
    # module does not install it.
    late = latereactor.takeBack()
    installReactor(LeanEPollReactor())
    from twisted.internet import reactor

    if late is not None:
        late.become(reactor)

    logToStderr(f"worker {os.getpid()}")
    try:
        hooks.call("post_fork", server, view)
    except BaseException:
        _log.failure("Hook post_fork raised: this worker cannot serve")
        return EXIT_BOOT_FAILED
    if application is None:
        application = loadAppOrReport(config)
        if application is None:
            return EXIT_BOOT_FAILED
        if config.reload:
            reportSources()
    creators = connectionCreatorsOrReport(config)
    if creators is None:
        return EXIT_BOOT_FAILED
    worker = Worker(reactor, config, generation, application, listeners, spare, hooks, view, creators)
    worker.start()
    deadline = ExitDeadline(worker)
    reactor.addSystemEventTrigger("before", "shutdown", deadline.arm)
    reactor.run()
    if worker.bootFailed:
        return EXIT_BOOT_FAILED
    hooks.callLogged("worker_exit", server, view)
    worker.stopThreads()
    if worker.accessLog is not None:
        # The lines of the last requests wait for a turn that never came.
        worker.accessLog.flush()
    deadline.cancel()
    return EXIT_DONE


class ExitDeadline:
    """
    Ends the worker's process at its drain's deadline plus L{EXIT_GRACE}:
    from a thread of its own, so that nothing the main thread waits for can
    hold the process past it (only C code that never releases the GIL can;
    the master's watchdog and stop timer see to that).
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.worker.timeLeft() + EXIT_GRACE, self._exit)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _exit(self) -> None:
        _log.warn(
            "Still running {grace} s after the drain's deadline: exiting without what holds the worker",
            grace=EXIT_GRACE,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_DONE)


def _callOnAbort(hooks: Hooks, view: WorkerView) -> None:
    """
    Call C{worker_abort} when the watchdog sends SIGABRT.  Installed before
    L{faulthandler}, which prints every thread's stack first and then hands
    the signal on to this handler; it runs as soon as the main thread runs
    Python again, then the worker dies of the signal as it would have.
    """

    def aborted(signum: int, frame: object) -> None:
        hooks.callLogged("worker_abort", view)
        sys.stderr.flush()
        signal.signal(signal.SIGABRT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGABRT)

    signal.signal(signal.SIGABRT, aborted)
