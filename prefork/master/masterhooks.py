"""
The hooks the master calls: C{on_starting} as the server starts,
C{when_ready} once the first generation serves, C{on_reload} as a reload
begins, C{child_exit} for every worker that exits, C{on_exit} last.

Only C{on_starting} may stop the server (one line, exit 1): once the master
has started, a hook that raises has its traceback logged and the server
goes on.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from zope.interface import implementer

from prefork.config import ServerConfig
from prefork.hooks import Hooks, IServer, WorkerInfo, describeFailure
from prefork.master.generation import Generation
from prefork.master.interfaces import IGenerationState, ILifecycleObserver
from prefork.master.supervisor import Master
from prefork.master.workers import WorkerRecord, describeExit
from prefork.messages import EXIT_DONE, ExitReason


@implementer(IServer)
class MasterView:
    """
    The master as the hooks see it, read as they call.
    """

    def __init__(self, master: Master) -> None:
        self._master = master

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def generation(self) -> int:
        return max((g.number for g in self._master.generations), default=0)

    @property
    def config(self) -> ServerConfig:
        return self._master.config

    @property
    def workers(self) -> int:
        return self._master.workerCount


@implementer(ILifecycleObserver)
class MasterHooks(Service):
    """
    Calls the master's hooks for C{master}, as one of its lifecycle
    observers.
    """

    def __init__(self, hooks: Hooks, master: Master, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.hooks = hooks
        self.server = MasterView(master)
        self.reactor = reactor
        self.ready = False
        master.addObserver(self)
        master.watchExits(self.childExited)

    def privilegedStartService(self) -> None:
        # Before twistd sheds its privileges, as gunicorn runs it before
        # anything else.
        super().privilegedStartService()
        try:
            self.hooks.call("on_starting", self.server)
        except BaseException as e:
            raise SystemExit(f"twistd prefork: {describeFailure('on_starting')}") from e

    def startService(self) -> None:
        super().startService()
        self.reactor.addSystemEventTrigger("after", "shutdown", self.hooks.callLogged, "on_exit", self.server)

    # LifecycleObserver

    def serving(self, generation: IGenerationState) -> None:
        if not self.ready:
            self.ready = True
            self.hooks.callLogged("when_ready", self.server)

    def reloading(self) -> None:
        self.hooks.callLogged("on_reload", self.server)

    def stopping(self) -> None:
        pass

    def childExited(self, generation: Generation, record: WorkerRecord, status: int) -> None:
        if "child_exit" not in self.hooks:
            return
        clean = status >= 0 and os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_DONE
        reason = record.shownReason or (ExitReason.STOP.value if clean else describeExit(status))
        worker = WorkerInfo(
            record.pid, generation.number, self.server.config, record.served, record.limit, reason, status
        )
        self.hooks.callLogged("child_exit", self.server, worker)
